"""How a chapter states and checks a result.

``claim(text, holds, **measured)`` prints a check mark when ``holds`` is true and
raises :class:`ClaimFailed` with the measured numbers when it is not, so nbval
(which runs every chapter) fails when the science stops holding.
Used by every chapter.
"""


class ClaimFailed(AssertionError):
    """A result stated in the text did not hold when the chapter ran."""


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _fmt(value.item())
    return repr(value)


def claim(text: str, holds, **measured) -> None:
    """Check one stated result; print it with the numbers behind it.

    Returns None, so a claim as the last line of a cell adds no ``True`` to the output.

    >>> claim("two is more than one", 2 > 1, two=2, one=1)
    ✔ two is more than one  (two=2, one=1)
    """
    numbers = ", ".join(f"{k}={_fmt(v)}" for k, v in measured.items())
    suffix = f"  ({numbers})" if numbers else ""
    if not bool(holds):
        raise ClaimFailed(f"✘ claim does not hold: {text}{suffix}")
    print(f"✔ {text}{suffix}")
