"""Collapse the code of claim cells in the HTML book: tag them ``hide-input``.

A claim cell (a code cell whose source calls ``claim(``) shows its result box in the page; its
code is one click away (myst-nb's ``hide-input`` tag folds the input in the HTML only; Jupyter,
Binder and Colab keep showing the code). Run it after adding claims::

    python scripts/tag_claim_cells.py                   # every chapters/*.ipynb
    python scripts/tag_claim_cells.py chapters/x.ipynb  # some notebooks
    python scripts/tag_claim_cells.py --check           # list untagged claim cells, exit 1 if any

It only adds the tag (other tags and metadata stay as they are), writes a notebook only when it
changed, in nbformat's standard formatting (indent 1, as committed), so running it twice
changes nothing. tests/test_chapters.py checks the convention.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TAG = "hide-input"
CALLS_CLAIM = re.compile(r"(?<![\w.])(?:bnbook\.)?claim\(")


def calls_claim(source: str) -> bool:
    """True when ``source`` calls ``claim(`` (or ``bnbook.claim(``) outside a comment."""
    return any(CALLS_CLAIM.search(line.split("#", 1)[0]) for line in source.splitlines())


def untagged_claim_cells(nb) -> list[int]:
    """Indices of the code cells that call ``claim(`` but are not tagged ``hide-input``."""
    return [i for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and calls_claim(cell.source)
            and TAG not in cell.get("metadata", {}).get("tags", [])]


def tag_notebook(path: Path) -> int:
    """Tag the claim cells of the notebook at ``path``; returns how many cells were tagged."""
    nb = nbformat.read(path, as_version=4)
    cells = untagged_claim_cells(nb)
    for i in cells:
        nb.cells[i].metadata.setdefault("tags", []).append(TAG)
    if cells:
        nbformat.write(nb, path)
    return len(cells)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to tag (default: every chapters/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only list untagged claim cells")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))
    missing = [p for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(map(str, missing))}")
    untagged = 0
    for path in paths:
        if args.check:
            cells = untagged_claim_cells(nbformat.read(path, as_version=4))
            untagged += len(cells)
            if cells:
                print(f"{path}: claim cells {cells} are not tagged {TAG}")
        else:
            print(f"{path}: tagged {tag_notebook(path)} claim cell(s) {TAG}")
    return 1 if untagged else 0


if __name__ == "__main__":
    sys.exit(main())
