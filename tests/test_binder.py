"""Binder's environment (binder/requirements.txt) runs the chapters and nothing more.

repo2docker (Binder, and Thebe, which starts a Binder of this repository) reads binder/ instead
of the root files. These tests read the files only (CI cannot reach PyTorch's wheel index):
binder/ lists what running the chapters needs, with torch from the CPU wheel index; the pins
of what both files list are the same as in the root requirements.txt; and none of the book's
build or test tools is installed on Binder.
"""
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder" / "requirements.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
RUNTIME = {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "scikit-learn", "mnist1d", "ipykernel"}
# Build, test and lint tools: needed to make the book, not to run a chapter.
TOOLS = re.compile(r"^(jupyter-book|myst-nb|myst-parser|sphinx.*|pydata-sphinx-theme|pytest.*|nbval|"
                   r"ruff|flake8|black|mypy|coverage|nbconvert|jupyterlab)$")


def parse(text):
    """(requirements by canonical name, option lines, editable targets) of a requirements file."""
    reqs, options, editable = {}, [], []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e ", "--editable")):
            editable.append(line.split(None, 1)[1].strip())
        elif line.startswith("-"):
            options.append(line)
        else:
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs, options, editable


def problems(binder_text, root_text):
    """What is wrong with binder/requirements.txt given the root requirements.txt."""
    binder, options, editable = parse(binder_text)
    root, _, _ = parse(root_text)
    found = [f"{name} is missing (running the chapters needs it)" for name in sorted(RUNTIME - set(binder))]
    found += [f"{name} is a build/test tool; Binder only runs the chapters" for name in binder if TOOLS.match(name)]
    found += [f"{name}{binder[name].specifier} differs from requirements.txt's {name}{root[name].specifier}"
              for name in sorted(set(binder) & set(root)) if binder[name].specifier != root[name].specifier]
    found += [f"{name} is not in requirements.txt: add it there too" for name in sorted(set(binder) - set(root))]
    if "torch" in binder and [spec.operator for spec in binder["torch"].specifier] != ["=="]:
        found.append("torch must be pinned exactly (==), as in requirements.txt")
    if f"--extra-index-url {CPU_INDEX}" not in options:
        found.append(f"no `--extra-index-url {CPU_INDEX}`: pip would install the CUDA build of torch")
    if "." not in editable:
        found.append("bnbook itself (`-e .`) is not installed")
    return found


def test_binder_requirements_run_the_chapters_with_cpu_torch_and_root_pins():
    assert BINDER.is_file(), "binder/requirements.txt is missing: Binder would install the root file"
    found = problems(BINDER.read_text(encoding="utf-8"), (ROOT / "requirements.txt").read_text(encoding="utf-8"))
    assert not found, "binder/requirements.txt: " + "; ".join(found)


GOOD = f"--extra-index-url {CPU_INDEX}\n" + "\n".join(sorted(RUNTIME - {"torch"})) + "\ntorch==2.0\n-e .\n"
ROOT_TEXT = "torch==2.0\n" + "\n".join(sorted(RUNTIME - {"torch"})) + "\njupyter-book==1.0\npytest\n-e .\n"


@pytest.mark.parametrize("bad, expected", [
    (GOOD.replace(f"--extra-index-url {CPU_INDEX}\n", ""), "CUDA build"),
    (GOOD.replace("torch==2.0", "torch==2.1"), "differs from requirements.txt"),
    (GOOD.replace("torch==2.0", "torch"), "pinned exactly"),
    (GOOD + "jupyter-book==1.0\n", "build/test tool"),
    (GOOD + "pytest\n", "build/test tool"),
    (GOOD.replace("\nmnist1d", "\n# mnist1d"), "mnist1d is missing"),
    (GOOD.replace("-e .\n", ""), "-e ."),
])
def test_the_check_fails_on_a_bad_binder_file(bad, expected):
    assert problems(GOOD, ROOT_TEXT) == []
    assert any(expected in p for p in problems(bad, ROOT_TEXT)), problems(bad, ROOT_TEXT)


def test_thebe_launches_the_same_binder():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["launch_buttons"].get("thebe") is True
    assert "mybinder.org" in config["launch_buttons"]["binderhub_url"]
    thebe = config.get("sphinx", {}).get("config", {}).get("thebe_config", {})
    # Jupyter Book derives Thebe's repository from `repository:`; an override would start another environment.
    assert thebe.get("repository_url", config["repository"]["url"]) == config["repository"]["url"]
