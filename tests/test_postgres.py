"""PostgreSQL behind MLflow, for real (Debian's package, a server started by the fixture):
the report reader's direct queries give MLflow's answer on PostgreSQL as on SQLite; the
columns they read are checked against MLflow's models and the live schemas; a suite runs
into an `mlflow server` backed by PostgreSQL, and `nfbench report` reads it back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from harness import keys
from harness.tracking import read
from harness.tracking.read import FAST_COLUMNS, load_runs

sys.path[:0] = [str(Path(__file__).resolve().parent / "report"),
                str(Path(__file__).resolve().parent)]
from report_synth import fill_suite
from test_services import _free_port, _stop, _venv_env, _wait_http

JOBS = [("realnvp", "moons", "none", [0, 1]), ("glow", "moons", "none", [0]),
        ("realnvp", "digits", "uniform", [0]), ("gaussian", "digits", "uniform", [0])]


def _no_api(*args, **kwargs):
    raise AssertionError("the fast path fell back to MLflow's API")


def test_the_direct_queries_read_postgresql_as_mlflows_api_does(postgres, tmp_path,
                                                               monkeypatch):
    uri = postgres.new_database()
    fill_suite(uri, "pg", JOBS, artifact_root=tmp_path / "art", points=5,
               outcomes={("glow", "moons", "none", 0): keys.STATUS_FAILED})
    fill_suite(uri, "pg2", JOBS[:1], artifact_root=tmp_path / "art", points=5)
    slow = load_runs(uri, ["pg", "pg2"], fast=False)
    with monkeypatch.context() as m:
        m.setattr(read, "_records_api", _no_api)
        fast = load_runs(uri, ["pg", "pg2"])
        with pytest.raises(read.UnknownSuiteError, match="'pg', 'pg2'"):
            load_runs(uri, ["pg", "nope"])
    pd.testing.assert_frame_equal(fast, slow)
    assert len(fast) == 7 and list(pd.unique(fast["experiment"])) == ["pg", "pg2"]
    assert (fast[keys.TAG_STATUS] == keys.STATUS_FAILED).sum() == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_columns_the_direct_queries_read_are_mlflows(backend, request, sqlite_uri):
    """Fails, naming the column, when MLflow's schema moves away from the documented queries
    (then the reader falls back to MLflow's API: right, but slower)."""
    if backend == "postgresql":
        uri = request.getfixturevalue("postgres").new_database()
    else:
        uri = sqlite_uri
    models = {t.__tablename__: t for t in read._fast_tables()}
    engine = sa.create_engine(read._database_url(uri), poolclass=sa.pool.NullPool)
    try:
        live = sa.inspect(engine)
        for table, columns in FAST_COLUMNS.items():
            assert table in models, f"MLflow has no model for table {table!r} any more"
            declared = set(models[table].__table__.columns.keys())
            present = {c["name"] for c in live.get_columns(table)}
            for col in columns:
                assert col in declared, f"MLflow's model of {table} lost column {col!r}"
                assert col in present, f"{backend}: table {table} has no column {col!r}"
    finally:
        engine.dispose()


def test_a_broken_query_falls_back_to_the_api(sqlite_uri, tmp_path, monkeypatch, caplog):
    fill_suite(sqlite_uri, "fb", JOBS[:1], artifact_root=tmp_path / "art", points=3)

    def broken():
        raise AttributeError("SqlRun has no attribute 'run_uuid'")

    monkeypatch.setattr(read, "_fast_tables", broken)
    runs = load_runs(sqlite_uri, ["fb"])
    assert len(runs) == 2
    assert "through MLflow's API" in caplog.text and "run_uuid" in caplog.text


# ── a suite into `mlflow server` on PostgreSQL, and the report from it ──────────────────
SUITE = """\
name: pgsuite
matrix:
  architectures: [{name: realnvp, layers: 2, hidden: 16}]
  datasets: [moons]
  dequantization: [none]
  seeds: [0, 1]
train: {steps: 30, batch_size: 64, eval_every: 10, checkpoint_every: 10, log_every: 5}
timing: {batch_size: 64, min_run_time: 0.01}
system_metrics: {interval: 1}
"""


@pytest.mark.slow
def test_a_suite_runs_into_an_mlflow_server_on_postgresql_and_is_reported(postgres, tmp_path):

    db = postgres.new_database("srv")
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", db,
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=_venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        uri = f"http://127.0.0.1:{port}"
        _wait_http(f"{uri}/health", server)
        (tmp_path / "pg.yaml").write_text(SUITE)
        exe = str(Path(sys.executable).with_name("nfbench"))
        run = subprocess.run([exe, "run", "pg.yaml", "--tracking-uri", uri, "--num-cpus", "2",
                              "--out", "site"], cwd=tmp_path, env=_venv_env(),
                             capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "report: " in run.stdout
        # the report, read back through the server and straight from the database
        for source, out in ((uri, "from-server"), (db, "from-db")):
            rep = subprocess.run([exe, "report", "pgsuite", "--tracking-uri", source,
                                  "--out", out], cwd=tmp_path, env=_venv_env(),
                                 capture_output=True, text=True, timeout=300, check=False)
            assert rep.returncode == 0, rep.stdout + rep.stderr
            runs = pd.read_csv(tmp_path / out / "data" / "runs.csv")
            assert sorted(runs["seed"]) == [0, 1]
            assert set(runs["status"]) == {keys.STATUS_FINISHED}
            assert (tmp_path / out / "index.html").is_file()
        # the server's store is PostgreSQL: the runs are rows there
        engine = sa.create_engine(db, poolclass=sa.pool.NullPool)
        with engine.connect() as con:
            n = con.execute(sa.text(
                "SELECT count(*) FROM runs r JOIN experiments e USING (experiment_id) "
                "WHERE e.name = 'pgsuite' AND r.lifecycle_stage = 'active'")).scalar()
            inputs = con.execute(sa.text("SELECT count(*) FROM inputs")).scalar()
        engine.dispose()
        assert n == 2 and inputs == 2
        # artifacts went through the server to its disk
        assert list((tmp_path / "artifacts").rglob("curves.parquet"))
    finally:
        _stop(server)
