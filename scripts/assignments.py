"""Build autograded assignments from the chapters' self-checked exercises (`make assignments`).

For every chapter with self-checked exercises (a code cell ``my_answer = None`` followed by a
``check_...(my_answer)`` call, with the worked answer in the exercise's solution), this writes

    _build/assignments/<chapter>/student/<chapter>.ipynb   the chapter without solutions, to hand out
    _build/assignments/<chapter>/autograder/<chapter>-autograder_*.zip   otter-grader's autograder
    _build/assignments/<chapter>/autograder/<chapter>.ipynb   the reference solutions (full marks)

It converts the chapter into an otter-grader master notebook: the book's own solutions are removed
(as for the student edition, ``scripts/student_edition.py``), and each self-checked exercise becomes
an otter question whose solution cell holds the worked answer from the exercise's solution and whose
tests are one public test (an answer was given) and one hidden test (the chapter's self-check accepts
it, exactly the call of the exercise cell). The grader skips the chapter's explorer cells (tag
``otter_ignore``): no answer depends on them. Points: 2 for a function, 1 for a number. Then
``otter assign`` writes the student notebook and the autograder zip (Gradescope-compatible; grade
one submission locally with ``otter run -a <zip> <submission.ipynb>``).

    python scripts/assignments.py                       # every chapter
    python scripts/assignments.py --chapters bn_transform --out /tmp/a
"""
from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapter_list  # noqa: E402
from student_edition import strip_solutions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUB = re.compile(r"^(\w+) = None\b", re.MULTILINE)
CHECK_CALL = re.compile(r"^\s*(?:\w+\.)?(check_\w+)\(", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"^[ \t]*(`{3,})(?:python|py|ipython3?)[ \t]*\n(.*?)^[ \t]*\1[ \t]*$",
                          re.MULTILINE | re.DOTALL)
# Cells that build a live widget or its static frames: the grader skips them (cell tag otter_ignore), since
# graded answers never depend on them and a widget cell can stall a headless kernel (jupyter/nbclient#312).
EXPLORER = re.compile(r"\b(explorer|static_frames)\(")
SOLUTION_OF = re.compile(r"\{solution(?:-start)?\}[ \t]+(\S+)")
EXERCISE_LABEL = re.compile(r"\{exercise(?:-start)?\}[^\n]*\n(?:[ \t]*:[\w-]+:[^\n]*\n)*?[ \t]*:label:[ \t]*(\S+)")


@dataclass
class Question:
    """One self-checked exercise: its stub cell, the names it asks for, and the worked answer."""
    label: str
    cell_index: int
    names: list[str]
    check_line: str
    solution: str
    is_function: bool


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def _label_before(nb, index: int) -> str | None:
    for cell in reversed(nb.cells[:index]):
        if cell.cell_type == "markdown" and (labels := EXERCISE_LABEL.findall(_source(cell))):
            return labels[-1]
    return None


def _solution_code(nb, label: str) -> str | None:
    """The code of the solution of exercise ``label`` that calls a self-check: a python block of a
    ``solution`` directive, or a code cell of a gated ``solution-start`` ... ``solution-end`` range."""
    for index, cell in enumerate(nb.cells):
        text = _source(cell)
        if cell.cell_type != "markdown" or label not in SOLUTION_OF.findall(text):
            continue
        start = text.index(label)
        blocks = [m[2] for m in PYTHON_BLOCK.finditer(text, start) if CHECK_CALL.search(m[2])]
        if blocks:
            return blocks[0]
        if "{solution-start}" in text:
            for later in nb.cells[index + 1:]:
                if later.cell_type == "code" and CHECK_CALL.search(_source(later)):
                    return _source(later)
                if "{solution-end}" in _source(later):
                    break
    return None


def _answer_code(solution: str, names: list[str], check: str) -> str | None:
    """The solution without its self-check call; ``name = <value>`` added for answers passed to the check
    as values (``check_effective_batch(32 * 8 * 8, N=32, ...)``)."""
    lines = solution.rstrip().splitlines()
    keep = [line for line in lines if not re.match(rf"\s*(?:\w+\.)?{check}\(", line)]
    calls = [node for node in ast.walk(ast.parse(solution)) if isinstance(node, ast.Call)
             and getattr(node.func, "attr", getattr(node.func, "id", None)) == check]
    code = "\n".join(keep).strip()
    defined = {n.id for n in ast.walk(ast.parse(code or "pass")) if isinstance(n, ast.Name)
               and isinstance(n.ctx, ast.Store)} | {n.name for n in ast.walk(ast.parse(code or "pass"))
                                                     if isinstance(n, ast.FunctionDef)}
    extra = []
    for position, name in enumerate(names):
        if name in defined:
            continue
        if not calls or position >= len(calls[0].args):
            return None
        extra.append(f"{name} = {ast.unparse(calls[0].args[position])}")
    return "\n".join([code] * bool(code) + extra)


def find_questions(nb) -> list[Question]:
    """Every self-checked exercise of a chapter notebook that has a worked answer."""
    questions = []
    for index, cell in enumerate(nb.cells):
        text = _source(cell)
        if cell.cell_type != "code" or not (names := STUB.findall(text)) or not (check := CHECK_CALL.search(text)):
            continue
        label = _label_before(nb, index)
        solution = _solution_code(nb, label) if label else None
        answer = _answer_code(solution, names, check[1]) if solution else None
        if answer is None:
            continue
        check_line = next(line for line in text.splitlines() if check[1] + "(" in line)
        is_function = any(re.search(rf"^def {n}\(", answer, re.MULTILINE) for n in names)
        questions.append(Question(label, index, names, check_line.strip(), answer, is_function))
    return questions


def _raw(text: str):
    return nbformat.v4.new_raw_cell(text)


def _test(body: str, hidden: bool, points: float):
    config = f'""" # BEGIN TEST CONFIG\nhidden: {str(hidden).lower()}\npoints: {points}\n""" # END TEST CONFIG\n'
    return nbformat.v4.new_code_cell(config + body)


def _question_cells(q: Question, nb_cell) -> list:
    prompt = "\n".join(line for line in _source(nb_cell).splitlines() if not CHECK_CALL.match(line))
    solution = nbformat.v4.new_code_cell(
        "# BEGIN SOLUTION NO PROMPT\n" + q.solution + "\n# END SOLUTION\n"
        + '""" # BEGIN PROMPT\n' + prompt.strip() + '\n""" # END PROMPT\n' + q.check_line)
    points = 2 if q.is_function else 1
    given = " and ".join(f"{n} is not None" for n in q.names)
    public = _test(f'assert {given}, "replace None by your answer and run the cell"', False, points / 2)
    hidden = _test(f"assert {q.check_line} is True", True, points / 2)
    return [_raw(f"# BEGIN QUESTION\nname: {q.label}\npoints: {points}"),
            nbformat.v4.new_markdown_cell(f"**Exercise `{q.label}`** (graded: {points} points; "
                                          "the self-check below tells you whether your answer is right)."),
            _raw("# BEGIN SOLUTION"), solution, _raw("# END SOLUTION"),
            _raw("# BEGIN TESTS"), public, hidden, _raw("# END TESTS"), _raw("# END QUESTION")]


def master_notebook(nb, name: str):
    """The otter-grader master notebook of a chapter, or None if it has no self-checked exercise."""
    questions = find_questions(nb)
    if not questions:
        return None
    by_index = {q.cell_index: q for q in questions}
    for cell in nb.cells:  # explorers are for learners; grading skips them (they can stall a headless kernel)
        if cell.cell_type == "code" and EXPLORER.search(_source(cell)):
            cell.metadata.setdefault("tags", [])
            if "otter_ignore" not in cell.metadata["tags"]:
                cell.metadata["tags"].append("otter_ignore")
    cells = [_raw(f"# ASSIGNMENT CONFIG\nname: {name}\nrequirements: requirements.txt\n"
                  "overwrite_requirements: true\nexport_cell: false\ncheck_all_cell: false\n"
                  "run_tests: false\nsolutions_pdf: false\ngenerate:\n  pdf: false\n  filtering: false")]
    for index, cell in enumerate(nb.cells):
        cells += _question_cells(by_index[index], cell) if index in by_index else [cell]
    master = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    return strip_solutions(master, name)


RUNTIME_REQUIREMENTS = ROOT / "binder" / "requirements.txt"


def build(chapter: Path, out: Path, otter: str) -> Path | None:
    """Write one chapter's assignment into ``out/<chapter>``; None if it has no self-checked exercise."""
    nb = nbformat.read(chapter, as_version=4)
    master = master_notebook(nb, chapter.stem)
    if master is None:
        return None
    work = out / chapter.stem
    shutil.rmtree(work, ignore_errors=True)
    source = work / "source"
    source.mkdir(parents=True)
    nbformat.write(master, source / f"{chapter.stem}.ipynb")
    _write_requirements(source / "requirements.txt")
    proc = subprocess.run([otter, "assign", f"{chapter.stem}.ipynb", str(work / "dist")], cwd=source,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"otter assign failed for {chapter.stem}:\n{proc.stdout[-3000:]}")
    (work / "dist" / "autograder").rename(work / "autograder")
    (work / "dist" / "student").rename(work / "student")
    shutil.rmtree(work / "dist")
    return work


def _write_requirements(path: Path) -> None:
    """What the grader installs (Gradescope): the runtime needs and bnbook, as Binder gets them."""
    lines = [line for line in RUNTIME_REQUIREMENTS.read_text().splitlines()
             if line.strip() and not line.startswith("#") and not line.startswith("-e")]
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    path.write_text("\n".join(lines + [f"bnbook @ git+{url}"]) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    chapter_list.add_argument(parser)
    parser.add_argument("--out", default=str(ROOT / "_build" / "assignments"))
    args = parser.parse_args(argv)
    otter = shutil.which("otter", path=str(Path(sys.executable).parent)) or shutil.which("otter")
    if otter is None:
        parser.error("otter-grader is not installed (it is pinned in requirements.txt; run `make assignments`)")
    paths = chapter_list.selected(parser, args.chapters)
    for path in paths:
        work = build(path, Path(args.out), otter)
        if work is None:
            print(f"{path.stem}: no self-checked exercise, no assignment")
            continue
        n = len(find_questions(nbformat.read(path, as_version=4)))
        print(f"{path.stem}: {n} graded questions -> {work}/student, {work}/autograder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
