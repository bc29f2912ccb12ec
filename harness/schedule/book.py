"""The driver's bookkeeping: claims, runs, results and retries of one suite run (no Ray here).

For each job the book

* claims its key in the suite's ledger before anything else (a key held by another live
  driver is *deferred*: checked again later, and taken over if that driver is gone);
* opens the job's MLflow run, or resumes the unfinished one (the same run, whatever happened
  to earlier workers or drivers);
* settles what a worker returned: a trained job goes on to the timing phase, a finished or
  diverged one is closed, a job that raised is closed failed with its traceback;
* counts workers lost under a job (across phases, and across drivers through the run's tags)
  and retries it from its last checkpoint up to ``retries`` times, then closes it failed;
* on Ctrl-C, closes every open run as killed, so that a re-run resumes them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import keys
from ..suite import Job, Suite
from ..tracking import Store
from ..tracking.claims import Holder, Ledger
from ..tracking.conventions import NOTE, job_note, source_tags
from ..tracking.index import RunRef

__all__ = ["Book", "RunSummary", "Task", "describe"]

CLOCK_MARGIN_MS = 120_000  # how far back a waiting driver's "what changed" reaches: clocks
# of the hosts that write runs may disagree by this much


@dataclass
class Task:
    """One job on its way through the phases of one driver."""

    job: Job
    phase: str = "train"  # "train" | "time"
    run_id: str = ""
    artifact_uri: str | None = None
    attempts: int = 0  # workers lost under it in this driver (the retry budget)
    prior_attempts: int = 0  # … under earlier drivers (from its run's tags)
    started: float = 0.0
    opened: bool = False
    resumed: bool = False  # its run continues an earlier attempt
    params: dict[str, str] | None = None  # the job's config, not yet written to its run


@dataclass
class RunSummary:
    """What a suite run did; ``job_seconds`` and ``log_seconds`` feed the overhead benchmark."""

    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # settled by another driver
    retried: int = 0
    job_seconds: float = 0.0  # Σ in-job time × slots held (timing holds a whole device)
    log_seconds: float = 0.0
    system_metrics_seconds: float = 0.0  # of log_seconds: MLflow's system metrics
    system_metrics_points: int = 0
    driver_log_seconds: float = 0.0  # the driver writing final batches, beside the workers
    claim_seconds: float = 0.0  # the driver claiming keys and opening runs
    wall_seconds: float = 0.0
    startup_seconds: float = 0.0  # from the call to the first job dispatched (worker start-up)
    slots: int = 0
    run_ids: dict[str, str] = field(default_factory=dict)
    studies: list = field(default_factory=list)  # the tuning stage's StudyOutcomes
    experiment_id: str = ""  # the suite's MLflow experiment

    @property
    def ok(self) -> bool:
        return not self.failed and not self.killed


def describe(job: Job) -> str:
    a = job.axes
    rt = "" if a["runtime"] == "eager" else f" · {a['runtime']}"
    return f"{a['arch']} · {a['dataset']} · {a['dequant']}{rt} · seed {a['seed']}"


def _headline(metrics: dict[str, float]) -> str:
    for key in (keys.EVAL_BPD, keys.EVAL_NLL):
        if key in metrics and metrics[key] is not None and math.isfinite(metrics[key]):
            return f"{key} {metrics[key]:.4f}"
    return ""


class Book:
    """Claims, runs, results and retries (see the module docstring)."""

    def __init__(self, store: Store, ledger: Ledger, suite: Suite, summary: RunSummary,
                 existing: dict[str, list[RunRef]], force: bool, event: Callable[[str], None],
                 revision: str = "", system_metrics: float | None = None,
                 gone: set[str] | None = None, read_at: float | None = None):
        self.store, self.ledger, self.suite, self.summary = store, ledger, suite, summary
        self.existing, self.force, self.event = existing, force, event
        # ``existing`` was read at ``read_at`` (wall clock), after the drivers in ``gone``
        # had stopped: a key taken over from one of them needs no second look at its runs
        self.gone = set(gone or ())
        self._seen_ms = int(1000 * (read_at if read_at is not None else time.time()))
        self.revision = revision  # of the code that runs the jobs (MLflow's source tags)
        self.system_metrics = system_metrics  # seconds between samples while jobs train
        self.open_tasks: dict[str, Task] = {}  # runs opened and not yet closed, by job key
        self.deferred: dict[str, Job] = {}  # keys another live driver holds
        self._fresh: set[str] = set()  # keys whose runs must be looked up again (taken over)

    # ── claims ─────────────────────────────────────────────────────────────────────────
    def claim(self, tasks: list[Task]) -> list[Task]:
        """Claim the keys of ``tasks`` not yet held; returns the tasks this driver may run
        (the rest are deferred, or already settled by another driver)."""
        t0 = time.perf_counter()
        todo = [t for t in tasks if t.job.key not in self.ledger.held]
        lost = self.ledger.claim([t.job.key for t in todo]) if todo else {}
        fresh = [t.job.key for t in todo if t.job.key not in lost
                 and self.ledger.took.get(t.job.key, "") not in self.gone
                 and self.ledger.held.get(t.job.key, 0) > 0]
        if fresh:  # taken over from a driver that stopped after the runs were read
            self.existing.update({k: [] for k in fresh})
            self.existing.update(self.store.runs_of(fresh))
            self._fresh.update(fresh)
        mine = []
        for t in tasks:
            if t.job.key in lost:
                self._defer(t.job, lost[t.job.key])
            else:
                mine.append(t)
        self.summary.claim_seconds += time.perf_counter() - t0
        return mine

    def _defer(self, job: Job, holder: Holder | None) -> None:
        if job.key not in self.deferred and holder is not None:
            self.event(f"  ⋯ {describe(job)}: run by another driver ({holder.where}); "
                       "checked again when this driver's own jobs are done")
        self.deferred[job.key] = job

    def resolve_deferred(self) -> list[Task]:
        """Deferred keys whose holder is gone become tasks of this driver (taken over);
        those settled meanwhile are counted; the rest stay deferred.

        Reads what changed, not the whole suite: the runs created or ended since the last
        look (less a margin for clocks), the leases, and the runs of the keys taken over."""
        if not self.deferred:
            return []
        now_ms = int(1000 * time.time())
        for key, refs in self.store.changed_since(self._seen_ms - CLOCK_MARGIN_MS).items():
            if key in self.deferred:
                self.existing[key] = refs
        self._seen_ms = now_ms
        holders = self.ledger.holders(list(self.deferred), fresh=False)
        taken = []
        for key, job in list(self.deferred.items()):
            existing = self.existing.get(key, [])
            status = existing[0].status if existing else None
            holder = holders.get(key)
            if status in keys.DONE_STATUSES and not self.force:
                self._settled_elsewhere(job, status)
                continue
            if holder is not None and holder.alive and holder.driver != self.ledger.me:
                if status in (keys.STATUS_FAILED, keys.STATUS_KILLED):
                    self._settled_elsewhere(job, status)  # closed by its live driver
                continue
            if self.ledger.take(key, holder):
                taken.append(key)
        if not taken:
            return []
        runs = self.store.runs_of(taken)  # what the gone driver left of them
        tasks = []
        for key in taken:
            job = self.deferred.pop(key)
            existing = runs.get(key, [])
            if Store.is_done(existing) and not self.force:
                self.summary.elsewhere.append(key)
                self.event(f"  · {describe(job)}: {existing[0].status} by another driver")
                continue
            self.existing[key] = existing
            self.event(f"  ↪ {describe(job)}: taken over from a driver that is gone")
            tasks.append(self.task_for(job))
        return tasks

    def _settled_elsewhere(self, job: Job, status: str) -> None:
        del self.deferred[job.key]
        self.summary.elsewhere.append(job.key)
        self.event(f"  · {describe(job)}: {status} by another driver")

    # ── runs ───────────────────────────────────────────────────────────────────────────
    def task_for(self, job: Job) -> Task:
        """A job's first task: timing only, when its run was trained by an earlier driver."""
        runs = [] if self.force else self.existing.get(job.key, [])
        phase = runs[0].phase if runs else ""
        timed = phase in ("trained", "timed") and self.suite.timing.enabled
        return Task(job, "time" if timed else "train")

    def open(self, task: Task) -> bool:
        """Create or resume the MLflow run of a claimed task (once); False when the run turns
        out to be settled already (taken over from a driver that finished it)."""
        if task.opened:
            return True
        t0 = time.perf_counter()
        job = task.job
        existing = self.existing.get(job.key)
        if job.key in self._fresh:  # read again when it was claimed
            self._fresh.discard(job.key)
            if Store.is_done(existing) and not self.force:
                self.summary.elsewhere.append(job.key)
                self.summary.claim_seconds += time.perf_counter() - t0
                return False
        jr = self.store.open_run(job, {
            keys.TAG_ARCH: job.arch.name, keys.TAG_ARCH_LABEL: job.arch.display,
            keys.TAG_DATASET: job.dataset.name, keys.TAG_DEQUANT: job.dequant.name,
            keys.TAG_SEED: str(job.seed), keys.TAG_RUNTIME: job.runtime.display,
            keys.TAG_LIVE_PHASE: keys.LIVE_QUEUED,
            **source_tags(self.revision, self.suite.name),
            NOTE: job_note(job.axes, job.config.train.model_dump(), self.suite.name,
                           job.key), **job.tags},
            existing, self.force)
        # a new run's config goes with its first live mark (one call less); a resumed run has
        # it already (unless its driver was killed between opening it and its first mark)
        task.params = None if jr.resumed else job.flat_params()
        if self.force:  # replaced once: a retry resumes the new run, not another new one
            self.existing[job.key] = []
        task.run_id, task.artifact_uri = jr.run_id, jr.artifact_uri
        task.prior_attempts, task.opened, task.resumed = jr.attempts, True, jr.resumed
        self.summary.run_ids[job.key] = jr.run_id
        self.open_tasks[job.key] = task
        self.summary.claim_seconds += time.perf_counter() - t0
        return True

    def mark_live(self, task: Task, phase: str) -> None:
        """``task``'s run has a worker on ``phase`` from now (``nfbench status`` shows it);
        a store that does not answer only costs the news."""
        t0 = time.perf_counter()
        try:
            self.store.mark_live(task.run_id, phase, task.params)
            task.params = None
        except Exception as exc:  # noqa: BLE001
            self.event(f"  ! {describe(task.job)}: could not mark its run live ({exc})")
        self.summary.driver_log_seconds += time.perf_counter() - t0

    def close(self, task: Task, status: str, error: str | None = None,
              record: dict[str, Any] | None = None) -> None:
        """Close the task's run with ``status``, writing its last ``record`` (and its config,
        when no live mark wrote it) in the same call."""
        if not self.ledger.still_mine(task.job.key):
            self.event(f"  ! {describe(task.job)}: another driver took this job over while "
                       "this one could not reach the store; leaving its run to that driver")
            self.open_tasks.pop(task.job.key, None)
            return
        batch = dict(record or {})
        if task.params:
            batch["params"] = {**task.params, **(batch.get("params") or {})}
            task.params = None
        self.store.close_run(task.run_id, status, error,
                             attempts=task.prior_attempts + task.attempts, batch=batch)
        self.open_tasks.pop(task.job.key, None)

    # ── results ────────────────────────────────────────────────────────────────────────
    def settle(self, task: Task, result: dict[str, Any], weight: float = 1.0) -> Task | None:
        """Record what one phase returned; the job's next task (timing), or None."""
        s = self.summary
        s.job_seconds += result.get("seconds", 0.0) * weight
        s.log_seconds += result.get("log_seconds", 0.0)
        s.system_metrics_seconds += result.get("system_metrics_seconds", 0.0)
        s.system_metrics_points += result.get("system_metrics_points", 0)
        if not result["ok"]:
            s.failed.append(task.job.key)
            self.close(task, keys.STATUS_FAILED, result["error"])
            last = result["error"].strip().splitlines()[-1] if result["error"].strip() else "?"
            self.event(f"  ✗ {describe(task.job)} ({task.phase}): {last}")
            return None
        status = result["status"]
        t0 = time.perf_counter()
        if task.phase == "train" and status == keys.STATUS_FINISHED and \
                self.suite.timing.enabled:
            self.store.record(task.run_id, result.get("record"))
            s.driver_log_seconds += time.perf_counter() - t0
            self.event(f"  ✓ {describe(task.job)}: trained {_headline(result['metrics'])} "
                       f"({result['seconds']:.0f} s)")
            task.phase = "time"
            return task
        if task.phase == "time":
            status = keys.STATUS_FINISHED
        self.close(task, status, record=result.get("record"))
        s.driver_log_seconds += time.perf_counter() - t0
        (s.diverged if status == keys.STATUS_DIVERGED else s.finished).append(task.job.key)
        tail = (f"sampling {result['metrics'].get(keys.PERF_SAMPLE_THROUGHPUT, 0):,.0f}/s"
                if task.phase == "time" else _headline(result["metrics"]))
        mark = "✓" if status == keys.STATUS_FINISHED else "!"
        self.event(f"  {mark} {describe(task.job)}: {status} {tail}")
        return None

    def lost(self, task: Task, error: str) -> bool:
        """A worker died under ``task``; True when it is retried (from its last checkpoint)."""
        task.attempts += 1
        self.summary.retried += 1
        if task.attempts <= self.suite.retries:
            self.event(f"  ↻ {describe(task.job)}: worker lost ({error.splitlines()[0][:120]});"
                       f" retry {task.attempts}/{self.suite.retries} from its last checkpoint")
            return True
        self.fail(task, f"its worker died {task.attempts} times; last: {error}")
        return False

    def fail(self, task: Task, reason: str) -> None:
        """Close a task's run failed without running it (again)."""
        self.summary.failed.append(task.job.key)
        if task.opened:
            self.close(task, keys.STATUS_FAILED, reason)
        self.event(f"  ✗ {describe(task.job)}: {reason.splitlines()[0][:200]}; recorded failed")

    def close_all(self, status: str, reason: str) -> list[str]:
        """Close every open run with ``status`` (Ctrl-C: killed; a fatal error: failed)."""
        closed = []
        for task in list(self.open_tasks.values()):
            try:
                self.close(task, status, reason)
                closed.append(task.job.key)
            except Exception:  # the store is unreachable: the run stays 'running'
                pass
        return closed
