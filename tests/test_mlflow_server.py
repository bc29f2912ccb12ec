"""The smoke suite run into a real MLflow tracking server backed by PostgreSQL (as on a team's
server and in cluster.yaml; SQLite where PostgreSQL is not installed), then, with that one
server and store:

* MLflow's UI (MLflow 3.17) as a new user sees it in headless Chromium: the link nfbench
  prints opens the experiment on its runs table, the Dataset column shows each run's data
  set and digest, a run's system-metrics chart has points, and the experiment's Models tab
  lists one LoggedModel per run with its metrics;
* `nfbench report` reads the suite back through the server and straight from the database;
* `nfbench status` reads it through the server.

The smoke suite runs as shipped (Ray, two CPUs) with fewer steps and samples every 0.5 s."""

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
def store_uri(request, tmp_path_factory) -> str:
    """A PostgreSQL database with MLflow's schema; an SQLite file where there is none."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from postgres_server import why_not

    if why_not() is None:
        return request.getfixturevalue("postgres").new_database("smoke")
    return f"sqlite:///{tmp_path_factory.mktemp('smoke-db')}/mlflow.db"


@pytest.fixture(scope="module")
def ui(store_uri, tmp_path_factory) -> Iterator[str]:
    """`mlflow server` over the store (artifacts on its disk, served by it): its URL."""
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
         store_uri, "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=root, env=_venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/health", server)
        yield base
    finally:
        _stop(server)


SMOKE_RUNS = 6  # 4 eager jobs and 2 compiled ones (suites/smoke.yaml)


@pytest.fixture(scope="module")
def smoke_store(ui, tmp_path_factory) -> tuple[str, str, list, Path]:
    """The smoke suite (its matrix as shipped, 60 steps) run with Ray into the server."""
    root = tmp_path_factory.mktemp("smoke")
    suite = yaml.safe_load((ROOT / "suites" / "smoke.yaml").read_text())
    suite["train"].update(steps=60, eval_every=20, checkpoint_every=40)
    suite["system_metrics"] = {"interval": 0.5}
    (root / "smoke.yaml").write_text(yaml.safe_dump(suite))
    exe = str(Path(sys.executable).with_name("nfbench"))
    run = subprocess.run([exe, "run", "smoke.yaml", "--tracking-uri", ui, "--num-cpus", "2",
                          "--no-report", "--no-preflight"], cwd=root, env=_venv_env(),
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    client = MlflowClient(ui)
    exp = client.get_experiment_by_name("smoke")
    assert f"runs in MLflow: {mc.ui_url(ui, exp.experiment_id)}" in run.stdout
    return ui, exp.experiment_id, client.search_runs([exp.experiment_id]), root


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


def test_the_experiment_opens_on_its_runs_table(smoke_store, ui, browser):
    uri, exp_id, runs, _ = smoke_store
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
    _, exp_id, runs, _ = smoke_store
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
    uri, exp_id, runs, _ = smoke_store
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


def test_the_models_tab_lists_one_model_per_run(smoke_store, ui, browser):
    """Every run's flow is a LoggedModel (logged by the Ray workers through the server), shown
    in the experiment's Models tab with its metric columns; search_logged_models ranks them as
    ``nfbench promote`` does."""
    uri, exp_id, runs, _ = smoke_store
    client = MlflowClient(uri)
    models = {m.model_id: m for m in client.search_logged_models([exp_id])}
    assert sorted(models) == sorted(r.data.tags[keys.TAG_MODEL] for r in runs)
    page = browser.new_page()
    page.set_viewport_size({"width": 3200, "height": 1000})  # every column rendered
    page.goto(f"{ui}/#/experiments/{exp_id}/models?{mc.UI_MODE}", wait_until="load")
    for m in models.values():
        page.get_by_text(m.name, exact=True).first.wait_for(timeout=60_000)
    assert page.get_by_role("row").filter(has_text="Ready").count() == SMOKE_RUNS
    for metric in (keys.EVAL_BPD, keys.EVAL_NLL, keys.PERF_SAMPLE_THROUGHPUT):
        assert page.get_by_role("columnheader", name=metric, exact=True).count() >= 1, metric
    page.close()
    best = client.search_logged_models(
        [exp_id], filter_string=f"tags.`{keys.TAG_DATASET}` = 'digits'", max_results=1,
        order_by=[{"field_name": f"metrics.{keys.EVAL_BPD}", "ascending": True}])[0]
    assert main(["promote", "smoke", "--tracking-uri", uri]) == 0
    alias = client.get_model_version_by_alias("smoke", "best-digits-flatten-true")
    assert alias.run_id == best.source_run_id


def test_report_and_status_read_the_suite_back(smoke_store, store_uri, capsys):
    """Through the server, and straight from its database (the reader's direct queries)."""
    import pandas as pd
    import sqlalchemy as sa

    ui, _, runs, root = smoke_store
    sources = [ui] + ([store_uri] if store_uri.startswith("postgresql") else [])
    for i, source in enumerate(sources):
        out = root / f"site-{i}"
        assert main(["report", "smoke", "--tracking-uri", source, "--out", str(out)]) == 0
        table = pd.read_csv(out / "data" / "runs.csv")
        assert len(table) == SMOKE_RUNS and set(table["status"]) == {keys.STATUS_FINISHED}
        assert set(table["runtime"]) == {"eager", "compile"}  # the compile panel's pairs
        assert 'id="compile"' in (out / "index.html").read_text()
        assert (out / "index.html").is_file()
        curves = list((out / "data").glob("curves-*.csv"))
        assert curves and all(len(pd.read_csv(c)) > 0 for c in curves)  # histories at least
        if source == ui:  # artifacts the server proxies are reached through the server only
            assert len(list((out / "samples").glob("*.png"))) == SMOKE_RUNS
    capsys.readouterr()
    assert main(["status", "smoke", "--tracking-uri", ui]) == 0
    status = capsys.readouterr().out
    assert f"finished {SMOKE_RUNS} · diverged 0 · failed 0 · killed 0 · running 0 · queued 0 · " \
           "not started 0" in status and "time left: none" in status
    if store_uri.startswith("postgresql"):  # the server's store is PostgreSQL: rows there
        engine = sa.create_engine(store_uri, poolclass=sa.pool.NullPool)
        with engine.connect() as con:
            n = con.execute(sa.text(
                "SELECT count(*) FROM runs r JOIN experiments e USING (experiment_id) "
                "WHERE e.name = 'smoke' AND r.lifecycle_stage = 'active'")).scalar()
            inputs = con.execute(sa.text(  # data sets (models are inputs rows too)
                "SELECT count(*) FROM inputs WHERE source_type = 'DATASET'")).scalar()
        engine.dispose()
        assert n == len(runs) == SMOKE_RUNS and inputs == SMOKE_RUNS


def test_claims_through_the_server_are_exclusive(ui):
    """Three drivers race for 150 keys through the server's REST API (the same one-writer
    parameter primitive as on a database): one holder per key, then a take-over of an ended
    driver's keys, each exactly once; the job index falls back to MLflow's API here."""
    import threading

    from harness.tracking import Store

    wanted = [f"srv{i:03d}" for i in range(150)]
    ledgers = [Store(ui, "race-server").ledger(ttl=60, jobs=len(wanted)) for _ in range(3)]
    for led in ledgers:
        led.renew()
    from claims_race import race

    owners = race(ledgers, wanted, 30)
    gone = ledgers[0]
    gone.stop()
    takers = [Store(ui, "race-server").ledger(ttl=60, jobs=len(wanted)) for _ in range(2)]
    for led in takers:
        led.renew()
    mine = [k for k, o in owners.items() if o == gone.me]
    threads = [threading.Thread(target=led.claim, args=(mine,)) for led in takers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(takers[0].held) | set(takers[1].held)) == sorted(mine)
    assert not set(takers[0].held) & set(takers[1].held)
    assert Store(ui, "race-server").index._url is None  # a server: read through the API
