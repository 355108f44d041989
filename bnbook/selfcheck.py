"""The self-check kit of the exercises: one contract for every check in the book.

An exercise cell gives the reader a placeholder and a check::

    my_forward = None  # replace None by your function
    check_batchnorm_forward(my_forward)

Every ``check_*`` function in bnbook keeps the same contract:

* a right answer prints ``✔ ...`` and returns True;
* ``None`` (not attempted yet) prints a hint and returns None;
* every kind of wrong answer (a wrong value, a string where a number is due, a
  non-callable where a function is due, a function that raises or returns the wrong
  shape) prints ``✘ ...`` naming the likely mistake and returns False. A check never
  raises, so a chapter with unanswered exercises still runs top to bottom.

A check starts from :func:`numeric_answer` or :func:`function_answer`, which settle
the "not attempted" and "not even the right kind of answer" cases, then compares with
:func:`close` and reports with :func:`ok` / :func:`wrong`. Chapter-specific checks live
in ``bnbook.chapters.<chapter>``; the worked answer sits in the exercise's solution.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .display import result_box, show

__all__ = ["ok", "wrong", "not_attempted", "numeric_answer", "function_answer", "call_answer",
           "as_tensor", "close", "near"]


def _show(kind: str, text: str) -> None:
    """Show one self-check verdict: a wrapping box in Jupyter and HTML, one plain line elsewhere."""
    show(result_box(kind, text))


def ok(text: str) -> bool:
    """Report a right answer: prints ``✔ text`` and returns True."""
    _show("ok", text)
    return True


def wrong(text: str) -> bool:
    """Report a wrong answer: prints ``✘ text`` and returns False."""
    _show("wrong", text)
    return False


def not_attempted(what: str) -> None:
    """Report an exercise not attempted yet (the answer is still None); returns None."""
    _show("todo", f"{what} is not attempted yet: replace None by your answer and run the cell again.")
    return None


def numeric_answer(answer: Any, what: str) -> tuple[float | None, bool | None]:
    """``(value, None)`` for a finite number; else ``(None, verdict)`` after reporting it.

    None is "not attempted"; a string, a bool, a container or NaN is a wrong answer with a message that
    says what was expected.
    """
    if answer is None:
        return None, not_attempted(what)
    if not isinstance(answer, (bool, str)):
        try:
            value = float(answer)
        except (TypeError, ValueError):
            value = None
        if value is not None and math.isfinite(value):
            return value, None
        if value is not None:
            return None, wrong(f"{what}: expected a finite number, got {value}")
    return None, wrong(f"{what}: expected a number, got {type(answer).__name__} {answer!r:.40}")


def function_answer(fn: Any, what: str, example: str) -> tuple[Callable | None, bool | None]:
    """``(fn, None)`` if ``fn`` is callable; else ``(None, verdict)`` after reporting it.

    ``example`` shows the call the check expects, e.g. ``"check_fold_next(my_fold)"``.
    """
    if fn is None:
        return None, not_attempted(what)
    if not callable(fn):
        return None, wrong(f"{what}: pass your function itself, e.g. {example}, not a {type(fn).__name__}")
    return fn, None


def call_answer(fn: Callable, *args, signature: str) -> tuple[Any, bool | None]:
    """``(fn(*args), None)``; if the reader's function raises, ``(None, verdict)`` naming the error.

    ``signature`` says how the check calls it, e.g. ``"fn(x, gamma, beta, eps) with x of shape (6, 4)"``.
    """
    try:
        return fn(*args), None
    except Exception as err:  # the reader's code: report, never crash the notebook
        return None, wrong(f"your function raised {type(err).__name__}: {err}  (it is called as {signature})")


def as_tensor(value: Any) -> torch.Tensor | None:
    """A reader's array answer as a float64 tensor (the first element of a tuple such as ``(y, cache)``).

    None when the value cannot be read as numbers.
    """
    if isinstance(value, (tuple, list)) and value and not isinstance(value[0], (int, float)):
        value = value[0]
    if value is None:
        return None
    try:
        return torch.as_tensor(value).to(torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def close(a: torch.Tensor | None, b: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-8) -> bool:
    """True if ``a`` has ``b``'s shape and values (``torch.allclose``); False for None or another shape."""
    return a is not None and a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def near(value: float, target: float, rel: float) -> bool:
    """True if a numeric answer is within a relative tolerance ``rel`` of ``target``."""
    return abs(value - target) <= rel * abs(target)
