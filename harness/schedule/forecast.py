"""A suite's forecast on a cluster nobody has rented yet (``nfbench plan --forecast``).

The forecast runs the driver's own scheduling (:func:`harness.schedule.driver._rounds`: the
train phase's pool, then the timing phase's, with their planning throttles and worker
start-ups) on a :class:`~harness.schedule.sim_backend.SimBackend` of the given cluster shape,
with each phase's seconds from a :class:`~harness.schedule.costs.CostModel`. It needs no
store: its book (:class:`_Tally`) claims nothing, opens no run and writes nothing, so the
forecast touches no database at all (the cost model only *reads* the store it was fitted
from).

It reports, on the virtual clock:

* the makespan ``M`` (the first worker's start to the last job's end);
* per phase, its span ``S_p`` (train: 0 to its last job's end; timing: from there to ``M``),
  the device-hours its jobs kept busy ``B_p = Σ_jobs seconds × share held / 3600`` and its
  utilisation ``U_p = B_p / (S_p × devices / 3600)`` (GPUs, or CPUs for a CPU-only suite);
* the device-hours rented, ``devices × M / 3600``;
* the longest job (train + timing): no schedule ends before it does;
* the makespan at ½×, 1×, 2× and 4× the nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..suite import Job, Suite
from .book import RunSummary, Task, describe
from .costs import Cost, CostModel, NoCostError
from .progress import Progress
from .sim_backend import DEFAULT_STARTUP_S, Faults, SimBackend, SimNode

__all__ = ["Cluster", "ClusterFileError", "Forecast", "PhaseForecast", "cluster_from_yaml",
           "forecast", "format_forecast"]

SCALES = (0.5, 1.0, 2.0, 4.0)
# (CPUs, GPUs, GiB) of the instance types a cluster.yaml's worker type may name without
# declaring its resources (AWS's published sizes)
INSTANCE_TYPES = {
    "g5.xlarge": (4, 1, 16), "g5.2xlarge": (8, 1, 32), "g5.4xlarge": (16, 1, 64),
    "g5.8xlarge": (32, 1, 128), "g5.12xlarge": (48, 4, 192), "g5.16xlarge": (64, 1, 256),
    "g5.24xlarge": (96, 4, 384), "g5.48xlarge": (192, 8, 768),
    "g6.xlarge": (4, 1, 16), "g6.2xlarge": (8, 1, 32), "g6.12xlarge": (48, 4, 192),
    "g6.48xlarge": (192, 8, 768), "p4d.24xlarge": (96, 8, 1152), "p5.48xlarge": (192, 8, 2048),
}


@dataclass(frozen=True)
class Cluster:
    """``nodes`` alike, each with ``cpus``, ``gpus`` and ``memory_gb`` (None: not limited)."""

    nodes: int
    cpus: float
    gpus: float = 0.0
    memory_gb: float | None = None

    def sim_nodes(self) -> list[SimNode]:
        mem = self.memory_gb * 2**30 if self.memory_gb else math.inf
        return [SimNode(f"node-{i}", self.cpus, self.gpus, mem) for i in range(self.nodes)]

    def scaled(self, factor: float) -> Cluster:
        return Cluster(max(1, int(self.nodes * factor)), self.cpus, self.gpus, self.memory_gb)

    def describe(self) -> str:
        mem = f", {self.memory_gb:g} GiB" if self.memory_gb else ""
        gpus = f", {self.gpus:g} GPU{'s' * (self.gpus != 1)}" if self.gpus else ""
        return f"{self.nodes} node{'s' * (self.nodes != 1)} × ({self.cpus:g} CPUs{gpus}{mem})"


@dataclass(frozen=True)
class PhaseForecast:
    span_s: float
    busy_device_h: float
    utilisation: float
    jobs: int


@dataclass
class Forecast:
    cluster: Cluster
    device: str  # "GPU" or "CPU": what utilisation and device-hours count
    jobs: int
    slots: int  # train workers at once
    makespan_s: float
    phases: dict[str, PhaseForecast]
    rented_device_h: float
    longest: tuple[str, Cost]  # the job (described) and its cost
    scaled_rows: int  # jobs whose cost came from a row of another size
    scaling: list[tuple[int, float, float]] = field(default_factory=list)  # nodes, M, dev-h


class ClusterFileError(ValueError):
    """A cluster.yaml the forecast cannot read a worker shape from (the message says why)."""


def cluster_from_yaml(path: str, worker_type: str | None = None) -> Cluster:
    """The cluster a Ray cluster-launcher file can grow to: ``max_workers`` nodes (the worker
    type's, capped by the file's) of the worker type ``worker_type`` (default: the only type
    that is not the head), each with its declared ``resources`` (CPU, GPU, memory in bytes),
    or else its instance type's size (:data:`INSTANCE_TYPES`)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh) or {}
    types = config.get("available_node_types") or {}
    workers = [n for n in types if n != config.get("head_node_type")]
    if worker_type is None:
        if len(workers) != 1:
            raise ClusterFileError(f"{path}: available_node_types has {len(workers)} worker "
                                   f"types ({', '.join(workers) or 'none'}); name one with "
                                   "--worker-type")
        worker_type = workers[0]
    if worker_type not in workers:
        raise ClusterFileError(f"--worker-type: {path} has no worker type {worker_type!r} "
                               f"(it has: {', '.join(workers) or 'none'})")
    node = types[worker_type] or {}
    count = node.get("max_workers", config.get("max_workers"))
    if config.get("max_workers") is not None and count is not None:
        count = min(int(count), int(config["max_workers"]))
    if not count:
        raise ClusterFileError(f"{path}: available_node_types.{worker_type}.max_workers is "
                               "missing or 0; set it, or give --nodes")
    res = node.get("resources") or {}
    itype = (node.get("node_config") or {}).get("InstanceType", "")
    size = INSTANCE_TYPES.get(itype)
    if "CPU" not in res and size is None:
        raise ClusterFileError(
            f"{path}: available_node_types.{worker_type}: instance type {itype or '?'!r} is "
            "not one the forecast knows and its resources declare no CPU; add "
            "resources: {CPU: …, GPU: …} to the worker type, or give --cpus-per-node and "
            "--gpus-per-node")
    cpus = float(res.get("CPU", size[0] if size else 0))
    gpus = float(res.get("GPU", size[1] if size else 0))
    mem = res.get("memory")
    mem_gb = float(mem) / 2**30 if mem else (float(size[2]) if size else None)
    return Cluster(int(count), cpus, gpus, mem_gb)


class _Tally:
    """The book of a forecast: every task is this driver's, nothing is written anywhere."""

    system_metrics = None

    def __init__(self, suite: Suite):
        self.suite = suite
        self.summary = RunSummary()
        self.deferred: dict[str, Job] = {}

    def task_for(self, job: Job) -> Task:
        return Task(job)

    def claim(self, tasks: list[Task]) -> list[Task]:
        return tasks

    def open(self, task: Task) -> bool:
        task.opened = True
        return True

    def mark_live(self, task: Task, phase: str) -> None:
        return None

    def settle(self, task: Task, result: dict[str, Any], weight: float = 1.0) -> Task | None:
        if task.phase == "train" and self.suite.timing.enabled:
            task.phase = "time"
            return task
        self.summary.finished.append(task.job.key)
        return None

    def lost(self, task: Task, error: str) -> bool:
        task.attempts += 1
        self.summary.retried += 1
        if task.attempts <= self.suite.retries:
            return True
        self.fail(task, error)
        return False

    def fail(self, task: Task, reason: str) -> None:
        self.summary.failed.append(task.job.key)

    def resolve_deferred(self) -> list[Task]:
        return []


def _simulate(suite: Suite, jobs: Sequence[Job], cluster: Cluster, costs: CostModel,
              startup_s: float, faults: Faults | None) -> tuple[SimBackend, _Tally]:
    from .driver import _rounds
    from .resources import train_slots

    be = SimBackend(cluster.sim_nodes(), costs, startup_s=startup_s, faults=faults)
    book = _Tally(suite)
    res = suite.resources
    book.summary.slots = train_slots(be.shape(), res.cpus, res.gpus, len(jobs),
                                     source="the forecast's cluster")
    _rounds(be, book, suite, "sim:", [book.task_for(j) for j in jobs],  # type: ignore[arg-type]
            Progress(lambda _: None, tty=False), None, be.now())
    be.close()
    return be, book


def forecast(suite: Suite, jobs: Sequence[Job], cluster: Cluster, costs: CostModel, *,
             startup_s: float = DEFAULT_STARTUP_S, faults: Faults | None = None,
             scales: Sequence[float] = SCALES) -> Forecast:
    """The forecast of ``jobs`` on ``cluster`` (see the module docstring); raises
    :class:`NoCostError` naming the jobs no cost matches, before simulating anything."""
    missing = costs.missing([j.config for j in jobs])
    if missing:
        seen = {id(c) for c in missing}
        named = [j for j in jobs if id(j.config) in seen]
        shown = "; ".join(f"{describe(j)} ({j.config.train.steps} steps)" for j in named[:3])
        raise NoCostError(f"{len(named)} of {len(jobs)} jobs match no finished run in "
                          f"{costs.source}: {shown}" + (" …" if len(named) > 3 else ""))
    device = "GPU" if suite.resources.gpus > 0 else "CPU"
    per_node = cluster.gpus if device == "GPU" else cluster.cpus

    def one(c: Cluster) -> tuple[SimBackend, _Tally, float]:
        be, book = _simulate(suite, jobs, c, costs, startup_s, faults)
        return be, book, be.now()

    be, book, makespan = one(cluster)
    devices = cluster.nodes * per_node
    phases = {}
    train_end = be.stats["train"].last if "train" in be.stats else 0.0
    for name, st in be.stats.items():
        span = train_end if name == "train" else makespan - train_end
        busy = (st.busy_gpu_s if device == "GPU" else st.busy_cpu_s) / 3600
        util = busy / (span * devices / 3600) if span > 0 and devices > 0 else 0.0
        phases[name] = PhaseForecast(span, busy, util, st.done)
    longest = max(jobs, key=lambda j: (costs.cost(j.config).train_s
                                       + costs.cost(j.config).time_s))
    out = Forecast(cluster, device, len(jobs), book.summary.slots, makespan, phases,
                   devices * makespan / 3600, (describe(longest), costs.cost(longest.config)),
                   sum(costs.cost(j.config).scaled for j in jobs))
    done: set[int] = set()
    for factor in scales:
        c = cluster.scaled(factor)
        if c.nodes in done:
            continue
        done.add(c.nodes)
        m = makespan if c.nodes == cluster.nodes else one(c)[2]
        out.scaling.append((c.nodes, m, c.nodes * per_node * m / 3600))
    return out


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def format_forecast(f: Forecast, out: Callable[[str], None] = print) -> None:
    """The forecast as the lines ``plan --forecast`` prints."""
    d = f.device
    out(f"forecast on {f.cluster.describe()}: {f.jobs:,} jobs, {f.slots:,} train workers at once"
        + (f" ({f.scaled_rows} jobs' train costs scaled from runs of another size)"
           if f.scaled_rows else ""))
    out(f"  makespan      {_hours(f.makespan_s)}")
    out(f"  {d}-hours     {_num(f.rented_device_h)} rented")
    for name in ("train", "time"):
        p = f.phases.get(name)
        if p is None:
            continue
        out(f"  {name:5} phase   {_hours(p.span_s):>10}  {_num(p.busy_device_h)} {d}-h busy  "
            f"utilisation {100 * p.utilisation:.0f} %  ({p.jobs:,} jobs)")
    job, cost = f.longest
    out(f"  longest job   {job}: {_hours(cost.train_s + cost.time_s)} "
        f"(train {_hours(cost.train_s)} + timing {_hours(cost.time_s)})")
    out(f"  {'nodes':>5}  {'makespan':>10}  {d}-hours")
    for nodes, m, dev_h in f.scaling:
        mark = "  ← this cluster" if nodes == f.cluster.nodes else ""
        out(f"  {nodes:>5}  {_hours(m):>10}  {_num(dev_h):>9}{mark}")
