"""The smoke suite's runs in a real `mlflow ui` (MLflow 3.17), as a new user sees them in
headless Chromium: the link nfbench prints opens the experiment on its runs table, the
Dataset column shows each run's data set and digest, and a run's system-metrics chart has
points. The smoke suite runs as shipped, with fewer steps (and samples every 0.5 s)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness import keys
from harness.cli import main
from harness.tracking import conventions as mc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_services import _free_port, _stop, _venv_env, _wait_http

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory) -> tuple[str, str, list]:
    """The smoke suite (its matrix as shipped, 60 steps) run into a fresh SQLite store."""
    root = tmp_path_factory.mktemp("smoke-ui")
    suite = yaml.safe_load((ROOT / "suites" / "smoke.yaml").read_text())
    suite["train"].update(steps=60, eval_every=20, checkpoint_every=40)
    suite["system_metrics"] = {"interval": 0.5}
    (root / "smoke.yaml").write_text(yaml.safe_dump(suite))
    uri = f"sqlite:///{root}/mlflow.db"
    assert main(["run", str(root / "smoke.yaml"), "--tracking-uri", uri, "--backend",
                 "inline", "--no-report", "--no-preflight"]) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("smoke")
    return uri, exp.experiment_id, client.search_runs([exp.experiment_id])


@pytest.fixture(scope="module")
def ui(smoke_store) -> Iterator[str]:
    """`mlflow ui` over the smoke store, on a free loopback port."""

    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri",
         smoke_store[0], "--host", "127.0.0.1", "--port", str(port)],
        env=_venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/health", server)
        yield base
    finally:
        _stop(server)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=ARGS,
            viewport={"width": 1500, "height": 1000})
        yield ctx
        ctx.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; CI installs it)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    return exe


def test_the_experiment_opens_on_its_runs_table(smoke_store, ui, browser, capsys):
    uri, exp_id, runs = smoke_store
    assert MlflowClient(uri).get_experiment(exp_id).tags[mc.EXPERIMENT_KIND] == \
        "custom_model_development"
    link = mc.ui_url(ui, exp_id)  # what `nfbench run` prints, on an mlflow server's URI
    page = browser.new_page()
    page.goto(link, wait_until="load")
    table = page.get_by_role("grid")  # the runs table
    table.wait_for(timeout=60_000)
    for run in runs:
        page.get_by_text(run.info.run_name, exact=True).wait_for(timeout=30_000)
    assert "/runs" in page.url and "workflowType=machine_learning" in page.url
    assert page.get_by_role("columnheader", name="Dataset", exact=True).count() >= 1
    text = page.inner_text("body")
    assert "No data available" not in text and "Traces\n0" not in text  # not the GenAI page
    page.close()


def test_the_dataset_column_shows_name_and_digest(smoke_store, ui, browser):
    _, exp_id, runs = smoke_store
    page = browser.new_page()
    page.goto(mc.ui_url(ui, exp_id), wait_until="load")
    page.get_by_role("grid").wait_for(timeout=60_000)
    shown = set()
    for run in runs:
        name = run.data.tags[keys.TAG_DATASET]
        digest = run.data.params["data.fingerprint"][: mc.DIGEST_LEN]
        cell = page.get_by_text(f"{name} ({digest})", exact=True).first
        cell.wait_for(timeout=30_000)
        shown.add((name, digest))
    assert {n for n, _ in shown} == {"moons", "digits"} and len(shown) == 2
    page.close()


def test_a_runs_system_metrics_chart_has_points(smoke_store, ui, browser):
    uri, exp_id, runs = smoke_store
    run = runs[0]
    history = MlflowClient(uri).get_metric_history(run.info.run_id,
                                                  "system/cpu_utilization_percentage")
    assert len(history) >= 2
    page = browser.new_page()
    page.goto(mc.ui_url(ui, exp_id, run.info.run_id, "system-metrics"), wait_until="load")
    title = page.get_by_text("cpu_utilization_percentage", exact=True).first
    title.wait_for(timeout=60_000)
    card = page.locator("div", has=title).filter(has=page.locator("svg.main-svg")).last
    card.locator(".scatterlayer .point").first.wait_for(timeout=30_000)
    points = card.locator(".scatterlayer .point").count()
    assert points == len(history), (points, len(history))
    assert re.search(r"System metrics\s*\(\d+\)", page.inner_text("body"))
    page.close()
