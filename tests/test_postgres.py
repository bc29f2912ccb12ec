"""PostgreSQL behind MLflow, for real (Debian's package, a server started by the fixture):
the report reader's direct queries give MLflow's answer on PostgreSQL as on SQLite, and the
columns they read are checked against MLflow's models and the live schemas. (A suite run
into an `mlflow server` backed by PostgreSQL and read back: tests/test_mlflow_server.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from harness import keys
from harness.tracking import read
from harness.tracking.read import FAST_COLUMNS, load_runs

sys.path.insert(0, str(Path(__file__).resolve().parent / "report"))
from report_synth import fill_suite

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
