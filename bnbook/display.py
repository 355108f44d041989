"""What a chapter shows while it runs: result boxes, and progress bars that stay out of the book.

A claim (:mod:`bnbook.claims`) and an exercise self-check both end by telling the reader one
short verdict: ✔ it holds / is right, ✘ it is wrong, … not attempted yet. :func:`result_box`
builds that verdict once; :func:`show` prints its plain text in a terminal (pytest, scripts)
and, in a Jupyter kernel, displays it as a rich output whose ``text/plain`` is the same line
and whose ``text/html`` is a box that wraps, so the HTML book never needs horizontal
scrolling. The book's CSS (``_static/bnbook.css``) styles the classes ``bnbook-result`` and
``bnbook-result-ok`` / ``-wrong`` / ``-todo``; the few inline styles keep the box readable
in Jupyter, Binder and Colab, which do not load that file.

>>> box = result_box("ok", "two is more than one", numbers={"two": 2, "one": 1})
>>> print(repr(box))
✔ two is more than one  (two=2, one=1)

:func:`progress_bar` is tqdm's ``tqdm.auto`` bar (a widget in Jupyter) for anything slow; it is
off when ``TQDM_DISABLE`` is set, which ``make book`` does: a frozen bar in an HTML page tells a
reader nothing.
"""
from __future__ import annotations

import html
import math
import os
from typing import Any

from tqdm.auto import tqdm

__all__ = ["MARKS", "ResultBox", "result_box", "format_number", "show", "progress_bar", "glue", "glue_range"]

# The verdicts a box can give: its mark and the label the HTML shows next to it.
MARKS = {"ok": ("✔", "checked"), "wrong": ("✘", "does not hold"), "todo": ("…", "not attempted yet")}
_COLOURS = {"ok": "#2e7d32", "wrong": "#c62828", "todo": "#9e9e9e"}
MAX_ITEMS = 8  # a list of measured numbers longer than this is shortened with "..."


def format_number(value) -> str:
    """A measured value as a reader reads it: floats to 4 significant digits, 0-d tensors and
    arrays as their number, short sequences element by element; anything else by its repr."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    elif hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        items = [format_number(v) for v in value[:MAX_ITEMS]]
        more = ", ..." if len(value) > MAX_ITEMS else ""
        return "[" + ", ".join(items) + more + "]"
    return repr(value)


class ResultBox:
    """A verdict (``kind`` one of :data:`MARKS`) on a statement, with named numbers and a footnote.

    ``repr()`` is the plain-text line (``✔ text  (a=1, b=2)``); ``_repr_html_()`` the HTML box.
    """

    def __init__(self, kind: str, text: str, numbers: dict | None = None, note: str | None = None):
        if kind not in MARKS:
            raise ValueError(f"kind must be one of {sorted(MARKS)}, got {kind!r}")
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        self.kind, self.text, self.note = kind, text, note
        self.numbers = {str(k): format_number(v) for k, v in (numbers or {}).items()}

    def __repr__(self) -> str:
        numbers = ", ".join(f"{k}={v}" for k, v in self.numbers.items())
        return f"{MARKS[self.kind][0]} {self.text}" + (f"  ({numbers})" if numbers else "")

    def _repr_html_(self) -> str:
        mark, label = MARKS[self.kind]
        esc = html.escape
        numbers = "".join(f'<span class="bnbook-result-number"><code>{esc(k)}</code> = {esc(v)}</span> '
                          for k, v in self.numbers.items())
        parts = [
            f'<div class="bnbook-result bnbook-result-{self.kind}" role="status" '
            f'style="border-left:4px solid {_COLOURS[self.kind]};padding:0.35em 0.75em;'
            f'white-space:normal;overflow-wrap:anywhere">',
            f'<span class="bnbook-result-mark" aria-label="{label}" title="{label}">{mark}</span> '
            f'<span class="bnbook-result-text">{esc(self.text)}</span>',
        ]
        if numbers:
            parts.append(f'<div class="bnbook-result-numbers">{numbers.strip()}</div>')
        if self.note:
            parts.append(f'<div class="bnbook-result-note" style="font-size:85%;opacity:0.8">'
                         f'{esc(self.note)}</div>')
        return "".join(parts) + "</div>"


def result_box(kind: str, text: str, numbers: dict | None = None, note: str | None = None) -> ResultBox:
    """A :class:`ResultBox`: ``kind`` is "ok" (✔), "wrong" (✘) or "todo" (…, not attempted yet)."""
    return ResultBox(kind, text, numbers, note)


def show(box: ResultBox) -> None:
    """Show ``box``: a rich display (HTML box, plain-text fallback) in a Jupyter kernel, else print its line."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # IPython is optional for bnbook's plain-Python users
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(box)
    else:
        print(repr(box))


def progress_bar(iterable=None, *, progress: bool = True, **kwargs):
    """A ``tqdm.auto`` progress bar (keyword arguments go to tqdm), off when ``progress`` is False or
    ``TQDM_DISABLE`` is set to anything non-empty (as tqdm reads it). tqdm honours that variable itself
    in a terminal but not in Jupyter, whose bar passes ``disable`` explicitly; the book build sets it
    so that executed pages carry no progress-bar widgets."""
    return tqdm(iterable, disable=not progress or bool(os.environ.get("TQDM_DISABLE")), **kwargs)


# myst-nb's prefix for a glued value that is stored but not shown (myst_nb.ext.glue.GLUE_PREFIX).
GLUE_PREFIX = "application/papermill.record/"


def _plain_number(value: Any) -> Any:
    """A NumPy scalar or a 0-d tensor/array as the Python number it holds; anything else unchanged."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the text: ``{glue:text}`name:.2f``` in a markdown cell.

    myst-nb's ``glue`` with two differences. NumPy scalars and 0-d tensors are glued as Python numbers, whose
    text is ``0.5`` rather than ``np.float64(0.5)``, so a format spec such as ``:.2f`` applies. And it needs
    no myst-nb: it writes the same output (the value's display data, tagged with the name in the cell's
    metadata) with IPython alone, so a chapter runs on Binder and Colab, where the book's build tools are not
    installed. ``display=False`` (the default here) stores the value without showing it.
    """
    from IPython.core.formatters import format_display_data
    from IPython.display import display as ipy_display

    if not isinstance(name, str) or not name:
        raise ValueError(f"glue needs a non-empty string name, got {name!r}")
    mimebundle, metadata = format_display_data(_plain_number(value))
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
    ipy_display({prefix + k: v for k, v in mimebundle.items()}, raw=True, metadata=metadata)


def glue_range(name: str, values) -> tuple[float, float]:
    """Glue the smallest and largest of ``values`` (e.g. one number per seed) as ``name_lo`` and ``name_hi``.

    The text then states the spread it saw: ``{glue:text}`name_lo:.2f`-{glue:text}`name_hi:.2f```. Returns
    ``(lo, hi)``; non-finite values (a diverged run) are left out, and none left is a ValueError.
    """
    finite = [float(v) for v in (_plain_number(v) for v in values) if math.isfinite(float(v))]
    if not finite:
        raise ValueError(f"glue_range({name!r}) got no finite value")
    lo, hi = min(finite), max(finite)
    glue(f"{name}_lo", lo)
    glue(f"{name}_hi", hi)
    return lo, hi
