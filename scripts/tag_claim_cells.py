"""Collapse the code of claim cells in the HTML book: tag them ``hide-input``.

A claim cell (a code cell whose source calls ``claim(``) shows its result box in the page; its
code is one click away (myst-nb's ``hide-input`` tag folds the input in the HTML only; Jupyter,
Binder and Colab keep showing the code). A finding cell (it calls ``finding(``, see
:mod:`bnbook.evidence`) is bookkeeping for the bottom line's scoreboard: the page shows its result
box and removes its code (``remove-input``). Run it after adding claims or findings::

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
FINDING_TAG = "remove-input"
CALLS_CLAIM = re.compile(r"(?<![\w.])(?:bnbook\.)?claim\(")
CALLS_FINDING = re.compile(r"(?<![\w.])(?:evidence\.)?finding\(")


def _calls(pattern, source: str) -> bool:
    return any(pattern.search(line.split("#", 1)[0]) for line in source.splitlines())


def calls_claim(source: str) -> bool:
    """True when ``source`` calls ``claim(`` (or ``bnbook.claim(``) outside a comment."""
    return _calls(CALLS_CLAIM, source)


def wanted_tag(source: str) -> str | None:
    """The tag a code cell with this source needs: ``remove-input`` for a finding, ``hide-input`` for a claim."""
    if _calls(CALLS_FINDING, source):
        return FINDING_TAG
    return TAG if calls_claim(source) else None


def untagged_cells(nb) -> list[tuple[int, str]]:
    """(index, tag) of the claim and finding cells that lack their tag."""
    found = []
    for i, cell in enumerate(nb.cells):
        tag = wanted_tag(cell.source) if cell.cell_type == "code" else None
        if tag and tag not in cell.get("metadata", {}).get("tags", []):
            found.append((i, tag))
    return found


def tag_notebook(path: Path) -> int:
    """Tag the claim and finding cells of the notebook at ``path``; returns how many cells were tagged."""
    nb = nbformat.read(path, as_version=4)
    cells = untagged_cells(nb)
    for i, tag in cells:
        tags = nb.cells[i].metadata.setdefault("tags", [])
        if tag == FINDING_TAG and TAG in tags:
            tags.remove(TAG)
        tags.append(tag)
    if cells:
        nbformat.write(nb, path)
    return len(cells)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to tag (default: every chapters/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only list untagged claim and finding cells")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))
    missing = [p for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(map(str, missing))}")
    untagged = 0
    for path in paths:
        if args.check:
            cells = untagged_cells(nbformat.read(path, as_version=4))
            untagged += len(cells)
            for i, tag in cells:
                print(f"{path}: cell {i} is not tagged {tag}")
        else:
            print(f"{path}: tagged {tag_notebook(path)} claim or finding cell(s)")
    return 1 if untagged else 0


if __name__ == "__main__":
    sys.exit(main())
