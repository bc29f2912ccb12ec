"""Counting the run plan's parts as ``nfbench run`` builds them (tests/test_run_plan.py and
tests/test_tune.py): the capacity, the store, the backend and its connections."""

from __future__ import annotations

from collections import Counter

from harness.schedule import plan as plan_module
from harness.schedule.backend import InlineBackend
from harness.tracking.store import Store


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
