"""Tuning: a suite's studies on Ray Tune, then the job matrix with the tuned jobs.

Above :mod:`harness.schedule`: :mod:`.stages` runs a suite in stages on one
:class:`~harness.schedule.plan.RunPlan` (the studies, then the jobs through the scheduler's
driver); :mod:`.tuner` runs each study (claimed through the suite's ledger, recorded in
MLflow, resumed from Ray Tune's state); :mod:`.trial` is one trial, built by the job's own
code (:mod:`harness.job.run`); :mod:`.callbacks` is what the driver hooks into Ray Tune.
"""

from __future__ import annotations

from .stages import run_suite, stage_jobs
from .tuner import StudyOutcome, default_storage, run_studies

__all__ = ["StudyOutcome", "default_storage", "run_studies", "run_suite", "stage_jobs"]
