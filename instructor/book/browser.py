"""Load every page of a built book in headless Chromium: screenshots, images, equations.

    python -m instructor.book.browser [build/book] [--screenshots build/book-screenshots]

Serves the book from a local HTTP server on 127.0.0.1 (as a web host would), drives Chromium
through the DevTools protocol (a small client over ``websocket-client``; no browser download),
and for every page: waits for MathJax to finish, saves a screenshot of the top of the page (and,
where the page has them, of its first figure and its first equation), and fails when an
``<img>`` did not load (``naturalWidth == 0``), an equation stayed unrendered (a ``.math``
element without MathJax output, a MathJax error, or TeX delimiters left in the text), or a
resource failed to load. Chromium comes from the system (Debian: ``apt-get install chromium``);
:func:`find_chromium` says where it looked.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from instructor.book.checks import site_pages

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags for a quiet, isolated headless run on a machine without network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
VIEWPORT = (1280, 900)
SEARCH_WORD = "contrastive"  # a word the introduction and several assignments use
# What gets a screenshot of its own, besides the top of the page (when it is further down):
# the first figure, equation, provenance box, Colab link and folded answer of a page.
LANDMARKS = {
    "figure": "main img",
    "math": "main mjx-container",
    "provenance": ".book-provenance",
    "colab": ".book-colab",
    "folded": "details.book-fold",
}

# Runs in the page once it has loaded: waits for MathJax (when the page loads it), then reports.
_INSPECT = r"""
(async () => {
  if (window.MathJax) {
    for (let i = 0; i < 200 && !(MathJax.startup && MathJax.startup.promise); i++)
      await new Promise(r => setTimeout(r, 50));
    if (MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  }
  await Promise.all([...document.images].map(img => img.complete ? null :
    new Promise(r => { img.onload = img.onerror = r; })));
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const images = [...document.images].map(img => ({
    src: img.currentSrc || img.src, loaded: img.complete && img.naturalWidth > 0,
    shown: visible(img)}));
  const maths = [...document.querySelectorAll('.math')];
  const unrendered = maths.filter(el => !el.querySelector('mjx-container'))
    .map(el => el.textContent.trim().slice(0, 80));
  const errors = [...document.querySelectorAll('mjx-merror, .MathJax_Error')]
    .map(el => el.textContent.trim().slice(0, 80));
  // TeX delimiters left in the visible text, outside code: math nobody typeset
  const walker = document.createTreeWalker(document.querySelector('main') || document.body,
    NodeFilter.SHOW_TEXT, {acceptNode: n => n.parentElement.closest(
      'pre, code, script, style, textarea, .highlight, mjx-container, .math')
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const leftovers = [];
  const tex = /\\\(|\\\[|\$\$|(^|[^\\$\w])\$[^$\s][^$\n]*?[^$\s\\]\$(?![\w$])/;
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent;
    if (tex.test(text)) leftovers.push(text.trim().slice(0, 80));
  }
  const top = el => el ? el.getBoundingClientRect().top + window.scrollY : null;
  const landmarks = {};
  for (const [name, selector] of Object.entries(LANDMARKS))
    landmarks[name] = top([...document.querySelectorAll(selector)].find(visible));
  return {title: document.title, images, maths: maths.length, unrendered, errors, leftovers,
    landmarks, height: document.documentElement.scrollHeight};
})()
"""


class BrowserError(RuntimeError):
    """Chromium could not be started or driven (the message says why)."""


def find_chromium() -> str | None:
    """The Chromium to use: ``$CHROMIUM`` if set, else the first of ``CHROMIUM_NAMES`` on PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named if shutil.which(named) else None
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class DevTools:
    """A minimal DevTools-protocol client: one websocket to the browser, one attached page."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        import websocket  # websocket-client

        try:
            self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        except (OSError, websocket.WebSocketException) as err:
            raise BrowserError(f"cannot reach Chromium's DevTools at {url}: {err}") from err
        self.timeout = timeout
        self.next_id = 0
        self.session: str | None = None
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)
        raise BrowserError(f"{method}: no answer in {self.timeout:.0f} s")

    def wait_for(self, event: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            for i, seen in enumerate(self.events):
                if seen.get("method") == event:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv()))
        raise BrowserError(f"no {event} in {timeout or self.timeout:.0f} s")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


@dataclass
class PageReport:
    """What the browser saw on one page."""

    page: str
    title: str = ""
    images: int = 0
    maths: int = 0
    screenshots: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path):
    """The folder on ``http://127.0.0.1:<free port>/``, as a static web host would serve it."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    socketserver.TCPServer.allow_reuse_address = True
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


@contextlib.contextmanager
def chromium(executable: str, timeout: float = 60.0):
    """A headless Chromium with a fresh profile; yields a :class:`DevTools` on a blank page."""
    profile = Path(tempfile.mkdtemp(prefix="book-chromium-"))
    cmd = [
        executable,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
            if proc.poll() is not None:
                raise BrowserError(
                    f"{executable} exited with {proc.returncode}: "
                    f"{proc.stderr.read().decode(errors='replace')[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise BrowserError(f"{executable} opened no DevTools port in {timeout:.0f} s")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        client = DevTools(f"ws://127.0.0.1:{port}{path}", timeout=timeout)
        target = client.send("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = client.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, browser=True
        )
        client.session = attached["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            client.send(f"{domain}.enable")
        client.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False},
        )
        yield client
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for _ in range(20):  # Chromium's helper processes can write to the profile a moment longer
            shutil.rmtree(profile, ignore_errors=True)
            if not profile.exists():
                break
            time.sleep(0.1)


def _screenshot(client: DevTools, path: Path, y: float | None = None) -> None:
    if y is not None:
        client.send("Runtime.evaluate", {"expression": f"window.scrollTo(0, {max(0, y - 120)})"})
        time.sleep(0.2)
    data = client.send("Page.captureScreenshot", {"format": "png"})["data"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data))


def check_page(client: DevTools, url: str, name: str, shots: Path | None) -> PageReport:
    """Load ``url`` and report what is wrong with it (see the module docstring)."""
    report = PageReport(name)
    client.events.clear()
    client.send("Page.navigate", {"url": url})
    client.wait_for("Page.loadEventFired")
    script = _INSPECT.replace("LANDMARKS", json.dumps(LANDMARKS))
    result = client.send(
        "Runtime.evaluate", {"expression": script, "awaitPromise": True, "returnByValue": True}
    )
    if "exceptionDetails" in result:
        report.problems.append(f"the check script failed: {result['exceptionDetails']}")
        return report
    seen = result["result"]["value"]
    report.title, report.maths = seen["title"], seen["maths"]
    report.images = len(seen["images"])
    for image in seen["images"]:
        if not image["loaded"]:
            report.problems.append(f"image did not load: {image['src']}")
    report.problems += [f"equation not rendered: {t!r}" for t in seen["unrendered"]]
    report.problems += [f"MathJax error: {t!r}" for t in seen["errors"]]
    report.problems += [f"TeX left in the text: {t!r}" for t in seen["leftovers"]]
    # every request the page made: a failed one is a missing file or a blocked remote resource
    urls = {
        e["params"]["requestId"]: e["params"]["request"]["url"]
        for e in client.events
        if e.get("method") == "Network.requestWillBeSent"
    }
    for event in client.events:
        if event.get("method") == "Network.loadingFailed":
            params = event["params"]
            url = urls.get(params.get("requestId"), "?")
            if params.get("canceled") or url.endswith("/favicon.ico"):
                continue
            report.problems.append(f"{url} failed to load: {params.get('errorText')}")
        elif event.get("method") == "Network.responseReceived":
            response = event["params"]["response"]
            if response.get("url", "").endswith("/favicon.ico"):
                continue  # asked for by the browser itself, not by the page
            if response.get("status", 200) >= 400:
                report.problems.append(f"HTTP {response['status']}: {response.get('url')}")
    if shots is not None:
        stem = name.removesuffix(".html").replace("/", "__")
        targets = [("", None)] + [
            (f"--{landmark}", y)
            for landmark, y in seen["landmarks"].items()
            if y is not None and y > VIEWPORT[1] * 0.7
        ]
        for suffix, y in targets:
            path = shots / f"{stem}{suffix}.png"
            _screenshot(client, path, y)
            report.screenshots.append(str(path))
    return report


def check_book(
    root: str | Path, screenshots: str | Path | None = None, executable: str | None = None
) -> list[PageReport]:
    """Every page of the book under ``root`` as Chromium renders it; raises
    :class:`BrowserError` when no Chromium is found or it cannot be driven."""
    root = Path(root).resolve()
    pages = site_pages(root)
    if not pages:
        raise BrowserError(f"{root} holds no HTML pages: build the book first (`make book`)")
    executable = executable or find_chromium()
    if executable is None:
        raise BrowserError(
            "no Chromium found (looked for $CHROMIUM, then "
            f"{', '.join(CHROMIUM_NAMES)}): on Debian, `apt-get install -y chromium`"
        )
    shots = Path(screenshots) if screenshots else None
    if shots is not None and shots.exists():
        shutil.rmtree(shots)
    reports = []
    with serve(root) as base, chromium(executable) as client:
        for page in pages:
            name = page.relative_to(root).as_posix()
            reports.append(check_page(client, base + name, name, shots))
        if (root / "search.html").is_file():
            reports.append(check_search(client, base, shots))
    return reports


_SEARCH = r"""
(async () => {
  for (let i = 0; i < 200; i++) {
    const hits = document.querySelectorAll('#search-results li');
    if (hits.length) return [...hits].map(li => li.querySelector('a').getAttribute('href'));
    await new Promise(r => setTimeout(r, 50));
  }
  return [];
})()
"""


def check_search(client: DevTools, base: str, shots: Path | None, word: str = SEARCH_WORD):
    """The search page finds ``word`` (Sphinx's search runs in the browser, from searchindex.js)."""
    name = f"search.html?q={word}"
    report = PageReport(name)
    client.events.clear()
    client.send("Page.navigate", {"url": base + name})
    client.wait_for("Page.loadEventFired")
    result = client.send(
        "Runtime.evaluate", {"expression": _SEARCH, "awaitPromise": True, "returnByValue": True}
    )
    hits = result.get("result", {}).get("value") or []
    report.title = f"{len(hits)} results"
    if not hits:
        report.problems.append(f"searching for {word!r} found nothing")
    if shots is not None:
        path = shots / f"search-{word}.png"
        _screenshot(client, path)
        report.screenshots.append(str(path))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m instructor.book.browser", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("book", nargs="?", default="build/book", help="the built book's folder")
    parser.add_argument(
        "--screenshots",
        help="where to save the screenshots (default: <book>-screenshots beside the book)",
    )
    parser.add_argument("--chromium", help="the Chromium executable (default: found on PATH)")
    args = parser.parse_args(argv)
    root = Path(args.book)
    shots = Path(args.screenshots) if args.screenshots else root.parent / f"{root.name}-screenshots"
    started = time.perf_counter()
    try:
        reports = check_book(root, shots, args.chromium)
    except BrowserError as err:
        print(f"browser check: {err}", file=sys.stderr)
        return 2
    bad = [r for r in reports if r.problems]
    for r in reports:
        status = "ok" if not r.problems else f"{len(r.problems)} problem(s)"
        print(f"{r.page:<45} {r.images:>3} images {r.maths:>4} equations  {status}")
        for problem in r.problems[:20]:
            print(f"    {problem}")
    print(
        f"{len(reports)} pages in {time.perf_counter() - started:.0f} s, "
        f"{len(bad)} with problems; screenshots in {shots}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
