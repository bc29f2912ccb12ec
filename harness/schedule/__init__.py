"""Scheduling with Ray: worker actors per resource slot, retries, the two phases."""

from __future__ import annotations

from .driver import NAMESPACE, RunSummary, run_jobs
from .resources import ResourceError, cluster_shape, train_slots

__all__ = ["NAMESPACE", "ResourceError", "RunSummary", "cluster_shape", "run_jobs", "train_slots"]
