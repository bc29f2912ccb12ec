"""A suite run in stages: tuning (the suite's studies on Ray Tune), then the job matrix.

Without a ``tune:`` section this is :func:`~harness.schedule.driver.run_jobs`. With one, the
studies run first (:func:`~harness.schedule.tuning.run_studies`) on the same Ray instance;
each finished study's best values become jobs over the suite's seeds
(:func:`~harness.suite.studies.tuned_jobs`, labelled ``tuned (N trials)``), which join the
matrix's own jobs (the untuned defaults, unless ``tune.defaults`` is false) and run with the
driver's usual claims, retries and two phases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..suite import Job, Suite
from ..suite.studies import Study, space_for, tuned_jobs
from ..tracking import Store
from .book import RunSummary
from .driver import make_backend, run_jobs
from .resources import train_slots

__all__ = ["run_suite", "stage_jobs"]


def stage_jobs(suite: Suite, jobs: list[Job], outcomes) -> list[Job]:
    """The job matrix after tuning: the defaults (unless ``tune.defaults`` is false), then
    the tuned jobs of every study that found finite best values."""
    keep = jobs if suite.tune is None or suite.tune.defaults else [
        j for j in jobs if space_for(suite.tune, j.arch) is None]
    tuned = [j for o in outcomes if o.values is not None
             for j in tuned_jobs(o.study, o.values, o.trials)]
    return keep + tuned


def run_suite(suite: Suite, jobs: list[Job], studies: list[Study], *, uri: str | None = None,
              address: str | None = None, force: bool = False, num_cpus: float | None = None,
              backend: str = "ray", out: Callable[[str], None] = print,
              tty: bool | None = None, tune_storage: str | None = None,
              on_start: Callable[[dict[str, Any]], None] | None = None,
              on_result: Callable[[str, dict], None] | None = None) -> RunSummary:
    """Tune ``studies``, then run ``jobs`` and the tuned jobs (see the module docstring);
    ``on_start`` / ``on_result``: hooks on a job's start and a trial's result."""
    if not studies:
        return run_jobs(suite, jobs, uri=uri, address=address, force=force, num_cpus=num_cpus,
                        backend=backend, out=out, tty=tty, on_start=on_start)
    if backend != "ray":
        raise ValueError("a suite with a tune: section runs its trials on Ray Tune; "
                         "drop --backend inline")
    from .tuning import run_studies

    be = make_backend("ray", address, num_cpus)
    try:
        be.connect()
        res = suite.resources
        train_slots(be.shape(), res.cpus, res.gpus, len(studies))
        store = Store(uri, suite.name)
        outcomes = run_studies(suite, studies, store=store, storage=tune_storage, force=force,
                               out=out, on_result=on_result)
    except BaseException:
        be.close()
        raise
    summary = run_jobs(suite, stage_jobs(suite, jobs, outcomes), uri=store.uri, force=force,
                       backend=be, out=out, tty=tty, on_start=on_start)
    summary.studies = outcomes
    return summary
