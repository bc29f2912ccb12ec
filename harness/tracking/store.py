"""The MLflow store, seen from the driver: where it is, one experiment per suite, one run per job.

Idempotence lives here: a job's run is found by its key tag. A run whose status is done
(finished, diverged) is skipped; any other run of that key is resumed (the same run id, so a
job is recorded exactly once whatever happens to its workers); ``force`` soft-deletes the
old run (``mlflow runs restore`` brings it back) and starts a fresh one. Only the driver that
holds a key's claim (:mod:`harness.tracking.claims`) opens or closes its run, so two drivers
of one suite never make two runs of a key.

The driver creates the store and the experiment before any worker starts. Several processes
creating a new SQLite store at once can crash in MLflow's schema migration, so on SQLite the
first connection is made under a file lock beside the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .. import keys
from .claims import LEDGER_EXPERIMENT, Ledger, shard_count
from .conventions import experiment_tags
from .index import JobIndex, RunRef
from .writer import retrying

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


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _artifact_root(uri: str) -> str | None:
    """Artifacts of an SQLite store live beside the database file (absolute)."""
    db = _sqlite_path(uri)
    if db is not None:
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None  # a server decides (mlflow-artifacts:/ when it proxies artifacts)


@contextlib.contextmanager
def _first_connection(uri: str):
    """Serialise the first connection to an SQLite store between processes (its schema
    migration is not safe to run twice at once); other stores need no lock."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class JobRun:
    """The run a job writes into; ``resumed`` when it continues an earlier attempt."""

    run_id: str
    resumed: bool
    phase: str  # "" (nothing done), "trained" (timing left)
    artifact_uri: str | None = None
    attempts: int = 0  # workers that died under this job before (in earlier drivers)


class Store:
    """Driver-side access to the MLflow store for one suite."""

    def __init__(self, uri: str | None, suite: str):
        self.uri = resolve_uri(uri)
        self.suite = suite
        self.ops = 0  # store operations made through this object (its index's and ledger's
        # are counted by them)
        self._tracker = None  # the writer of the run last recorded into
        with _first_connection(self.uri):  # the client makes the schema when it is new
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id, self.ledger_run_id = self._experiment()
        self.index = JobIndex(self.client, self.uri, self.experiment_id, retry=self._call)

    def _call(self, fn, *args, **kwargs):
        self.ops += 1
        return retrying(fn, *args, **kwargs)

    # ── the suite's experiment and its ledger ──────────────────────────────────────────
    def _ledger_experiment(self) -> str:
        exp = self._call(self.client.get_experiment_by_name, LEDGER_EXPERIMENT)
        if exp is None:
            try:
                return self._call(self.client.create_experiment, LEDGER_EXPERIMENT, tags={
                    "mlflow.note.content": "nfbench: claims of job keys by drivers, one run "
                                           "per suite (see harness/tracking/claims.py)"})
            except MlflowException:  # created meanwhile by another driver
                exp = self._call(self.client.get_experiment_by_name, LEDGER_EXPERIMENT)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self._call(self.client.restore_experiment, exp.experiment_id)
        return exp.experiment_id

    def _new_ledger_run(self) -> str:
        run = self._call(self.client.create_run, self._ledger_experiment(),
                         run_name=self.suite, tags={keys.TAG_SUITE: self.suite})
        return run.info.run_id

    def _experiment(self) -> tuple[str, str]:
        """The suite's experiment id and its ledger run id (both created when missing).

        A new experiment is created with its ledger tag in one call, so that of two drivers
        creating it at once, the one whose creation fails adopts the winner's ledger."""
        exp = self._call(self.client.get_experiment_by_name, self.suite)
        if exp is None:
            ledger = self._new_ledger_run()
            root = _artifact_root(self.uri)
            try:
                exp_id = self._call(
                    self.client.create_experiment, self.suite,
                    artifact_location=f"{root}/{self.suite}" if root else None,
                    tags={keys.TAG_SUITE: self.suite, keys.TAG_LEDGER: ledger,
                          **experiment_tags()})
                return exp_id, ledger
            except MlflowException:  # created meanwhile by another driver
                self._call(self.client.delete_run, ledger)
                exp = self._call(self.client.get_experiment_by_name, self.suite)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self._call(self.client.restore_experiment, exp.experiment_id)
        for tag, value in experiment_tags().items():  # an experiment made before: mark it
            if tag not in exp.tags:
                self._call(self.client.set_experiment_tag, exp.experiment_id, tag, value)
        ledger = exp.tags.get(keys.TAG_LEDGER)
        if ledger is None:  # an experiment from before ledgers: give it one
            ledger = self._adopt_ledger(exp.experiment_id)
        return exp.experiment_id, ledger

    def _adopt_ledger(self, experiment_id: str, settle_s: float = 1.0) -> str:
        """Tag an existing experiment with a ledger. Tags are last-writer-wins, so each
        driver writes its own, waits, and reads back which one stayed."""
        mine = self._new_ledger_run()
        self._call(self.client.set_experiment_tag, experiment_id, keys.TAG_LEDGER, mine)
        time.sleep(settle_s)
        kept = self._call(self.client.get_experiment, experiment_id).tags[keys.TAG_LEDGER]
        if kept != mine:
            self._call(self.client.delete_run, mine)
        return kept

    def note_jobs(self, n: int) -> None:
        """Record on the suite's experiment how many jobs the suite has (``nfbench status``
        counts those not started yet from it)."""
        self._call(self.client.set_experiment_tag, self.experiment_id, keys.TAG_JOBS, str(n))

    def ledger(self, ttl: float | None = None, jobs: int = 1) -> Ledger:
        """This driver's claims in the suite's ledger (not started: call ``start()``);
        ``jobs``: the suite's size, which sizes a new ledger's shards."""
        return Ledger(self.client, self.ledger_run_id, ttl=ttl, retry=self._call,
                      shards=shard_count(jobs))

    # ── runs ────────────────────────────────────────────────────────────────────────────
    def runs_by_key(self, key: str | None = None) -> dict[str, list[RunRef]]:
        """Active runs of this suite grouped by job key, newest first (``key``: that key's);
        see :class:`~harness.tracking.index.JobIndex`."""
        return self.index.read(None if key is None else [key])

    def runs_of(self, job_keys: list[str]) -> dict[str, list[RunRef]]:
        """The active runs of these keys (one query per 500 keys on a database store)."""
        return self.index.read(job_keys)

    def changed_since(self, since_ms: int) -> dict[str, list[RunRef]]:
        """The runs created or ended at ``since_ms`` (ms since the epoch) or later."""
        return self.index.read(since_ms=since_ms)

    @staticmethod
    def status_of(run: RunRef) -> str:
        return run.status

    @staticmethod
    def is_done(runs: list[RunRef] | None) -> bool:
        return bool(runs) and runs[0].status in keys.DONE_STATUSES

    def open_run(self, job, tags: dict[str, str], existing: list[RunRef] | None, force: bool,
                 params: dict[str, str] | None = None) -> JobRun:
        """The run for ``job``: resume an unfinished one, or create it (``force``: replace);
        a new run gets ``params`` (the flattened job config) at once. A resumed run loses the
        error of its earlier attempt: its tags say what is true at its end, and MLflow's own
        tags among ``tags`` (``mlflow.*``: source, description) and the live ones
        (``nfbench.live.*``: queued again) are written again."""
        existing = existing or []
        if force:
            for run in existing:
                self._call(self.client.delete_run, run.run_id)
            existing = []
        if existing:
            run = existing[0]
            for extra in existing[1:]:  # from before claims existed; keep one run per key
                self._call(self.client.delete_run, extra.run_id)
            rid = run.run_id
            self._call(self.client.update_run, rid, status=RunStatus.to_string(RunStatus.RUNNING))
            self._call(self.client.log_batch, rid,
                       tags=[RunTag(keys.TAG_STATUS, keys.STATUS_RUNNING)]
                       + [RunTag(k, v) for k, v in tags.items()
                          if k.startswith(("mlflow.", keys.LIVE_TAG_PREFIX))])
            if run.has_error:
                self._call(self.client.delete_tag, rid, keys.TAG_ERROR)
            return JobRun(rid, True, run.phase, run.artifact_uri, run.attempts)
        run = self._call(
            self.client.create_run, self.experiment_id,
            run_name=f"{job.arch.display}·{job.dataset.display}·{job.dequant.display}"
                     + ("" if job.runtime.eager else f"·{job.runtime.display}")
                     + f"·s{job.seed}",
            tags={**tags, keys.TAG_STATUS: keys.STATUS_RUNNING, keys.TAG_SUITE: self.suite,
                  keys.TAG_KEY: job.key},
        )
        if params:
            self.record(run.info.run_id, {"params": params})
        return JobRun(run.info.run_id, False, "", run.info.artifact_uri)

    def record(self, run_id: str, batch: dict[str, Any] | None) -> None:
        """Write a job's final batch (params, tags, metrics, curve points) in one call, and
        its data sets (``inputs``) as MLflow dataset inputs in another."""
        if batch:
            from .writer import MlflowTracker, log_datasets

            self.ops += 1
            batch = dict(batch)
            inputs = batch.pop("inputs", None)
            if inputs:
                self.ops += 1
                log_datasets(self.client, run_id, inputs, self._call)
            if self._tracker is None or self._tracker.run_id != run_id:
                self._tracker = MlflowTracker(self.uri, run_id, client=self.client)
            self._tracker.record(**batch)

    def mark_live(self, run_id: str, phase: str, params: dict[str, str] | None = None
                  ) -> None:
        """A worker starts ``phase`` of the run now (for ``nfbench status``); ``params``: the
        job's config, when this run does not have it yet (written in the same call)."""
        tags = {keys.TAG_LIVE_PHASE: phase, keys.TAG_LIVE_STEP: "0",
                keys.TAG_LIVE_STARTED: f"{time.time():.0f}"}
        self.record(run_id, {"tags": tags, "params": params or None})

    def close_run(self, run_id: str, status: str, error: str | None = None,
                  attempts: int = 0, batch: dict[str, Any] | None = None) -> None:
        """Mark a run done with nfbench ``status`` and the matching MLflow status
        (``attempts``: how many of its workers died, when any did); ``batch``: the job's
        final record, written in the same call as the status."""
        tags = {keys.TAG_STATUS: status, keys.TAG_LIVE_PHASE: keys.LIVE_ENDED}
        if attempts:
            tags[keys.TAG_ATTEMPTS] = str(attempts)
        if error:
            tags[keys.TAG_ERROR] = error[-4900:]
        batch = dict(batch or {})
        batch["tags"] = {**(batch.get("tags") or {}), **tags}  # the status has the last word
        self.record(run_id, batch)
        mlflow_status = {
            keys.STATUS_FINISHED: "FINISHED",
            keys.STATUS_DIVERGED: "FINISHED",
            keys.STATUS_FAILED: "FAILED",
            keys.STATUS_KILLED: "KILLED",
        }[status]
        self._call(self.client.set_terminated, run_id, status=mlflow_status,
                   end_time=int(time.time() * 1000))
