"""The tracker a job writes through: buffered metrics sent with ``log_batch``.

A job never calls MLflow per metric: points are buffered and sent in batches of at most
1,000 metrics (MLflow's limit), which on SQLite with four concurrent writers costs about
0.5 ms a call instead of 24–45 ms a metric (measured when the writer was built). SQLite answers
"database is locked" under contention now and then; a batch is retried with back-off, and since
``log_batch`` is one transaction, a retried batch is never half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

__all__ = ["MlflowTracker", "log_datasets", "retrying"]

# progress bars of artifact downloads would interleave with the scheduler's progress lines
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
PARAM_LEN = 6000
TRANSIENT = ("locked", "busy", "connection", "timed out", "temporarily unavailable")


def retrying(fn, *args, retries: int = 8, **kwargs):
    """``fn(*args, **kwargs)``, retried with back-off on transient store errors (SQLite's
    "database is locked", a busy or unreachable server); other errors raise at once."""
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            text = str(exc).lower()
            if attempt == retries or not any(word in text for word in TRANSIENT):
                raise
            time.sleep(min(0.05 * 2**attempt, 2.0))
    raise AssertionError("unreachable")  # pragma: no cover


def log_datasets(client, run_id: str, specs: list[dict[str, Any]], call=None) -> None:
    """Log data sets (``name``, ``fingerprint``, ``options``, ``splits`` each) as the run's
    MLflow dataset inputs, in one call (``call``: how to call, e.g. with retries)."""
    from .conventions import dataset_input

    if specs:
        inputs = [dataset_input(d["name"], d["fingerprint"], d["options"], d["splits"])
                  for d in specs]
        (call or retrying)(client.log_inputs, run_id, datasets=inputs)


class MlflowTracker:
    """Writes into one existing MLflow run (the driver created or resumed it); the job
    layer's :class:`~harness.job.tracker.Tracker`, implemented for MLflow."""

    def __init__(self, uri: str, run_id: str, retries: int = 8, artifact_uri: str | None = None,
                 client: MlflowClient | None = None):
        self.client = client or MlflowClient(tracking_uri=uri)
        self.uri = uri
        self.run_id = run_id
        self.retries = retries
        self._buffer: list[Metric] = []
        self._artifacts = None
        self._artifact_uri = artifact_uri
        self.seconds = 0.0  # time spent talking to MLflow (for the overhead benchmark)
        # dataset inputs kept for the caller's final batch instead of sent (the scheduler's
        # worker hands them to the driver with the final metrics)
        self.defer_inputs = False
        self.deferred_inputs: list[dict[str, Any]] = []

    @property
    def artifacts(self):
        """The run's artifact repository, resolved once (not one run look-up per file)."""
        if self._artifacts is None:
            from mlflow.store.artifact.artifact_repository_registry import (
                get_artifact_repository,
            )

            if self._artifact_uri is None:
                run = self._retry(self.client.get_run, self.run_id)
                self._artifact_uri = run.info.artifact_uri
            # an mlflow-artifacts:/ URI (a server that proxies artifacts) resolves through
            # the tracking URI, not the process's default
            self._artifacts = get_artifact_repository(self._artifact_uri, tracking_uri=self.uri)
        return self._artifacts

    def _retry(self, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return retrying(fn, *args, retries=self.retries, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0

    def log_points(self, points: list[tuple[int, int, str, float]]) -> None:
        """Buffer curve points ``(step, timestamp_ms, key, value)`` with their own timestamps:
        sending the same point twice (a resumed job) stores it once."""
        for step, ts, k, v in points:
            self._buffer.append(Metric(k, float(v), int(ts), int(step)))
        if len(self._buffer) >= MAX_METRICS:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk = self._buffer[:MAX_METRICS]
            self._retry(self.client.log_batch, self.run_id, metrics=chunk)
            del self._buffer[: len(chunk)]

    def record(self, params: dict[str, Any] | None = None, tags: dict[str, Any] | None = None,
               metrics: dict[str, float] | None = None, step: int = 0,
               points: list[tuple[int, int, str, float]] | None = None) -> None:
        """Params, tags, metrics (at ``step``) and curve points ``(step, timestamp_ms, key,
        value)`` in as few ``log_batch`` calls as MLflow's limits allow (one, usually)."""
        now = int(time.time() * 1000)
        ps = [Param(k, str(v)[:PARAM_LEN]) for k, v in (params or {}).items()]
        ts = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        ms = self._buffer + [Metric(k, float(v), int(t), int(st)) for st, t, k, v in points or ()]
        ms += [Metric(k, float(v), now, int(step)) for k, v in (metrics or {}).items()]
        self._buffer = []
        while ps or ts or ms:
            self._retry(self.client.log_batch, self.run_id, metrics=ms[:MAX_METRICS],
                        params=ps[:MAX_PARAMS], tags=ts[:MAX_TAGS])
            ps, ts, ms = ps[MAX_PARAMS:], ts[MAX_TAGS:], ms[MAX_METRICS:]

    def log_json(self, obj: Any, name: str) -> None:
        """``obj`` as the JSON artifact ``name`` (a path inside the run's artifacts)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            parent = str(Path(name).parent)
            self.log_file(path, None if parent == "." else parent)

    def log_file(self, local: Path, artifact_dir: str | None = None) -> None:
        self._retry(self.artifacts.log_artifact, str(local), artifact_dir)

    def log_dir(self, local: Path) -> None:
        """Every file under ``local`` as artifacts, keeping the relative paths."""
        self._retry(self.artifacts.log_artifacts, str(local), None)

    def log_dataset(self, name: str, fingerprint: str, options: dict[str, Any],
                    splits: dict[str, Any]) -> None:
        """The run's data set as an MLflow dataset input (see
        :func:`harness.tracking.conventions.dataset_input`); logging it again (a resumed job)
        adds nothing."""
        spec = {"name": name, "fingerprint": fingerprint, "options": dict(options),
                "splits": dict(splits)}
        if self.defer_inputs:
            self.deferred_inputs.append(spec)
        else:
            log_datasets(self.client, self.run_id, [spec], self._retry)

    def fetch(self, artifact: str, dst: Path) -> Path | None:
        """Download one artifact of this run into ``dst``; None if it does not exist."""
        parent = str(Path(artifact).parent)
        listing = self._retry(self.artifacts.list_artifacts, None if parent == "." else parent)
        if not any(f.path == artifact for f in listing):
            return None
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self._retry(self.artifacts.download_artifacts, artifact, str(dst)))
