"""ruff (pinned in requirements.txt, configured in pyproject.toml) runs clean over the code.

The package, the tests and the scripts are checked at 120 columns, the chapter notebooks at
79 (chapter code must fit a notebook cell and a page of the book). The second test proves
that the check can fail.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_LINE = 79


def _ruff():
    ruff = Path(sys.executable).with_name("ruff")
    if ruff.is_file():
        return str(ruff)
    found = shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: it is pinned in requirements.txt (run `make test`)")
    return found


def _check(*args, cwd=ROOT):
    proc = subprocess.run([_ruff(), "check", "--no-cache", "--output-format", "concise", *args],
                          cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


@pytest.mark.parametrize("paths, extra", [
    (["bnbook", "tests", "scripts"], []),
    (["chapters"], ["--line-length", str(CHAPTER_LINE)]),
], ids=["package-tests-scripts", "chapters"])
def test_ruff_is_clean(paths, extra):
    code, out = _check(*extra, *paths)
    assert code == 0, f"ruff found problems (fix them, or `ruff check --fix`):\n{out[-4000:]}"


def test_ruff_flags_a_long_line_and_an_unused_import(tmp_path):
    (tmp_path / "bad.py").write_text("import os\nx = " + "1" * 90 + "\n")
    code, out = _check("--line-length", str(CHAPTER_LINE), "--config", str(ROOT / "pyproject.toml"),
                       str(tmp_path / "bad.py"))
    assert code != 0 and "F401" in out and "E501" in out, out
