"""The documents the book's _toc.yml lists; shared by test_book.py and test_chapters.py.

The reader lives in scripts/book_parts.py (the scripts and the instructor's guide use it too).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from book_parts import listed_documents, toc_files  # noqa: E402,F401
