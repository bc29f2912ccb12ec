"""Scheduling: the driver's bookkeeping (claims, runs, retries, capacity) behind a small
backend interface; Ray is the backend that ships, an inline one runs in the driver."""

from __future__ import annotations

from .backend import Backend, Event, InlineBackend, WorkerLost
from .book import RunSummary
from .driver import run_jobs
from .plan import BACKENDS, Capacity, Hooks, RunPlan, make_backend, plan_run
from .pool import WorkerStartError
from .resources import ClusterShape, ResourceError, WorkerSpec, train_slots

__all__ = ["BACKENDS", "Backend", "Capacity", "ClusterShape", "Event", "Hooks", "InlineBackend",
           "ResourceError", "RunPlan", "RunSummary", "WorkerLost", "WorkerSpec",
           "WorkerStartError", "make_backend", "plan_run", "run_jobs", "train_slots"]
