"""Build the student edition of the book: everything but the solutions.

Writes (``make student``, default ``--out _build/student``):

- ``<out>/chapters/*.ipynb``: the chapter notebooks without solutions and without outputs,
  ready to hand out;
- ``<out>/html/``: the HTML book without solutions.

A solution is any of:

- a sphinx-exercise ``solution`` directive (backtick or colon fence, any fence length),
- a gated solution, from a ``solution-start`` directive to its ``solution-end`` (it may span
  cells, including code cells),
- a ``dropdown`` or ``admonition`` directive whose title starts with "Solution",
- a cell tagged ``solution``.

In the student notebooks, solution code cells are removed. In the student HTML book they are
still executed (later cells may need their results) but hidden with myst-nb's ``remove-cell``
tag, and sphinx-exercise's ``hide_solutions`` is switched on as well.
"""
from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Top-level entries of the repository that are not part of the book's sources.
NOT_BOOK = {"_build", "node_modules", "tests", "scripts", "bnbook", "README.md"}

_FENCE_OPEN = re.compile(r"^\s*(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")


def _is_solution_directive(name: str, arg: str) -> bool:
    if name == "solution":
        return True
    return name in {"dropdown", "admonition"} and arg.strip().lower().startswith("solution")


def _skip_block(lines: list[str], start: int, fence: str) -> int:
    """Index of the line after the block opened at ``lines[start]`` with ``fence``."""
    char, n = fence[0], len(fence)
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if len(stripped) >= n and stripped == char * len(stripped):
            return i + 1
    return len(lines)  # an unclosed fence runs to the end of the cell, as in MyST


class _Stripper:
    """Removes solutions from a notebook's cells; remembers gated ranges across cells."""

    def __init__(self, name: str):
        self.name = name
        self.in_gated = False

    def markdown(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        kept: list[str] = []
        i = 0
        while i < len(lines):
            match = _FENCE_OPEN.match(lines[i])
            name = match["name"] if match else None
            if self.in_gated:
                if name == "solution-end":
                    self.in_gated = False
                    i = _skip_block(lines, i, match["fence"])
                else:
                    i += 1
            elif name == "solution-start":
                self.in_gated = True
                i = _skip_block(lines, i, match["fence"])
            elif name == "solution-end":
                raise ValueError(f"{self.name}: solution-end without a solution-start before it")
            elif match and _is_solution_directive(name, match["arg"]):
                i = _skip_block(lines, i, match["fence"])
            else:
                kept.append(lines[i])
                i += 1
        return "".join(kept)


# The chapters' promise of folded solutions, which the student edition must not make.
SOLUTIONS_PROMISE = re.compile(r"[ \t]*Solutions\s+are\s+folded\s+under\s+each\s+exercise\.")


def strip_solutions(nb, name: str = "notebook", keep_code: bool = False):
    """Return a copy of notebook ``nb`` (nbformat v4) without its solutions and outputs.

    With ``keep_code=True`` solution code cells stay, tagged ``remove-cell`` (executed when
    the book is built, never shown); otherwise they are removed.
    """
    nb = copy.deepcopy(nb)
    stripper = _Stripper(name)
    cells = []
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        is_solution = "solution" in tags or stripper.in_gated
        if cell.cell_type == "markdown":
            if "solution" in tags:
                continue
            cell.source = SOLUTIONS_PROMISE.sub("", stripper.markdown(cell.source))
            if not cell.source.strip():
                continue
        elif cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if is_solution:
                if not keep_code:
                    continue
                cell.metadata["tags"] = tags + ["remove-cell"]
        elif is_solution:
            continue
        cells.append(cell)
    if stripper.in_gated:
        raise ValueError(f"{name}: solution-start without a matching solution-end")
    nb.cells = cells
    return nb


def write_student_notebooks(src: Path, dest: Path, keep_code: bool = False) -> list[Path]:
    """Strip every notebook in ``src`` (a chapters folder) into ``dest``; return the written paths."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        out = dest / path.name
        nbformat.write(strip_solutions(nb, name=path.name, keep_code=keep_code), out)
        written.append(out)
    return written


def stage_book(root: Path, stage: Path) -> None:
    """Copy the book's sources to ``stage`` with solutions hidden, and a student config."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for entry in root.iterdir():
        if entry.name.startswith(".") or entry.name in NOT_BOOK:
            continue
        if entry.is_dir():
            shutil.copytree(entry, stage / entry.name, ignore=ignore)
        else:
            shutil.copy2(entry, stage / entry.name)
    write_student_notebooks(root / "chapters", stage / "chapters", keep_code=True)

    config = yaml.safe_load((root / "_config.yml").read_text())
    config["title"] = f"{config['title']} (student edition)"
    config.setdefault("sphinx", {}).setdefault("config", {})["hide_solutions"] = True
    # Launch buttons would open the repository's notebooks, which contain the solutions.
    config["launch_buttons"] = {"binderhub_url": "", "colab_url": "", "thebe": False}
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def build_html(stage: Path, dest: Path) -> None:
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book), "build", str(stage), "--builder", "html", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(stage / "_build" / "html"), dest)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    parser.add_argument("--notebooks-only", action="store_true", help="skip the HTML build")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    written = write_student_notebooks(ROOT / "chapters", out / "chapters")
    print(f"wrote {len(written)} student notebooks to {out / 'chapters'}")
    if not args.notebooks_only:
        stage = out / "src"
        stage_book(ROOT, stage)
        build_html(stage, out / "html")
        shutil.rmtree(stage)
        print(f"the student edition is in {out / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
