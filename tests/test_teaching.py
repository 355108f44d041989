"""Every chapter follows the book's teaching conventions (read from the notebook JSON, nothing executed).

- An opening box, ``:::{admonition} In this chapter``, states the question in the learners' words, what the
  reader will be able to do, the prerequisites and the reading time.
- The reading time is honest and fits one sitting: the stated minutes are at least the estimate of
  ``reading_minutes`` in scripts/chapter_meta.py for the main path (everything but the optional "Going
  deeper" sections and the exercises) and at most 45.
- "What the evidence says" ends with ``**In short**`` and exactly three bullets, then ``**The learners'
  questions**`` with one bullet per question the chapter bears on, each opening with the question's
  canonical wording (the list below; the bottom-line chapter links to these lines).
- Every exercise opens with its kind, difficulty and minutes: ``**Code** · medium · about 15 min``.
- The chapter links the notation page.

The last tests show that each check fails on a chapter that breaks its convention.
"""
import json
import re
import sys
from pathlib import Path

import pytest

from bnbook.evidence import QUESTIONS  # the learners' questions, in their canonical wording

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from chapter_meta import (  # noqa: E402
    EXERCISE, EXERCISE_META, MAX_MINUTES, OPENING, OPENING_FIELDS, READING_TIME, markdown_cells,
    reading_minutes)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
def check_opening_box(nb):
    head = "\n".join(markdown_cells(nb)[:3])
    if not OPENING.search(head):
        return ["no opening box ':::{admonition} In this chapter' in the first markdown cells"]
    return [f"the opening box lacks {field}" for field in OPENING_FIELDS if field not in head]


def check_reading_time(nb):
    head = "\n".join(markdown_cells(nb)[:3])
    match = READING_TIME.search(head)
    if not match:
        return ["no '**Reading time.** about N minutes' in the opening box"]
    stated = int(match[1])
    words, needed = reading_minutes(nb)
    problems = []
    if stated < 0.9 * needed:
        problems.append(f"reading time {stated} min is less than the estimate {needed:.0f} min "
                        f"({words} main-path words; see reading_minutes)")
    if stated > MAX_MINUTES or needed > MAX_MINUTES:
        problems.append(f"{max(stated, round(needed))} minutes does not fit one sitting (<= {MAX_MINUTES}): "
                        "move detours into 'Going deeper' sections or split the chapter")
    return problems


def _evidence_section(nb):
    text = "\n".join(markdown_cells(nb))
    match = re.search(r"^#+ What the evidence says.*?(?=^#+ (?!Going deeper)|\Z)", text,
                      flags=re.MULTILINE | re.DOTALL)
    return match[0] if match else None


def _bullets_after(text, marker):
    after = text.split(marker, 1)[1]
    lines = after.strip("\n").splitlines()
    bullets = []
    for line in lines:
        if line.startswith("- "):
            bullets.append(line[2:])
        elif line.startswith("  ") and bullets:
            continue
        elif line.strip() == "" and not bullets:
            continue
        else:
            break
    return bullets


def check_closing_summary(nb):
    section = _evidence_section(nb)
    if section is None:
        return ["no 'What the evidence says' section"]
    problems = []
    if "**In short**" not in section:
        problems.append("'What the evidence says' has no '**In short**' summary")
    elif len(_bullets_after(section, "**In short**")) != 3:
        problems.append(f"'**In short**' has {len(_bullets_after(section, '**In short**'))} bullets, not 3")
    marker = "**The learners' questions**"
    if marker not in section:
        problems.append(f"'What the evidence says' has no {marker} list")
    else:
        answers = _bullets_after(section, marker)
        if not answers:
            problems.append(f"{marker} lists no question")
        problems += [f"answer line does not open with a canonical question in bold: {a[:60]!r}"
                     for a in answers if not any(a.startswith(f"**{q}**") for q in QUESTIONS)]
    return problems


def check_exercise_metadata(nb):
    problems = []
    for text in markdown_cells(nb):
        for match in EXERCISE.finditer(text):
            first = match[3].strip()
            if not EXERCISE_META.match(first):
                problems.append(f"exercise without '**Kind** · difficulty · about N min' as its first line: "
                                f"{first[:60]!r}")
    return problems


def check_links_notation(nb):
    text = "\n".join(markdown_cells(nb))
    return [] if re.search(r"\{(?:ref|doc)\}`[^`]*notation", text) else ["no link to the notation page"]


CHECKS = [check_opening_box, check_reading_time, check_closing_summary, check_exercise_metadata,
          check_links_notation]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_follows_the_teaching_conventions(path, check):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert check(nb) == [], f"{path.name}: " + "; ".join(check(nb))


def _nb(*cells):
    return {"cells": [{"cell_type": "markdown", "source": c} for c in cells]}


GOOD = _nb(":::{admonition} In this chapter\n**Question.** Why?\n**You will be able to** x.\n"
           "**Prerequisites.** none.\n**Reading time.** about 5 minutes.\n:::\nSee {ref}`notation`.",
           "## What the evidence says\n\nx\n\n**In short**\n\n- a\n- b\n- c\n\n**The learners' questions**\n\n"
           "- **Is BN necessary?** Not here.\n",
           "```{exercise} E\n:label: ex-e\n\n**Code** · easy · about 5 min\n\nDo it.\n```")


def test_a_chapter_that_follows_them_passes():
    assert [p for check in CHECKS for p in check(GOOD)] == []


@pytest.mark.parametrize("check, bad", [
    (check_opening_box, _nb("# Title\n\nNo box.")),
    (check_reading_time, _nb(":::{admonition} In this chapter\n**Reading time.** about 1 minutes\n:::\n"
                             + "word " * 1000)),
    (check_reading_time, _nb(":::{admonition} In this chapter\n**Reading time.** about 40 minutes\n:::\n"
                             + "word " * 5000 + "\n## Going deeper: more\n" + "word " * 10)),
    (check_reading_time, _nb(":::{admonition} In this chapter\n**Reading time.** about 60 minutes\n:::")),
    (check_closing_summary, _nb("## What the evidence says\n\n**In short**\n\n- a\n- b\n")),
    (check_closing_summary, _nb("## What the evidence says\n\n**In short**\n\n- a\n- b\n- c\n\n"
                                "**The learners' questions**\n\n- **Is it magic?** no\n")),
    (check_exercise_metadata, _nb("```{exercise} E\n:label: ex-e\n\nDo it.\n```")),
    (check_links_notation, _nb("no link")),
], ids=lambda x: getattr(x, "__name__", ""))
def test_each_check_fails_on_a_chapter_that_breaks_it(check, bad):
    assert check(bad)
