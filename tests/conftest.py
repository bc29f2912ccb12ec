"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# the canary's per-host baseline (harness.measure.baseline) goes to a cache of this session's
# own, set before any worker starts so that Ray's workers inherit it: a test never reads a
# baseline another session or the user's own runs left
os.environ["NFBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="nfbench-cache-")


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory):
    """An SQLite MLflow store with its schema made (MLflow's migrations take seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("template") / "empty.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def sqlite_uri(tmp_path, _empty_store):
    """The URI of a fresh, empty SQLite MLflow store in this test's ``tmp_path``."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_store, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session (Debian's package, started here as a
    non-root user); each test takes a database of its own (``postgres.new_database()``).
    Skips with the reason when PostgreSQL or its Python driver is not installed."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from postgres_server import PostgresServer, why_not

    reason = why_not()
    if reason:
        pytest.skip(reason)
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()
