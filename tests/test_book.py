"""The book builds with warnings as errors, and what it shows works in a browser offline.

Builds the whole book once (every chapter executed, as `make book` does, but into a temporary
folder), then checks the HTML: every chapter page shows a figure and an exercise; no page
loads require.js, the ipywidgets HTML manager or MathJax from a CDN; and in headless
Chromium, with no network, every executed widget and every equation renders.

Then it reads every page as a reader does: served over HTTP from this machine and opened in
headless Chromium, driven through the DevTools protocol (standard library only, see
:class:`Browser`), with every host name unresolvable. On every page the console must show no
page error and no console error, no request may fail or leave the machine (apart from
:data:`CONSOLE_ALLOWLIST`), and no cell output may be wider than its box (no horizontal
scrolling). Tests on synthetic pages show that each of these checks can fail.
"""
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
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
    # TQDM_DISABLE, as `make book` sets it: progress bars stay out of the pages (bnbook.display.progress_bar)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               TQDM_DISABLE="1")
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
    for name in ("jupyter-widgets/require.js", "jupyter-widgets/setup.js", "jupyter-widgets/embed-amd.js",
                 "mathjax/tex-mml-chtml.js"):
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


# --- what a reader's browser shows: console, requests, overflow ----------------------------------

# What a reader's console may show although it cannot be fixed here: (pattern, why). Keep it short.
CONSOLE_ALLOWLIST = [
    # sphinx-thebe 0.3.1 adds its inline configuration script (`const THEBE_JS_URL = ...`) through
    # app.add_js_file(None, body=...) while the HTML builder exists; Sphinx 7.4 then writes it twice
    # into every page and the second `const` throws. Thebe itself still works (it reads the first).
    (r"^page error: SyntaxError: Identifier 'THEBE_JS_URL' has already been declared$",
     "sphinx-thebe 0.3.1 with Sphinx 7.4 declares its configuration twice"),
    # The browser itself (not the page) asks a new server for /favicon.ico once; the book has none.
    (r"^failed request: http://127\.0\.0\.1:\d+/favicon\.ico \(HTTP 404\)$",
     "the browser's own favicon request on the first page it opens"),
    # pydata-sphinx-theme 0.16 logs this on the first page of a fresh browser profile, whose
    # localStorage holds no theme mode yet; it then uses "auto", as intended.
    (r"^console\.error: Got invalid theme mode: \. Resetting to auto\.$",
     "pydata-sphinx-theme on a fresh profile (no saved light/dark mode)"),
]
OVERFLOW_JS = """(() => {
  const found = [];
  document.querySelectorAll("div.cell_output").forEach((box) => {
    const scrollers = [box, ...box.querySelectorAll("*")].filter((el) => el === box
      || ["auto", "scroll"].includes(getComputedStyle(el).overflowX));
    for (const el of scrollers) {
      if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
        const cell = box.closest("div.cell");
        found.push(`${el.tagName.toLowerCase()}.${[...el.classList].join(".")} is ${el.scrollWidth}px wide `
          + `in a ${el.clientWidth}px box (cell ${cell ? cell.id || "?" : "?"}): `
          + JSON.stringify(el.innerText.trim().slice(0, 60)));
        break;
      }
    }
  });
  return found;
})()"""
SETTLED_JS = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  for (let i = 0; i < 60 && document.body.innerText.includes("Loading widget"); i++)
    await new Promise((r) => setTimeout(r, 500));
  return true;
})()"""


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
    messages separated by NUL bytes, Chromium reading fd 3 and writing fd 4); standard library only.
    Every host name is unresolvable except 127.0.0.1, so no request can leave the machine unseen."""

    def __init__(self, chromium, profile, width=1280, height=900):
        to_chromium, self._out = os.pipe()
        self._in, from_chromium = os.pipe()

        def pipes_on_3_and_4():
            os.dup2(to_chromium, 3)
            os.dup2(from_chromium, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--remote-debugging-pipe",
             "about:blank"],
            preexec_fn=pipes_on_3_and_4, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chromium)
        os.close(from_chromium)
        self._buffer, self._id, self.events = b"", 0, []

    def _message(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                return None
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe (did it crash?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, session=None, timeout=120, **params):
        """Run one DevTools command and return its result; events meanwhile go to ``events``."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while (reply := self._message(deadline)) is not None:
            if reply.get("id") != self._id:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            else:
                return reply["result"]
        raise TimeoutError(f"chromium did not answer {method} within {timeout} s")

    def wait(self, seconds):
        """Collect events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (event := self._message(deadline)) is not None:
            self.events.append(event)

    def visit(self, url):
        """Open ``url`` in a fresh tab, let it settle; return (its events, its overflowing outputs)."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.events = []
        self.send("Page.navigate", session=session, url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session
                      for e in self.events) and time.monotonic() < deadline:
            self.wait(0.5)
        self.send("Runtime.evaluate", session=session, expression=SETTLED_JS, awaitPromise=True)
        self.wait(1.0)  # late requests (fonts, lazy scripts)
        overflow = self.send("Runtime.evaluate", session=session, expression=OVERFLOW_JS,
                             returnByValue=True)["result"]["value"]
        events = [e for e in self.events if e.get("sessionId") == session]
        self.send("Target.closeTarget", targetId=target)
        return events, overflow

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
            self.proc.wait(timeout=10)
        except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)


def console_problems(events, origin):
    """What a reader's console shows that it should not: page errors, console errors, failed
    requests and requests leaving ``origin`` (the local server), minus :data:`CONSOLE_ALLOWLIST`."""
    urls, found = {}, []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = urls[params["requestId"]] = params["request"]["url"]
            if not url.startswith((origin, "data:", "blob:", "about:")):
                found.append(f"request leaving the machine: {url}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            found.append(f"failed request: {urls.get(params['requestId'], '?')} ({params['errorText']})")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            found.append(f"failed request: {params['response']['url']} (HTTP {params['response']['status']})")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            found.append(f"page error: {details.get('exception', {}).get('description', details['text'])}"
                         .splitlines()[0])
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            found.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error" \
                and params["entry"]["source"] != "network":  # network errors are reported above
            found.append(f"console ({params['entry']['source']}): {params['entry']['text']}")
    return [p for p in found if not any(re.search(pattern, p) for pattern, _ in CONSOLE_ALLOWLIST)]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder):
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) in a thread; returns the server."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = _require_chromium()
    browser = Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def read_pages(html, browser):
    """Every page of the book as a reader's browser shows it: {page: (console problems, overflows)}."""
    server = serve(html)
    origin = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        seen = {}
        for page in sorted(html.rglob("*.html")):
            name = page.relative_to(html).as_posix()
            if name.startswith(("_static/", "_sources/")):  # theme template fragments, not pages
                continue
            events, overflow = browser.visit(origin + name)
            seen[name] = (console_problems(events, origin), overflow)
        return seen
    finally:
        server.shutdown()


def test_every_page_has_a_clean_console_offline(read_pages):
    dirty = {page: found for page, (found, _) in read_pages.items() if found}
    assert not dirty, "what a reader's console shows (no network):\n" + "\n".join(
        f"{page}: {problem}" for page, found in dirty.items() for problem in found)


def test_no_cell_output_is_wider_than_its_box(read_pages):
    wide = {page: overflow for page, (_, overflow) in read_pages.items() if overflow}
    assert not wide, "cell outputs that need horizontal scrolling:\n" + "\n".join(
        f"{page}: {o}" for page, overflow in wide.items() for o in overflow)


SYNTHETIC = """<!doctype html><html><head><title>t</title></head><body style="width:600px">
<div class="cell"><div class="cell_output" style="overflow-x:auto">{output}</div></div>{extra}</body></html>"""


def test_the_browser_checks_can_fail(tmp_path, browser):
    (tmp_path / "wide.html").write_text(SYNTHETIC.format(output="<pre>" + "x" * 400 + "</pre>", extra=""))
    (tmp_path / "wrapped.html").write_text(SYNTHETIC.format(
        output='<pre style="white-space:pre-wrap;overflow-wrap:anywhere">' + "x" * 400 + "</pre>", extra=""))
    (tmp_path / "dirty.html").write_text(SYNTHETIC.format(output="ok", extra=(
        '<script>console.error("boom"); undefinedFunction();</script>'
        '<img src="missing.png"><img src="https://cdn.example.com/x.png">')))
    server = serve(tmp_path)
    origin = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        _, wide = browser.visit(origin + "wide.html")
        _, wrapped = browser.visit(origin + "wrapped.html")
        events, _ = browser.visit(origin + "dirty.html")
    finally:
        server.shutdown()
    assert len(wide) == 1 and "in a 600px box" in wide[0], wide
    assert wrapped == []
    found = "\n".join(console_problems(events, origin))
    for expected in ("page error: ReferenceError: undefinedFunction", "console.error: boom",
                     "missing.png (HTTP 404)", "request leaving the machine: https://cdn.example.com/x.png"):
        assert expected in found, f"{expected!r} not in:\n{found}"
