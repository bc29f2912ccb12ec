"""The MLflow store, seen from the driver: where it is, one experiment per suite, one run per job.

Idempotence lives here: a job's run is found by its key tag. A run whose status is done
(finished, diverged) is skipped; any other run of that key is resumed (the same run id, so a
job is recorded exactly once whatever happens to its workers); ``force`` soft-deletes the
old run (``mlflow runs restore`` brings it back) and starts a fresh one.

The driver creates the store and the experiment before any worker starts: several processes
creating a new SQLite store at once can crash in its schema migration (FIELD-NOTES.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus, RunTag, ViewType
from mlflow.tracking import MlflowClient

from .. import keys

__all__ = ["JobRun", "Store", "resolve_uri"]

DEFAULT_DB = "mlflow.db"


def resolve_uri(uri: str | None = None) -> str:
    """An absolute tracking URI: ``uri``, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<cwd>/mlflow.db`` (relative SQLite paths are resolved once, here, so that
    workers in other directories write to the same file)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri.removeprefix("sqlite:///"))
        uri = f"sqlite:///{path.resolve()}"
    elif "://" not in uri:  # a bare path: a file store directory or a .db file
        path = Path(uri).resolve()
        uri = f"sqlite:///{path}" if path.suffix == ".db" else path.as_uri()
    return uri


def _artifact_root(uri: str) -> str | None:
    """Artifacts of an SQLite store live beside the database file (absolute)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None  # a server decides (mlflow-artifacts:/ when it proxies artifacts)


@dataclass(frozen=True)
class JobRun:
    """The run a job writes into; ``resumed`` when it continues an earlier attempt."""

    run_id: str
    resumed: bool
    phase: str  # "" (nothing done), "trained" (timing left)
    artifact_uri: str | None = None


class Store:
    """Driver-side access to the MLflow store for one suite."""

    def __init__(self, uri: str | None, suite: str):
        self.uri = resolve_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.suite = suite
        self.experiment_id = self._experiment()

    def _experiment(self) -> str:
        exp = self.client.get_experiment_by_name(self.suite)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        root = _artifact_root(self.uri)
        location = f"{root}/{self.suite}" if root else None
        try:
            return self.client.create_experiment(
                self.suite, artifact_location=location, tags={keys.TAG_SUITE: self.suite}
            )
        except Exception:  # created meanwhile by another driver
            exp = self.client.get_experiment_by_name(self.suite)
            if exp is None:
                raise
            return exp.experiment_id

    def runs_by_key(self) -> dict[str, list]:
        """Active runs of this suite grouped by job key, newest first."""
        out: dict[str, list] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=1000,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            for run in page:
                key = run.data.tags.get(keys.TAG_KEY)
                if key:
                    out.setdefault(key, []).append(run)
            token = page.token
            if not token:
                return out

    @staticmethod
    def status_of(run) -> str:
        return run.data.tags.get(keys.TAG_STATUS, keys.STATUS_RUNNING)

    def open_run(self, job, tags: dict[str, str], existing: list | None, force: bool,
                 params: dict[str, str] | None = None) -> JobRun:
        """The run for ``job``: resume an unfinished one, or create it (``force``: replace);
        a new run gets ``params`` (the flattened job config) at once."""
        existing = existing or []
        if force:
            for run in existing:
                self.client.delete_run(run.info.run_id)
            existing = []
        if existing:
            run = existing[0]
            for extra in existing[1:]:  # should not happen; keep one run per key
                self.client.delete_run(extra.info.run_id)
            self.client.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            self.client.set_tag(run.info.run_id, keys.TAG_STATUS, keys.STATUS_RUNNING)
            return JobRun(run.info.run_id, True, run.data.tags.get("nfbench.phase", ""),
                          run.info.artifact_uri)
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{job.arch.display}·{job.dataset.display}·{job.dequant.display}·s{job.seed}",
            tags={**tags, keys.TAG_STATUS: keys.STATUS_RUNNING, keys.TAG_SUITE: self.suite,
                  keys.TAG_KEY: job.key},
        )
        if params:
            self.record(run.info.run_id, {"params": params})
        return JobRun(run.info.run_id, False, "", run.info.artifact_uri)

    def record(self, run_id: str, batch: dict[str, Any] | None) -> None:
        """Write a job's final batch (params, tags, metrics, curve points) in one call."""
        if batch:
            from .writer import MlflowTracker

            MlflowTracker(self.uri, run_id).record(**batch)

    def close_run(self, run_id: str, status: str, error: str | None = None,
                  attempts: int = 0) -> None:
        """Mark a run done with nfbench ``status`` and the matching MLflow status
        (``attempts``: how many of its workers died, when any did)."""
        tags = [RunTag(keys.TAG_STATUS, status)]
        if attempts:
            tags.append(RunTag(keys.TAG_ATTEMPTS, str(attempts)))
        if error:
            tags.append(RunTag(keys.TAG_ERROR, error[-4900:]))
        self.client.log_batch(run_id, tags=tags)
        mlflow_status = {
            keys.STATUS_FINISHED: "FINISHED",
            keys.STATUS_DIVERGED: "FINISHED",
            keys.STATUS_FAILED: "FAILED",
            keys.STATUS_KILLED: "KILLED",
        }[status]
        self.client.set_terminated(run_id, status=mlflow_status, end_time=int(time.time() * 1000))
