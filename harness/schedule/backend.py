"""The seam between the scheduler's bookkeeping and whatever runs workers.

A backend starts workers of a :class:`~harness.schedule.resources.WorkerSpec`, hands a worker
one job phase at a time, and reports what happened as :class:`Event` s: a worker started, a
worker could not start, a phase finished, a worker was lost (killed, out of memory, its node
gone). It also says which nodes are alive and what is free on them, so that the bookkeeping
can re-plan from live capacity. Ray is the backend that ships
(:mod:`harness.schedule.ray_backend`); :class:`InlineBackend` runs phases one at a time in
the driver's own process, for debugging (``nfbench run --backend inline``) and for testing
the bookkeeping's fault paths in milliseconds; :mod:`harness.schedule.sim_backend` simulates
nodes and phases on a virtual clock, for the bookkeeping at scale and for forecasts.

A backend may have a clock of its own, ``now()`` (seconds, monotonic): the pool and the driver
read it for their throttles, time-outs and the wall time (a simulated backend's is virtual);
without one they read ``time.monotonic``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .resources import ClusterShape, WorkerSpec
from .worker import Payload, PhaseRunner

__all__ = ["Backend", "Event", "InlineBackend", "WorkerLost"]


@dataclass(frozen=True)
class Event:
    """``kind``: "started" (``info``: where it runs), "start_failed" (``error``; ``fatal``
    when the worker's own set-up raised, so no worker of this kind can ever start), "done"
    (``result``: the phase's result dict) or "lost" (``error``)."""

    kind: str
    worker: int
    result: dict[str, Any] | None = None
    error: str = ""
    fatal: bool = False
    info: dict[str, Any] | None = None


class WorkerLost(Exception):
    """Raised by an inline runner to act out a worker that died under its job."""


class Backend(Protocol):
    max_workers: int | None  # workers it can run at once (None: as many as fit)

    def connect(self) -> None:
        """Start or join the compute (idempotent)."""

    def shape(self) -> ClusterShape:
        """The alive nodes and their total resources."""

    def free(self) -> list[dict]:
        """The alive nodes' free resources: ``{"id", "cpus", "gpus", "memory"}`` each."""

    def start(self, spec: WorkerSpec) -> int:
        """Start a worker (without waiting); its id. A "started" or "start_failed" event
        follows."""

    def submit(self, worker: int, payload: Payload) -> None:
        """Give an idle worker one phase; a "done" or "lost" event follows."""

    def wait(self, timeout: float) -> list[Event]:
        """Events that happened, waiting up to ``timeout`` seconds for the first."""

    def stop(self, worker: int) -> None:
        """Stop a worker (idle, busy, still starting, or already dead)."""

    def handle(self, worker: int) -> Any:
        """The backend's own handle of a worker (a Ray actor), for tests and hooks."""

    def close(self) -> None:
        """Stop every worker; leave the compute as it was found."""


class InlineBackend:
    """One worker at a time in the driver's process: phases run inside :meth:`wait`.

    ``runner(worker_spec, payload) -> result`` replaces the real phase runner (tests act out
    lost workers by raising :class:`WorkerLost`)."""

    max_workers = 1

    def __init__(self, num_cpus: float | None = None,
                 runner: Callable[[WorkerSpec, Payload], dict[str, Any]] | None = None):
        self.cpus = float(num_cpus or os.cpu_count() or 1)
        self._runner = runner
        self._real: dict[int, PhaseRunner] = {}
        self._specs: dict[int, WorkerSpec] = {}
        self._events: collections.deque[Event] = collections.deque()
        self._todo: collections.deque[tuple[int, Payload]] = collections.deque()
        self._next = 0

    def connect(self) -> None:
        return None

    def shape(self) -> ClusterShape:
        return ClusterShape([{"id": "inline", "cpus": self.cpus, "gpus": self._gpus()}])

    def _gpus(self) -> float:
        try:
            import torch

            return float(torch.cuda.device_count())
        except Exception:  # pragma: no cover
            return 0.0

    def free(self) -> list[dict]:
        busy = bool(self._specs)  # serial: one worker, holding the whole machine
        node = self.shape().nodes[0]
        return [{"id": node["id"], "cpus": 0.0 if busy else node["cpus"],
                 "gpus": 0.0 if busy else node["gpus"]}]

    def start(self, spec: WorkerSpec) -> int:
        wid, self._next = self._next, self._next + 1
        self._specs[wid] = spec
        try:
            if self._runner is None:
                self._real[wid] = PhaseRunner(spec.threads)
            self._events.append(Event("started", wid, info={"pid": os.getpid(),
                                                             "node": "inline"}))
        except Exception as exc:
            self._events.append(Event("start_failed", wid, error=repr(exc), fatal=True))
        return wid

    def submit(self, worker: int, payload: Payload) -> None:
        self._todo.append((worker, payload))

    def wait(self, timeout: float) -> list[Event]:
        if not self._events and self._todo:
            wid, payload = self._todo.popleft()
            try:
                if self._runner is not None:
                    result = self._runner(self._specs[wid], payload)
                else:
                    result = self._real[wid].run(payload)
                self._events.append(Event("done", wid, result=result))
            except WorkerLost as exc:
                self._events.append(Event("lost", wid, error=f"worker lost: {exc}"))
        out = list(self._events)
        self._events.clear()
        return out

    def stop(self, worker: int) -> None:
        self._specs.pop(worker, None)
        self._real.pop(worker, None)
        self._todo = collections.deque((w, p) for w, p in self._todo if w != worker)

    def handle(self, worker: int) -> Any:
        return None

    def close(self) -> None:
        for wid in list(self._specs):
            self.stop(wid)
