"""A suite across a Slurm allocation (scripts/slurm/nfbench.sbatch), against real daemons.

The fast tests check the Python half (harness/slurm.py): the allocation's resources as Ray
sees them, the ``ray start`` lines, the refusals before anything starts. The slow ones start a
real two-node Slurm cluster on this host (tests/slurm_cluster.py: slurmctld, two slurmd,
munged) and submit the script with sbatch: a suite derived from suites/smoke.yaml runs on both
nodes into the MLflow server the script starts; then a node dies mid-suite (its slurmd and its
Ray processes killed) and the script, submitted again, leaves every job once.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness import keys
from harness.refusals import UsageError
from harness.slurm import Allocation, allocation, check_run, ray_start_args
from harness.tracking.uri import TrackingUriError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm" / "nfbench.sbatch"
sys.path.insert(0, str(Path(__file__).resolve().parent))


# ── the Python half ─────────────────────────────────────────────────────────────────────
def test_the_allocation_becomes_rays_resources():
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "3", "SLURM_CPUS_PER_TASK": "8",
           "SLURM_CPUS_ON_NODE": "16", "SLURM_GPUS_PER_NODE": "a100:2"}
    assert allocation(env) == Allocation(nodes=3, cpus=8, gpus=2)
    assert allocation({"SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "4",
                       "SLURM_GPUS_PER_NODE": "gpu:a100:1,v100:2"}) == Allocation(1, 4, 3)
    with pytest.raises(UsageError, match=r"SLURM_JOB_ID is unset.*sbatch"):
        allocation({})
    with pytest.raises(UsageError, match=r"\$SLURM_CPUS_PER_TASK: 'x'"):
        allocation({"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "x"})

    ports = iter(range(20000, 20100))
    head = ray_start_args("head", Allocation(2, 8, 1), node_ip="10.0.0.1", port=6400,
                          free_port=lambda: next(ports))
    assert head[:5] == ["start", "--block", "--num-cpus=8", "--num-gpus=1",
                        "--disable-usage-stats"]
    assert {"--node-ip-address=10.0.0.1", "--head", "--port=6400",
            "--include-dashboard=false"} <= set(head)
    worker = ray_start_args("worker", Allocation(2, 8, 0), address="10.0.0.1:6400",
                            free_port=lambda: next(ports))
    assert "--address=10.0.0.1:6400" in worker and "--head" not in worker
    # every port Ray opens on a node is one picked free there, none twice
    opened = [a.split("=")[1] for a in head + worker
              if a.split("=")[0].endswith("-port") and not a.startswith("--port=")]
    assert len(opened) == len(set(opened)) == 13


def test_a_run_records_the_slurm_node_it_ran_on(monkeypatch):
    import torch

    from harness.job import environment_tags

    monkeypatch.delenv("SLURMD_NODENAME", raising=False)
    assert keys.TAG_SLURM_NODE not in environment_tags(torch.device("cpu"))
    monkeypatch.setenv("SLURMD_NODENAME", "gpu-017")
    assert environment_tags(torch.device("cpu"))[keys.TAG_SLURM_NODE] == "gpu-017"


def _suite(tmp_path: Path, name: str, steps: int, seeds: list[int], cpus: int = 1) -> Path:
    """suites/smoke.yaml made small: eager only, ``steps`` steps, the given seeds."""
    suite = yaml.safe_load((ROOT / "suites" / "smoke.yaml").read_text())
    suite["name"] = name
    suite["matrix"].update(runtime=["eager"], seeds=seeds)
    suite.pop("exclude", None)
    suite["train"].update(steps=steps, eval_every=50, checkpoint_every=50, log_every=10)
    suite["timing"].update(min_run_time=0.01)
    suite["resources"] = {"cpus": cpus, "gpus": 0}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_bad_input_is_refused_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    suite = str(_suite(tmp_path, "chk", 100, [0]))
    two = Allocation(nodes=2, cpus=1, gpus=0)
    assert check_run(suite, ["--no-report"], two, env={}) is None  # the script starts a server
    with pytest.raises(UsageError, match=r"--address: .*sets it"):
        check_run(suite, ["--address", "10.0.0.1:6379"], two, env={})
    with pytest.raises(UsageError, match=r"--num-cpus: .*leave it out"):
        check_run(suite, ["--num-cpus=2"], two, env={})
    with pytest.raises(UsageError, match=r"a sqlite store is a file on one node.*other 1 node"):
        check_run(suite, ["--tracking-uri", f"sqlite:///{tmp_path}/m.db"], two, env={})
    with pytest.raises(UsageError, match=r"\$MLFLOW_TRACKING_URI: a sqlite store"):
        check_run(suite, [], two, env={"MLFLOW_TRACKING_URI": "mlflow.db"})
    one = Allocation(nodes=1, cpus=1, gpus=0)  # one node: a file store is fine there
    uri = f"sqlite:///{tmp_path}/m.db"
    assert check_run(suite, ["--tracking-uri", uri], one, env={}) == uri
    with pytest.raises(TrackingUriError, match=r"--tracking-uri: cannot reach"):
        check_run(suite, ["--tracking-uri", "http://127.0.0.1:9"], two, env={})
    big = str(_suite(tmp_path, "big", 100, [0], cpus=4))
    with pytest.raises(UsageError, match=r"a job asks for 4 CPUs .* has 1 CPUs .*--cpus-per"):
        check_run(big, [], two, env={})


# ── against a real Slurm cluster ────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def slurm():
    from slurm_cluster import SlurmCluster, why_not

    reason = why_not()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(slurmd_timeout=10)
    try:
        yield cluster
    finally:
        cluster.stop()


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "MLFLOW_")) and k != "PYTHONPATH"}
    return {**env, "NFBENCH_PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
            "NFBENCH_MLFLOW_DIR": str(store), "NFBENCH_MLFLOW_WORKERS": "1"}


def _submit(slurm, tmp_path: Path, suite: Path, store: Path, *sbatch: str) -> str:
    return slurm.sbatch("--nodes=2", "--cpus-per-task=1", f"--output={tmp_path}/out-%j.txt",
                        *sbatch, str(SCRIPT), str(suite), "--no-report", cwd=tmp_path,
                        env=_env(store))


def _server(out: Path) -> str | None:
    """The URI of the MLflow server the job's script started (from its output), or None."""
    text = out.read_text() if out.is_file() else ""
    found = re.search(r"^nfbench: MLflow server on \S+ at (http://\S+)", text, re.MULTILINE)
    return found[1] if found else None


def _runs(uri: str | None, suite: str) -> list:
    from mlflow.tracking import MlflowClient

    if uri is None:
        return []
    client = MlflowClient(uri)
    try:
        exp = client.get_experiment_by_name(suite)
    except Exception:  # noqa: BLE001 (the server is still starting)
        return []
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _job_processes(job_id: str, node: str | None = None) -> list[int]:
    """PIDs of processes that Slurm job ``job_id`` started (on ``node``)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SLURM_JOB_ID={job_id}".encode() in env and (
                node is None or f"SLURMD_NODENAME={node}".encode() in env):
            found.append(int(proc.name))
    return found


def _assert_nothing_left(job_id: str) -> None:
    deadline = time.monotonic() + 60
    while _job_processes(job_id) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert not _job_processes(job_id), "the job left processes behind"


def _once_each(store: Path, path: Path) -> list:
    """Each job key of the suite has exactly one run in the store, finished."""
    from harness.app import load_jobs

    suite, jobs = load_jobs(str(path), quiet=True)
    runs = _runs(f"sqlite:///{store}/mlflow.db", suite.name)  # the server's store, read here
    by_key: dict[str, list] = {}
    for r in runs:
        by_key.setdefault(r.data.tags[keys.TAG_KEY], []).append(r)
    assert sorted(by_key) == sorted(j.key for j in jobs)
    assert all(len(v) == 1 for v in by_key.values()), {k: len(v) for k, v in by_key.items()}
    assert {r.data.tags[keys.TAG_STATUS] for r in runs} == {keys.STATUS_FINISHED}
    return runs


@pytest.mark.slow
def test_sbatch_runs_a_suite_across_both_nodes(slurm, tmp_path):
    path = _suite(tmp_path, "slurm", 100, [0])
    store = tmp_path / "store"
    t0 = time.monotonic()
    job = _submit(slurm, tmp_path, path, store)
    # beside it, a submission with a flag the script sets itself: refused, nothing started
    bad = slurm.sbatch("--nodes=2", "--cpus-per-task=1", f"--output={tmp_path}/bad-%j.txt",
                       str(SCRIPT), str(path), "--num-cpus", "2", cwd=tmp_path,
                       env=_env(tmp_path / "unused"))
    slurm.wait_job(job, 600)
    took = time.monotonic() - t0
    slurm.wait_job(bad, 60)
    refused = (tmp_path / f"bad-{bad}.txt").read_text()
    assert "error: --num-cpus: scripts/slurm/nfbench.sbatch sets it" in refused, refused
    assert "nfbench: " not in refused and not (tmp_path / "unused").exists(), refused
    _assert_nothing_left(bad)
    out = (tmp_path / f"out-{job}.txt").read_text()
    assert "suite slurm: 4 finished, 0 diverged, 0 failed, 0 skipped" in out, out[-4000:]
    assert "nfbench: the driver exited with status 0" in out
    runs = _once_each(store, path)
    nodes = {r.data.tags.get(keys.TAG_SLURM_NODE) for r in runs}
    assert nodes == {"n1", "n2"}, out[-4000:]
    _assert_nothing_left(job)
    print(f"\nslurm: 4 jobs on nodes {sorted(nodes)} in {took:.0f} s (sbatch to job end)")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_node_lost_mid_suite_then_resubmitted_leaves_every_job_once(slurm, tmp_path):
    """Slurm ends a job that loses a node (NODE_FAIL; without --no-requeue it would requeue
    it, which runs the script again just as a re-submission does)."""
    path = _suite(tmp_path, "lost", 200, [0, 1])
    store = tmp_path / "store"
    first = _submit(slurm, tmp_path, path, store, "--no-requeue")
    log1 = tmp_path / f"out-{first}.txt"
    deadline = time.monotonic() + 480
    while time.monotonic() < deadline:  # kill n2 while a job runs there
        tags = [r.data.tags for r in _runs(_server(log1), "lost")]
        if any(t.get(keys.TAG_SLURM_NODE) == "n2"
               and t.get(keys.TAG_STATUS) == keys.STATUS_RUNNING for t in tags):
            break
        assert slurm.job_state(first) is not None, log1.read_text()[-4000:]
        time.sleep(1.0)
    else:
        raise AssertionError(log1.read_text()[-4000:])
    slurm.kill_node("n2")  # the node dies: its slurmd, its raylet and every process on it
    for pid in _job_processes(first, "n2"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    slurm.wait_job(first, 300)  # Slurm marks n2 down and ends the job, or the suite ends
    out1 = log1.read_text()
    _assert_nothing_left(first)

    slurm.start_node("n2")  # the node is back; the same script, submitted again
    slurm.wait_idle()
    again = _submit(slurm, tmp_path, path, store)
    slurm.wait_job(again, 420)
    out2 = (tmp_path / f"out-{again}.txt").read_text()
    summary = re.search(r"suite lost: (\d+) finished, 0 diverged, 0 failed, (\d+) skipped", out2)
    assert summary, out1[-3000:] + out2[-3000:]
    finished, skipped = map(int, summary.groups())
    assert finished + skipped == 8 and finished >= 1, out1[-3000:] + out2[-3000:]
    _once_each(store, path)
    _assert_nothing_left(again)
    assert "DUE TO NODE FAILURE" in out1, out1[-3000:]
    assert not re.search(r"suite lost: \d+ finished", out1), "the suite ended before the kill"
    print(f"\nslurm: node n2 lost, the job ended by Slurm (NODE_FAIL); the re-submission ran "
          f"{finished} and skipped {skipped} of 8 jobs")
