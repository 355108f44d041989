"""The chapters a script works on: every ``chapters/*.ipynb``, or the ones named on its command line."""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--chapters NAME ...`` (default: every chapter) to ``parser``."""
    parser.add_argument("--chapters", nargs="*", help="chapter names (default: every chapters/*.ipynb)")


def selected(parser: argparse.ArgumentParser, names: list[str] | None) -> list[Path]:
    """The notebooks named by ``names`` (all if None or empty); an unknown name is a usage error."""
    paths = sorted((ROOT / "chapters").glob("*.ipynb"))
    if not names:
        return paths
    unknown = set(names) - {p.stem for p in paths}
    if unknown:
        parser.error(f"unknown chapters {sorted(unknown)}; known: {[p.stem for p in paths]}")
    return [p for p in paths if p.stem in names]
