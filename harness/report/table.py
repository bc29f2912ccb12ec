"""The results table: runs from MLflow turned into the tidy frames every figure draws.

Pure functions of DataFrames (no I/O). :func:`prepare` adds short columns to a
:func:`harness.tracking.read.load_runs` table; :func:`aggregate` collapses seeds into one row
per configuration (data set × architecture label × dequantization) with the mean and the
sample standard deviation (ddof = 1; NaN with one seed) of every metric over *finished* runs.

The quality metric of a data set (its ``score``) is ``eval/bpd`` for discrete data (bits per
dimension, every Jacobian included) and ``eval/nll`` for continuous data (nats per example);
lower is better for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .. import keys
from .safety import check_ui_base

__all__ = [
    "aggregate",
    "config_label",
    "dataset_label",
    "model_url",
    "pareto_mask",
    "prepare",
    "provenance",
    "run_url",
    "runtime_label",
    "score_key",
    "scored",
]

DEFAULT_UI = "http://127.0.0.1:5000"  # `mlflow ui`'s default address
# short columns added by prepare(), from tags (with a fallback on the config params)
_SHORT = {
    "suite": (keys.TAG_SUITE, None),
    "arch": (keys.TAG_ARCH, "arch.name"),
    "arch_label": (keys.TAG_ARCH_LABEL, None),
    "dataset": (keys.TAG_DATASET, "data.name"),
    "dequant": (keys.TAG_DEQUANT, "dequant.scheme"),
    "seed": (keys.TAG_SEED, "seed"),
    "runtime": (keys.TAG_RUNTIME, "runtime.name"),
    "status": (keys.TAG_STATUS, None),
    "device": (keys.TAG_DEVICE, None),
    "revision": (keys.TAG_REVISION, None),
    "error": (keys.TAG_ERROR, None),
}
_MLFLOW_STATUS = {
    "FINISHED": keys.STATUS_FINISHED,
    "FAILED": keys.STATUS_FAILED,
    "KILLED": keys.STATUS_KILLED,
    "RUNNING": keys.STATUS_RUNNING,
    "SCHEDULED": keys.STATUS_RUNNING,
}


def run_url(ui_base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of one run."""
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_url(ui_base: str, experiment_id: str, model_id: object) -> str:
    """The MLflow UI page of a run's LoggedModel (its flow), or "" for a run without one."""
    if not isinstance(model_id, str) or not model_id:
        return ""
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/models/{model_id}"


def config_label(arch_label: str, dequant: str | float | None) -> str:
    """``arch_label`` plus the dequantization scheme where there is one (not 'none')."""
    if not isinstance(dequant, str) or dequant in ("", "none"):
        return str(arch_label)
    return f"{arch_label} [{dequant}]"


def runtime_label(arch_label: str, runtime: str) -> str:
    """``realnvp · compile``: an architecture's label under a runtime other than eager."""
    return f"{arch_label} · {runtime}"


def score_key(kind: str) -> str:
    """The quality metric of a data set of ``kind`` (discrete: bpd, else NLL)."""
    return keys.EVAL_BPD if kind == "discrete" else keys.EVAL_NLL


LAYOUT_OPTIONS = {"flatten"}  # data options that change the shape, not the numbers
_DATA_FACTS = {"data.name", "data.kind", "data.dims", "data.levels", "data.fingerprint"}


def _option_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def dataset_label(name: str, options: dict[str, object]) -> str:
    """``name(k=v, …)`` with the data set's options sorted (the suite's ``display``), so that
    two variants of one data set in a suite (``digits`` flattened or not) stay apart."""
    opts = {k: v for k, v in options.items() if isinstance(v, str) or not pd.isna(v)}
    if not opts:
        return name
    return f"{name}({', '.join(f'{k}={_option_text(v)}' for k, v in sorted(opts.items()))})"


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(np.nan, index=df.index, dtype=float)


def prepare(runs: pd.DataFrame, ui_base: str = DEFAULT_UI) -> pd.DataFrame:
    """The runs table with the columns the figures use.

    Adds ``suite arch arch_label dataset dequant seed runtime status device revision error``
    (``runtime``: eager where a run has none; ``arch_label`` carries a runtime other than eager,
    ``realnvp · compile``, and ``base_label`` is the label without it) (from the
    ``nfbench.*`` tags, falling back on the params or the MLflow status for runs written by
    something else; ``dataset`` is the data set's name with its options, ``digits(flatten=True)``,
    ``dataset_name`` the bare name, ``standard_data`` whether its options change only the
    layout, so that published figures apply), ``config`` (:func:`config_label`), ``kind``
    (continuous | discrete, per data set), ``score_key`` / ``score`` / ``unit`` (the data set's
    quality metric), ``ok`` (status finished with a finite score), ``reference`` (a baseline row:
    the run's ``nfbench.reference`` tag, which the job sets from the model's registry entry) and
    ``url`` (the run's MLflow page) and ``model_url`` (its flow's LoggedModel page, "" when
    it has none).
    """
    check_ui_base(ui_base)
    df = runs.copy()
    n = len(df)
    for short, (tag, param) in _SHORT.items():
        col = _column(df, tag)
        if param is not None and param in df:
            col = col.where(col.notna(), df[param])
        df[short] = col
    df["suite"] = df["suite"].where(df["suite"].notna(), _column(df, "experiment"))
    status = _column(df, "mlflow_status").map(_MLFLOW_STATUS)
    df["status"] = df["status"].where(df["status"].notna(), status).fillna(keys.STATUS_RUNNING)
    df["arch"] = df["arch"].fillna("?").astype(str)
    df["arch_label"] = df["arch_label"].where(df["arch_label"].notna(), df["arch"]).astype(str)
    # the runtime: runs without one (eager jobs of any age) are eager; a compiled run's label
    # says so, so that no leaderboard, front or table mixes runtimes under one name
    df["runtime"] = df["runtime"].where(df["runtime"].notna(), "eager").astype(str)
    df["base_label"] = df["arch_label"]
    df["arch_label"] = [label if rt == "eager" else runtime_label(label, rt)
                        for label, rt in zip(df["base_label"], df["runtime"])]
    df["dataset_name"] = df["dataset"].fillna("?").astype(str)
    option_cols = [c for c in df.columns if c.startswith("data.") and c not in _DATA_FACTS
                   and not c.startswith("data.split.")]
    options = [{c.removeprefix("data."): v for c, v in zip(option_cols, row)
                if isinstance(v, str) or not pd.isna(v)}
               for row in df[option_cols].itertuples(index=False)] if option_cols else [{}] * n
    df["dataset"] = [dataset_label(name, o) for name, o in zip(df["dataset_name"], options)]
    # published figures are for the data as published: only a change of layout keeps them
    df["standard_data"] = [set(o) <= LAYOUT_OPTIONS for o in options]
    df["dequant"] = df["dequant"].fillna("none").astype(str)
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce")
    df["config"] = [config_label(a, d) for a, d in zip(df["arch_label"], df["dequant"])]
    kind = _column(df, "data.kind").astype(object)
    has_bpd = _column(df, keys.EVAL_BPD).notna()
    discrete = (kind == "discrete") | has_bpd
    df["kind"] = np.where(discrete.groupby(df["dataset"]).transform("any"),
                          "discrete", "continuous") if n else pd.Series([], dtype=object)
    df["score_key"] = [score_key(k) for k in df["kind"]]
    bpd, nll = _column(df, keys.EVAL_BPD), _column(df, keys.EVAL_NLL)
    df["score"] = np.where(df["kind"] == "discrete", bpd, nll).astype(float) if n else []
    df["unit"] = np.where(df["kind"] == "discrete", "bpd", "nats") if n else []
    df["ok"] = (df["status"] == keys.STATUS_FINISHED) & np.isfinite(df["score"].astype(float))
    df["reference"] = (_column(df, keys.TAG_REFERENCE) == keys.REFERENCE_YES).to_numpy(bool)
    exp = _column(df, "experiment_id").astype(str)
    df["url"] = [run_url(ui_base, e, r) for e, r in zip(exp, df["run_id"])]
    df["model_url"] = [model_url(ui_base, e, m) for e, m in zip(exp, _column(df, keys.TAG_MODEL))]
    return df


def scored(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs a statistic counts: finished with a finite score (:func:`prepare`'s ``ok``)."""
    return runs[runs["ok"].astype(bool)] if len(runs) else runs


GROUP = ["dataset", "config"]


def aggregate(df: pd.DataFrame, metrics: Iterable[str], by: Sequence[str] = GROUP) -> pd.DataFrame:
    """One row per configuration: ``by`` columns, then ``arch arch_label dequant kind unit
    reference``, ``n_runs`` (all statuses), ``n_ok``, ``seeds`` (of finished runs, "0,1,2"),
    ``m`` (mean over finished runs) and ``m std`` (sample std, ddof 1) for each metric ``m``,
    ``url``: the finished run whose score is nearest the median (the one a point links to),
    and ``model_url``: the flow of the finished run with the lowest score that has one (the one
    ``nfbench promote`` registers when the configuration is the best), "" when none has.

    ``by = ("dataset", "arch_label")`` pools the dequantization schemes of an architecture
    (for timings, which do not depend on them); ``config`` is then the architecture label.
    """
    metrics = [m for m in dict.fromkeys(metrics) if m in df]
    first = [c for c in ("arch", "arch_label", "base_label", "runtime", "dequant", "kind",
                         "unit", "reference",
                         "dataset_name", "standard_data") if c not in by and c in df]
    if df.empty:
        cols = [*by, *first, "n_runs", "n_ok", "seeds", "url"]
        return pd.DataFrame(columns=cols + [c for m in metrics for c in (m, f"{m} std")])
    groups = df.groupby(list(by), sort=True, dropna=False)
    out = groups[first].first()
    out["n_runs"] = groups.size()
    ok = df[df["ok"]]
    ok_groups = ok.groupby(list(by), sort=True, dropna=False)
    out["n_ok"] = ok_groups.size().reindex(out.index).fillna(0).astype(int)
    out["seeds"] = ok_groups["seed"].agg(
        lambda s: ",".join(str(int(v)) for v in sorted(s.dropna()))).reindex(out.index)
    out["seeds"] = out["seeds"].fillna("")
    for m in metrics:
        values = ok[m].astype(float).replace([np.inf, -np.inf], np.nan)
        g = values.groupby([ok[c] for c in by], sort=True, dropna=False)
        out[m] = g.mean().reindex(out.index)
        out[f"{m} std"] = g.std(ddof=1).reindex(out.index)
    dist = (ok["score"] - ok.groupby(list(by))["score"].transform("median")).abs()
    rep = ok.assign(_d=dist).sort_values("_d", kind="stable").groupby(list(by)).first()["url"]
    fallback = groups["url"].first()
    out["url"] = rep.reindex(out.index).fillna(fallback)
    if "model_url" in ok:
        with_model = ok[ok["model_url"].astype(bool)].sort_values("score", kind="stable")
        best = with_model.groupby(list(by))["model_url"].first()
        out["model_url"] = best.reindex(out.index).fillna("")
    out = out.reset_index()
    if "config" not in out:  # grouped by architecture label: every scheme together
        out["config"] = out["arch_label"]
    return out


def pareto_mask(x: Sequence[float], y: Sequence[float], *, x_high: bool, y_high: bool = False
                ) -> np.ndarray:
    """Which points are on the Pareto front (not dominated by another point).

    Point j dominates i when it is at least as good in both coordinates and strictly better
    in one (``x_high``: larger x is better; ``y_high`` likewise). Non-finite points are never
    on the front and dominate nothing. O(n²), for the few hundred points of a data set.
    """
    xs = np.asarray(x, dtype=float) * (1 if x_high else -1)
    ys = np.asarray(y, dtype=float) * (1 if y_high else -1)
    finite = np.isfinite(xs) & np.isfinite(ys)
    xf, yf = np.where(finite, xs, -np.inf), np.where(finite, ys, -np.inf)
    ge = (xf[None, :] >= xf[:, None]) & (yf[None, :] >= yf[:, None])
    gt = (xf[None, :] > xf[:, None]) | (yf[None, :] > yf[:, None])
    dominated = (ge & gt & finite[None, :]).any(axis=1)
    return finite & ~dominated


def _values(df: pd.DataFrame, col: str) -> str:
    if col not in df:
        return "?"
    vals = [v for v in pd.unique(df[col].dropna())]
    if not vals:
        return "?"
    text = [f"{v:g}" if isinstance(v, (int, float, np.number)) else str(v) for v in vals]
    return " / ".join(sorted(text)[:4]) + (" …" if len(text) > 4 else "")


def provenance(df: pd.DataFrame, timing: bool = True) -> str:
    """How the numbers of ``df`` (prepared runs) were measured, in one sentence for captions:
    device, timing batch size and repeats, evaluation batch, training budget, seeds."""
    if df.empty:
        return "No runs."
    parts = [f"Device: {_values(df, 'device')}"]
    if timing:
        parts.append(f"timing batch {_values(df, 'timing.batch_size')}, "
                     f"{_values(df, keys.TAG_TIMING_THREADS)} CPU thread(s) on CPU, first "
                     f"quartile of device-synced blocks (torch.utils.benchmark, at least "
                     f"{_values(df, 'timing.min_run_time')} s per measurement; median and IQR "
                     "recorded beside it) after warm-up, no other job on the device")
    parts.append(f"evaluation batch {_values(df, 'eval.batch_size')}")
    parts.append(f"training budget {_values(df, 'train.steps')} steps")
    ok = df[df["ok"]] if "ok" in df else df
    parts.append(f"{len(ok)} finished runs over seeds {_values(ok, 'seed')}")
    return "; ".join(parts) + "."
