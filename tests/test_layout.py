"""bnbook's layout: a toolkit below, one module per chapter above, and no arrow between chapters.

Read from the source with ``ast`` (nothing is imported): every module directly in ``bnbook/`` is the
shared toolkit and never imports a chapter module; every ``bnbook/chapters/<name>.py`` is named like a
notebook ``chapters/<name>.ipynb`` that imports it, imports only the toolkit and never another chapter
module; and no module imports a private (underscore) name from another module.
"""
import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bnbook"
TOOLKIT = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
CHAPTER_MODULES = sorted(p for p in (PACKAGE / "chapters").glob("*.py") if p.name != "__init__.py")


def _module_name(path: Path) -> str:
    parts = path.with_suffix("").parts
    return ".".join(parts[len(parts) - 1 - parts[::-1].index("bnbook"):])


def _imports(path: Path):
    """(imported module, [names]) for every import in ``path``, relative imports resolved."""
    package = _module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                # `from . import hessian` imports a module; `from .x import y` a name of x
                yield (f"{module}.{alias.name}", []) if node.module is None else (module, [alias.name])


def _problems_of(path: Path, is_chapter: bool) -> list[str]:
    problems = []
    for module, names in _imports(path):
        if not module.startswith("bnbook"):
            continue
        if module.startswith("bnbook.chapters.") and module != _module_name(path):
            who = "a chapter module" if is_chapter else "the toolkit"
            problems.append(f"{path.name}: {who} imports {module} (chapter modules are imported by notebooks only)")
        problems += [f"{path.name}: imports the private name {n} from {module}" for n in names
                     if n.startswith("_") and not n.startswith("__")]
    return problems


def test_there_is_a_toolkit_and_a_module_per_chapter():
    assert {p.stem for p in TOOLKIT} >= {"functional", "layers", "models", "data", "train", "measure", "plots",
                                          "widgets", "selfcheck", "claims", "seeding"}
    assert CHAPTER_MODULES


@pytest.mark.parametrize("path", TOOLKIT, ids=lambda p: p.stem)
def test_toolkit_imports_no_chapter_and_no_private_name(path):
    assert _problems_of(path, is_chapter=False) == []


@pytest.mark.parametrize("path", CHAPTER_MODULES, ids=lambda p: p.stem)
def test_chapter_module_imports_only_the_public_toolkit(path):
    assert _problems_of(path, is_chapter=True) == []


@pytest.mark.parametrize("path", CHAPTER_MODULES, ids=lambda p: p.stem)
def test_chapter_module_serves_the_notebook_of_its_name(path):
    notebook = ROOT / "chapters" / f"{path.stem}.ipynb"
    assert notebook.is_file(), f"bnbook/chapters/{path.name} has no chapters/{notebook.name}"
    code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"]
                     if c["cell_type"] == "code")
    assert f"bnbook.chapters.{path.stem}" in code or f"bnbook.chapters import {path.stem}" in code, (
        f"chapters/{notebook.name} does not import bnbook.chapters.{path.stem}")
    others = [p.stem for p in CHAPTER_MODULES if p != path and f"bnbook.chapters.{p.stem}" in code
              or f"chapters import {p.stem}" in code and p != path]
    assert not others, f"chapters/{notebook.name} imports other chapters' modules {others}"


def test_the_checker_finds_a_cross_chapter_and_a_private_import(tmp_path):
    bad = tmp_path / "bnbook" / "chapters" / "probe.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from .gamma_beta import x\nfrom ..train import _run\n")
    problems = _problems_of(bad, is_chapter=True)
    assert any("imports bnbook.chapters.gamma_beta" in p for p in problems)
    assert any("private name _run" in p for p in problems)
