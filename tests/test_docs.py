"""The documentation: the README is a front door (short, its links resolve) and the MkDocs site
in ``docs/`` builds with ``--strict`` (no broken link, anchor or page outside the nav), with
the measurement vocabulary generated from ``harness/keys.py``."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import keys

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _readme_links() -> list[str]:
    """The README's link targets, outside fenced code blocks."""
    text = re.sub(r"^```.*?^```", "", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    return LINK.findall(text)


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as ``python -m mkdocs build --strict`` builds it from the repository root."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.update(NO_MKDOCS_2_WARNING="1", DISABLE_MKDOCS_2_WARNING="true")  # banners, not output
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return out


def test_the_site_builds_strictly(site):
    assert (site / "index.html").is_file()
    for page in ("suites", "flows-and-data", "metrics", "statistics", "tuning", "clusters",
                 "results", "benchmarks", "architecture", "claims", "protocols"):
        assert (site / page / "index.html").is_file(), page


def test_the_metrics_page_lists_the_whole_vocabulary(site):
    """Generated at build time from :func:`harness.keys.vocabulary`: every key, with its
    meaning."""
    page = html.unescape((site / "metrics" / "index.html").read_text())
    missing = [value for value, _, _ in keys.vocabulary() if f"<code>{value}</code>" not in page]
    assert not missing, missing


def test_the_api_reference_documents_each_layers_public_interface(site):
    for package, names in {
        "flows": ("Flow", "Layer", "build", "names", "register"),
        "data": ("DataSet", "load", "make_dequantizer"),
        "measure": ("time_flow", "evaluate_likelihood", "diagnose"),
        "keys": ("vocabulary",),
        # a function named as its module: documented as the module's (``expand.expand``)
        "suite": ("Suite", "load_suite", "expand.expand", "job_key"),
        "tracking": ("Store", "MlflowTracker"),
        "report": ("write_report", "compare.compare"),
    }.items():
        page = (site / "api" / package / "index.html").read_text()
        missing = [n for n in names if f'id="harness.{package}.{n}"' not in page]
        assert not missing, (package, missing)
        roles = re.findall(r":(?:mod|class|func|meth|data|attr):<code>", page)
        assert not roles, (package, "reST roles left in the rendered docstrings", roles[:3])


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_every_relative_link_in_the_readme_resolves(site):
    """A link points to a file of the repository; its ``#anchor``, on a docs page, to a
    heading of that page on the built site."""
    targets = [t for t in _readme_links() if _relative(t)]
    assert any(t.startswith("docs/") for t in targets), targets
    broken = []
    for target in targets:
        path, _, anchor = target.partition("#")
        if not (ROOT / path).exists():
            broken.append(target)
        elif anchor and path.startswith("docs/") and path.endswith(".md"):
            page = path.removeprefix("docs/").removesuffix(".md")
            built = site / ("" if page == "index" else page) / "index.html"
            if f'id="{anchor}"' not in built.read_text():
                broken.append(target)
    assert not broken, broken
