"""Reading results back from MLflow in bulk: one table of runs, one long table of curves.

Round trips are what make reading slow (``get_metric_history`` costs a round trip per run and
key; 500 runs × 10 final metrics come back from ``search_runs`` in well under a second). So:

* :func:`load_runs` reads a database store (SQLite, PostgreSQL, MySQL, SQL Server) with five
  documented queries on MLflow's tables (:func:`_records_sql`, built from MLflow's own table
  models), and any other store, a server among them, by paging through ``search_runs``
  (1,000 runs a page) for each suite's experiment; either way every run becomes one row;
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
  run did not log it, ±inf where it logged an infinity (MLflow stores those as ±DBL_MAX).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException

from .. import keys
from .database import database_url, fast_tables
from .store import resolve_uri
from .uri import mask_uri

__all__ = [
    "CURVE_COLUMNS",
    "CURVE_KEYS",
    "FAST_COLUMNS",
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
_DBL_MAX = np.finfo(np.float64).max
JOB_KIND = "job"  # a run without an nfbench.kind tag
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


def _experiments(client, suites: list[str], uri: str) -> dict[str, str]:
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


Records = tuple[list[dict], list[dict[str, float]]]


_database_url = database_url  # the names this module's tests know them by
_fast_tables = fast_tables


#: ``table: columns`` read by the fast path (``tests/test_postgres.py`` checks them against
#: MLflow's models and a live database's schema, on SQLite and on PostgreSQL)
FAST_COLUMNS = {
    "experiments": ("experiment_id", "name", "lifecycle_stage"),
    "runs": ("run_uuid", "experiment_id", "name", "status", "start_time", "end_time",
             "artifact_uri", "lifecycle_stage"),
    "params": ("run_uuid", "key", "value"),
    "tags": ("run_uuid", "key", "value"),
    "latest_metrics": ("run_uuid", "key", "value", "is_nan"),
}


def _records_sql(url: str, suites: list[str], uri: str) -> Records:
    """Runs, params, ``nfbench.*`` tags and latest metrics in five read-only queries against
    MLflow's tables, the same on every database MLflow supports (SQLite, PostgreSQL, MySQL,
    SQL Server)::

        SELECT name, experiment_id FROM experiments
         WHERE lifecycle_stage = 'active' AND name IN (:suites)
        SELECT run_uuid, experiment_id, name, status, start_time, end_time, artifact_uri
          FROM runs WHERE lifecycle_stage = 'active' AND experiment_id IN (:ids)
        SELECT run_uuid, key, value FROM params WHERE run_uuid IN (<the runs above>)
        SELECT run_uuid, key, value FROM tags
         WHERE key LIKE 'nfbench.%' AND run_uuid IN (<the runs above>)
        SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN (<…>)

    (:data:`FAST_COLUMNS`). Any surprise (a database error, a model MLflow renamed) raises,
    and :func:`load_runs` asks MLflow's API instead."""
    import sqlalchemy as sa

    exp_t, run_t, param_t, tag_t, metric_t = _fast_tables()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as con:
            found = {name: str(eid) for name, eid in con.execute(
                sa.select(exp_t.name, exp_t.experiment_id).where(
                    exp_t.lifecycle_stage == "active", exp_t.name.in_(suites)))}
            missing = [s for s in suites if s not in found]
            if missing:
                known = [r[0] for r in con.execute(
                    sa.select(exp_t.name).where(exp_t.lifecycle_stage == "active"))]
                raise UnknownSuiteError(missing, sorted(known), uri)
            names = {found[s]: s for s in suites}
            ids = [int(found[s]) for s in suites]
            active = sa.and_(run_t.lifecycle_stage == "active", run_t.experiment_id.in_(ids))
            runs = con.execute(sa.select(
                run_t.run_uuid, run_t.experiment_id, run_t.name, run_t.status,
                run_t.start_time, run_t.end_time, run_t.artifact_uri).where(active)).all()
            chosen = sa.select(run_t.run_uuid).where(active)
            params = con.execute(sa.select(param_t.run_uuid, param_t.key, param_t.value)
                                 .where(param_t.run_uuid.in_(chosen))).all()
            tags = con.execute(sa.select(tag_t.run_uuid, tag_t.key, tag_t.value).where(
                tag_t.key.like(f"{keys.TAG_PREFIX}%"), tag_t.run_uuid.in_(chosen))).all()
            metrics = con.execute(sa.select(
                metric_t.run_uuid, metric_t.key, metric_t.value, metric_t.is_nan)
                .where(metric_t.run_uuid.in_(chosen))).all()
    finally:
        engine.dispose()
    rows: dict[str, dict] = {}
    values: dict[str, dict[str, float]] = {}
    for run_id, exp_id, name, status, start, end, art in runs:
        rows[run_id] = {
            "run_id": run_id, "experiment": names[str(exp_id)], "experiment_id": str(exp_id),
            "run_name": name, "mlflow_status": status, "start_time": start, "end_time": end,
            "artifact_uri": art,
        }
        values[run_id] = {}
    for run_id, key, value in params:
        rows[run_id].setdefault(key, value)
    for run_id, key, value in tags:
        rows[run_id][key] = value
    for run_id, key, value, is_nan in metrics:
        values[run_id][key] = float("nan") if is_nan else float(value)
    return list(rows.values()), list(values.values())


def _records_api(uri: str, suites: list[str]) -> Records:
    """The same records through ``MlflowClient.search_runs`` (any store; pages of 1,000)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

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
                    if k.startswith(keys.TAG_PREFIX):
                        row[k] = v
                rows.append(row)
                metric_rows.append(data.metrics)
            token = page.token
            if not token:
                break
    return rows, metric_rows


def load_runs(tracking_uri: str | None, suites: Iterable[str], *, fast: bool = True,
              kinds: Iterable[str] = (JOB_KIND,)) -> pd.DataFrame:
    """One row per active run of the given suites: attributes, tags, params, final metrics.

    Arguments:
        tracking_uri: the MLflow store (None: ``$MLFLOW_TRACKING_URI`` or ./mlflow.db).
        suites: suite names, each an MLflow experiment.
        fast: for a database store (SQLite, PostgreSQL, MySQL, SQL Server), read MLflow's
            tables in five queries (:func:`_records_sql`; 1,000 runs: a few tenths of a
            second instead of seconds through MLflow's ORM); a server, a file store, or a
            query that fails goes through ``search_runs``.
        kinds: which runs: ``"job"`` (the jobs' runs, the default), ``"study"`` and
            ``"trial"`` (tuning studies and their trials, tagged ``nfbench.kind``); columns
            that only runs of other kinds have are left out.

    Returns:
        A DataFrame with the columns described in the module docstring; one row per run,
        ordered by suite (as given), then start time. Empty suites give no rows, but the
        fixed columns are always there.

    Raises:
        UnknownSuiteError: a suite without an experiment (the message lists those that exist).
    """
    uri = resolve_uri(tracking_uri)
    suites = list(dict.fromkeys(suites))
    records = None
    url = _database_url(uri) if fast else None
    if url is not None:
        try:
            records = _records_sql(url, suites, uri)
        except UnknownSuiteError:
            raise
        except Exception as exc:  # noqa: BLE001 (any surprise: MLflow's API answers instead)
            logging.getLogger(__name__).warning(
                "reading %s through MLflow's API (the direct query failed: %s)",
                mask_uri(uri), str(exc).splitlines()[0][:200] if str(exc) else repr(exc))
            records = None
    if records is None:
        records = _records_api(uri, suites)
    return _of_kinds(_frame(*records, suites), set(kinds))


def _of_kinds(df: pd.DataFrame, kinds: set[str]) -> pd.DataFrame:
    """The rows whose ``nfbench.kind`` (none: a job) is in ``kinds``, without the columns
    only the other rows have."""
    if keys.TAG_KIND not in df:
        return df if JOB_KIND in kinds else df.iloc[:0]
    keep = df[keys.TAG_KIND].fillna(JOB_KIND).isin(kinds).to_numpy()
    if keep.all():
        return df
    theirs = [c for c in df.columns if c not in RUN_COLUMNS
              and df.loc[keep, c].isna().all() and df.loc[~keep, c].notna().any()]
    return df.loc[keep].drop(columns=theirs).reset_index(drop=True)


def _frame(rows: list[dict], metric_rows: list[dict[str, float]], suites: list[str]
           ) -> pd.DataFrame:
    """The runs table, ordered by suite (as given), start time, run id."""
    order = {s: i for i, s in enumerate(suites)}
    ranked = sorted(range(len(rows)), key=lambda i: (
        order.get(rows[i]["experiment"], len(order)), rows[i]["start_time"] or 0,
        rows[i]["run_id"]))
    rows = [rows[i] for i in ranked]
    metric_rows = [metric_rows[i] for i in ranked]
    base = pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))
    metrics = pd.DataFrame(metric_rows, index=base.index, dtype=float)
    metrics = metrics[sorted(metrics.columns)]
    # MLflow stores ±inf as ±DBL_MAX: give the infinities back
    metrics = metrics.mask(metrics.abs() >= _DBL_MAX, np.sign(metrics) * np.inf)
    other = [c for c in base.columns if c not in RUN_COLUMNS]
    df = pd.concat([base[list(RUN_COLUMNS)], base[sorted(other)], metrics], axis=1)
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    for col in other:
        if not col.startswith(keys.TAG_PREFIX) or col == keys.TAG_SEED:
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


def _read_parquet(path: Path, run_id: str, wanted: list[str] | None) -> pa.Table | None:
    try:
        table = pq.read_table(path, columns=["step", "wall_s", "key", "value"])
    except (FileNotFoundError, OSError):
        return None
    if wanted is not None:
        table = table.filter(pc.is_in(table["key"].cast(pa.string()),
                                      value_set=pa.array(wanted, pa.string())))
    run = pa.array(np.full(len(table), run_id, dtype=object), type=pa.string())
    return table.append_column("run_id", run)


def _download(client, run_id: str, tmp: str, wanted: list[str] | None) -> pa.Table | None:
    try:
        local = client.download_artifacts(run_id, keys.ART_CURVES, os.path.join(tmp, run_id))
    except (MlflowException, OSError):  # no such artifact (failed before training), or gone
        return None
    return _read_parquet(Path(local), run_id, wanted)


def _history(client, run_id: str, wanted: list[str] | None) -> pa.Table | None:
    """The curves of one run from metric histories (the slow path: a round trip per key)."""
    parts: list[pd.DataFrame] = []
    for key in CURVE_KEYS if wanted is None else wanted:
        try:
            hist = client.get_metric_history(run_id, key)
        except MlflowException:  # a key this run never logged
            hist = []
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
    if not len(wall) and (wanted is None or keys.TRAIN_WALL_S not in wanted):
        try:
            hist = client.get_metric_history(run_id, keys.TRAIN_WALL_S)
        except MlflowException:
            hist = []
        wall = pd.Series([m.value for m in hist], index=[m.step for m in hist], dtype=float)
    if len(wall):  # the training clock when the job logged it, per step
        df["wall_s"] = df["step"].map(wall.groupby(level=0).last()).fillna(df["wall_s"])
    if wanted is not None:
        df = df[df["key"].isin(wanted)]
    df["run_id"] = run_id
    return pa.Table.from_pandas(df, preserve_index=False)


def load_curves(
    tracking_uri: str | None,
    runs: pd.DataFrame,
    *,
    keys_wanted: Iterable[str] | None = None,
    history_fallback: bool = True,
) -> pd.DataFrame:
    """The training curves of ``runs`` (a :func:`load_runs` table) as one long table.

    Arguments:
        tracking_uri: the MLflow store the runs came from.
        runs: needs ``run_id`` and ``artifact_uri`` columns.
        keys_wanted: only these curve keys (e.g. ``["train/nll", "val/nll"]``); None: all.
        history_fallback: for runs without a ``curves.parquet`` artifact, ask MLflow for the
            metric histories of :data:`CURVE_KEYS` (a round trip per key); off: such runs have
            no curves.

    Returns:
        Columns ``run_id`` (str), ``step`` (int64), ``wall_s`` (float64, seconds of training),
        ``key`` (str, e.g. ``train/nll``), ``value`` (float64); sorted by run, key, step.
    """
    if runs.empty:
        return _empty_curves()
    wanted = None if keys_wanted is None else list(dict.fromkeys(keys_wanted))
    uri = resolve_uri(tracking_uri)
    tables: dict[str, pa.Table | None] = {}
    local: list[tuple[str, Path]] = []
    remote: list[str] = []
    for run_id, art in zip(runs["run_id"], runs["artifact_uri"]):
        path = local_artifact_path(art, keys.ART_CURVES)
        if path is None:
            remote.append(run_id)
        else:
            local.append((run_id, path))
    with ThreadPoolExecutor(THREADS) as pool:  # pyarrow reads without the GIL
        for (run_id, _), table in zip(local, pool.map(
                lambda item: _read_parquet(item[1], item[0], wanted), local)):
            tables[run_id] = table
    client = None
    if remote or (history_fallback and any(t is None for t in tables.values())):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
    if remote:
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(THREADS) as pool:
            for run_id, table in zip(remote, pool.map(
                    lambda r: _download(client, r, tmp, wanted), remote)):
                tables[run_id] = table
    if history_fallback and client is not None:
        missing = [r for r, t in tables.items() if t is None]
        with ThreadPoolExecutor(THREADS) as pool:
            for run_id, table in zip(missing, pool.map(
                    lambda r: _history(client, r, wanted), missing)):
                tables[run_id] = table
    present = [t.select(list(CURVE_COLUMNS)) for t in tables.values() if t is not None]
    if not present:
        return _empty_curves()
    schema = pa.schema(
        [("run_id", pa.string()), ("step", pa.int64()), ("wall_s", pa.float64()),
         ("key", pa.string()), ("value", pa.float64())]
    )
    table = pa.concat_tables([t.cast(schema) for t in present])
    table = table.sort_by([("run_id", "ascending"), ("key", "ascending"), ("step", "ascending")])
    df = table.to_pandas()
    for col in ("run_id", "key"):
        df[col] = df[col].astype(object)
    return df
