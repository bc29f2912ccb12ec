"""The run plan: what a suite's run is handed once and reads everywhere.

A :class:`RunPlan` holds the backend, the store, the cluster's :class:`Capacity` for the
suite's jobs, and one :class:`Hooks` for progress and results. :func:`plan_run` builds it
once per ``nfbench run``: the capacity comes from this machine before Ray starts (a local
instance, from the checks of :func:`harness.refusals.check_machine`) or from the cluster it
joins, before the store is touched; the backend connects once (:meth:`RunPlan.connect`).
The tuning stage and the driver (:func:`~harness.schedule.driver.run_jobs`) then read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..suite import Suite
from ..tracking import Store
from .backend import Backend, InlineBackend
from .resources import ClusterShape, local_shape, train_capacity

__all__ = ["BACKENDS", "Capacity", "Hooks", "RunPlan", "make_backend", "measure",
           "plan_run"]

BACKENDS = ("ray", "inline", "sim")


@dataclass
class Hooks:
    """Where a run reports: ``out`` prints a line (``tty``: a live line on a terminal; None:
    ask stdout); ``on_start`` is called with each job phase's start, ``on_result`` with
    (trial id, result) after each tuning trial's result is recorded."""

    out: Callable[[str], None] = print
    tty: bool | None = None
    on_start: Callable[[dict[str, Any]], None] | None = None
    on_result: Callable[[str, dict], None] | None = None


@dataclass(frozen=True)
class Capacity:
    """The cluster's alive nodes and how many train workers of the suite's size fit."""

    shape: ClusterShape
    workers: int

    def slots(self, jobs: int) -> int:
        """Concurrent train workers for ``jobs`` jobs (or studies)."""
        return max(1, min(self.workers, jobs))


def measure(shape: ClusterShape, suite: Suite, source: str = "suite") -> Capacity:
    """``shape``'s capacity for the jobs of ``suite``; ``ResourceError`` (naming ``source``)
    when no job fits."""
    res = suite.resources
    return Capacity(shape, train_capacity(shape, res.cpus, res.gpus, source=source))


def make_backend(name: str, address: str | None = None,
                 num_cpus: float | None = None) -> Backend:
    """The backend called ``name``: "ray" (local, or the cluster at ``address``), "inline"
    (phases in this process, one at a time) or "sim" (one simulated node of ``num_cpus``
    CPUs on a virtual clock, every phase a second: a dry run of the bookkeeping, see
    :mod:`harness.schedule.sim_backend`)."""
    if name == "sim":
        if address:
            raise ValueError("--backend sim simulates its own nodes: it joins no cluster "
                             "(drop --address)")
        from .sim_backend import SimBackend

        return SimBackend.single(num_cpus)
    if name == "inline":
        if address:
            raise ValueError("--backend inline runs in this process: it joins no cluster "
                             "(drop --address)")
        return InlineBackend(num_cpus)
    if name == "ray":
        from .ray_backend import RayBackend  # Ray loads only for the backend that runs on it

        return RayBackend(address, num_cpus)
    raise ValueError(f"unknown backend {name!r} (valid: {', '.join(BACKENDS)})")


@dataclass
class RunPlan:
    """One run of a suite: see the module docstring. ``tune_storage``: where Ray Tune keeps
    the studies' state (None: the default beside the store)."""

    suite: Suite
    backend: Backend
    store: Store
    capacity: Capacity
    force: bool = False
    hooks: Hooks = field(default_factory=Hooks)
    tune_storage: str | None = None
    connected: bool = False

    def connect(self) -> None:
        """Start or join the compute, once."""
        if not self.connected:
            self.backend.connect()
            self.connected = True

    def close(self) -> None:
        """Stop every worker; leave the compute as it was found."""
        self.backend.close()


def plan_run(suite: Suite, *, uri: str | None = None, address: str | None = None,
             num_cpus: float | None = None, backend: str | Backend = "ray",
             force: bool = False, hooks: Hooks | None = None,
             capacity: Capacity | None = None, tune_storage: str | None = None) -> RunPlan:
    """The plan of a run of ``suite`` (``capacity``: this machine's, already measured by the
    checks; None: measured here). A cluster's resources are checked before the store is
    touched (and so is a Ray instance this process already joined: its nodes, not this
    machine's, are what the run gets); a local Ray instance is not started here."""
    be = make_backend(backend, address, num_cpus) if isinstance(backend, str) else backend
    connected = False
    if capacity is None:
        attached = getattr(be, "attached", None)
        if address or (attached is not None and attached()):  # join the cluster to see it
            be.connect()
            connected = True
            shape = be.shape()
        elif backend == "ray":  # the local instance this run will start
            shape = local_shape(num_cpus)
        else:  # a backend of this process: its shape starts nothing
            shape = be.shape()
        capacity = measure(shape, suite)
    store = Store(uri, suite.name)  # creates the store and experiment before any worker
    return RunPlan(suite, be, store, capacity, force, hooks or Hooks(), tune_storage,
                   connected)
