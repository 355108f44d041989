"""The book builds with warnings as errors, and what it shows works in a browser offline.

Builds the whole book once (every chapter executed, as `make book` does, but into a temporary
folder), then checks the HTML: every chapter page shows a figure and an exercise; no page
loads require.js, the ipywidgets HTML manager or MathJax from a CDN; and in headless
Chromium, with no network, every executed widget and every equation renders.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from book_toc import listed_documents

ROOT = Path(__file__).resolve().parents[1]
WIDGET_JS = ROOT / "vendor" / "jupyter-widgets"
VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
# A script of require.js, the widget manager or MathJax loaded from anywhere but the book.
CDN_JS = re.compile(
    r"""src=["']?(https?:)?//[^"'\s>]*(require(\.min)?\.js|html-manager|embed-amd|mathjax)""",
    re.IGNORECASE)


def chapter_pages():
    """The chapters/ documents listed in _toc.yml (without suffix)."""
    return [f for f in listed_documents(ROOT) if f.startswith("chapters/")]


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """Build the book (jupyter-book build -W -n --keep-going) into a temporary folder."""
    if not (WIDGET_JS / "embed-amd.js").is_file():
        pytest.fail("vendor/jupyter-widgets/ is missing: run `make vendor` (or `make test`) first")
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book), "build", str(ROOT), "--path-output", str(out),
           "--builder", "html", "-W", "-n", "--keep-going"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace")
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    problems = [line for line in log.splitlines()
                if re.search(r"WARNING|ERROR|Error|Exception|ClaimFailed", line)]
    assert proc.returncode == 0, (
        f"`jupyter-book build . -W -n --keep-going` failed (exit {proc.returncode}).\n"
        + "\n".join(problems[-40:]) + "\n--- end of the build log ---\n" + log[-3000:])
    index = out / "_build" / "html" / "index.html"
    assert index.is_file(), f"the build wrote no {index}"
    return index.parent


def test_every_chapter_page_shows_a_figure_and_an_exercise(html):
    chapters = chapter_pages()
    assert chapters, "_toc.yml lists no chapter from chapters/"
    for doc in chapters:
        page = html / f"{doc}.html"
        assert page.is_file(), f"{doc} is in _toc.yml but {page.name} was not built"
        soup = _soup(page)
        article = soup.find("article") or soup
        figures = [img for img in article.find_all("img") if "_images/" in img.get("src", "")]
        assert figures, f"{doc}: the built page shows no figure (no <img> from an executed output)"
        exercises = article.select("div.exercise")
        assert exercises, f"{doc}: the built page has no rendered exercise (sphinx-exercise `exercise`)"


def test_no_page_loads_widget_or_math_javascript_from_a_cdn(html):
    pages = sorted(html.rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        match = CDN_JS.search(text)
        assert match is None, f"{page.relative_to(html)} loads {match.group(0)} from the network"
        if STATE_MIME in text:
            for name in ("require.js", "embed-amd.js"):
                assert f"jupyter-widgets/{name}" in text, f"{page.name} does not load the vendored {name}"
    for name in ("jupyter-widgets/require.js", "jupyter-widgets/embed-amd.js", "mathjax/tex-mml-chtml.js"):
        assert (html / name).is_file(), f"{name} was not copied into the HTML output"


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _pages_with_widgets(html):
    return [p for p in sorted(html.rglob("*.html"))
            if VIEW_MIME in (text := p.read_text(encoding="utf-8")) and STATE_MIME in text]


def _dump_dom(chromium, page, profile):
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           "--virtual-time-budget=30000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace", timeout=180)
    assert proc.returncode == 0 and proc.stdout.strip(), (
        f"chromium failed on {page.name} (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return BeautifulSoup(proc.stdout, "html.parser")


def _require_chromium():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed; install it to run the browser check: "
                    "`apt-get install chromium` (Debian/Ubuntu)")
    return chromium


def test_widgets_render_offline_in_a_browser(html, tmp_path):
    if chapter_pages() and not _pages_with_widgets(html):
        pytest.fail("no built page shows an executed widget; chapters must display one "
                    "(see README: widgets)")
    chromium = _require_chromium()
    for page in _pages_with_widgets(html):
        soup = _soup(page)
        models = set()
        for tag in soup.find_all("script", type=STATE_MIME):
            models |= set(json.loads(tag.string)["state"])
        views = [json.loads(tag.string)["model_id"] for tag in soup.find_all("script", type=VIEW_MIME)]
        shown = [m for m in views if m in models]
        assert shown, f"{page.name}: widget views but none of their models is in the saved state"

        dom = _dump_dom(chromium, page, tmp_path / "chromium-profile")
        name = page.relative_to(html)
        assert "Loading widget" not in dom.get_text(), f"{name}: a widget stayed 'Loading widget...'"
        rendered = 0
        for tag in dom.find_all("script", type=VIEW_MIME):
            if json.loads(tag.string)["model_id"] not in models:
                continue
            area = tag.find_previous_sibling()
            ok = (area is not None and "widget-subarea" in area.get("class", [])
                  and area.select_one(".jupyter-widgets") is not None)
            rendered += ok
        assert rendered == len(shown), (
            f"{name}: {rendered} of {len(shown)} widgets rendered in headless Chromium (offline); "
            "check that require.js and embed-amd.js load from jupyter-widgets/")


def test_equations_render_offline_in_a_browser(html, tmp_path):
    chromium = _require_chromium()
    pages = [html / "intro.html"] + [html / f"{doc}.html" for doc in chapter_pages()]
    pages = [p for p in pages if 'class="math' in p.read_text(encoding="utf-8")]
    assert pages, "no page of the book has an equation"
    for page in pages:
        dom = _dump_dom(chromium, page, tmp_path / "chromium-profile")
        maths = dom.select(".math")
        typeset = [m for m in maths if m.find("mjx-container") is not None]
        assert len(typeset) == len(maths), (
            f"{page.relative_to(html)}: MathJax typeset {len(typeset)} of {len(maths)} equations "
            "offline; check that mathjax/tex-mml-chtml.js loads")
