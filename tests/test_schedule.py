"""The real thing: suites through a real local Ray instance into a real SQLite MLflow store."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
import ray
from mlflow.tracking import MlflowClient

from harness import keys
from harness.app import load_jobs
from harness.schedule import run_jobs

pytestmark = pytest.mark.slow

SUITE = """\
name: {name}
matrix:
  architectures: [{{name: realnvp, layers: 2, hidden: 16}}, {{name: maf, layers: 2, hidden: 16}}]
  datasets: [{datasets}]
  dequantization: [none, uniform]
  seeds: {seeds}
train: {{steps: {steps}, batch_size: 64, eval_every: 20, checkpoint_every: {ckpt}, log_every: 5}}
timing: {{enabled: {timing}, batch_size: 64, min_run_time: 0.01}}
resources: {{cpus: {cpus}}}
retries: 2
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="nfbench-test",
             log_to_driver=False)
    yield
    ray.shutdown()


def _suite(tmp_path, name, datasets="moons", seeds="[0]", steps=40, ckpt=20, timing="false",
           cpus=1):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, datasets=datasets, seeds=seeds, steps=steps,
                                 ckpt=ckpt, timing=timing, cpus=cpus))
    return load_jobs(str(path), quiet=True)


def _runs(uri, suite):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite)
    return client, client.search_runs([exp.experiment_id])


def _expected_points(steps: int, log_every: int = 5) -> int:
    return len({1} | set(range(log_every, steps + 1, log_every)))


def test_suite_runs_once_and_rerun_runs_nothing(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    suite, jobs = _suite(tmp_path, "e2e", datasets="moons, digits", timing="true")
    assert len(jobs) == 4
    summary = run_jobs(suite, jobs, uri=uri, out=lambda s: None)
    assert sorted(summary.finished) == sorted(j.key for j in jobs), summary
    client, runs = _runs(uri, "e2e")
    assert len(runs) == 4
    for run in runs:
        m, tags = run.data.metrics, run.data.tags
        assert run.info.status == "FINISHED" and tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
        assert keys.EVAL_NLL in m and (keys.EVAL_BPD in m) == (tags[keys.TAG_DATASET] == "digits")
        for k in (keys.PERF_SAMPLE_THROUGHPUT, keys.PERF_DENSITY_MS, keys.PERF_LOGDET_MS,
                  keys.PERF_INVERSE_MS, keys.STAB_INV_ERR_MAX, keys.STAB_LATENT_KS,
                  keys.STAB_NONFINITE_STEPS):
            assert k in m, (k, sorted(m))
        assert m[keys.STAB_INV_ERR_MAX] < 1e-3
        for k in (keys.TAG_KEY, keys.TAG_DEVICE, keys.TAG_TORCH, keys.TAG_REVISION):
            assert tags[k]
        assert run.data.params["train.steps"] == "40"
        hist = client.get_metric_history(run.info.run_id, keys.TRAIN_LOSS)
        assert len(hist) == _expected_points(40)
    again = run_jobs(suite, jobs, uri=uri, out=lambda s: None)
    assert sorted(again.skipped) == sorted(j.key for j in jobs)
    assert not again.finished and not again.failed
    assert len(_runs(uri, "e2e")[1]) == 4
    forced = run_jobs(suite, jobs[:1], uri=uri, force=True, out=lambda s: None)
    assert forced.finished == [jobs[0].key]
    _, runs = _runs(uri, "e2e")
    assert len(runs) == 4  # the forced job replaced its old run (soft-deleted, restorable)


def test_killed_worker_job_is_retried_and_recorded_once(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    suite, jobs = _suite(tmp_path, "kill", steps=400, ckpt=40)
    assert len(jobs) == 2
    client = MlflowClient(uri)
    killed: list[str] = []

    def killer(actor, run_id):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for a checkpoint, then kill mid-job
            try:
                if client.list_artifacts(run_id, "checkpoints"):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        ray.kill(actor)
        killed.append(run_id)

    def on_start(info):
        if not killed and not getattr(on_start, "armed", False) and info["phase"] == "train":
            on_start.armed = True
            threading.Thread(target=killer, args=(info["actor"], info["run_id"]),
                             daemon=True).start()

    summary = run_jobs(suite, jobs, uri=uri, out=lambda s: None, on_start=on_start)
    assert killed, "the test did not kill a worker"
    assert summary.retried >= 1
    assert sorted(summary.finished) == sorted(j.key for j in jobs), summary
    _, runs = _runs(uri, "kill")
    assert len(runs) == 2  # exactly one run per job
    assert len({r.data.tags[keys.TAG_KEY] for r in runs}) == 2
    for run in runs:
        hist = client.get_metric_history(run.info.run_id, keys.TRAIN_LOSS)
        steps = [h.step for h in hist]
        assert sorted(steps) == sorted(set(steps)), "a resumed job doubled curve points"
        assert len(steps) == _expected_points(400)


def test_four_concurrent_workers_lose_no_metric_point(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    suite, jobs = _suite(tmp_path, "conc", seeds="[0, 1]", steps=200, ckpt=25, cpus=0.5)
    assert len(jobs) == 4
    summary = run_jobs(suite, jobs, uri=uri, out=lambda s: None)
    assert summary.slots == 4
    assert sorted(summary.finished) == sorted(j.key for j in jobs)
    client, runs = _runs(uri, "conc")
    assert len(runs) == 4
    for run in runs:
        rid = run.info.run_id
        path = client.download_artifacts(rid, keys.ART_CURVES, str(tmp_path / rid))
        curves = pd.read_parquet(path)
        for key in (keys.TRAIN_LOSS, keys.TRAIN_NLL, keys.TRAIN_GRAD_NORM, keys.TRAIN_LR,
                    keys.TRAIN_WALL_S, keys.VAL_NLL):
            hist = client.get_metric_history(rid, key)
            expected = _expected_points(200) if key.startswith("train/") else 200 // 20
            assert len(hist) == expected, (key, len(hist))
            assert len(curves[curves.key == key]) == expected
            assert sorted(h.step for h in hist) == sorted(curves[curves.key == key].step)
