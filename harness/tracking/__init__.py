"""MLflow: the store and runs (driver side), the buffered tracker (worker side), and
reading results back in bulk (:mod:`harness.tracking.read`)."""

from __future__ import annotations

from .store import JobRun, Store, resolve_uri
from .writer import MlflowTracker

__all__ = ["JobRun", "MlflowTracker", "Store", "resolve_uri"]
