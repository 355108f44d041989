"""How a chapter states and checks a result.

``claim(text, holds, **measured)`` shows a check mark (a result box in Jupyter and the
HTML book, see :mod:`bnbook.display`) when ``holds`` is true and raises
:class:`ClaimFailed` with the measured numbers when it is not, so nbval (which runs
every chapter) fails when the science stops holding.

``make seeds`` (``scripts/seeds.py``) runs every chapter under other base seeds and
sets ``BNBOOK_CLAIMS_LOG`` to a file: each claim then appends one JSON line (text,
held, measured numbers, base seed) to it, and a claim that does not hold is logged
instead of raised, so one run tabulates every claim of the chapter.
"""
from __future__ import annotations

import json
import math
import os

from .display import result_box, show
from .seeding import base_seed

LOG_VARIABLE = "BNBOOK_CLAIMS_LOG"


class ClaimFailed(AssertionError):
    """A result stated in the text did not hold when the chapter ran."""


def _plain(value):
    """A JSON-friendly Python number, string or list for a measured value (tensors and arrays included)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def _log(path: str, text: str, held: bool, measured: dict) -> None:
    record = {"text": text, "held": held, "seed": base_seed(),
              "measured": {k: _plain(v) for k, v in measured.items()}}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def claim(text: str, holds, **measured) -> None:
    """Check one stated result; show it with the numbers behind it.

    In a terminal (pytest, scripts) it prints one line; in Jupyter and the HTML book it displays
    a result box (:mod:`bnbook.display`) with the same line as its plain-text fallback, the
    numbers rounded and named, and the base seed the build ran on. Returns None, so a claim as
    the last line of a cell adds no ``True`` to the output.

    >>> claim("two is more than one", 2 > 1, two=2, one=1)
    ✔ two is more than one  (two=2, one=1)
    """
    held = bool(holds)
    log = os.environ.get(LOG_VARIABLE)
    if log:
        _log(log, text, held, measured)
    if not held:
        failed = repr(result_box("wrong", f"claim does not hold: {text}", measured))
        if log:  # a seed sweep tabulates every claim: record the failure and go on
            print(failed)
            return None
        raise ClaimFailed(failed)
    show(result_box("ok", text, measured, note=f"Checked when this page was built, on base seed "
                                                 f"{base_seed()} (BNBOOK_SEED)."))
