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

Every step of the loop costs O(1) per event at any size: the pool keeps its idle and starting
workers in sets and a busy count, claims a small window of keys at a time (ordered so that
it touches few shards of the ledger), and opens runs only a few ahead of dispatch, so a
driver with thousands of workers hands its first job out after opening one run, not all of
them.
"""

from __future__ import annotations

import collections
import itertools
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
CLAIM_WINDOW = 256  # keys claimed at once (a few writes to the ledger's shards)
OPEN_AHEAD = 8  # runs opened per step of the loop beyond what idle workers need now


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
        self.ready: collections.deque[Task] = collections.deque()  # opened, not dispatched
        self.idle: dict[int, None] = {}  # idle workers, in the order they became idle
        self.starting: set[int] = set()
        self.busy = 0
        self.next_phase: list[Task] = []
        self.capacity_wait_s = float(os.environ.get("NFBENCH_CAPACITY_WAIT_SECONDS", 600))
        self.start_timeout_s = float(os.environ.get("NFBENCH_START_TIMEOUT_SECONDS", 300))
        self._no_capacity_since: float | None = None
        self._last_plan = -1e9
        self.first_dispatch: float | None = None
        self.counts = {"done": 0, "failed": 0}

    # ── capacity ───────────────────────────────────────────────────────────────────────
    def _left(self) -> int:
        """Tasks not yet handed to a worker."""
        return len(self.ready) + len(self.queue)

    def _busy_or_queued(self) -> int:
        return self._left() + self.busy

    def _state(self, wid: int, w: _Worker, state: str) -> None:
        """Move a worker to ``state``, keeping the idle and starting sets and the busy
        count."""
        if w.state == "busy":
            self.busy -= 1
        self.idle.pop(wid, None)
        self.starting.discard(wid)
        w.state = state
        if state == "busy":
            self.busy += 1
        elif state == "idle":
            self.idle[wid] = None
        elif state == "starting":
            self.starting.add(wid)

    def plan(self, force: bool = False) -> None:
        """Start workers up to what the queue needs and the free resources hold. Nothing is
        started while another worker is still starting (Ray's view of free resources lags
        behind a worker that is being placed)."""
        now = self.now()
        if not force and now - self._last_plan < PLAN_EVERY_S:
            return
        self._last_plan = now
        if self.starting and not force:
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
        self.starting.add(wid)

    def _drop(self, wid: int) -> None:
        self.backend.stop(wid)
        w = self.workers.pop(wid, None)
        if w is not None:
            self._state(wid, w, "gone")

    def _check_capacity(self) -> None:
        """No worker alive or starting, and tasks left: wait for capacity, then give up."""
        if self.workers or not self._left():
            self._no_capacity_since = None
            return
        now = self.now()
        if self._no_capacity_since is None:
            self._no_capacity_since = now
            self.progress.event(
                f"  … no worker can start on the alive nodes for the {self._left()} "
                f"{self.name} task(s) left; waiting up to {self.capacity_wait_s:.0f} s for "
                "capacity (a node joining, or resources freed)")
            return
        if now - self._no_capacity_since >= self.capacity_wait_s:
            reason = (f"no node could run its {self.name} phase: the cluster had no capacity "
                      f"for {self.capacity_wait_s:.0f} s (nodes lost?); run the suite again "
                      "when it has")
            for q in (self.ready, self.queue):
                while q:
                    self.counts["failed"] += 1
                    self.book.fail(q.popleft(), reason)

    # ── the loop ───────────────────────────────────────────────────────────────────────
    def _prepare(self, n: int = OPEN_AHEAD) -> None:
        """Open the runs of up to ``n`` more tasks, never more than the lookahead (twice the
        workers) ahead of dispatch: the next window of keys is claimed first (one claim call
        for up to :data:`CLAIM_WINDOW` keys), tasks whose key another driver holds, or whose
        run turns out settled, leave the queue."""
        limit = self.lookahead or max(2, 2 * len(self.workers))
        n = min(n, limit - len(self.ready))
        while n > 0 and self.queue:
            size = max(n, min(CLAIM_WINDOW, limit))
            window = [self.queue.popleft() for _ in range(min(len(self.queue), size))]
            mine = {id(t) for t in self.book.claim(window)}
            back: list[Task] = []
            for t in window:
                if id(t) not in mine:
                    continue  # deferred: another driver holds its key
                if n <= 0:
                    back.append(t)  # claimed, opened later
                elif self.book.open(t):
                    self.ready.append(t)
                    n -= 1
            self.queue.extendleft(reversed(back))

    def _dispatch(self) -> None:
        for wid in list(self.idle):
            if not self.ready:  # a few at a time: the first worker gets a job at once
                self._prepare()
            if not self.ready:
                return
            w = self.workers[wid]
            task = self.ready.popleft()
            task.started = time.perf_counter()
            self.backend.submit(wid, Payload(self.name, task.job.config, self.uri,
                                             task.run_id, task.artifact_uri,
                                             self.book.system_metrics,
                                             task.resumed or task.attempts > 0))
            self.book.mark_live(task, self.name)
            self._state(wid, w, "busy")
            w.task, w.since = task, self.now()
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
            while self._left() or self.busy:
                self.progress.line(self.name, self.counts["done"], self.busy,
                                   self.counts["failed"], self._left())
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
            self._state(ev.worker, w, "idle")
            w.since, w.where = self.now(), ev.info or {}
            return None
        if ev.kind == "start_failed":
            self._drop(ev.worker)
            if ev.fatal:
                raise WorkerStartError(
                    "a worker could not start, so no job can run; its error:\n" + ev.error)
            self.progress.event(f"  … a {self.name} worker could not be placed "
                                f"({ev.error.splitlines()[0][:120]}); re-planning")
            self._last_plan = -1e9
            return None
        task = w.task
        self._state(ev.worker, w, "idle")
        w.task = None
        if ev.kind == "done":
            assert task is not None
            return task, ev.result or {}, self.weight(w.spec)
        # lost: the worker is gone; its task is retried on whatever is alive
        self._drop(ev.worker)
        self._last_plan = -1e9
        if task is not None and self.book.lost(task, ev.error):
            self.ready.appendleft(task)  # opened: it goes first
        elif task is not None:
            self.counts["failed"] += 1
        return None

    def _retire_idle(self) -> None:
        """Idle workers beyond what is queued release their resources (for other drivers,
        or the next phase)."""
        extra = len(self.idle) - self._left()
        if extra > 0:
            for wid in list(itertools.islice(self.idle, extra)):
                self._drop(wid)

    def _reap_stuck(self) -> None:
        """A worker that has not started after ``start_timeout_s`` waits for resources that
        will not come (its node gone, or held by others): stop it and re-plan."""
        now = self.now()
        for wid in [wid for wid in self.starting
                    if now - self.workers[wid].since > self.start_timeout_s]:
            self._drop(wid)
            self._last_plan = -1e9
