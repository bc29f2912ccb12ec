"""Tuning studies in MLflow: a study is a parent run, each of its trials a child run.

Both live in the suite's experiment, beside its jobs, with the tag ``nfbench.kind`` (``study``
or ``trial``; a job's run has none) so that readers tell them apart (``load_runs`` leaves them
out of the job table unless asked). A trial's run carries MLflow's own ``mlflow.parentRunId``
tag, so the MLflow UI nests it under its study.

* :class:`StudyRuns` (the driver): find a study's run by its key, open or resume it, list its
  trials, close it with its outcome;
* :class:`TrialRuns` (the driver, fed by Ray Tune's callbacks): one child run per trial,
  found again by the trial's id after a restore, its curve points written once each, and
  closed with the reason the trial stopped.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.tracking import MlflowClient

from .. import keys
from .writer import MAX_METRICS, MAX_PARAMS, MAX_TAGS, PARAM_LEN, retrying

__all__ = ["StudyRuns", "TrialRuns", "mlflow_status"]


def mlflow_status(status: str) -> str:
    """MLflow's run status for an nfbench status."""
    return {keys.STATUS_FINISHED: "FINISHED", keys.STATUS_DIVERGED: "FINISHED",
            keys.STATUS_FAILED: "FAILED", keys.STATUS_KILLED: "KILLED"}.get(status, "RUNNING")


def _batch(client, run_id: str, params: dict[str, Any] | None = None,
           tags: dict[str, Any] | None = None, metrics: list[Metric] | None = None) -> None:
    ps = [Param(k, str(v)[:PARAM_LEN]) for k, v in (params or {}).items()]
    ts = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    ms = list(metrics or [])
    while ps or ts or ms:
        retrying(client.log_batch, run_id, metrics=ms[:MAX_METRICS], params=ps[:MAX_PARAMS],
                 tags=ts[:MAX_TAGS])
        ps, ts, ms = ps[MAX_PARAMS:], ts[MAX_TAGS:], ms[MAX_METRICS:]


def _search(client, experiment_id: str, flt: str) -> list:
    out, token = [], None
    while True:
        page = retrying(client.search_runs, [experiment_id], filter_string=flt,
                        run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                        order_by=["attributes.start_time DESC"], page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


class StudyRuns:
    """The study runs of one suite's experiment (``store``: a :class:`~.store.Store`)."""

    def __init__(self, store):
        self.store = store
        self.client: MlflowClient = store.client
        self.experiment_id: str = store.experiment_id

    def find(self, key: str):
        """The newest active run of study ``key``, or None."""
        runs = _search(self.client, self.experiment_id,
                       f"tags.`{keys.TAG_KIND}` = '{keys.KIND_STUDY}' AND "
                       f"tags.`{keys.TAG_STUDY}` = '{key}'")
        return runs[0] if runs else None

    def children(self, run_id: str) -> list:
        """The trial runs of a study run, oldest first."""
        runs = _search(self.client, self.experiment_id,
                       f"tags.`{keys.TAG_PARENT_RUN}` = '{run_id}'")
        return runs[::-1]

    def discard_trials(self, run_id: str) -> int:
        """Soft-delete a study's trial runs (their Ray Tune state is gone: a fresh start)."""
        runs = self.children(run_id)
        for run in runs:
            retrying(self.client.delete_run, run.info.run_id)
        return len(runs)

    def open(self, key: str, name: str, tags: dict[str, Any], params: dict[str, Any],
             force: bool = False) -> tuple[str, str | None]:
        """The run of study ``key``: ``(run id, its status before)``; the status is None for
        a new run. An unfinished run is marked running again; ``force`` soft-deletes an
        earlier run and its trials and starts anew."""
        run = self.find(key)
        if run is not None and force:
            self.discard_trials(run.info.run_id)
            retrying(self.client.delete_run, run.info.run_id)
            run = None
        if run is not None:
            status = run.data.tags.get(keys.TAG_STATUS, keys.STATUS_RUNNING)
            if status not in keys.DONE_STATUSES:
                rid = run.info.run_id
                retrying(self.client.update_run, rid,
                         status=RunStatus.to_string(RunStatus.RUNNING))
                _batch(self.client, rid, tags={keys.TAG_STATUS: keys.STATUS_RUNNING})
                if keys.TAG_ERROR in run.data.tags:
                    retrying(self.client.delete_tag, rid, keys.TAG_ERROR)
            return run.info.run_id, status
        created = retrying(self.client.create_run, self.experiment_id, run_name=name, tags={
            **{k: str(v) for k, v in tags.items()}, keys.TAG_KIND: keys.KIND_STUDY,
            keys.TAG_STUDY: key, keys.TAG_SUITE: self.store.suite,
            keys.TAG_STATUS: keys.STATUS_RUNNING})
        _batch(self.client, created.info.run_id, params=params)
        return created.info.run_id, None

    def close(self, run_id: str, status: str, metrics: dict[str, float] | None = None,
              tags: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Record a study's outcome and end its run with ``status``."""
        now = int(time.time() * 1000)
        tags = {**(tags or {}), keys.TAG_STATUS: status}
        if error:
            tags[keys.TAG_ERROR] = error[-4900:]
        _batch(self.client, run_id, tags=tags,
               metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()])
        retrying(self.client.set_terminated, run_id, status=mlflow_status(status), end_time=now)


class TrialRuns:
    """The trial runs of one study, written from Ray Tune's callbacks in the driver.

    Picklable (Ray Tune saves its callbacks with the experiment): the MLflow client and the
    cache of known trials are rebuilt from the store on first use, so a restored study finds
    its trials' runs again and writes no curve point twice."""

    def __init__(self, uri: str, experiment_id: str, study_run_id: str,
                 tags: dict[str, Any]):
        self.uri, self.experiment_id, self.study_run_id = uri, experiment_id, study_run_id
        self.tags = {k: str(v) for k, v in tags.items()}
        self._client: MlflowClient | None = None
        self._known: dict[str, dict[str, Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_known": None}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    @property
    def known(self) -> dict[str, dict[str, Any]]:
        """Trial id → ``{"run_id", "last_step", "status", "cpu_hours", "gpu_hours", "best"}``,
        read from the store the first time."""
        if self._known is None:
            self._known = {}
            runs = _search(self.client, self.experiment_id,
                           f"tags.`{keys.TAG_PARENT_RUN}` = '{self.study_run_id}'")
            for run in runs:
                trial = run.data.tags.get(keys.TAG_TRIAL)
                if not trial:
                    continue
                m = run.data.metrics
                self._known[trial] = {
                    "run_id": run.info.run_id,
                    "last_step": int(m.get(keys.TUNE_STEPS, 0)),
                    "status": run.data.tags.get(keys.TAG_STATUS, keys.STATUS_RUNNING),
                    "cpu_hours": m.get(keys.TUNE_CPU_HOURS, 0.0),
                    "gpu_hours": m.get(keys.TUNE_GPU_HOURS, 0.0),
                    "best": m.get(keys.TUNE_BEST, float("inf")),
                }
        return self._known

    def spent(self) -> tuple[float, float]:
        """CPU- and GPU-hours of every trial so far (earlier drivers' included)."""
        return (sum(t["cpu_hours"] for t in self.known.values()),
                sum(t["gpu_hours"] for t in self.known.values()))

    def ensure(self, trial: str, number: int, params: dict[str, Any],
               tags: dict[str, Any] | None = None) -> str:
        """The run of ``trial``: found again, or created with ``params`` and ``tags``;
        marked running."""
        info = self.known.get(trial)
        if info is not None:
            if info["status"] != keys.STATUS_RUNNING:
                retrying(self.client.update_run, info["run_id"],
                         status=RunStatus.to_string(RunStatus.RUNNING))
                _batch(self.client, info["run_id"], tags={keys.TAG_STATUS: keys.STATUS_RUNNING})
                info["status"] = keys.STATUS_RUNNING
            return info["run_id"]
        run = retrying(self.client.create_run, self.experiment_id,
                       run_name=f"trial {number:03d}", tags={
                           **self.tags, **{k: str(v) for k, v in (tags or {}).items()},
                           keys.TAG_KIND: keys.KIND_TRIAL,
                           keys.TAG_PARENT_RUN: self.study_run_id, keys.TAG_TRIAL: trial,
                           keys.TAG_TRIAL_NUMBER: str(number),
                           keys.TAG_STATUS: keys.STATUS_RUNNING})
        _batch(self.client, run.info.run_id, params=params)
        self.known[trial] = {"run_id": run.info.run_id, "last_step": 0,
                             "status": keys.STATUS_RUNNING, "cpu_hours": 0.0,
                             "gpu_hours": 0.0, "best": float("inf")}
        return run.info.run_id

    def log(self, trial: str, step: int, metrics: dict[str, float],
            points: list[tuple[int, str, float]] = ()) -> bool:
        """Curve points up to ``step`` and ``metrics`` at ``step``, unless this step was
        written already (a trial resumed from a checkpoint reports it again); True when
        written."""
        info = self.known[trial]
        if step <= info["last_step"]:
            return False
        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, int(s)) for s, k, v in points
              if s > info["last_step"] and not math.isnan(v)]
        ms += [Metric(k, float(v), now, int(step)) for k, v in metrics.items()
               if not math.isnan(v)]
        _batch(self.client, info["run_id"], metrics=ms)
        info["last_step"] = step
        info["cpu_hours"] = metrics.get(keys.TUNE_CPU_HOURS, info["cpu_hours"])
        info["gpu_hours"] = metrics.get(keys.TUNE_GPU_HOURS, info["gpu_hours"])
        info["best"] = min(info["best"], metrics.get(keys.TUNE_BEST, float("inf")))
        return True

    def close(self, trial: str, status: str, stopped_by: str,
              error: str | None = None, attempts: int = 0) -> None:
        """End a trial's run: its status, why it stopped, its last error."""
        info = self.known[trial]
        tags: dict[str, Any] = {keys.TAG_STATUS: status, keys.TAG_STOPPED_BY: stopped_by}
        if attempts:
            tags[keys.TAG_ATTEMPTS] = attempts
        if error:
            tags[keys.TAG_ERROR] = error[-4900:]
        _batch(self.client, info["run_id"], tags=tags)
        retrying(self.client.set_terminated, info["run_id"], status=mlflow_status(status),
                 end_time=int(time.time() * 1000))
        info["status"] = status

    def close_open(self, status: str, reason: str) -> int:
        """End every trial run still running (an interrupted study, or one whose budget
        ran out while they ran); how many."""
        n = 0
        for trial, info in self.known.items():
            if info["status"] == keys.STATUS_RUNNING:
                self.close(trial, status, reason)
                n += 1
        return n


def best_values(tag_value: str | None) -> dict[str, Any] | None:
    """A study's best values from its ``nfbench.tune.best`` tag."""
    if not tag_value:
        return None
    try:
        values = json.loads(tag_value)
    except ValueError:
        return None
    return values if isinstance(values, dict) else None
