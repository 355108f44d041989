"""The documents the book's _toc.yml lists; shared by test_book.py and test_chapters.py."""
import re
from pathlib import Path

import yaml


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


def listed_documents(root: Path) -> list[str]:
    """The documents listed in ``root/_toc.yml``, in order."""
    return list(toc_files(yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))))
