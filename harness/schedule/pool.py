"""One phase of a suite run: a pool of workers fed from a queue, re-planned from live capacity.

The pool starts as many workers as the alive nodes' *free* resources hold (never more than
there are tasks), hands each idle worker the next task (a retried task goes first), and
consumes results in completion order. A freed worker gets its next task before the driver
does the bookkeeping of the one it finished, so workers never wait on MLflow.

When a worker is lost, the pool does not ask for a like-for-like replacement (on a cluster
that lost a node, the survivors' CPUs are held by the pool's own workers, and the replacement
would wait for ever): it re-plans from what is free now, and the retried task goes to the
next idle worker. A node that joins adds workers the same way. With no worker left and none
that can start, the pool waits ``capacity_wait_s`` for capacity to come back, then fails the
remaining tasks, so the suite always ends. No Ray here: the backend does the rest.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backend import Backend, Event
from .book import Book, Task
from .progress import Progress
from .resources import WorkerSpec, fit_count
from .worker import Payload

__all__ = ["Pool", "WorkerStartError"]

PLAN_EVERY_S = 2.0


class WorkerStartError(RuntimeError):
    """No worker could start (the cause is in the message)."""


@dataclass
class _Worker:
    spec: WorkerSpec
    state: str = "starting"  # "starting" | "idle" | "busy"
    since: float = 0.0  # on the backend's clock
    task: Task | None = None
    where: dict[str, Any] = field(default_factory=dict)  # from its "started" event


class Pool:
    """Runs one phase (``name``) of ``queue`` through ``backend`` (see the module docstring).

    ``specs()`` gives the worker shapes the phase may use from the nodes alive now: one shape
    repeated (train: each worker holds one job's resources), or one pinned shape per device
    (time: each worker holds a whole device)."""

    def __init__(self, backend: Backend, book: Book, name: str, queue: collections.deque,
                 specs: Callable[[], list[WorkerSpec]], *, repeat: bool, uri: str,
                 progress: Progress, weight: Callable[[WorkerSpec], float] = lambda s: 1.0,
                 on_start: Callable[[dict[str, Any]], None] | None = None,
                 lookahead: int | None = None, t_wall: float | None = None):
        self.backend, self.book, self.name, self.queue = backend, book, name, queue
        self.specs, self.repeat, self.uri, self.progress = specs, repeat, uri, progress
        self.weight, self.on_start = weight, on_start
        self.lookahead = lookahead
        # the backend's clock when it has one (a simulated backend's is virtual)
        self.now: Callable[[], float] = getattr(backend, "now", time.monotonic)
        self.t_wall = t_wall if t_wall is not None else self.now()
        self.workers: dict[int, _Worker] = {}
        self.next_phase: list[Task] = []
        self.capacity_wait_s = float(os.environ.get("NFBENCH_CAPACITY_WAIT_SECONDS", 600))
        self.start_timeout_s = float(os.environ.get("NFBENCH_START_TIMEOUT_SECONDS", 300))
        self._no_capacity_since: float | None = None
        self._last_plan = -1e9
        self.first_dispatch: float | None = None
        self.counts = {"done": 0, "failed": 0}

    # ── capacity ───────────────────────────────────────────────────────────────────────
    def _busy_or_queued(self) -> int:
        return len(self.queue) + sum(1 for w in self.workers.values() if w.state == "busy")

    def plan(self, force: bool = False) -> None:
        """Start workers up to what the queue needs and the free resources hold. Nothing is
        started while another worker is still starting (Ray's view of free resources lags
        behind a worker that is being placed)."""
        now = self.now()
        if not force and now - self._last_plan < PLAN_EVERY_S:
            return
        self._last_plan = now
        if any(w.state == "starting" for w in self.workers.values()) and not force:
            return
        want = self._busy_or_queued() - len(self.workers)
        if self.backend.max_workers is not None:
            want = min(want, self.backend.max_workers - len(self.workers))
        if want <= 0:
            return
        specs = self.specs()
        free = [dict(n) for n in self.backend.free()]
        if self.repeat:
            if not specs:
                return
            n = min(want, fit_count(specs[0], free))
            for _ in range(n):
                self._start(specs[0])
            return
        used = {w.spec for w in self.workers.values()}
        for spec in specs:
            if want <= 0:
                break
            if spec in used:
                continue
            node = next((n for n in free if n["id"] == spec.node), None)
            if node is not None and spec.fits(node):
                node["cpus"] -= spec.cpus
                node["gpus"] -= spec.gpus
                self._start(spec)
                want -= 1

    def _start(self, spec: WorkerSpec) -> None:
        wid = self.backend.start(spec)
        self.workers[wid] = _Worker(spec, since=self.now())

    def _drop(self, wid: int) -> None:
        self.backend.stop(wid)
        self.workers.pop(wid, None)

    def _check_capacity(self) -> None:
        """No worker alive or starting, and tasks left: wait for capacity, then give up."""
        if self.workers or not self.queue:
            self._no_capacity_since = None
            return
        now = self.now()
        if self._no_capacity_since is None:
            self._no_capacity_since = now
            self.progress.event(
                f"  … no worker can start on the alive nodes for the {len(self.queue)} "
                f"{self.name} task(s) left; waiting up to {self.capacity_wait_s:.0f} s for "
                "capacity (a node joining, or resources freed)")
            return
        if now - self._no_capacity_since >= self.capacity_wait_s:
            reason = (f"no node could run its {self.name} phase: the cluster had no capacity "
                      f"for {self.capacity_wait_s:.0f} s (nodes lost?); run the suite again "
                      "when it has")
            while self.queue:
                self.counts["failed"] += 1
                self.book.fail(self.queue.popleft(), reason)

    # ── the loop ───────────────────────────────────────────────────────────────────────
    def _prepare(self) -> None:
        """Claim and open the runs of the next few tasks (ahead of need, in the driver's idle
        time); tasks whose key another driver holds leave the queue."""
        n = self.lookahead or max(2, 2 * len(self.workers))
        window = [t for t in list(self.queue)[:n] if not t.opened]
        if not window:
            return
        mine = {id(t) for t in self.book.claim(window)}
        for t in window:
            if id(t) not in mine or not self.book.open(t):
                self.queue.remove(t)

    def _dispatch(self) -> None:
        for wid, w in self.workers.items():
            if w.state != "idle":
                continue
            while self.queue and not self.queue[0].opened:
                self._prepare()
            if not self.queue:
                return
            task = self.queue.popleft()
            task.started = time.perf_counter()
            self.backend.submit(wid, Payload(self.name, task.job.config, self.uri,
                                             task.run_id, task.artifact_uri,
                                             self.book.system_metrics,
                                             task.resumed or task.attempts > 0))
            self.book.mark_live(task, self.name)
            w.state, w.task, w.since = "busy", task, self.now()
            if self.first_dispatch is None:
                self.first_dispatch = self.now()
            if self.on_start:
                self.on_start({"phase": self.name, "worker": wid, "key": task.job.key,
                               "actor": self.backend.handle(wid), "run_id": task.run_id,
                               "node": w.where.get("node")})

    def run(self) -> list[Task]:
        """Run the phase to its end; the tasks that go on to the next phase."""
        self._prepare()
        self.plan(force=True)
        try:
            while self.queue or any(w.state == "busy" for w in self.workers.values()):
                self.progress.line(self.name, self.counts["done"],
                                   sum(w.state == "busy" for w in self.workers.values()),
                                   self.counts["failed"], len(self.queue))
                self._prepare()
                self._dispatch()
                events = self.backend.wait(timeout=1.0)
                settle: list[tuple[Task, dict[str, Any], float]] = []
                for ev in events:
                    item = self._on_event(ev)
                    if item is not None:
                        settle.append(item)
                self._retire_idle()
                self._dispatch()  # freed workers first, then the bookkeeping
                for task, result, weight in settle:
                    nxt = self.book.settle(task, result, weight)
                    self.counts["failed" if not result["ok"] else "done"] += 1
                    if nxt is not None:
                        self.next_phase.append(nxt)
                self._reap_stuck()
                self.plan()
                self._check_capacity()
        finally:
            for wid in list(self.workers):
                self._drop(wid)
        self.progress.line(self.name, self.counts["done"], 0, self.counts["failed"], 0)
        self.progress.end()
        return self.next_phase

    def _on_event(self, ev: Event) -> tuple[Task, dict[str, Any], float] | None:
        w = self.workers.get(ev.worker)
        if w is None:  # a worker already dropped
            return None
        if ev.kind == "started":
            w.state, w.since, w.where = "idle", self.now(), ev.info or {}
            return None
        if ev.kind == "start_failed":
            self.workers.pop(ev.worker)
            self.backend.stop(ev.worker)
            if ev.fatal:
                raise WorkerStartError(
                    "a worker could not start, so no job can run; its error:\n" + ev.error)
            self.progress.event(f"  … a {self.name} worker could not be placed "
                                f"({ev.error.splitlines()[0][:120]}); re-planning")
            self._last_plan = -1e9
            return None
        task = w.task
        w.state, w.task = "idle", None
        if ev.kind == "done":
            assert task is not None
            return task, ev.result or {}, self.weight(w.spec)
        # lost: the worker is gone; its task is retried on whatever is alive
        self._drop(ev.worker)
        self._last_plan = -1e9
        if task is not None and self.book.lost(task, ev.error):
            self.queue.appendleft(task)
        elif task is not None:
            self.counts["failed"] += 1
        return None

    def _retire_idle(self) -> None:
        """Idle workers beyond what is queued release their resources (for other drivers,
        or the next phase)."""
        idle = [wid for wid, w in self.workers.items() if w.state == "idle"]
        extra = len(idle) - len(self.queue)
        for wid in idle[: max(0, extra)]:
            self._drop(wid)

    def _reap_stuck(self) -> None:
        """A worker that has not started after ``start_timeout_s`` waits for resources that
        will not come (its node gone, or held by others): stop it and re-plan."""
        now = self.now()
        for wid, w in list(self.workers.items()):
            if w.state == "starting" and now - w.since > self.start_timeout_s:
                self._drop(wid)
                self._last_plan = -1e9
