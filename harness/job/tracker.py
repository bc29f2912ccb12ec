"""What a job needs from the store it writes into: the :class:`Tracker` protocol.

The job layer owns this interface and knows nothing of MLflow; the tracking layer implements
it (:class:`harness.tracking.MlflowTracker`) and the scheduler hands one to each job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["NullTracker", "Point", "Tracker"]

#: a curve point: ``(step, timestamp in ms, key, value)``
Point = tuple[int, int, str, float]


class Tracker(Protocol):
    """Writes into one run: batched metrics and curve points, tags, params, artifacts."""

    seconds: float  # time spent talking to the store (for the overhead benchmark)

    def record(self, params: dict[str, Any] | None = None, tags: dict[str, Any] | None = None,
               metrics: dict[str, float] | None = None, step: int = 0,
               points: list[Point] | None = None) -> None:
        """Params, tags, metrics (at ``step``) and curve points, in as few calls as may be."""

    def log_points(self, points: list[Point]) -> None:
        """Buffer curve points with their own timestamps (a point sent twice is stored once)."""

    def flush(self) -> None:
        """Send what is buffered."""

    def log_file(self, local: Path, artifact_dir: str | None = None) -> None:
        """Upload one file as an artifact (into ``artifact_dir``)."""

    def log_dir(self, local: Path) -> None:
        """Upload every file under ``local``, keeping the relative paths."""

    def log_json(self, obj: Any, name: str) -> None:
        """``obj`` as the JSON artifact ``name`` (a path inside the run's artifacts)."""

    def fetch(self, artifact: str, dst: Path) -> Path | None:
        """Download one artifact into ``dst``; None when the run has no such artifact."""

    def log_dataset(self, name: str, fingerprint: str, options: dict[str, Any],
                    splits: dict[str, Any]) -> None:
        """The data set the job trains on: registry name, fingerprint, options, split sizes
        (MLflow: a dataset input)."""

    def log_model(self, local: Path, name: str, metrics: dict[str, float], step: int,
                  link: Sequence[str], dataset: tuple[str, str],
                  tags: dict[str, Any]) -> str | None:
        """The trained flow in ``local`` (``weights.pt``, ``flow.json``) as a model of the run
        (MLflow: a LoggedModel); ``metrics`` written linked to it, ``link`` (metrics the run
        has already) linked too, with ``dataset`` (name, fingerprint); the model's id."""


class NullTracker:
    """A tracker that keeps nothing: a job run in memory (a tuning trial, whose results go to
    Ray Tune; a test). Nothing to fetch, so a job through it never resumes."""

    seconds = 0.0

    def record(self, params=None, tags=None, metrics=None, step=0, points=None) -> None:
        return None

    def log_points(self, points: list[Point]) -> None:
        return None

    def flush(self) -> None:
        return None

    def log_file(self, local: Path, artifact_dir: str | None = None) -> None:
        return None

    def log_dir(self, local: Path) -> None:
        return None

    def log_json(self, obj: Any, name: str) -> None:
        return None

    def fetch(self, artifact: str, dst: Path) -> Path | None:
        return None

    def log_dataset(self, name: str, fingerprint: str, options: dict[str, Any],
                    splits: dict[str, Any]) -> None:
        return None

    def log_model(self, local: Path, name: str, metrics: dict[str, float], step: int,
                  link: Sequence[str], dataset: tuple[str, str],
                  tags: dict[str, Any]) -> str | None:
        return None
