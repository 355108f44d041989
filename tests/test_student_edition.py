"""The student edition (scripts/student_edition.py) really removes the solutions."""
import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("student_edition", ROOT / "scripts" / "student_edition.py")
student_edition = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(student_edition)
strip_solutions = student_edition.strip_solutions

EXERCISE = """## Exercises

```{exercise}
:label: ex-scale
Show that BN(aWu) = BN(Wu) for a > 0.
```
"""
DIRECTIVE_SOLUTION = """````{solution} ex-scale
:class: dropdown
The mean scales by a and the standard deviation by a: SECRET-DIRECTIVE.
```python
print("nested code fence")
```
````
Text after the solution stays.
"""
COLON_SOLUTION = """:::{solution} ex-scale
:class: dropdown
SECRET-COLON
:::
"""
DROPDOWN_SOLUTION = """```{dropdown} Solution to the warm-up
SECRET-DROPDOWN
```
```{dropdown} A hint
Look at the variance.
```
"""
GATED_START = """Try it yourself.

```{solution-start} ex-scale
:class: dropdown
```
SECRET-GATED-TEXT
"""
GATED_END = """```{solution-end}
```
After the gated solution.
"""


def _notebook():
    tagged = new_code_cell("answer = 42  # SECRET-TAGGED")
    tagged.metadata["tags"] = ["solution"]
    return new_notebook(cells=[
        new_markdown_cell(EXERCISE + DIRECTIVE_SOLUTION),
        new_markdown_cell(COLON_SOLUTION),
        new_markdown_cell(DROPDOWN_SOLUTION),
        tagged,
        new_markdown_cell(GATED_START),
        new_code_cell("x = 1  # SECRET-GATED-CODE"),
        new_markdown_cell(GATED_END),
        new_code_cell("print('exercise scaffold')"),
    ])


def _text(nb):
    return "\n".join(cell.source for cell in nb.cells)


def test_student_notebook_has_no_solutions():
    student = strip_solutions(_notebook())
    text = _text(student)
    assert "SECRET" not in text
    assert "{solution" not in text and "{dropdown} Solution" not in text
    for kept in ("{exercise}", "Show that BN(aWu)", "Text after the solution stays.", "A hint",
                 "Try it yourself.", "After the gated solution.", "exercise scaffold"):
        assert kept in text
    nbformat.validate(student)


def test_html_staging_keeps_solution_code_hidden():
    staged = strip_solutions(_notebook(), keep_code=True)
    hidden = [c for c in staged.cells if "remove-cell" in c.metadata.get("tags", [])]
    assert [c.source for c in hidden] == ["answer = 42  # SECRET-TAGGED", "x = 1  # SECRET-GATED-CODE"]
    shown = [c for c in staged.cells if c not in hidden]
    assert "SECRET" not in _text(new_notebook(cells=shown))


def test_original_notebook_is_untouched():
    nb = _notebook()
    strip_solutions(nb)
    assert "SECRET-DIRECTIVE" in _text(nb)


def test_unclosed_gated_solution_is_an_error():
    nb = new_notebook(cells=[new_markdown_cell(GATED_START)])
    with pytest.raises(ValueError, match="solution-start without a matching solution-end"):
        strip_solutions(nb, name="ch.ipynb")


def test_writes_student_chapters(tmp_path):
    src = tmp_path / "chapters"
    src.mkdir()
    nbformat.write(_notebook(), src / "ch.ipynb")
    written = student_edition.write_student_notebooks(src, tmp_path / "student")
    assert [p.name for p in written] == ["ch.ipynb"]
    assert "SECRET" not in written[0].read_text()


def test_student_edition_does_not_promise_the_solutions_it_removed():
    nb = new_notebook(cells=[new_markdown_cell(
        "Run the check. Solutions are folded\nunder each exercise.\n\n```{solution} ex-a\n:class: dropdown\n\nx\n```")])
    out = strip_solutions(nb).cells[0].source
    assert "folded" not in out and "Run the check." in out and "{solution}" not in out
