"""The findings the bottom line's scoreboard reads, kept true by the chapters that measure them.

A chapter that tests one of the proposed explanations of BN (or answers one of the learners'
questions) states its verdict with :func:`finding`: the explanation, a verdict from
:data:`VERDICTS` that the chapter *computes* from its measured numbers, the key number with
its format, what exactly was measured, and the label of the figure that shows it.

The book keeps one committed record per chapter, ``bnbook/evidence/<chapter>.json``. The
bottom-line chapter reads only these records (:func:`load`), so it never re-runs an
experiment and never types a number. What keeps the records true is the chapter itself:
every time a chapter runs (nbval in ``make test``, the book build, ``make seeds``, a learner),
:func:`finding` compares what it just computed with the record, as a :func:`bnbook.claim`:

* the verdict must be the record's on every base seed (a verdict that flips with the seed is
  not a verdict: the chapter must state the weaker one);
* on the record's own base seed the number must agree: the same when formatted, or within 5% or
  one unit of its last displayed digit. The slack is for other machines: a CPU with other vector
  instructions rounds differently, and a few hundred SGD steps can move a trained result by a
  percent or two. The scoreboard says so next to its numbers.

So when a chapter's result changes, that chapter fails with both numbers until the record is
rewritten by running the chapter with ``BNBOOK_EVIDENCE_UPDATE=1`` (``make evidence`` does this
for every chapter on the book's base seed), and the bottom line then shows the new result.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from .claims import claim
from .seeding import base_seed

SUPPORTED = "supported"
CONDITIONAL = "only under conditions"
NOT_SUPPORTED = "not supported"
UNDECIDED = "not decidable at our scale"
VERDICTS = (SUPPORTED, CONDITIONAL, NOT_SUPPORTED, UNDECIDED)

# The learners' questions (the seed posts, ../shared/papers.md), in the canonical wording with which every
# chapter's "The learners' questions" bullets open and the bottom line answers them.
QUESTIONS = (
    "Is BN necessary?",
    "Why does normalizing hidden units help later layers?",
    "Are gamma and beta redundant?",
    "Internal covariate shift or smoothness?",
    "Before or after the nonlinearity?",
    "BN with dropout?",
    "Small batches?",
    "Why mini-batches?",
    "So, is there a bottom line?",
)
UPDATE_VARIABLE = "BNBOOK_EVIDENCE_UPDATE"
RELATIVE_TOLERANCE = 0.05  # another machine's float rounding may move a trained result a little
RECORDS = Path(__file__).with_name("evidence")
FIELDS = ("explanation", "verdict", "value", "fmt", "measured", "figure", "seed")

_rewritten: set[str] = set()  # chapters whose record this process has started afresh (update mode)


def _path(chapter: str) -> Path:
    return RECORDS / f"{chapter}.json"


def _check(chapter, key, explanation, verdict, value, fmt, measured, figure) -> float:
    for name, text in (("chapter", chapter), ("key", key), ("explanation", explanation),
                       ("measured", measured), ("figure", figure)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"finding(): {name} must be a non-empty string, got {text!r}")
    if not key.replace("_", "").isalnum() or not chapter.replace("_", "").isalnum():
        raise ValueError(f"finding(): chapter and key must be identifiers, got {chapter!r}, {key!r}")
    if verdict not in VERDICTS:
        raise ValueError(f"finding(): verdict must be one of {VERDICTS}, got {verdict!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"finding(): value must be a number, got {type(value).__name__}") from None
    if not math.isfinite(number):
        raise ValueError(f"finding(): value must be finite, got {number}")
    try:
        format(number, fmt)
    except (TypeError, ValueError):
        raise ValueError(f"finding(): fmt {fmt!r} is not a format spec for a number") from None
    return number


def load(chapter: str | None = None) -> dict:
    """The committed records: ``{chapter: {key: record}}``, or one chapter's ``{key: record}``.

    A record is a dict with the fields of :data:`FIELDS`.
    """
    if chapter is not None:
        path = _path(chapter)
        if not path.exists():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(RECORDS.glob("*.json"))}


def _write(chapter: str, key: str, record: dict) -> None:
    records = {} if chapter not in _rewritten else load(chapter)
    _rewritten.add(chapter)
    records[key] = record
    RECORDS.mkdir(exist_ok=True)
    _path(chapter).write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def last_digit(fmt: str) -> float:
    """One unit of the last digit a fixed-point or percent format shows (``".2f"`` -> 0.01), else 0."""
    match = re.fullmatch(r"[^.]*\.(\d+)([f%])", fmt)
    if not match:
        return 0.0
    digits = int(match[1]) + (2 if match[2] == "%" else 0)
    return 10.0 ** -digits


def agrees(record: dict, verdict: str, value: float, seed: int) -> bool:
    """True if a fresh result agrees with a committed record (see the module docstring)."""
    if record.get("verdict") != verdict:
        return False
    if record.get("seed") != seed:
        return True
    old, fmt = float(record["value"]), record["fmt"]
    return (format(old, fmt) == format(value, fmt)
            or math.isclose(old, value, rel_tol=RELATIVE_TOLERANCE, abs_tol=last_digit(fmt)))


def finding(chapter: str, key: str, *, explanation: str, verdict: str, value, fmt: str, measured: str,
            figure: str) -> dict:
    """Record one verdict for the scoreboard and check it against the committed record.

    Args:
        chapter: the chapter's file name without ``.ipynb`` (``"internal_covariate_shift"``).
        key: the finding's name, unique within the chapter (``"ics"``).
        explanation: the explanation or question it bears on, as the scoreboard lists it.
        verdict: one of :data:`VERDICTS`, computed by the chapter from its measurements.
        value: the key number (finite); ``fmt``: its format spec (``".2f"``).
        measured: what exactly the number is, in a short phrase a reader can check in the chapter.
        figure: the label of the figure (or section) that shows it, for a ``{numref}``/``{ref}`` link.

    Returns the record. Raises :class:`bnbook.ClaimFailed` if the fresh result disagrees with the
    committed record (or there is none), unless ``BNBOOK_EVIDENCE_UPDATE`` is set, in which case
    it rewrites the record instead.
    """
    number = _check(chapter, key, explanation, verdict, value, fmt, measured, figure)
    seed = base_seed()
    record = dict(zip(FIELDS, (explanation, verdict, number, fmt, measured, figure, seed)))
    if os.environ.get(UPDATE_VARIABLE):
        _write(chapter, key, record)
        return record
    old = load(chapter).get(key)
    committed = "none (run `make evidence`)" if old is None else f"{old['verdict']}, {format(old['value'], fmt)}"
    claim(f"the bottom line's scoreboard agrees with this result ({explanation}: {verdict})",
          old is not None and agrees(old, verdict, number, seed),
          measured=format(number, fmt), committed=committed)
    return record
