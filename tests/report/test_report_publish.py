"""A report folder published as it is: opened from the local disk and from a static web server
under a sub-path, every link within it relative and resolving, each chart with a text
alternative (its caption, and a link to its CSV), and a print stylesheet (headless Chromium)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SUB_PATH = "/team/benchmarks/nfbench/"  # where the folder sits on the web server
UI = "http://mlflow.example:5000/"  # multi_site's --ui-base: the only links out

REFS = """() => [...document.querySelectorAll('a[href], link[href], script[src], img[src]')]
  .map(el => ({raw: el.getAttribute(el.hasAttribute('href') ? 'href' : 'src'),
               abs: el.href || el.src, tag: el.tagName}))"""


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=ARGS,
            viewport={"width": 1300, "height": 900})
        yield ctx
        ctx.close()


@pytest.fixture(scope="module")
def served(multi_site: Path, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The multi-suite site copied under SUB_PATH of a static web server's root."""
    root = tmp_path_factory.mktemp("www")
    site = root / SUB_PATH.strip("/")
    shutil.copytree(multi_site.parent, site)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(root)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}{SUB_PATH}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "index.html", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "no web server"
            time.sleep(0.2)
    try:
        yield base, site
    finally:
        server.terminate()
        server.wait(timeout=30)


def _exists(url: str, site_url: str) -> bool:
    if url.startswith("file:"):
        return Path(unquote(urlsplit(url).path)).is_file()
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status == 200
    except urllib.error.URLError:
        return False


def _check_page(browser, url: str, site_url: str) -> list[dict]:
    """Open ``url``: no console error, every chart drawn with its text alternative, every
    link relative and resolving inside the site; the page's references."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url, wait_until="load")
    n = page.locator("div.nf-figure").count()
    if n:
        page.wait_for_function("() => [...document.querySelectorAll('div.nf-figure')]"
                               ".every(d => d.getAttribute('data-rendered') === '1')",
                               timeout=60_000)
    refs = page.evaluate(REFS)
    alts = page.evaluate("""() => [...document.querySelectorAll('div.nf-figure')].map(d => {
        const cap = document.getElementById(d.getAttribute('aria-describedby'));
        return {role: d.getAttribute('role'), label: d.getAttribute('aria-label'),
                caption: cap ? cap.textContent : null,
                csv: cap ? [...cap.querySelectorAll('a')].map(a => a.href)
                              .filter(h => h.endsWith('.csv')) : []}; })""")
    page.close()
    assert errors == [], (url, errors)
    for alt in alts:  # a text alternative for each chart: its caption, a link to its CSV
        assert alt["role"] == "img" and len(alt["label"]) > 20, (url, alt)
        assert alt["caption"].startswith(alt["label"]), alt
        assert len(alt["csv"]) == 1 and _exists(alt["csv"][0], site_url), alt
    for ref in refs:
        raw, absolute = ref["raw"], ref["abs"]
        if raw.startswith("#"):
            continue
        if raw.startswith(("http://", "https://")):  # out of the site: only MLflow run links
            assert raw.startswith(UI) and ref["tag"] == "A", (url, raw)
            continue
        assert not raw.startswith(("/", "file:", "data:")) and "://" not in raw, (url, raw)
        assert absolute.startswith(site_url), (url, raw, absolute)  # stays inside the site
        assert _exists(absolute, site_url), (url, raw, absolute)
    return refs


def _walk(browser, start: str, site_url: str) -> set[str]:
    """Every page reachable from ``start`` through the site's links, each checked."""
    todo, seen = [start], set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        for ref in _check_page(browser, url, site_url):
            target = ref["abs"].split("#")[0]
            if ref["tag"] == "A" and target.endswith(".html") and target.startswith(site_url):
                todo.append(target)
    return seen


def test_the_site_opens_from_the_local_disk(browser, multi_site: Path):
    site_url = multi_site.parent.resolve().as_uri() + "/"
    pages = _walk(browser, multi_site.resolve().as_uri(), site_url)
    assert len(pages) == 4  # the index and three suite pages, each reached by a link


def test_the_site_opens_from_a_web_server_under_a_sub_path(browser, served):
    base, _ = served
    for start in (base, base + "index.html"):  # the folder's URL, and its index by name
        pages = {p.removesuffix("index.html") for p in _walk(browser, start, base)}
        assert len(pages) == 4 and all(p.startswith(base) for p in pages)


def test_the_print_stylesheet(browser, zoo_site: Path):
    page = browser.new_page()
    page.goto(zoo_site.resolve().as_uri(), wait_until="load")
    page.wait_for_function("() => [...document.querySelectorAll('div.nf-figure')]"
                           ".every(d => d.getAttribute('data-rendered') === '1')",
                           timeout=60_000)
    style = """() => ({toc: getComputedStyle(document.querySelector('nav.toc')).display,
        fig: getComputedStyle(document.querySelector('figure.nf')).breakInside,
        header: getComputedStyle(document.querySelector('header')).backgroundColor,
        after: getComputedStyle(document.querySelector('figcaption .data a'), '::after')
               .content})"""
    screen = page.evaluate(style)
    page.emulate_media(media="print")
    printed = page.evaluate(style)
    assert screen["toc"] != "none" and printed["toc"] == "none"
    assert printed["fig"] == "avoid" and screen["fig"] != "avoid"
    assert printed["header"] in ("rgba(0, 0, 0, 0)", "transparent")
    assert "attr(href)" in printed["after"] or ".csv" in printed["after"]
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000
    page.close()
