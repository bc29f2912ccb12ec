"""The pages in headless Chromium (Debian's package): every figure renders, nothing fails in
the console, nothing is fetched from the network, hostile names stay text, points open runs."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_synth import HOSTILE, HOSTILE_LABEL

pytestmark = pytest.mark.slow

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
RECORD_OPEN = (
    "window.__opened = []; window.open = (u) => { window.__opened.push(u); return null; };"
)


@pytest.fixture(scope="module")
def context(chromium: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=ARGS, offline=True,
            viewport={"width": 1300, "height": 900},
        )
        ctx.add_init_script(RECORD_OPEN)
        yield ctx
        ctx.close()


class Visit:
    """A page opened from disk, with what it printed, fetched and popped up."""

    def __init__(self, context, path: Path):
        self.errors: list[str] = []
        self.network: list[str] = []
        self.dialogs: list[str] = []
        self.page = page = context.new_page()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:"))
                else self.network.append(r.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        self.n_figures = page.locator("div.nf-figure").count()
        if self.n_figures:
            page.wait_for_function(
                "() => [...document.querySelectorAll('div.nf-figure')]"
                ".every(d => d.hasAttribute('data-rendered'))", timeout=60_000)

    def rendered(self) -> list[str]:
        return self.page.evaluate(
            "() => [...document.querySelectorAll('div.nf-figure')]"
            ".filter(d => d.getAttribute('data-rendered') === '1' && d.querySelector('.main-svg')"
            " && d.querySelector('.main-svg').getBoundingClientRect().height > 100)"
            ".map(d => d.id)")


def _json_blocks(path: Path) -> int:
    return path.read_text().count('class="nf-figure-data"')


def test_every_figure_renders_offline_without_console_errors(context, zoo_site: Path):
    visit = Visit(context, zoo_site)
    assert visit.n_figures == _json_blocks(zoo_site) >= 20
    assert len(visit.rendered()) == visit.n_figures
    assert visit.errors == []
    assert visit.network == []  # plotly.js came from assets/, nothing else was asked for
    # the sample images are on disk beside the page and decoded
    broken = visit.page.evaluate(
        "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
    assert broken == 0 and visit.page.evaluate("() => document.images.length") >= 10
    visit.page.close()


def test_clicking_a_point_opens_its_mlflow_run(context, zoo_site: Path):
    visit = Visit(context, zoo_site)
    page = visit.page
    fig = page.locator("div.nf-figure").first
    fig.scroll_into_view_if_needed()
    point = fig.locator(".scatterlayer .point").first
    box = point.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(200)
    page.mouse.click(x, y)
    page.wait_for_timeout(300)
    # a curve links through its trace (meta.url): Plotly's click event, as a line gives it
    page.evaluate(
        "() => { const gd = document.querySelector('div.nf-figure[id^=\"fig-curves-\"]');"
        " const trace = gd.data.find(t => t.meta && t.meta.url);"
        " gd.emit('plotly_click', {points: [{data: trace, pointNumber: 0}]}); }")
    opened = page.evaluate("() => window.__opened")
    assert len(opened) == 2
    for url in opened:
        assert re.fullmatch(r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/[0-9a-f]{32}",
                            url)
    page.close()


def test_hostile_names_render_as_text(context, multi_site: Path):
    index = Visit(context, multi_site)
    assert index.errors == [] and index.network == []
    assert HOSTILE in index.page.inner_text("table")  # the suite list shows the name as text
    pages = sorted(multi_site.parent.glob("*/index.html"))
    index.page.close()
    hostile = next(p for p in pages if p.parent.name.startswith("script-"))
    for path in pages:
        visit = Visit(context, path)
        assert len(visit.rendered()) == visit.n_figures == _json_blocks(path)
        assert visit.errors == [] and visit.network == [] and visit.dialogs == []
        if path == hostile:
            page = visit.page
            assert page.title() == f"nfbench · {HOSTILE}"
            assert page.inner_text("h1") == f"nfbench report: {HOSTILE}"
            injected = page.evaluate(
                "() => document.querySelectorAll('img[src=\"x\"], svg[onload], main script:not("
                "[type=\"application/json\"])').length")
            assert injected == 0
            legend = page.evaluate(
                "() => [...document.querySelectorAll('.legendtext, .ytick text')]"
                ".map(e => e.textContent)")
            assert HOSTILE_LABEL in legend  # Plotly drew the characters, not the markup
            assert "alert(4)" in page.inner_text("main")  # the device tag, shown as text
        visit.page.close()


def test_compile_panel_renders_without_console_errors(context, compiled_site: Path):
    visit = Visit(context, compiled_site)
    assert "compile-ratio" in " ".join(visit.page.evaluate(
        "() => [...document.querySelectorAll('div.nf-figure')].map(d => d.id)"))
    assert len(visit.rendered()) == visit.n_figures
    assert visit.page.locator("#compile table").count() == 1
    assert visit.errors == [] and visit.network == []
    visit.page.close()
