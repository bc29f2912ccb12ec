"""One run plan, built once: the walk from ``nfbench run`` to the first job measures the
resources, opens the store and makes the backend once each, and the backend connects once
(with the inline backend here; a tuned suite on Ray in tests/test_tune.py)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from plan_counts import count_construction  # noqa: E402

SUITE = """\
name: once
matrix:
  architectures: [{name: realnvp, layers: 2, hidden: 8}]
  datasets: [moons]
  dequantization: [none]
  seeds: [0]
train: {steps: 4, batch_size: 32, eval_every: 2, checkpoint_every: 2, log_every: 2}
timing: {enabled: false}
resources: {cpus: 1}
"""


@pytest.mark.parametrize("force", [False, True])
def test_nfbench_run_builds_its_plan_once(tmp_path, monkeypatch, capsys, force):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "once.yaml").write_text(SUITE)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    argv = ["run", "once.yaml", "--backend", "inline", "--tracking-uri", uri, "--no-report",
            "--no-preflight", "--num-cpus", "1"]
    counts: Counter = Counter()
    count_construction(monkeypatch, counts)
    assert main(argv) == 0
    assert counts == Counter(resources=1, store=1, backend=1, connect=1)
    assert "1 finished" in capsys.readouterr().out
    counts.clear()  # again: the job is skipped (no connection) or forced (one)
    assert main(argv + (["--force"] if force else [])) == 0
    assert counts == Counter(resources=1, store=1, backend=1, connect=int(force))


def test_a_ray_instance_this_process_already_joined_is_planned_on_as_it_is(tmp_path,
                                                                            monkeypatch):
    """``run_jobs`` called after the caller's own ``ray.init`` (a benchmark, a Ray job's
    driver): the plan joins that instance and reads its nodes (here three with two virtual
    GPUs each), not this machine's, which has none. Ray itself is not started: the backend's
    view of it is replaced."""
    from harness.app import load_jobs
    from harness.schedule.plan import plan_run
    from harness.schedule.ray_backend import RayBackend
    from harness.schedule.resources import ClusterShape

    path = tmp_path / "gpu.yaml"
    path.write_text(SUITE.replace("name: once", "name: gpu").replace(
        "resources: {cpus: 1}", "resources: {cpus: 0.5, gpus: 0.25}"))
    suite, _ = load_jobs(str(path), quiet=True)
    nodes = [{"id": f"n{i}", "cpus": 2.0, "gpus": 2.0} for i in range(3)]
    connects = Counter()
    monkeypatch.setattr(RayBackend, "attached", lambda self: True)
    monkeypatch.setattr(RayBackend, "connect", lambda self: connects.update(["connect"]))
    monkeypatch.setattr(RayBackend, "shape", lambda self: ClusterShape(nodes))
    plan = plan_run(suite, uri=f"sqlite:///{tmp_path}/mlflow.db", backend="ray")
    assert plan.connected and connects["connect"] == 1
    assert plan.capacity.shape.gpus == 6.0
    # the CPUs bound it: 2 a node at 0.5 a job is 4 jobs a node, 12 in all (the GPUs allow 24)
    assert plan.capacity.slots(100) == 12
