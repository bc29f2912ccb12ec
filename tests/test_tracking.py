"""The MLflow writer and store on a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

from harness import keys
from harness.suite import parse_suite
from harness.suite.expand import expand
from harness.tracking import MlflowTracker, Store, resolve_uri


def _job():
    suite, _ = parse_suite("name: t\nmatrix: {architectures: [realnvp], datasets: [moons], "
                           "dequantization: [none]}\n")
    return expand(suite)[0][0]


def test_resolve_uri_makes_sqlite_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:///x/y.db") == f"sqlite:///{tmp_path.resolve()}/x/y.db"
    assert resolve_uri("runs.db") == f"sqlite:///{tmp_path.resolve()}/runs.db"
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_resent_points_are_stored_once_and_batches_split(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/m.db", "t")
    run = store.open_run(_job(), {}, None, False, params={"a": "1"})
    tracker = MlflowTracker(store.uri, run.run_id)
    now = int(time.time() * 1000)
    points = [(s, now + s, "train/loss", 1.0 / s) for s in range(1, 1501)]
    tracker.record(points=points, metrics={"eval/nll": 2.0}, tags={"x": "y"})
    tracker.record(points=points[:700])  # a resumed job sends what its checkpoint held
    hist = store.client.get_metric_history(run.run_id, "train/loss")
    assert len(hist) == 1500
    assert sorted(h.step for h in hist) == list(range(1, 1501))
    got = store.client.get_run(run.run_id).data
    assert got.metrics["eval/nll"] == 2.0 and got.tags["x"] == "y" and got.params["a"] == "1"


def test_open_run_resumes_the_same_run_and_force_replaces_it(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/m.db", "t")
    job = _job()
    first = store.open_run(job, {}, None, False)
    store.close_run(first.run_id, keys.STATUS_KILLED, "stopped")
    existing = store.runs_by_key()[job.key]
    assert store.status_of(existing[0]) == keys.STATUS_KILLED
    again = store.open_run(job, {}, existing, False)
    assert again.run_id == first.run_id and again.resumed
    assert store.client.get_run(first.run_id).info.status == "RUNNING"
    forced = store.open_run(job, {}, store.runs_by_key()[job.key], True)
    assert forced.run_id != first.run_id
    assert list(store.runs_by_key()) == [job.key]
    assert len(store.runs_by_key()[job.key]) == 1
    assert store.client.get_run(first.run_id).info.lifecycle_stage == "deleted"  # restorable


def test_artifacts_round_trip(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/m.db", "t")
    run = store.open_run(_job(), {}, None, False)
    tracker = MlflowTracker(store.uri, run.run_id, artifact_uri=run.artifact_uri)
    f = tmp_path / "last.pt"
    f.write_bytes(b"abc")
    tracker.log_file(f, "checkpoints")
    assert tracker.fetch("checkpoints/nothing.pt", tmp_path / "dl") is None
    got = tracker.fetch("checkpoints/last.pt", tmp_path / "dl")
    assert Path(got).read_bytes() == b"abc"
    # artifacts of an SQLite store live beside it, whatever the working directory
    assert run.artifact_uri.startswith((tmp_path / "mlartifacts").resolve().as_uri())
