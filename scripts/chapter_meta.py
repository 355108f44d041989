"""What a chapter notebook says about itself, read from its JSON: reading time, opening box, exercises.

The book's teaching conventions (tests/test_teaching.py checks them) give every chapter an opening box
(``:::{admonition} In this chapter`` with the question, what the reader will be able to do, prerequisites
and reading time), a closing summary, and exercises whose first line names kind, difficulty and minutes.
The instructor's guide (instructors.md, executed when the book is built) and the tests read them here.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
WORDS_PER_MINUTE = 100  # studying technical prose, not skimming it
MINUTES_PER_EQUATION, MINUTES_PER_FIGURE, MINUTES_PER_CODE_CELL = 1.0, 2.0, 0.5
MAX_MINUTES = 45
KINDS = ("Derivation", "Code", "Measurement", "Discussion")
EXERCISE_META = re.compile(r"^\*\*(" + "|".join(KINDS) + r")\*\* · (easy|medium|hard) · about (\d+) min\b")
EXERCISE = re.compile(r"^[ \t]*(`{3,}|:{3,})\{exercise(?:-start)?\}[^\n]*\n((?:[ \t]*:[\w-]+:[^\n]*\n)*)"
                      r"(?:[ \t]*\n)*([^\n]*)", re.MULTILINE)
OPENING = re.compile(r"^:::+\{admonition\} In this chapter\s*$", re.MULTILINE)
OPENING_FIELDS = ("**Question.**", "**You will be able to**", "**Prerequisites.**", "**Reading time.**")
READING_TIME = re.compile(r"\*\*Reading time\.\*\* about (\d+) minutes")


def markdown_cells(nb):
    """The sources of a notebook's markdown cells."""
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def main_path(nb):
    """What a reader goes through in one sitting: all but the optional "Going deeper" sections and the
    exercises (which carry their own minutes), as (cell, text) pairs; markdown is split at headings."""
    kept, skipping, level = [], False, 0
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        pieces = re.split(r"(?=^#+\s)", text, flags=re.MULTILINE) if cell["cell_type"] == "markdown" else [text]
        for piece in pieces:
            heading = re.match(r"^(#+)\s+(.*)", piece) if cell["cell_type"] == "markdown" else None
            if heading:
                depth = len(heading[1])
                if skipping and depth <= level:
                    skipping = False
                if not skipping and ("Going deeper" in heading[2] or heading[2].strip() == "Exercises"):
                    skipping, level = True, depth
            if not skipping:
                kept.append((cell, piece))
    return kept


def prose_words(text: str) -> int:
    """Words of prose: code blocks (fences without a {directive}) and math are not counted."""
    text = re.sub(r"^(`{3,}|~{3,})(?!\{)(?!\S*\{)[^\n]*\n.*?^\1[ \t]*$", "", text,
                  flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$", "", text, flags=re.DOTALL)
    text = re.sub(r"^[ \t]*(`{3,}|:{3,})\{[^}]*\}.*$|^[ \t]*:[\w-]+:.*$|^[ \t]*(`{3,}|:{3,})[ \t]*$", "", text,
                  flags=re.MULTILINE)
    return len(re.findall(r"[A-Za-z0-9][\w'-]*", text))


def reading_minutes(nb) -> tuple[int, float]:
    """(main-path prose words, estimated minutes): technical prose at WORDS_PER_MINUTE, plus a minute per
    display equation, two per numbered figure and half a minute per code cell shown (reading it, running it)."""
    words = minutes = 0.0
    for cell, text in main_path(nb):
        if cell["cell_type"] == "markdown":
            words += prose_words(text)
            minutes += len(re.findall(r"^\$\$|\{math\}", text, flags=re.MULTILINE)) * MINUTES_PER_EQUATION
        elif cell["cell_type"] == "code" and "remove-input" not in cell.get("metadata", {}).get("tags", []):
            minutes += MINUTES_PER_CODE_CELL  # a cell whose code the page removes is not read
            if cell.get("metadata", {}).get("mystnb", {}).get("figure"):
                minutes += MINUTES_PER_FIGURE
    return int(words), minutes + words / WORDS_PER_MINUTE




def read(path):
    """A notebook (nbformat v4; it reads like its JSON: ``nb["cells"]``, and like ``nb.cells``)."""
    return nbformat.read(Path(path), as_version=4)


def opening_box(nb) -> dict[str, str]:
    """The fields of the opening box: question, abilities, prerequisites, reading time (markdown text)."""
    head = "\n".join(markdown_cells(nb)[:3])
    match = re.search(r"^:::+\{admonition\} In this chapter\s*$(.*?)^:::+\s*$", head, re.MULTILINE | re.DOTALL)
    if not match:
        return {}
    fields, key = {}, None
    names = {"**Question.**": "question", "**You will be able to**": "abilities",
             "**Prerequisites.**": "prerequisites", "**Reading time.**": "reading time"}
    for line in match[1].splitlines():
        opener = next((k for k in names if line.startswith(k)), None)
        if opener:
            key = names[opener]
            fields[key] = line[len(opener):].strip()
        elif key and line.strip() and not line.startswith(":"):
            fields[key] += " " + line.strip()
    return fields


def exercises(nb) -> list[dict]:
    """Every exercise: label, title, kind, difficulty and minutes (None where the first line lacks them)."""
    found = []
    for text in markdown_cells(nb):
        for match in EXERCISE.finditer(text):
            title = re.sub(r"^[ \t]*(`{3,}|:{3,})\{exercise(?:-start)?\}\s*", "", match[0].splitlines()[0]).strip()
            label = re.search(r":label:\s*(\S+)", match[2] or "")
            meta = EXERCISE_META.match(match[3].strip())
            found.append({"label": label[1] if label else None, "title": title,
                          "kind": meta[1] if meta else None, "difficulty": meta[2] if meta else None,
                          "minutes": int(meta[3]) if meta else None})
    return found
