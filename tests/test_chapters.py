"""Every chapter notebook follows the book's conventions (JSON only, nothing is executed).

Each check takes a notebook path, reads its JSON (and the book's _toc.yml and references.bib
next to ``chapters/``) and returns the problems it finds; the tests run every check on every
notebook in chapters/, so a chapter added later is checked automatically. The last tests make
sure each check fails on a notebook that breaks its convention.
"""
import importlib.util
import json
import re
from pathlib import Path

import pytest
from book_toc import listed_documents

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("tag_claim_cells", ROOT / "scripts" / "tag_claim_cells.py")
tag_claim_cells = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tag_claim_cells)
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
NETWORK = re.compile(r"\burlopen\b|\brequests\.|\bwget\b|\btorchvision\.datasets\b"
                     r"|\bdownload\s*=\s*True\b")
# A seed written into a chapter instead of taken from bnbook.seeding.
LITERAL_SEED = re.compile(r"\b(seed_everything|manual_seed|seed|default_rng|RandomState)"
                          r"\(\s*\d|\brandom_state\s*=\s*\d")
BUILD_TOOL_IMPORT = re.compile(r"^\s*(?:from|import)\s+(myst_nb|jupyter_book|sphinx\w*|nbval)\b", re.MULTILINE)
FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})(.*)$")
PYTHON_FENCE = re.compile(r"^[ \t]*(`{3,})(?:python|py|ipython3?)[ \t]*\n(.*?)^[ \t]*\1[ \t]*$",
                          re.MULTILINE | re.DOTALL)
EXERCISE = re.compile(r"^[ \t]*(?:`{3,}|:{3,})\{exercise(?:-start)?\}[^\n]*\n"
                      r"((?:[ \t]*:[\w-]+:[^\n]*\n?)*)", re.MULTILINE)
SOLUTION = re.compile(r"\{solution(?:-start)?\}[ \t]+(\S+)")
CITE = re.compile(r"\{cite(?::\w+)?\}`([^`]*)`")
BIB_ENTRY = re.compile(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


# --- reading a notebook ------------------------------------------------------------------------

def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _cells(nb, kind):
    return [(i, _source(c)) for i, c in enumerate(nb.get("cells", [])) if c.get("cell_type") == kind]


def _code_blocks(nb):
    """(where, source) of every code cell and every ```python block in a markdown cell."""
    blocks = [(f"code cell {i}", src) for i, src in _cells(nb, "code")]
    for i, src in _cells(nb, "markdown"):
        blocks += [(f"```python block in markdown cell {i}", m[2]) for m in PYTHON_FENCE.finditer(src)]
    return blocks


def _prose_lines(text):
    """The lines of a markdown cell outside code fences (directives like {exercise} are prose)."""
    stack = []  # open fences: (fence, is_code)
    for line in text.splitlines():
        match = FENCE.match(line)
        if match:
            fence, info = match[1], match[2].strip()
            if stack and fence[0] == stack[-1][0][0] and len(fence) >= len(stack[-1][0]) and not info:
                stack.pop()
                continue
            if not (stack and stack[-1][1]):
                stack.append((fence, not info.startswith("{") or info.startswith("{code")))
                continue
        if not any(is_code for _, is_code in stack):
            yield line


# --- the checks: each returns a list of problems (empty when the chapter is fine) -----------------

def check_committed_without_outputs(path, nb):
    cells = [(i, c) for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "code"]
    return ([f"code cell {i} has committed outputs" for i, c in cells if c.get("outputs")]
            + [f"code cell {i} has execution_count {c['execution_count']} (commit it unexecuted)"
               for i, c in cells if c.get("execution_count") is not None])


def check_format_and_kernel(path, nb):
    problems = [] if nb.get("nbformat") == 4 else [f"nbformat is {nb.get('nbformat')}, not 4"]
    kernel = nb.get("metadata", {}).get("kernelspec", {})
    if kernel.get("name") != "python3":
        problems.append(f"kernelspec is {kernel or 'missing'}, not the python3 kernel")
    return problems


def check_single_title(path, nb):
    cells = nb["cells"]
    if not cells or cells[0].get("cell_type") != "markdown":
        return ["the first cell is not a markdown cell with the chapter's `# ` title"]
    first = _source(cells[0]).lstrip("\n").split("\n", 1)[0]
    problems = [] if re.match(r"# \S", first) else [f"the first cell starts with {first!r}, not a `# ` title"]
    titles = [line for _, src in _cells(nb, "markdown") for line in _prose_lines(src)
              if re.match(r"#\s", line)]
    if len(titles) > 1:
        problems.append(f"more than one `# ` title: {titles}")
    return problems


def check_has_claims(path, nb):
    if any("claim(" in src for _, src in _cells(nb, "code")):
        return []
    return ["no claim( call: every result the text states must be checked by a claim cell"]


def check_claim_code_collapsed(path, nb):
    """A claim cell's code is folded in the HTML (tag hide-input): the reader sees the result box. A finding
    cell (bnbook.evidence, bookkeeping for the bottom line) shows only its box (tag remove-input)."""
    problems = []
    for i, c in enumerate(nb["cells"]):
        tag = tag_claim_cells.wanted_tag(_source(c)) if c.get("cell_type") == "code" else None
        if tag and tag not in c.get("metadata", {}).get("tags", []):
            problems.append(f"code cell {i} calls claim( or finding( but is not tagged {tag} "
                            "(run scripts/tag_claim_cells.py)")
    return problems


def check_exercises_have_solutions(path, nb):
    markdown = "\n".join(src for _, src in _cells(nb, "markdown"))
    options = [m[1] for m in EXERCISE.finditer(markdown)]
    if not options:
        return ["no {exercise} directive"]
    found = [re.search(r":label:\s*(\S+)", opts) for opts in options]
    problems = ["an {exercise} directive without a :label:" for m in found if m is None]
    labels, solved = {m[1] for m in found if m}, set(SOLUTION.findall(markdown))
    problems += [f"exercise {label} has no {{solution}} {label}" for label in sorted(labels - solved)]
    problems += [f"{{solution}} {label} matches no exercise label" for label in sorted(solved - labels)]
    return problems


def check_has_captioned_figure(path, nb):
    for cell in nb["cells"]:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if cell.get("cell_type") == "code" and figure.get("caption") and figure.get("name"):
            return []
    return ["no code cell with mystnb.figure caption and name metadata (a numbered figure)"]


def check_seeds_from_one_place(path, nb):
    code = _code_blocks(nb)
    problems = [] if any("seed_everything(" in src for _, src in code) else ["never calls seed_everything("]
    return problems + [f"{where} fixes its own seed: {line.strip()!r} (use bnbook.seeding)"
                       for where, src in code for line in src.splitlines() if LITERAL_SEED.search(line)]


def check_runs_without_the_build_tools(path, nb):
    """Binder and Colab install only the runtime (binder/requirements.txt): no myst_nb, jupyter_book or sphinx
    in a chapter's code (glue comes from bnbook.display)."""
    return [f"code cell {i} imports {m[1]}, which Binder and Colab do not have (use bnbook.display.glue)"
            for i, src in _cells(nb, "code") for m in BUILD_TOOL_IMPORT.finditer(src)]


def check_no_network(path, nb):
    return [f"{where} uses the network ({NETWORK.search(line)[0]}): {line.strip()!r}"
            for where, src in _code_blocks(nb) for line in src.splitlines() if NETWORK.search(line)]


def check_citations_exist(path, nb):
    bib = path.parents[1] / "references.bib"
    keys = {key for kind, key in BIB_ENTRY.findall(bib.read_text(encoding="utf-8"))
            if kind.lower() not in {"comment", "string", "preamble"}}
    # figure captions are markdown too
    texts = [src for _, src in _cells(nb, "markdown")] + [json.dumps(c["metadata"]) for c in nb["cells"]]
    cited = {key.strip() for text in texts for group in CITE.findall(text)
             for key in re.split(r"[,;]", group) if key.strip()}
    return [f"cites {key}, which is not in references.bib" for key in sorted(cited - keys)]


def check_listed_in_toc(path, nb):
    root = path.parents[1]
    doc = path.relative_to(root).with_suffix("").as_posix()
    if doc in listed_documents(root):
        return []
    return [f"{doc} is not listed in _toc.yml, so the book leaves it out"]


CHECKS = [check_committed_without_outputs, check_format_and_kernel, check_single_title, check_has_claims,
          check_claim_code_collapsed, check_exercises_have_solutions, check_has_captioned_figure,
          check_seeds_from_one_place, check_no_network, check_runs_without_the_build_tools, check_citations_exist,
          check_listed_in_toc]


def problems(check, path):
    """The problems ``check`` finds in the notebook at ``path``, each prefixed with the chapter."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [f"chapters/{path.name}: {problem}" for problem in check(path, nb)]


# --- the chapters ----------------------------------------------------------------------------------

def test_there_are_chapters():
    assert CHAPTERS, f"no notebooks in {ROOT / 'chapters'}"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_follows_convention(path, check):
    found = problems(check, path)
    assert not found, "\n".join(found)


# --- each check fails on a notebook that breaks its convention ---------------------------------------

def _code(source, **metadata):
    return {"cell_type": "code", "execution_count": None, "id": "c", "metadata": metadata,
            "outputs": [], "source": source}


def _md(source):
    return {"cell_type": "markdown", "id": "m", "metadata": {}, "source": source}


def _good_notebook():
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "cells": [
                _md("# A chapter\n\nAs {cite:p}`ioffe2015batch` showed.\n\n```python\n# not a title\n```"),
                _code("from bnbook import claim, seed_everything\nseed = seed_everything()\n"
                      "claim('one is one', 1 == 1)", tags=["hide-input"],
                      mystnb={"figure": {"name": "fig-a", "caption": "A figure."}}),
                _md("````{exercise} One\n:label: ex-a\n\nDo it.\n````\n\n"
                    "````{solution} ex-a\n:class: dropdown\n\n```python\nprint(1)\n```\n````")]}


BREAKS = [  # (check, what breaks it)
    (check_committed_without_outputs, lambda nb, root: nb["cells"][1].update(
        outputs=[{"output_type": "stream", "name": "stdout", "text": "1\n"}])),
    (check_committed_without_outputs, lambda nb, root: nb["cells"][1].update(execution_count=1)),
    (check_format_and_kernel, lambda nb, root: nb.update(nbformat=3)),
    (check_format_and_kernel, lambda nb, root: nb["metadata"].pop("kernelspec")),
    (check_single_title, lambda nb, root: nb["cells"][0].update(source="## A chapter")),
    (check_single_title, lambda nb, root: nb["cells"].insert(0, _code("x = 1"))),
    (check_single_title, lambda nb, root: nb["cells"].append(_md("# A second title"))),
    (check_has_claims, lambda nb, root: nb["cells"][1].update(source="seed = seed_everything()")),
    (check_claim_code_collapsed, lambda nb, root: nb["cells"][1]["metadata"].pop("tags")),
    (check_claim_code_collapsed, lambda nb, root: nb["cells"].append(_code("bnbook.claim('x', True)"))),
    (check_exercises_have_solutions, lambda nb, root: nb["cells"].pop(2)),
    (check_exercises_have_solutions, lambda nb, root: nb["cells"][2].update(
        source="````{exercise} One\n:label: ex-a\nDo it.\n````")),
    (check_exercises_have_solutions, lambda nb, root: nb["cells"][2].update(
        source=_source(nb["cells"][2]).replace(":label: ex-a\n", ""))),
    (check_has_captioned_figure, lambda nb, root: nb["cells"][1]["metadata"]["mystnb"]["figure"].pop("name")),
    (check_seeds_from_one_place, lambda nb, root: nb["cells"][1].update(source="claim('x', True)")),
    (check_seeds_from_one_place, lambda nb, root: nb["cells"].append(_code("torch.manual_seed(0)"))),
    (check_runs_without_the_build_tools, lambda nb, root: nb["cells"].append(_code("from myst_nb import glue"))),
    *[(check_no_network, lambda nb, root, line=line: nb["cells"].append(_code(line)))
      for line in ["urlopen(url)", "requests.get(url)", "!wget url", "torchvision.datasets.MNIST('.')",
                   "load_data(download=True)"]],
    (check_citations_exist, lambda nb, root: nb["cells"].append(
        _md("See {cite}`ioffe2015batch,nokey2099`."))),
    (check_listed_in_toc, lambda nb, root: (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n")),
]


def _write_book(root, nb):
    (root / "chapters").mkdir(exist_ok=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nparts:\n  - chapters:\n"
                                   "      - file: chapters/demo\n")
    (root / "references.bib").write_text("@inproceedings{ioffe2015batch,\n  title = {BN},\n}\n")
    path = root / "chapters" / "demo.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_a_notebook_following_the_conventions_passes_every_check(tmp_path):
    path = _write_book(tmp_path, _good_notebook())
    assert [p for check in CHECKS for p in problems(check, path)] == []


@pytest.mark.parametrize("check, break_it", BREAKS,
                         ids=[f"{c.__name__.removeprefix('check_')}-{i}" for i, (c, _) in enumerate(BREAKS)])
def test_each_check_fails_on_a_notebook_breaking_it(tmp_path, check, break_it):
    nb = _good_notebook()
    path = _write_book(tmp_path, nb)
    break_it(nb, tmp_path)
    path.write_text(json.dumps(nb))
    found = problems(check, path)
    assert found and all(p.startswith("chapters/demo.ipynb: ") for p in found), found


def test_tag_claim_cells_adds_hide_input_once_and_keeps_other_metadata(tmp_path):
    nb = _good_notebook()
    nb["cells"][1]["metadata"] = {"tags": ["solution"], "mystnb": {"figure": {"name": "f", "caption": "F."}}}
    nb["cells"].append(_code("x = 1  # claim( in a comment is no claim"))
    path = tmp_path / "demo.ipynb"
    path.write_text(json.dumps(nb))
    assert tag_claim_cells.tag_notebook(path) == 1
    once = path.read_text(encoding="utf-8")
    assert tag_claim_cells.tag_notebook(path) == 0 and path.read_text(encoding="utf-8") == once
    cells = json.loads(once)["cells"]
    assert cells[1]["metadata"] == {"tags": ["solution", "hide-input"],
                                    "mystnb": {"figure": {"name": "f", "caption": "F."}}}
    assert cells[3]["metadata"] == {} and once.startswith('{\n "cells": [\n  {')
    assert check_claim_code_collapsed(path, json.loads(once)) == []
