"""Screenshot of a report page with headless Chromium (Debian's package, driven by Playwright).

    python benchmarks/screenshot_report.py reports/smoke/index.html docs/report.png
    python benchmarks/screenshot_report.py reports/smoke/index.html out.png --full-page

Waits until every figure has rendered, then writes a PNG of the first screen (1400 × 1800) or
the full page. Works offline: the page loads plotly.js from its own assets folder, and any
request leaving the machine is refused (and reported). Needs ``chromium`` on PATH
(``apt-get install -y chromium``); never downloads a browser.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def screenshot(page_path: Path, out: Path, *, width: int = 1400, height: int = 1800,
               full_page: bool = False, timeout_s: float = 60.0) -> list[str]:
    """Render ``page_path`` and write ``out``; returns the console errors seen."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium not found on PATH: apt-get install -y chromium")
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("http*://**", lambda route: (errors.append(f"network: {route.request.url}"),
                                                    route.abort()))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "() => [...document.querySelectorAll('div.nf-figure')]"
                ".every(d => d.getAttribute('data-rendered') === '1')",
                timeout=timeout_s * 1000,
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=full_page)
        finally:
            ctx.close()
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path, help="an index.html of a report")
    ap.add_argument("out", type=Path, help="PNG to write")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1800)
    ap.add_argument("--full-page", action="store_true")
    args = ap.parse_args(argv)
    if not args.page.is_file():
        ap.error(f"no such page: {args.page} (write it with `nfbench report SUITE --out DIR`)")
    errors = screenshot(args.page, args.out, width=args.width, height=args.height,
                        full_page=args.full_page)
    for err in errors:
        print(f"console error: {err}", file=sys.stderr)
    print(args.out)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
