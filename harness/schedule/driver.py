"""The driver: jobs → Ray worker actors → MLflow runs, in two phases (train, then time).

*Train phase*: a pool of :class:`JobWorker` actors, one per resource slot, each fed the next
job as soon as it is free (results consumed in completion order with ``ray.wait``). A job
whose worker dies (killed, out of memory, node lost) gets a fresh actor and is retried up to
``retries`` times from its last checkpoint, in the same MLflow run; then it is recorded
failed. A job that raises is recorded failed with its traceback. The suite always finishes.

*Timing phase*: the train workers are released and one timing actor per device takes the
whole device (every CPU of its node, or one whole GPU), so no measurement shares a device
with another running job.

Ctrl-C (or SIGTERM) stops cleanly: in-flight runs are marked killed, actors are released, and
a re-run resumes them.
"""

from __future__ import annotations

import collections
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .. import keys
from ..suite import Job, Suite
from ..tracking import Store
from .resources import ClusterShape, ResourceError, cluster_shape, train_slots
from .worker import JobWorker

try:  # a dead node's actor may first surface as "unavailable"
    from ray.exceptions import ActorUnavailableError
except ImportError:  # pragma: no cover
    ActorUnavailableError = RayActorError

__all__ = ["RunSummary", "WorkerStartError", "run_jobs"]

NAMESPACE = "nfbench"


@dataclass
class Task:
    job: Job
    run_id: str
    phase: str  # "train" | "time"
    attempts: int = 0
    started: float = 0.0
    artifact_uri: str | None = None


@dataclass
class RunSummary:
    """What a suite run did; ``job_seconds`` and ``log_seconds`` feed the overhead benchmark."""

    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    retried: int = 0
    job_seconds: float = 0.0  # Σ in-job time × slots held (timing holds a whole device)
    log_seconds: float = 0.0
    driver_log_seconds: float = 0.0  # the driver writing final batches, beside the workers
    wall_seconds: float = 0.0
    startup_seconds: float = 0.0  # from the call to the first job dispatched (actor start-up)
    slots: int = 0
    run_ids: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.killed


class Progress:
    """One status line: done / running / failed / remaining, per phase."""

    def __init__(self, total: int, out=print, tty: bool | None = None):
        self.total, self.out = total, out
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self.last: tuple | None = None

    def line(self, phase: str, done: int, running: int, failed: int, remaining: int) -> None:
        text = (f"[{phase}] done {done} · running {running} · failed {failed} · "
                f"remaining {remaining}  ({time.monotonic() - self.t0:.0f} s)")
        state = (phase, done, running, failed, remaining)
        if not self.tty and state == self.last:
            return  # a log file gets a line per change, a terminal a live line
        self.last = state
        if self.tty:
            sys.stdout.write("\r" + text.ljust(78))
            sys.stdout.flush()
        else:
            self.out(text)

    def event(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r" + " " * 78 + "\r")
        self.out(text)


def _describe(job: Job) -> str:
    a = job.axes
    return f"{a['arch']} · {a['dataset']} · {a['dequant']} · seed {a['seed']}"


def _headline(metrics: dict[str, float]) -> str:
    for key in (keys.EVAL_BPD, keys.EVAL_NLL):
        if key in metrics and metrics[key] is not None and math.isfinite(metrics[key]):
            return f"{key} {metrics[key]:.4f}"
    return ""


def _connect(address: str | None, num_cpus: float | None) -> bool:
    """Start or join Ray; True when this call started a local instance."""
    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in ("NFBENCH_DATA", "NFBENCH_REVISION") if k in os.environ}
    # inside a Ray job (nfbench submit) the job's runtime env already carries them, and Ray
    # refuses a second one that names the same variables
    in_ray_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    runtime_env = {"env_vars": env} if env and not in_ray_job else None
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 runtime_env=runtime_env)
        return False
    ray.init(num_cpus=num_cpus, include_dashboard=False, namespace=NAMESPACE,
             log_to_driver=False, runtime_env=runtime_env)
    return True


class WorkerStartError(RuntimeError):
    """No worker actor could start (the cause is in the message)."""


def run_jobs(suite: Suite, jobs: list[Job], *, uri: str | None = None,
             address: str | None = None, force: bool = False, num_cpus: float | None = None,
             out: Callable[[str], None] = print, tty: bool | None = None,
             on_start: Callable[[dict[str, Any]], None] | None = None) -> RunSummary:
    """Run ``jobs`` of ``suite`` to completion (or Ctrl-C); see the module docstring."""
    store = Store(uri, suite.name)  # creates the store and experiment before any worker
    summary = RunSummary()
    existing = store.runs_by_key()
    todo: list[Job] = []
    for job in jobs:
        runs = existing.get(job.key, [])
        if runs and not force and store.status_of(runs[0]) in keys.DONE_STATUSES:
            summary.skipped.append(job.key)
            summary.run_ids[job.key] = runs[0].info.run_id
        else:
            todo.append(job)
    if summary.skipped:
        out(f"{len(summary.skipped)} of {len(jobs)} jobs already have a finished run: skipped "
            "(--force re-runs them)")
    if not todo:
        return summary
    started_ray = _connect(address, num_cpus)
    t_wall = time.monotonic()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    except ValueError:  # not the main thread
        previous = None
    state = _Run(store, suite, summary, out, tty, on_start)
    state.t_wall = t_wall
    try:
        shape = cluster_shape()
        res = suite.resources
        slots = train_slots(shape, res.cpus, res.gpus, len(todo))
        summary.slots = slots
        state.train_and_time(todo, existing, force, shape, slots)
    except KeyboardInterrupt:
        state.interrupt()
        raise
    except WorkerStartError:
        state.abandon("no worker could start")
        raise
    finally:
        summary.wall_seconds = time.monotonic() - t_wall
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        state.release()
        if started_ray:
            ray.shutdown()
    return summary


class _Run:
    def __init__(self, store: Store, suite: Suite, summary: RunSummary, out, tty, on_start):
        self.store, self.suite, self.summary, self.out = store, suite, summary, out
        self.tty, self.on_start = tty, on_start
        self.actors: list[Any] = []
        self.make_actor: Callable[[int], Any] = self._train_actor
        self.inflight: dict[Any, tuple[int, Task]] = {}  # ObjectRef → (slot, task)
        self.open: dict[str, Task] = {}  # runs opened and not yet closed, by run id

    def _open(self, task: Task) -> None:
        """Create or resume the MLflow run of ``task`` (once)."""
        if task.run_id:
            return
        job = task.job
        jr = self.store.open_run(job, {
            keys.TAG_ARCH: job.arch.name, keys.TAG_ARCH_LABEL: job.arch.display,
            keys.TAG_DATASET: job.dataset.name, keys.TAG_DEQUANT: job.dequant.name,
            keys.TAG_SEED: str(job.seed)}, self._existing.get(job.key), self._force,
            params=job.flat_params())
        task.run_id, task.artifact_uri = jr.run_id, jr.artifact_uri
        self.summary.run_ids[job.key] = jr.run_id
        self.open[task.run_id] = task

    def close(self, task: Task, status: str, error: str | None = None) -> None:
        self.store.close_run(task.run_id, status, error, attempts=task.attempts)
        self.open.pop(task.run_id, None)

    # ── actors ──────────────────────────────────────────────────────────────────────
    def _train_actor(self, slot: int):
        res = self.suite.resources
        opts: dict[str, Any] = {"num_cpus": res.cpus, "num_gpus": res.gpus,
                                "name": f"{self.suite.name}-worker-{slot}-{time.monotonic_ns()}"}
        if res.memory_gb:
            opts["memory"] = int(res.memory_gb * 2**30)
        return JobWorker.options(**opts).remote(max(1, math.floor(res.cpus)))

    def _timing_specs(self, shape: ClusterShape) -> list[tuple[dict[str, Any], int]]:
        """One timing worker per device: a whole GPU, or every CPU of a CPU node."""
        specs = []
        for node in shape.nodes:
            strategy = NodeAffinitySchedulingStrategy(node["id"], soft=False)
            if self.suite.resources.gpus > 0:
                gpus = int(node["gpus"])
                cpus = node["cpus"] / gpus if gpus else 0
                for _ in range(gpus):
                    specs.append(({"num_cpus": cpus, "num_gpus": 1,
                                   "scheduling_strategy": strategy}, max(1, int(cpus))))
            elif node["cpus"] >= 1:
                specs.append(({"num_cpus": node["cpus"], "scheduling_strategy": strategy},
                              max(1, int(node["cpus"]))))
        if not specs:
            raise ResourceError("no node can host a timing worker")
        return specs

    def _check_started(self, refs: list, timeout: float = 600) -> None:
        """Wait until every actor is up; one that cannot start (an import error, a package
        missing on a node) stops the suite with its cause instead of failing every job."""
        try:
            ray.get(refs, timeout=timeout)
        except RayActorError as exc:
            raise WorkerStartError(
                "a worker could not start, so no job can run; its error:\n"
                f"{str(exc)[-3000:]}") from None

    def release(self) -> None:
        for actor in self.actors:
            if actor is not None:
                try:
                    ray.kill(actor)
                except Exception:
                    pass
        self.actors = []

    # ── phases ──────────────────────────────────────────────────────────────────────
    def train_and_time(self, todo: list[Job], existing: dict, force: bool,
                       shape: ClusterShape, slots: int) -> None:
        timed_before = []
        for job in todo:
            runs = [] if force else existing.get(job.key, [])
            phase = runs[0].data.tags.get("nfbench.phase", "") if runs else ""
            timed_before.append(phase in ("trained", "timed") and self.suite.timing.enabled)
        n_train = timed_before.count(False)
        started = []
        if n_train:  # actors start (import torch, …) while the driver opens the runs
            self.make_actor = self._train_actor
            self.actors = [self._train_actor(i) for i in range(min(slots, n_train))]
            started = [a.where.remote() for a in self.actors]
        train_q: collections.deque[Task] = collections.deque()
        time_q: collections.deque[Task] = collections.deque()
        self._existing, self._force = existing, force
        for job, timed in zip(todo, timed_before):
            task = Task(job, "", "time" if timed else "train")
            (time_q if timed else train_q).append(task)
        # runs of the first wave now (while the actors start); the others are opened in the
        # driver's idle time, a few ahead of need (so nothing waits on MLflow)
        for task in list(time_q) + list(train_q)[: 2 * max(1, len(self.actors))]:
            self._open(task)
        if train_q:
            self._check_started(started)
            self._drain("train", train_q, time_q, slots_per_task=1)
            self.release()
        if time_q:
            specs = self._timing_specs(shape)
            self.make_actor = lambda i: JobWorker.options(**specs[i][0]).remote(specs[i][1])
            self.actors = [self.make_actor(i) for i in range(len(specs))]
            self._check_started([a.where.remote() for a in self.actors])
            weight = max(1, slots // len(self.actors))
            self._drain("time", time_q, None, slots_per_task=weight)
            self.release()

    def _drain(self, phase: str, queue: collections.deque, next_q, slots_per_task: int) -> None:
        """Feed ``queue`` to the actors; a freed actor gets its next job before the driver
        does the bookkeeping of the one it finished (so workers never wait on MLflow)."""
        s = self.summary
        progress = Progress(len(queue), self.out, self.tty)
        counts = {"done": 0, "failed": 0}
        free = list(range(len(self.actors)))
        uri = self.store.uri

        def dispatch() -> None:
            while queue and free:
                slot = free.pop(0)
                task = queue.popleft()
                self._open(task)
                task.started = time.perf_counter()
                ref = self.actors[slot].run.remote(phase, task.job.config, uri, task.run_id,
                                                   task.artifact_uri)
                self.inflight[ref] = (slot, task)
                if self.on_start:
                    self.on_start({"phase": phase, "slot": slot, "key": task.job.key,
                                   "actor": self.actors[slot], "run_id": task.run_id})

        dispatch()
        if not s.startup_seconds:
            s.startup_seconds = time.monotonic() - self.t_wall
        while queue or self.inflight:
            progress.line(phase, counts["done"], len(self.inflight), counts["failed"], len(queue))
            for task in list(queue)[: len(self.actors)]:  # the next wave's runs, while waiting
                self._open(task)
            ready, rest = ray.wait(list(self.inflight), num_returns=1, timeout=1.0)
            if not ready:
                continue
            if rest:  # whatever else finished meanwhile, without waiting
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            finished: list[tuple[Task, dict[str, Any] | BaseException]] = []
            for ref in ready:
                slot, task = self.inflight.pop(ref)
                try:
                    finished.append((task, ray.get(ref, timeout=60)))
                except (RayActorError, ActorUnavailableError, GetTimeoutError) as exc:
                    self._replace(slot)
                    finished.append((task, exc))
                free.append(slot)
            for task, result in finished:  # retries go first in the queue
                if isinstance(result, BaseException):
                    task.attempts += 1
                    s.retried += 1
                    if task.attempts <= self.suite.retries:
                        queue.appendleft(task)
            dispatch()
            for task, result in finished:
                self._settle(phase, task, result, next_q, slots_per_task, progress, counts)
        progress.line(phase, counts["done"], 0, counts["failed"], 0)
        if progress.tty:
            sys.stdout.write("\n")

    def _settle(self, phase: str, task: Task, result, next_q, slots_per_task: int,
                progress: Progress, counts: dict[str, int]) -> None:
        """Record what one finished (or dead) task means for its run."""
        s = self.summary
        if isinstance(result, BaseException):
            if task.attempts <= self.suite.retries:
                progress.event(f"  ↻ {_describe(task.job)}: worker died "
                               f"({type(result).__name__}); retry {task.attempts}/"
                               f"{self.suite.retries} from its last checkpoint")
            else:
                counts["failed"] += 1
                s.failed.append(task.job.key)
                self.close(task, keys.STATUS_FAILED,
                           f"worker died {task.attempts} times; last: {result}")
                progress.event(f"  ✗ {_describe(task.job)}: worker died "
                               f"{task.attempts} times; recorded failed")
            return
        s.job_seconds += result["seconds"] * slots_per_task
        s.log_seconds += result.get("log_seconds", 0.0)
        if result["ok"]:
            t0 = time.perf_counter()
            self.store.record(task.run_id, result.get("record"))
            s.driver_log_seconds += time.perf_counter() - t0
        if not result["ok"]:
            counts["failed"] += 1
            s.failed.append(task.job.key)
            self.close(task, keys.STATUS_FAILED, result["error"])
            last = result["error"].strip().splitlines()[-1]
            progress.event(f"  ✗ {_describe(task.job)} ({phase}): {last}")
            return
        counts["done"] += 1
        status = result["status"]
        if phase == "train" and status == keys.STATUS_FINISHED and \
                self.suite.timing.enabled and next_q is not None:
            next_q.append(Task(task.job, task.run_id, "time", artifact_uri=task.artifact_uri))
            progress.event(f"  ✓ {_describe(task.job)}: trained "
                           f"{_headline(result['metrics'])} ({result['seconds']:.0f} s)")
            return
        if phase == "time":
            status = keys.STATUS_FINISHED
        self.close(task, status)
        (s.diverged if status == keys.STATUS_DIVERGED else s.finished).append(task.job.key)
        tail = (f"sampling {result['metrics'].get(keys.PERF_SAMPLE_THROUGHPUT, 0):,.0f}/s"
                if phase == "time" else _headline(result["metrics"]))
        mark = "✓" if status == keys.STATUS_FINISHED else "!"
        progress.event(f"  {mark} {_describe(task.job)}: {status} {tail}")

    def _replace(self, slot: int) -> None:
        old = self.actors[slot]
        try:
            ray.kill(old)
        except Exception:
            pass
        self.actors[slot] = self.make_actor(slot)

    def abandon(self, why: str) -> None:
        for task in list(self.open.values()):
            try:
                self.close(task, keys.STATUS_FAILED, why)
                self.summary.failed.append(task.job.key)
            except Exception:
                pass

    def interrupt(self) -> None:
        """Ctrl-C: mark every in-flight run killed; a re-run resumes them."""
        for task in list(self.open.values()):
            try:
                self.close(task, keys.STATUS_KILLED, "stopped by the user before it finished")
                self.summary.killed.append(task.job.key)
            except Exception:
                pass
        self.inflight.clear()
        self.out(f"\ninterrupted: {len(self.summary.killed)} unfinished runs marked killed; "
                 "run the suite again to resume them")
