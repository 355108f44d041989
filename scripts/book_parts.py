"""The book's table of contents (_toc.yml): its documents in order, and each chapter's part.

Shared by the tests (tests/book_toc.py), the scripts and the instructor's guide (instructors.md).
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files(node):
    """Every ``file:`` entry anywhere in a parsed _toc.yml, without its suffix."""
    if isinstance(node, dict):
        if isinstance(node.get("file"), str):
            yield re.sub(r"\.(ipynb|md)$", "", node["file"])
        for value in node.values():
            yield from toc_files(value)
    elif isinstance(node, list):
        for value in node:
            yield from toc_files(value)


def _toc(root: Path) -> dict:
    return yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))


def listed_documents(root: Path = ROOT) -> list[str]:
    """The documents listed in ``root/_toc.yml``, in order."""
    return list(toc_files(_toc(root)))


def chapters_in_order(root: Path = ROOT) -> list[tuple[str, str]]:
    """``(part caption, document)`` for every document under ``chapters/``, in the book's order."""
    return [(part.get("caption", ""), doc) for part in _toc(root).get("parts", [])
            for doc in toc_files(part.get("chapters", [])) if doc.startswith("chapters/")]
