"""One run plan, built once: the walk from ``nfbench run`` to the first job measures the
resources, opens the store and makes the backend once each, and the backend connects once
(with the inline backend here; a tuned suite on Ray in tests/test_tune.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.cli import main
from harness.schedule import plan as plan_module
from harness.schedule.backend import InlineBackend
from harness.tracking.store import Store

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


def count_construction(monkeypatch, counts: Counter) -> None:
    """Count the plan's parts as they are built: the capacity (``measure``), the store, the
    backend (inline or Ray) and its connections."""
    measure = plan_module.measure

    def counted_measure(*a, **k):
        counts["resources"] += 1
        return measure(*a, **k)

    monkeypatch.setattr(plan_module, "measure", counted_measure)
    store_init = Store.__init__

    def counted_store(self, *a, **k):
        counts["store"] += 1
        store_init(self, *a, **k)

    monkeypatch.setattr(Store, "__init__", counted_store)
    backends = [InlineBackend]
    try:
        from harness.schedule.ray_backend import RayBackend

        backends.append(RayBackend)
    except ImportError:  # pragma: no cover
        pass
    for cls in backends:
        init, connect = cls.__init__, cls.connect

        def counted_init(self, *a, __init=init, **k):
            counts["backend"] += 1
            __init(self, *a, **k)

        def counted_connect(self, __connect=connect):
            counts["connect"] += 1
            return __connect(self)

        monkeypatch.setattr(cls, "__init__", counted_init)
        monkeypatch.setattr(cls, "connect", counted_connect)


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
