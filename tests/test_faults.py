"""Faults where users meet them, with the real thing: a two-node Ray cluster on loopback that
loses a node mid-job (and gets a fresh one), two drivers of one suite at once into one SQLite
store, and a driver killed with SIGKILL then run again. Every job ends recorded once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
  architectures: [{{name: realnvp, layers: 2, hidden: 16}}]
  datasets: [moons]
  dequantization: [none]
  seeds: {seeds}
train: {{steps: {steps}, batch_size: 64, eval_every: {every}, checkpoint_every: {every},
        log_every: {log}}}
timing: {{enabled: {timing}, batch_size: 64, min_run_time: 0.01}}
resources: {{cpus: 1}}
retries: 2
"""


def _write(tmp_path: Path, name: str, seeds: str, steps: int, every: int, log: int = 10,
           timing: str = "true") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, seeds=seeds, steps=steps, every=every, log=log,
                                 timing=timing))
    return path


def _runs(uri: str, suite: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _points(uri: str, run) -> list[int]:
    return [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id,
                                                                 keys.TRAIN_LOSS)]


def _assert_once_each(uri: str, suite: str, n: int, steps: int, log: int) -> list:
    runs = _runs(uri, suite)
    by_key: dict[str, list] = {}
    for r in runs:
        by_key.setdefault(r.data.tags[keys.TAG_KEY], []).append(r)
    assert len(by_key) == n and all(len(v) == 1 for v in by_key.values()), \
        {k: len(v) for k, v in by_key.items()}
    expected = len({1} | set(range(log, steps + 1, log)))
    for r in runs:
        assert r.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED, r.data.tags
        steps_seen = _points(uri, r)
        assert sorted(steps_seen) == sorted(set(steps_seen)), "a curve point was doubled"
        assert len(steps_seen) == expected, "a curve point was lost"
    return runs


# ── a node lost mid-job, and a fresh one joining ──────────────────────────────────────────
def test_a_lost_node_costs_only_its_jobs_progress_since_their_checkpoint(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node2 = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="nfbench-faults", log_to_driver=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    suite, jobs = load_jobs(str(_write(tmp_path, "node", "[0, 1]", 3000, 100, log=50)),
                           quiet=True)
    killed: list[str] = []

    lines: list[str] = []

    def kill_node_when_checkpointed(run_id: str) -> None:
        # the SQLite store keeps artifacts beside it: watch the file, not the store
        last = tmp_path / "mlartifacts" / "node" / run_id / "artifacts" / "checkpoints" / "last.pt"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not last.exists():
            time.sleep(0.1)
        cluster.remove_node(node2, allow_graceful=False)
        killed.append(run_id)
        lines.append(f"test: node 2 removed at {time.monotonic() - t0:.1f} s")

    def on_start(info):
        if killed and info["run_id"] == killed[0] and len(killed) == 1:
            # the lost job is dispatched again: a fresh node joins (Ray's test cluster adds
            # nodes from the main thread, which this hook runs in)
            killed.append("rejoined")
            cluster.add_node(num_cpus=1)
            lines.append(f"test: node 3 added at {time.monotonic() - t0:.1f} s")
        if info["phase"] != "train" or getattr(on_start, "armed", False):
            return
        if info["node"] == node2.node_id:
            on_start.armed = True
            threading.Thread(target=kill_node_when_checkpointed, args=(info["run_id"],),
                             daemon=True).start()

    t0 = time.monotonic()
    try:
        summary = run_jobs(suite, jobs, uri=uri, out=lines.append, tty=False,
                           on_start=on_start)
        took = time.monotonic() - t0
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed, ("no job ran on the second node", lines)
    assert killed[1:] == ["rejoined"], lines
    assert sorted(summary.finished) == sorted(j.key for j in jobs), (summary, lines)
    assert took < 300
    assert any("worker lost" in line for line in lines), lines
    runs = _assert_once_each(uri, "node", 2, 3000, 50)
    (lost,) = [r for r in runs if r.info.run_id == killed[0]]
    assert lost.data.tags.get(keys.TAG_ATTEMPTS) == "1", (lines, [r.data.tags for r in runs])
    assert int(lost.data.tags[keys.TAG_RESUMED_STEP]) > 0  # resumed from its checkpoint
    assert keys.TAG_ERROR not in lost.data.tags
    assert keys.PERF_DENSITY_MS in lost.data.metrics  # timed after the loss


# ── two drivers of one suite at once ─────────────────────────────────────────────────────
def _nfbench(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("nfbench"))
    env = {**os.environ, "NFBENCH_LEASE_SECONDS": "30"}
    return subprocess.Popen([exe, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


def test_two_drivers_of_one_suite_into_a_fresh_sqlite_store_run_each_job_once(tmp_path):
    path = _write(tmp_path, "two", "[0, 1, 2, 3, 4, 5, 6, 7]", 60, 20)
    uri = f"sqlite:///{tmp_path}/fresh.db"  # neither driver finds a store: both create it
    args = ("run", str(path), "--tracking-uri", uri, "--no-report", "--num-cpus", "1")
    procs = [_nfbench(*args, cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    _assert_once_each(uri, "two", 8, 60, 10)
    ran = [int(re.search(r"suite two: (\d+) finished", o).group(1)) for o in outs]
    assert sum(ran) == 8, outs  # each job finished by exactly one of the two drivers


# ── a driver killed with SIGKILL, then run again ─────────────────────────────────────────
def test_a_driver_killed_with_sigkill_then_rerun_loses_and_doubles_nothing(tmp_path, sqlite_uri):
    path = _write(tmp_path, "sigkill", "[0, 1]", 1500, 100, log=50, timing="false")
    uri = sqlite_uri  # made before the driver starts, so that this test's client may read it
    args = ("run", str(path), "--tracking-uri", uri, "--no-report", "--num-cpus", "2")
    proc = _nfbench(*args, cwd=tmp_path, start_new_session=True)
    client = MlflowClient(uri)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # kill once both jobs have a checkpoint
            runs = _runs(uri, "sigkill")
            if len(runs) == 2 and all(client.list_artifacts(r.info.run_id, "checkpoints")
                                      for r in runs):
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        before = {r.info.run_id for r in _runs(uri, "sigkill")}
        assert {r.data.tags[keys.TAG_STATUS] for r in _runs(uri, "sigkill")} == {"running"}
        again = _nfbench(*args, cwd=tmp_path)
        out = again.communicate(timeout=600)[0]
        assert again.returncode == 0, out
        # the dead driver's claims are free at once (this host, its process gone): the re-run
        # neither waits for its lease to expire nor leaves its jobs to it
        assert "waiting for" not in out and "another driver" not in out, out
    finally:
        try:  # Ray processes the killed driver left behind
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    runs = _assert_once_each(uri, "sigkill", 2, 1500, 50)
    assert {r.info.run_id for r in runs} == before  # resumed in the same runs
    for r in runs:
        assert int(r.data.tags[keys.TAG_RESUMED_STEP]) >= 100
