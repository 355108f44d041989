"""`make assignments`: every self-checked exercise becomes an autograded question, and grading can fail.

The first tests read the chapters (fast): every exercise cell with a ``None`` placeholder and a
self-check becomes a question with a worked answer. The last test builds one chapter's assignment
with otter-grader and grades two notebooks with ``otter run``: the reference solutions score full
marks, the unanswered student notebook scores zero.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import assignments  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_self_checked_exercise_becomes_a_question(path):
    nb = nbformat.read(path, as_version=4)
    stubs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and assignments.STUB.search(c.source) and assignments.CHECK_CALL.search(c.source)]
    questions = assignments.find_questions(nb)
    assert [q.cell_index for q in questions] == stubs, (
        f"{path.stem}: exercise cells {stubs} but questions for {[q.cell_index for q in questions]}; "
        "each needs an exercise label above it and a solution with a python block calling its check")
    for q in questions:
        namespace = {}
        compile(q.solution, q.label, "exec")  # the worked answer is valid Python
        assert all(name in q.solution for name in q.names), namespace


def test_master_notebook_has_otter_blocks_and_no_book_solution():
    nb = nbformat.read(ROOT / "chapters" / "bn_transform.ipynb", as_version=4)
    master = assignments.master_notebook(nb, "bn_transform")
    raw = [c.source for c in master.cells if c.cell_type == "raw"]
    assert raw[0].startswith("# ASSIGNMENT CONFIG")
    n = len(assignments.find_questions(nb))
    assert sum(s.startswith("# BEGIN QUESTION") for s in raw) == n >= 3
    assert not any("{solution}" in c.source for c in master.cells if c.cell_type == "markdown")


def _grade(otter, zip_path, notebook, out):
    out.mkdir()
    proc = subprocess.run([otter, "run", "-a", str(zip_path), str(notebook), "-o", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    tests = json.loads((out / "results.json").read_text())["tests"]
    scored = [t for t in tests if t.get("max_score")]
    return sum(t["score"] for t in scored), sum(t["max_score"] for t in scored)


def test_solutions_score_full_marks_and_the_unanswered_notebook_zero(tmp_path):
    otter = Path(sys.executable).with_name("otter")
    if not otter.is_file():
        otter = shutil.which("otter")
    assert otter, "otter-grader is not installed: it is pinned in requirements.txt"
    work = assignments.build(ROOT / "chapters" / "bn_transform.ipynb", tmp_path / "assignments", str(otter))
    zips = list((work / "autograder").glob("bn_transform-autograder_*.zip"))
    assert len(zips) == 1 and (work / "student" / "bn_transform.ipynb").is_file()
    student = nbformat.read(work / "student" / "bn_transform.ipynb", as_version=4)
    assert not any("def my_forward" in c.source for c in student.cells)
    score, total = _grade(otter, zips[0], work / "autograder" / "bn_transform.ipynb", tmp_path / "solutions")
    assert total >= 5 and score == total, f"the reference solutions scored {score} of {total}"
    score, total = _grade(otter, zips[0], work / "student" / "bn_transform.ipynb", tmp_path / "unanswered")
    assert score == 0, f"the unanswered notebook scored {score} of {total}"
