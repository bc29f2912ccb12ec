"""A simulated backend: nodes, workers and job phases on a virtual clock.

Only the compute is simulated. The driver, the :class:`~harness.schedule.book.Book`, the
:class:`~harness.schedule.pool.Pool`, the claims ledger and the store run as they do on Ray;
a phase handed to a simulated worker "runs" for the seconds its
:class:`~harness.schedule.costs.CostModel` gives and returns a result shaped like
:meth:`~harness.schedule.worker.PhaseRunner.run`'s (plausible metrics and a small final
batch), so the driver writes real runs and closes them. A suite of thousands of jobs is
scheduled in seconds of real time: the bookkeeping and the store's costs are real, the
hours of training are not.

The clock (:meth:`SimBackend.now`, which the pool and the driver read instead of
``time.monotonic``) moves only in :meth:`SimBackend.wait`: to the next event, or by the
timeout when nothing happens before it. Nothing else takes virtual time (the driver's own
bookkeeping is free), so a makespan here is the schedule's, not the store's.

The model, as Ray places actors:

* a node has CPUs, GPUs and memory; a worker holds its spec's resources from its start until
  it is stopped (several to a GPU: ``gpus: 0.25`` puts four on one), placed on the first alive
  node where it fits (its own node when pinned); one that fits nowhere waits, in order, until
  resources are freed or a node joins;
* a worker starts ``startup_s`` after it was placed (plus ``Faults.slow_start_s`` for a share
  ``Faults.slow_start_share`` of starts);
* a phase takes its cost's seconds; a retried phase starts again from its beginning
  (checkpoints are not modelled: under faults the forecast errs long).

Faults (:class:`Faults`): nodes lost at set times, or at a rate per node-hour (spot
preemption, optionally replaced by a like node some seconds later); nodes joining at set
times; slow starts. A lost node's busy workers give "lost" events (the pool retries their
jobs), its starting ones "start_failed", and an idle one is found dead ("lost") when it is
handed a phase.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import keys
from .backend import Event
from .costs import CostModel
from .resources import ClusterShape, WorkerSpec
from .worker import Payload

__all__ = ["Faults", "SimBackend", "SimNode"]

DEFAULT_STARTUP_S = 5.0  # an actor importing torch: 2–5 s (ray_backend)


@dataclass(frozen=True)
class SimNode:
    """A node's total resources (``memory`` in bytes; infinite: not modelled)."""

    id: str
    cpus: float
    gpus: float = 0.0
    memory: float = math.inf

    def as_dict(self) -> dict:
        return {"id": self.id, "cpus": self.cpus, "gpus": self.gpus, "memory": self.memory}


@dataclass(frozen=True)
class Faults:
    """What goes wrong, on the virtual clock (seconds from the backend's creation)."""

    lose: tuple[tuple[float, str], ...] = ()  # (time, node id): that node is lost then
    join: tuple[tuple[float, SimNode], ...] = ()  # (time, node): it joins then
    preempt_per_hour: float = 0.0  # each node's chance of loss per hour (exponential)
    replace_after_s: float | None = None  # a preempted node's like joins this much later
    slow_start_share: float = 0.0  # share of worker starts that are slow
    slow_start_s: float = 0.0  # … by this many seconds more
    seed: int = 0  # of the draws (preemptions, slow starts)


@dataclass
class _SimWorker:
    spec: WorkerSpec
    state: str = "pending"  # "pending" | "starting" | "idle" | "busy" | "dead"
    node: str | None = None
    token: int = 0  # the event that concerns it now (older ones are stale)
    phase: str = ""
    since: float = 0.0
    payload: Payload | None = None  # the phase it runs


@dataclass
class PhaseStats:
    """What one phase kind did on the virtual clock (for the forecast)."""

    first: float = math.inf  # first phase handed out
    last: float = 0.0  # last phase done
    done: int = 0
    busy_gpu_s: float = 0.0  # Σ seconds × GPUs held, phases that completed
    busy_cpu_s: float = 0.0
    lost_s: float = 0.0  # seconds of phases whose worker was lost under them


class SimBackend:
    """Workers on simulated nodes and a virtual clock (see the module docstring)."""

    max_workers = None

    def __init__(self, nodes: list[SimNode], costs: CostModel, *,
                 startup_s: float = DEFAULT_STARTUP_S, faults: Faults | None = None,
                 metrics: Callable[[Payload, float], dict[str, float]] | None = None):
        if not nodes:
            raise ValueError("a simulated cluster needs at least one node")
        self.costs, self.startup_s = costs, float(startup_s)
        self.faults = faults or Faults()
        self._metrics = metrics or _plausible_metrics
        self._rng = random.Random(self.faults.seed)
        self._t = 0.0
        self._nodes: dict[str, SimNode] = {}
        self._workers: dict[int, _SimWorker] = {}
        self._pending: list[int] = []  # workers waiting for resources, in start order
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self._next = 0
        self.stats: dict[str, PhaseStats] = {}
        self.lost_nodes: list[tuple[float, str]] = []
        self.joined_nodes: list[tuple[float, str]] = []
        for node in nodes:
            self._add_node(node)
        for t, node_id in self.faults.lose:
            self._push(t, "lose", node_id)
        for t, node in self.faults.join:
            self._push(t, "join", node)

    @classmethod
    def single(cls, num_cpus: float | None = None, seconds: float = 1.0) -> SimBackend:
        """One node of ``num_cpus`` CPUs (default: this machine's), every phase ``seconds``."""
        cpus = float(num_cpus or os.cpu_count() or 1)
        return cls([SimNode("sim-0", cpus)], CostModel.constant(seconds, seconds))

    # ── the clock and the events ───────────────────────────────────────────────────────
    def now(self) -> float:
        """The virtual clock, in seconds."""
        return self._t

    def _push(self, t: float, kind: str, what: Any) -> None:
        heapq.heappush(self._heap, (float(t), next(self._seq), kind, what))

    def wait(self, timeout: float) -> list[Event]:
        deadline = self._t + max(0.0, timeout)
        while self._heap and self._heap[0][0] <= deadline:
            t = self._heap[0][0]
            self._t = max(self._t, t)
            out: list[Event] = []
            while self._heap and self._heap[0][0] <= t:
                _, _, kind, what = heapq.heappop(self._heap)
                out += self._happen(kind, what)
            if out:
                return out
        self._t = max(self._t, deadline)
        return []

    def _happen(self, kind: str, what: Any) -> list[Event]:
        if kind == "lose":
            return self._lose(what)
        if kind == "join":
            self._add_node(what)
            self.joined_nodes.append((self._t, what.id))
            self._place_pending()
            return []
        wid, token = what
        w = self._workers.get(wid)
        if w is None or w.token != token:  # stopped, lost, or given other work since
            return []
        if kind == "started":
            w.state, w.since = "idle", self._t
            return [Event("started", wid, info={"pid": 0, "node": w.node, "simulated": True})]
        if kind == "lost":
            return [Event("lost", wid, error="its node was lost (simulated)")]
        payload = w.payload
        assert payload is not None
        seconds = self._t - w.since
        st = self.stats.setdefault(payload.phase, PhaseStats())
        st.done += 1
        st.last = max(st.last, self._t)
        st.busy_gpu_s += seconds * w.spec.gpus
        st.busy_cpu_s += seconds * w.spec.cpus
        w.state = "idle"
        return [Event("done", wid, result=self._result(payload, seconds))]

    # ── nodes ──────────────────────────────────────────────────────────────────────────
    def _add_node(self, node: SimNode) -> None:
        self._nodes[node.id] = node
        rate = self.faults.preempt_per_hour
        if rate > 0:
            self._push(self._t + self._rng.expovariate(rate / 3600.0), "lose", node.id)

    def _lose(self, node_id: str) -> list[Event]:
        node = self._nodes.pop(node_id, None)
        if node is None:
            return []
        self.lost_nodes.append((self._t, node_id))
        out = []
        for wid, w in self._workers.items():
            if w.node != node_id and not (w.state == "pending" and w.spec.node == node_id):
                continue
            if w.state in ("pending", "starting"):
                out.append(Event("start_failed", wid, error=f"node {node_id} lost while the "
                                                            "worker was being placed"))
            elif w.state == "busy":
                self.stats.setdefault(w.phase, PhaseStats()).lost_s += self._t - w.since
                out.append(Event("lost", wid, error=f"node {node_id} lost (simulated)"))
            w.state, w.token = "dead", w.token + 1
        self._pending = [p for p in self._pending if self._workers[p].state == "pending"]
        if self.faults.replace_after_s is not None and self.faults.preempt_per_hour > 0:
            like = SimNode(f"{node.id}+", node.cpus, node.gpus, node.memory)
            self._push(self._t + self.faults.replace_after_s, "join", like)
        return out

    def _held(self) -> dict[str, list[float]]:
        held = {n: [0.0, 0.0, 0.0] for n in self._nodes}
        for w in self._workers.values():
            if w.node in held and w.state in ("starting", "idle", "busy"):
                h = held[w.node]
                h[0] += w.spec.cpus
                h[1] += w.spec.gpus
                h[2] += w.spec.memory or 0
        return held

    def shape(self) -> ClusterShape:
        return ClusterShape([n.as_dict() for n in self._nodes.values()])

    def free(self) -> list[dict]:
        held = self._held()
        return [{"id": n.id, "cpus": n.cpus - held[n.id][0], "gpus": n.gpus - held[n.id][1],
                 "memory": n.memory - held[n.id][2]} for n in self._nodes.values()]

    # ── workers ────────────────────────────────────────────────────────────────────────
    def connect(self) -> None:
        return None

    def start(self, spec: WorkerSpec) -> int:
        wid, self._next = self._next, self._next + 1
        self._workers[wid] = _SimWorker(spec)
        self._pending.append(wid)
        self._place_pending()
        return wid

    def _place_pending(self) -> None:
        """Place waiting workers, in order, where they fit now."""
        if not self._pending:
            return
        free = {n["id"]: n for n in self.free()}
        left = []
        for wid in self._pending:
            w = self._workers[wid]
            node = next((n for nid, n in free.items()
                         if (w.spec.node is None or nid == w.spec.node) and w.spec.fits(n)),
                        None)
            if node is None:
                left.append(wid)
                continue
            node["cpus"] -= w.spec.cpus
            node["gpus"] -= w.spec.gpus
            node["memory"] -= w.spec.memory or 0
            w.state, w.node, w.token = "starting", node["id"], w.token + 1
            delay = self.startup_s
            if self.faults.slow_start_share > 0 and \
                    self._rng.random() < self.faults.slow_start_share:
                delay += self.faults.slow_start_s
            self._push(self._t + delay, "started", (wid, w.token))
        self._pending = left

    def submit(self, worker: int, payload: Payload) -> None:
        w = self._workers[worker]
        w.token += 1
        if w.state == "dead":  # its node went while it was idle: the call fails at once
            self._push(self._t, "lost", (worker, w.token))
            w.state = "dead-told"
            return
        seconds = self.costs.cost(payload.config).phase(payload.phase)
        w.state, w.phase, w.since, w.payload = "busy", payload.phase, self._t, payload
        st = self.stats.setdefault(payload.phase, PhaseStats())
        st.first = min(st.first, self._t)
        self._push(self._t + max(0.0, seconds), "done", (worker, w.token))

    def stop(self, worker: int) -> None:
        w = self._workers.pop(worker, None)
        if w is None:
            return
        if worker in self._pending:
            self._pending.remove(worker)
        if w.state in ("starting", "idle", "busy"):
            self._place_pending()  # its resources are free for whoever waits

    def handle(self, worker: int) -> Any:
        return None

    def close(self) -> None:
        for wid in list(self._workers):
            self.stop(wid)

    # ── results ────────────────────────────────────────────────────────────────────────
    def _result(self, p: Payload, seconds: float) -> dict[str, Any]:
        """A result like :meth:`PhaseRunner.run`'s, with a small final batch."""
        metrics = self._metrics(p, seconds)
        phase_tag = "trained" if p.phase == "train" else "timed"
        cost_key = keys.TRAIN_PHASE_S if p.phase == "train" else keys.PERF_PHASE_S
        tags = {keys.TAG_PHASE: phase_tag, keys.TAG_DEVICE: "simulated"}
        if p.phase == "train":
            tags[keys.TAG_LIVE_PHASE] = keys.LIVE_QUEUED
        return {"ok": True, "status": keys.STATUS_FINISHED, "metrics": metrics,
                "record": {"tags": tags, "metrics": {**metrics, cost_key: seconds},
                           "step": p.config.train.steps},
                "seconds": seconds, "log_seconds": 0.0, "pid": 0}


def _plausible_metrics(p: Payload, seconds: float) -> dict[str, float]:
    """Metrics of the right keys and sizes, the same for the same job (its config's hash)."""
    u = zlib.crc32(repr((p.config.arch, p.config.data, p.config.seed)).encode()) / 2**32
    if p.phase == "train":
        return {keys.EVAL_NLL: 1.0 + u, keys.EVAL_NLL_SE: 0.01, keys.TRAIN_WALL_S: seconds,
                keys.TRAIN_STEPS_DONE: float(p.config.train.steps)}
    return {keys.PERF_SAMPLE_THROUGHPUT: 1e5 * (1 + u), keys.PERF_DENSITY_MS: 1 + u}

