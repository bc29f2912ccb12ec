"""A suite run in stages: tuning (the suite's studies on Ray Tune), then the job matrix.

Without a ``tune:`` section this is :func:`~harness.schedule.driver.run_jobs`. With one, the
studies run first (:func:`~harness.tune.tuner.run_studies`) on the same Ray instance;
each finished study's best values become jobs over the suite's seeds
(:func:`~harness.suite.studies.tuned_jobs`, labelled ``tuned (N trials)``), which join the
matrix's own jobs (the untuned defaults, unless ``tune.defaults`` is false) and run with the
driver's usual claims, retries and two phases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..schedule.backend import Backend
from ..schedule.book import RunSummary
from ..schedule.driver import run_jobs
from ..schedule.plan import Hooks, RunPlan, plan_run
from ..suite import Job, Suite
from ..suite.studies import Study, space_for, tuned_jobs
from .tuner import run_studies

__all__ = ["run_suite", "stage_jobs"]


def stage_jobs(suite: Suite, jobs: list[Job], outcomes) -> list[Job]:
    """The job matrix after tuning: the defaults (unless ``tune.defaults`` is false), then
    the tuned jobs of every study that found finite best values."""
    keep = jobs if suite.tune is None or suite.tune.defaults else [
        j for j in jobs if space_for(suite.tune, j.arch) is None]
    tuned = [j for o in outcomes if o.values is not None
             for j in tuned_jobs(o.study, o.values, o.trials)]
    return keep + tuned


def run_suite(suite: Suite, jobs: list[Job], studies: list[Study], *,
              plan: RunPlan | None = None, uri: str | None = None, address: str | None = None,
              force: bool = False, num_cpus: float | None = None,
              backend: str | Backend = "ray", out: Callable[[str], None] = print,
              tty: bool | None = None, tune_storage: str | None = None,
              on_start: Callable[[dict[str, Any]], None] | None = None,
              on_result: Callable[[str, dict], None] | None = None) -> RunSummary:
    """Tune ``studies``, then run ``jobs`` and the tuned jobs (see the module docstring), on
    ``plan``; without one, a plan is built from the other arguments
    (:func:`~harness.schedule.plan.plan_run`)."""
    if plan is None:
        plan = plan_run(suite, uri=uri, address=address, num_cpus=num_cpus, backend=backend,
                        force=force, hooks=Hooks(out, tty, on_start, on_result),
                        tune_storage=tune_storage)
    if not studies:
        return run_jobs(suite, jobs, plan=plan)
    try:
        plan.connect()
        outcomes = run_studies(suite, studies, plan)
    except BaseException:
        plan.close()
        raise
    summary = run_jobs(suite, stage_jobs(suite, jobs, outcomes), plan=plan)
    summary.studies = outcomes
    return summary
