"""Reading results back from MLflow in bulk: one table of runs, one long table of curves.

Round trips are what make reading slow (FIELD-NOTES.md: ``get_metric_history`` costs a round
trip per run and key; 500 runs × 10 final metrics come back from ``search_runs`` in well under
a second). So:

* :func:`load_runs` pages through ``search_runs`` (1,000 runs a page over HTTP, the store's
  maximum on SQLite) for each suite's experiment and flattens every run into one row;
* :func:`load_curves` reads each run's ``curves.parquet`` artifact: straight from disk when
  the artifact store is a local folder (no MLflow call at all), through a pool of download
  threads otherwise; only runs without the artifact fall back to ``get_metric_history``.

Column convention of the runs table (names are MLflow's own, from :mod:`harness.keys` and the
flattened job config, so nothing is renamed):

* ``run_id``, ``experiment`` (the suite's experiment name), ``experiment_id``, ``run_name``,
  ``mlflow_status`` (FINISHED, FAILED, KILLED, RUNNING), ``start_time``, ``end_time``
  (UTC timestamps), ``artifact_uri``;
* every ``nfbench.*`` tag under its full name (``nfbench.arch``, ``nfbench.status`` …);
* every param under its dotted name (``arch.name``, ``data.dims``, ``train.lr`` …), numeric
  where every value of the column parses as a number;
* every final metric under its key (``eval/nll``, ``perf/sample_throughput`` …), NaN where a
  run did not log it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from .. import keys
from .store import resolve_uri

__all__ = [
    "CURVE_COLUMNS",
    "CURVE_KEYS",
    "RUN_COLUMNS",
    "UnknownSuiteError",
    "load_curves",
    "load_runs",
    "local_artifact_path",
]

RUN_COLUMNS = (
    "run_id",
    "experiment",
    "experiment_id",
    "run_name",
    "mlflow_status",
    "start_time",
    "end_time",
    "artifact_uri",
)
CURVE_COLUMNS = ("run_id", "step", "wall_s", "key", "value")
# the step-indexed histories a job logs; the fallback asks MLflow for exactly these
CURVE_KEYS = (
    keys.TRAIN_LOSS,
    keys.TRAIN_NLL,
    keys.TRAIN_BPD,
    keys.TRAIN_GRAD_NORM,
    keys.TRAIN_LR,
    keys.TRAIN_WALL_S,
    keys.VAL_NLL,
    keys.VAL_BPD,
)
PAGE = 1000  # runs per search_runs page (an MLflow server's limit)
THREADS = 8  # concurrent artifact downloads from a remote store


class UnknownSuiteError(LookupError):
    """A suite with no MLflow experiment; the message lists the suites the store holds."""

    def __init__(self, missing: list[str], known: list[str], uri: str):
        self.missing, self.known = missing, known
        super().__init__(
            f"no MLflow experiment for suite(s) {', '.join(map(repr, missing))} in {uri}; "
            f"the store holds: {', '.join(map(repr, known)) or 'no experiments'} "
            "(run the suite first, or pass --tracking-uri pointing at its store)"
        )


def _experiments(client: MlflowClient, suites: list[str], uri: str) -> dict[str, str]:
    """experiment id → name for each suite, in the order given; unknown suites raise."""
    found: dict[str, str] = {}
    missing = []
    for suite in suites:
        exp = client.get_experiment_by_name(suite)
        if exp is None or exp.lifecycle_stage == "deleted":
            missing.append(suite)
        else:
            found[exp.experiment_id] = exp.name
    if missing:
        known = sorted(e.name for e in client.search_experiments(max_results=1000))
        raise UnknownSuiteError(missing, known, uri)
    return found


def _numeric(col: pd.Series) -> pd.Series:
    """The column as numbers when every present value parses, else unchanged."""
    converted = pd.to_numeric(col, errors="coerce")
    if converted.notna().sum() == col.notna().sum():
        return converted
    return col


def load_runs(tracking_uri: str | None, suites: Iterable[str]) -> pd.DataFrame:
    """One row per active run of the given suites: attributes, tags, params, final metrics.

    Arguments:
        tracking_uri: the MLflow store (None: ``$MLFLOW_TRACKING_URI`` or ./mlflow.db).
        suites: suite names, each an MLflow experiment.

    Returns:
        A DataFrame with the columns described in the module docstring; one row per run,
        ordered by suite (as given), then start time. Empty suites give no rows, but the
        fixed columns are always there.

    Raises:
        UnknownSuiteError: a suite without an experiment (the message lists those that exist).
    """
    uri = resolve_uri(tracking_uri)
    suites = list(dict.fromkeys(suites))
    client = MlflowClient(tracking_uri=uri)
    experiments = _experiments(client, suites, uri)
    rows: list[dict] = []
    metric_rows: list[dict[str, float]] = []
    for exp_id, name in experiments.items():
        token = None
        while True:
            page = client.search_runs(
                [exp_id],
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=PAGE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            for run in page:
                info, data = run.info, run.data
                row = {
                    "run_id": info.run_id,
                    "experiment": name,
                    "experiment_id": exp_id,
                    "run_name": info.run_name,
                    "mlflow_status": info.status,
                    "start_time": info.start_time,
                    "end_time": info.end_time,
                    "artifact_uri": info.artifact_uri,
                }
                for k, v in data.params.items():
                    row.setdefault(k, v)
                for k, v in data.tags.items():
                    if k.startswith("nfbench."):
                        row[k] = v
                rows.append(row)
                metric_rows.append(data.metrics)
            token = page.token
            if not token:
                break
    base = pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))
    metrics = pd.DataFrame(metric_rows, index=base.index, dtype=float)
    metrics = metrics[sorted(metrics.columns)]
    other = [c for c in base.columns if c not in RUN_COLUMNS]
    df = pd.concat([base[list(RUN_COLUMNS)], base[sorted(other)], metrics], axis=1)
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    for col in other:
        if not col.startswith("nfbench.") or col == keys.TAG_SEED:
            df[col] = _numeric(df[col])
    return df.reset_index(drop=True)


def local_artifact_path(artifact_uri: str, path: str) -> Path | None:
    """The file behind ``artifact_uri/path`` when the artifact store is a local folder."""
    if not isinstance(artifact_uri, str) or not artifact_uri:
        return None
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        root = Path(unquote(parsed.path))
    elif parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        root = Path(artifact_uri)  # a bare path: MLflow resolves it against the cwd too
    else:
        return None
    return root / path


def _empty_curves() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": pd.Series([], dtype=object),
            "step": pd.Series([], dtype="int64"),
            "wall_s": pd.Series([], dtype="float64"),
            "key": pd.Series([], dtype=object),
            "value": pd.Series([], dtype="float64"),
        }
    )


def _read_parquet(path: Path, run_id: str) -> pa.Table | None:
    try:
        table = pq.read_table(path, columns=["step", "wall_s", "key", "value"])
    except (FileNotFoundError, OSError):
        return None
    run = pa.array(np.full(len(table), run_id, dtype=object), type=pa.string())
    return table.append_column("run_id", run)


def _download(client: MlflowClient, run_id: str, tmp: str) -> pa.Table | None:
    try:
        local = client.download_artifacts(run_id, keys.ART_CURVES, os.path.join(tmp, run_id))
    except Exception:  # no such artifact (a run that failed before training), or unreachable
        return None
    return _read_parquet(Path(local), run_id)


def _history(client: MlflowClient, run_id: str) -> pa.Table | None:
    """The curves of one run from metric histories (the slow path: a round trip per key)."""
    parts: list[pd.DataFrame] = []
    for key in CURVE_KEYS:
        try:
            hist = client.get_metric_history(run_id, key)
        except Exception:
            continue
        if hist:
            ts = np.array([m.timestamp for m in hist], dtype="float64")
            parts.append(
                pd.DataFrame(
                    {
                        "step": np.array([m.step for m in hist], dtype="int64"),
                        "wall_s": (ts - ts.min()) / 1000.0,  # logging time, not training time
                        "key": key,
                        "value": np.array([m.value for m in hist], dtype="float64"),
                    }
                )
            )
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True)
    wall = df.loc[df["key"] == keys.TRAIN_WALL_S].set_index("step")["value"]
    if len(wall):  # the training clock when the job logged it, per step
        df["wall_s"] = df["step"].map(wall.groupby(level=0).last()).fillna(df["wall_s"])
    df["run_id"] = run_id
    return pa.Table.from_pandas(df, preserve_index=False)


def load_curves(
    tracking_uri: str | None,
    runs: pd.DataFrame,
    *,
    history_fallback: bool = True,
) -> pd.DataFrame:
    """The training curves of ``runs`` (a :func:`load_runs` table) as one long table.

    Arguments:
        tracking_uri: the MLflow store the runs came from.
        runs: needs ``run_id`` and ``artifact_uri`` columns.
        history_fallback: for runs without a ``curves.parquet`` artifact, ask MLflow for the
            metric histories of :data:`CURVE_KEYS` (a round trip per key); off: such runs have
            no curves.

    Returns:
        Columns ``run_id`` (str), ``step`` (int64), ``wall_s`` (float64, seconds of training),
        ``key`` (str, e.g. ``train/nll``), ``value`` (float64); sorted by run, key, step.
    """
    if runs.empty:
        return _empty_curves()
    uri = resolve_uri(tracking_uri)
    tables: dict[str, pa.Table | None] = {}
    remote: list[str] = []
    for run_id, art in zip(runs["run_id"], runs["artifact_uri"]):
        path = local_artifact_path(art, keys.ART_CURVES)
        if path is None:
            remote.append(run_id)
        else:
            tables[run_id] = _read_parquet(path, run_id) if path.is_file() else None
    client = MlflowClient(tracking_uri=uri)
    if remote:
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(THREADS) as pool:
            for run_id, table in zip(remote, pool.map(lambda r: _download(client, r, tmp), remote)):
                tables[run_id] = table
    if history_fallback:
        missing = [r for r, t in tables.items() if t is None]
        if missing:
            with ThreadPoolExecutor(THREADS) as pool:
                for run_id, table in zip(missing, pool.map(lambda r: _history(client, r), missing)):
                    tables[run_id] = table
    present = [t.select(list(CURVE_COLUMNS)) for t in tables.values() if t is not None]
    if not present:
        return _empty_curves()
    schema = pa.schema(
        [("run_id", pa.string()), ("step", pa.int64()), ("wall_s", pa.float64()),
         ("key", pa.string()), ("value", pa.float64())]
    )
    table = pa.concat_tables([t.cast(schema) for t in present])
    df = table.to_pandas()
    for col in ("run_id", "key"):
        df[col] = df[col].astype(object)
    return df.sort_values(["run_id", "key", "step"], kind="stable").reset_index(drop=True)
