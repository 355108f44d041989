"""Every self-check in the book keeps the one contract of bnbook.selfcheck.

The checks are discovered (every public ``check_*`` of every ``bnbook.chapters`` module), so a
check added later is held to the contract too: None is "not attempted" (returns None), and
every kind of wrong answer -- a string, a non-callable, NaN, a function that raises or
returns nonsense -- prints a friendly ✘ and returns False; nothing raises, nothing passes.
"""
import importlib
import inspect
import math
import pkgutil

import pytest
import torch

import bnbook.chapters
from bnbook import selfcheck

# Required arguments after the answer, for the checks that have any.
EXTRA_ARGS = {
    "check_effective_batch": (8, 3, 4, 4),
    "check_scale_invariance": (0.25,),
    "check_supported_count": ([{"verdict": "supported"}, {"verdict": "not supported"}],),
    "check_stable_lr": (2.0,),
}
# Answers of every wrong kind: for a check that wants a number and for one that wants a function.
WRONG_ANSWERS = {
    "a string": "0.5",
    "a list": [1, 2],
    "NaN": math.nan,
    "a tensor of the wrong shape": torch.ones(7, 3),
    "a function that raises": lambda *a, **k: 1 / 0,
    "a function returning a string": lambda *a, **k: "no",
    "a function returning None": lambda *a, **k: None,
}


def _checks():
    found = []
    for info in pkgutil.iter_modules(bnbook.chapters.__path__):
        module = importlib.import_module(f"bnbook.chapters.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("check_") and fn.__module__ == module.__name__:
                found.append(pytest.param(fn, id=f"{info.name}.{name}"))
    return found


CHECKS = _checks()


def _call(check, answer):
    extra = EXTRA_ARGS.get(check.__name__, ())
    params = list(inspect.signature(check).parameters.values())[1:]
    required = [p for p in params if p.default is inspect.Parameter.empty]
    assert len(required) == len(extra), (
        f"{check.__name__} needs arguments {[p.name for p in required]}: add them to EXTRA_ARGS")
    return check(answer, *extra)


def test_the_book_has_self_checks():
    assert len(CHECKS) >= 10


@pytest.mark.parametrize("check", CHECKS)
def test_none_is_not_attempted(check, capsys):
    assert _call(check, None) is None
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("kind", list(WRONG_ANSWERS))
def test_every_wrong_kind_of_answer_is_a_friendly_cross(check, kind, capsys):
    verdict = _call(check, WRONG_ANSWERS[kind])
    out = capsys.readouterr().out
    assert verdict is False, f"{check.__name__} gave {verdict!r} for {kind}"
    assert out.strip().startswith("✘") or "\n✘" in out, f"{check.__name__}: no ✘ message for {kind}: {out!r}"


def test_kit_reads_numbers_and_functions(capsys):
    assert selfcheck.numeric_answer(0.25, "x") == (0.25, None)
    assert selfcheck.numeric_answer(None, "x") == (None, None)
    assert selfcheck.numeric_answer("1", "x") == (None, False)
    assert selfcheck.numeric_answer(True, "x") == (None, False)
    assert selfcheck.numeric_answer(math.inf, "x") == (None, False)
    assert selfcheck.function_answer(print, "f", "check(f)") == (print, None)
    assert selfcheck.function_answer(3, "f", "check(f)") == (None, False)
    assert selfcheck.call_answer(lambda: 1 / 0, signature="f()") == (None, False)
    assert "ZeroDivisionError" in capsys.readouterr().out
