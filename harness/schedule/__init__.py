"""Scheduling: the driver's bookkeeping (claims, runs, retries, capacity) behind a small
backend interface; Ray is the backend that ships, an inline one runs in the driver."""

from __future__ import annotations

from .backend import Backend, Event, InlineBackend, WorkerLost
from .book import RunSummary
from .driver import BACKENDS, make_backend, run_jobs
from .pool import WorkerStartError
from .resources import ClusterShape, ResourceError, WorkerSpec, train_slots

__all__ = ["BACKENDS", "Backend", "ClusterShape", "Event", "InlineBackend", "ResourceError",
           "RunSummary", "WorkerLost", "WorkerSpec", "WorkerStartError", "make_backend",
           "run_jobs", "train_slots"]
