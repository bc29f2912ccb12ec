"""The driver: jobs → workers → MLflow runs, in two phases (train, then time).

*Train phase*: a pool of workers, one per resource slot that is free, each fed the next job
as soon as it is free (:mod:`harness.schedule.pool`). A job whose worker is lost (killed, out
of memory, its node gone) is retried from its last checkpoint, which lives in the run's
artifact store where any node can read it, up to ``retries`` times; then it is recorded
failed. A job that raises is recorded failed with its traceback. The suite always finishes.

*Timing phase*: the train workers are released and one timing worker per device of the nodes
alive at that moment takes the whole device (every CPU of its node, or one whole GPU), so no
measurement shares a device with another running job.

Every job key is claimed before its run is opened (:mod:`harness.tracking.claims`): a second
driver of the same suite runs only the jobs nobody holds, waits for the others, and takes
over those whose driver is gone. Ctrl-C (or SIGTERM) stops cleanly: in-flight runs are
marked killed, workers are released, the claims are freed, and a re-run resumes them.
"""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Callable
from typing import Any

from .. import keys
from ..suite import Job, Suite
from ..tracking import Store
from ..tracking.claims import POLL_OTHERS_S
from ..tracking.system_metrics import interval_setting
from .backend import Backend
from .book import Book, RunSummary, Task
from .plan import Hooks, RunPlan, plan_run
from .pool import Pool, WorkerStartError
from .progress import Progress
from .resources import fit_count, timing_specs, train_spec

__all__ = ["RunSummary", "WorkerStartError", "run_jobs"]

def run_jobs(suite: Suite, jobs: list[Job], *, plan: RunPlan | None = None,
             uri: str | None = None, address: str | None = None, force: bool = False,
             num_cpus: float | None = None, backend: str | Backend = "ray",
             out: Callable[[str], None] = print, tty: bool | None = None,
             on_start: Callable[[dict[str, Any]], None] | None = None) -> RunSummary:
    """Run ``jobs`` of ``suite`` to completion (or Ctrl-C) on ``plan``; see the module
    docstring. Without a plan, one is built from the other arguments
    (:func:`~harness.schedule.plan.plan_run`)."""
    if plan is None:
        plan = plan_run(suite, uri=uri, address=address, num_cpus=num_cpus, backend=backend,
                        force=force, hooks=Hooks(out, tty, on_start))
    be, store, hooks, force = plan.backend, plan.store, plan.hooks, plan.force
    clock = getattr(be, "now", time.monotonic)  # a simulated backend's clock is virtual
    t_wall = clock()
    monitor_s = interval_setting(suite.system_metrics.enabled, suite.system_metrics.interval)
    store.note_jobs(len(jobs))
    summary = RunSummary(experiment_id=store.experiment_id)
    ledger = store.ledger(jobs=len(jobs))
    gone = ledger.gone_drivers()  # before the runs are read: their runs are final in it
    read_at = time.time()
    existing = store.runs_by_key()
    todo: list[Job] = []
    for job in jobs:
        runs = existing.get(job.key, [])
        if not force and Store.is_done(runs):
            summary.skipped.append(job.key)
            summary.run_ids[job.key] = runs[0].run_id
        else:
            todo.append(job)
    if summary.skipped:
        hooks.out(f"{len(summary.skipped)} of {len(jobs)} jobs already have a finished run: "
                  "skipped (--force re-runs them)")
    if not todo:
        plan.close()
        return summary
    previous = None
    progress = Progress(hooks.out, hooks.tty)
    from ..job.environment import code_revision

    book = Book(store, ledger, suite, summary, existing, force, progress.event,
                revision=code_revision(), system_metrics=monitor_s, gone=gone, read_at=read_at)
    try:
        plan.connect()
        # SIGTERM stops the suite as Ctrl-C does; installed after connecting, because
        # ray.init installs a handler of its own that aborts the process
        previous = _stop_on_sigterm()
        summary.slots = plan.capacity.slots(len(todo))
        ledger.start()
        todo = ledger.order(todo, key=lambda j: j.key)  # claims in few writes a window
        _rounds(be, book, suite, store.uri, [book.task_for(j) for j in todo], progress,
                hooks.on_start, t_wall)
    except KeyboardInterrupt:
        killed = book.close_all(keys.STATUS_KILLED, "stopped by the user before it finished")
        summary.killed.extend(killed)
        hooks.out(f"\ninterrupted: {len(killed)} unfinished runs marked killed; "
                  "run the suite again to resume them")
        raise
    except WorkerStartError:
        summary.failed.extend(book.close_all(keys.STATUS_FAILED, "no worker could start"))
        raise
    finally:
        summary.wall_seconds = clock() - t_wall
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        ledger.stop()
        plan.close()
    return summary


def _stop_on_sigterm():
    """Make SIGTERM raise KeyboardInterrupt (the runs are marked killed, the ledger released);
    the previous handler, or None off the main thread (where no handler can be set)."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    except ValueError:
        return None
    return previous


def _rounds(be: Backend, book: Book, suite: Suite, uri: str, tasks: list[Task],
            progress: Progress, on_start, t_wall: float) -> None:
    """Train, then time, this driver's tasks; then those taken over from drivers that are
    gone, until no job of the suite is left to anyone."""
    res = suite.resources
    spec = train_spec(res.cpus, res.gpus, res.memory_gb)

    def weight(s) -> float:  # train slots a timing worker holds
        return float(max(1, fit_count(spec, [{"id": s.node, "cpus": s.cpus, "gpus": s.gpus}])))

    waited = False
    while True:
        train_q = collections.deque(t for t in tasks if t.phase == "train")
        time_q = collections.deque(t for t in tasks if t.phase == "time")
        if train_q:
            pool = Pool(be, book, "train", train_q, lambda: [spec], repeat=True, uri=uri,
                        progress=progress, on_start=on_start, t_wall=t_wall)
            time_q.extend(pool.run())
            _note_startup(book, pool, t_wall)
        if time_q:
            pool = Pool(be, book, "time", time_q,
                        lambda: timing_specs(be.shape(), res.gpus > 0), repeat=False, uri=uri,
                        progress=progress, weight=weight, on_start=on_start, t_wall=t_wall)
            pool.run()
            _note_startup(book, pool, t_wall)
        tasks = book.resolve_deferred()
        while not tasks and book.deferred:
            if not waited:
                progress.event(f"waiting for {len(book.deferred)} job(s) that other drivers "
                               "run; this driver takes over any whose driver stops")
                waited = True
            time.sleep(POLL_OTHERS_S)
            tasks = book.resolve_deferred()
        if not tasks:
            return


def _note_startup(book: Book, pool: Pool, t_wall: float) -> None:
    if not book.summary.startup_seconds and pool.first_dispatch is not None:
        book.summary.startup_seconds = pool.first_dispatch - t_wall
