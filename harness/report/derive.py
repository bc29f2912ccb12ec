"""The tidy frame behind each figure, derived from the prepared runs and their aggregate.

Pure functions (no I/O); each output is what one figure draws and what the site publishes
beside it as CSV and Parquet. ``agg`` below is :func:`harness.report.table.aggregate` over
:data:`METRICS`; ``runs`` is :func:`harness.report.table.prepare`'s table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import keys
from . import ratio
from .published import published_for
from .table import pareto_mask

__all__ = [
    "METRICS",
    "STABILITY_KEYS",
    "curve_frame",
    "dequant_frame",
    "heatmap_frame",
    "leaderboard_frame",
    "logdet_frame",
    "pareto_frame",
    "speed_frame",
    "stability_frame",
    "status_frame",
]

STABILITY_KEYS = (
    keys.STAB_INV_ERR_MAX,
    keys.STAB_SATURATED_SHARE,
    keys.STAB_NONFINITE_STEPS,
    keys.STAB_LATENT_KS,
    keys.STAB_NFE,
    keys.STAB_COND_MAX,
)
METRICS = (
    "score",
    keys.EVAL_BPD_IW,
    keys.EVAL_NLL_GAP,
    keys.EVAL_BPD,
    keys.PERF_SAMPLE_THROUGHPUT,
    keys.PERF_DENSITY_MS,
    keys.PERF_SAMPLE_MS,
    keys.PERF_INVERSE_MS,
    keys.PERF_LOGDET_MS,
    keys.PERF_LOGDET_SHARE,
    keys.PERF_FORWARD_NOLOGDET_MS,
    keys.PERF_TRAIN_STEP_MS,
    keys.PERF_PEAK_MEM_MB,
    *STABILITY_KEYS,
    "data.dims",
    "flow.params",
)
_ID = ["dataset", "config", "arch", "arch_label", "dequant", "reference", "unit",
       "dataset_name"]


def _cols(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``df[cols]`` with absent columns as NaN (a suite that never logged a metric)."""
    out = df.reindex(columns=cols)
    return out.copy()


def leaderboard_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Per data set, configurations ranked by mean score, with the published figures.

    ``published`` is the first published value for the architecture on that data set and
    ``published_model`` names it; ``published_all`` lists every matching row with its source.
    None where the data set's options change its numbers (``n_bits=5``: not what was published).
    """
    cols = [*_ID, "n_runs", "n_ok", "seeds", "score", "score std", keys.EVAL_BPD_IW,
            keys.EVAL_NLL_GAP, keys.PERF_SAMPLE_THROUGHPUT, keys.PERF_DENSITY_MS,
            keys.PERF_TRAIN_STEP_MS, "flow.params", "standard_data", "url", "model_url"]
    board = _cols(agg, cols)
    board["model_url"] = board["model_url"].fillna("")
    pub_value, pub_model, pub_all, pub_source = [], [], [], []
    names = board["dataset_name"] if "dataset_name" in board else board["dataset"]
    standard = board["standard_data"] if "standard_data" in board else [True] * len(board)
    for dataset, arch, unit, std in zip(names, board["arch"], board["unit"], standard):
        hit = published_for(str(dataset), str(arch))
        hit = hit[hit["unit"] == unit] if bool(std) else hit.iloc[:0]
        pub_value.append(float(hit["value"].iloc[0]) if len(hit) else np.nan)
        pub_model.append(str(hit["model"].iloc[0]) if len(hit) else "")
        pub_all.append("; ".join(f"{v:.2f} ({m}, {s})" for v, m, s in
                                 zip(hit["value"], hit["model"], hit["source"])))
        pub_source.append("; ".join(dict.fromkeys(hit["source"])))
    board["published"] = pub_value
    board["published_model"] = pub_model
    board["published_all"] = pub_all
    board["published_source"] = pub_source
    board["rank"] = board.groupby("dataset")["score"].rank(method="min")
    board = board.sort_values(["dataset", "score"], na_position="last", kind="stable")
    return board.reset_index(drop=True)


def pareto_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Score with sampling throughput and density time, and which rows are on each front
    (computed per data set; references take part, rows without the timing do not)."""
    cols = [*_ID, "score", keys.PERF_SAMPLE_THROUGHPUT, keys.PERF_DENSITY_MS, "n_ok", "url"]
    pts = _cols(agg, cols)
    timed = pts[[keys.PERF_SAMPLE_THROUGHPUT, keys.PERF_DENSITY_MS]].notna().any(axis=1)
    pts = pts[np.isfinite(pts["score"].astype(float)) & timed].copy()
    pts["front_sampling"] = False
    pts["front_density"] = False
    for idx in pts.groupby("dataset").groups.values():
        part = pts.loc[idx]
        pts.loc[idx, "front_sampling"] = pareto_mask(
            part[keys.PERF_SAMPLE_THROUGHPUT], part["score"], x_high=True)
        pts.loc[idx, "front_density"] = pareto_mask(
            part[keys.PERF_DENSITY_MS], part["score"], x_high=False)
    return pts.reset_index(drop=True)


def heatmap_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Score per architecture label (``row``) and data set (``column``: the data set, with
    the dequantization scheme where the suite used several on it), and ``relative`` =
    (score − best) / (worst − best) within the column (0 when all score the same)."""
    cells = _cols(agg, [*_ID, "score", "url"])
    cells = cells[np.isfinite(cells["score"].astype(float))].copy()
    schemes = cells.groupby("dataset")["dequant"].transform("nunique")
    cells["row"] = cells["arch_label"]
    cells["column"] = [f"{d} [{q}]" if n > 1 else str(d)
                       for d, q, n in zip(cells["dataset"], cells["dequant"], schemes)]
    g = cells.groupby("column")["score"]
    lo, hi = g.transform("min"), g.transform("max")
    span = (hi - lo).where(hi > lo)
    cells["relative"] = ((cells["score"] - lo) / span).fillna(0.0)
    return cells.reset_index(drop=True)


def curve_frame(runs: pd.DataFrame, curves: pd.DataFrame, agg: pd.DataFrame,
                max_points: int = 200) -> pd.DataFrame:
    """Training and validation bpd / NLL per configuration and step over finished runs:
    ``mean``, ``std`` (ddof 1), ``n`` seeds, ``wall_s`` (mean seconds of training at that
    step); at most ``max_points`` steps per line (evenly thinned, the last kept)."""
    cols = ["dataset", "config", "arch", "unit", "key", "step", "wall_s", "mean", "std", "n",
            "url"]
    ok = runs.loc[runs["ok"], ["run_id", "dataset", "config", "arch", "unit", "kind"]]
    if ok.empty or curves.empty:
        return pd.DataFrame(columns=cols)
    wanted = {"discrete": (keys.TRAIN_BPD, keys.VAL_BPD),
              "continuous": (keys.TRAIN_NLL, keys.VAL_NLL)}
    pairs = pd.DataFrame([(k, key) for k, ks in wanted.items() for key in ks],
                         columns=["kind", "key"])
    sel = ok.merge(pairs, on="kind").merge(curves, on=["run_id", "key"])
    sel = sel[np.isfinite(sel["value"])]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    g = sel.groupby(["dataset", "config", "key", "step"], sort=True)
    out = g.agg(arch=("arch", "first"), unit=("unit", "first"), wall_s=("wall_s", "mean"),
                mean=("value", "mean"), std=("value", "std"), n=("value", "size"))
    out = out.reset_index()
    position = out.groupby(["dataset", "config", "key"]).cumcount()
    length = out.groupby(["dataset", "config", "key"])["step"].transform("size")
    stride = np.ceil(length / max_points).astype(int)
    out = out[(position % stride == 0) | (position == length - 1)]
    url = agg.set_index(["dataset", "config"])["url"]
    out["url"] = url.reindex(pd.MultiIndex.from_frame(out[["dataset", "config"]])).to_numpy()
    return out[cols].reset_index(drop=True)


def logdet_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Log-det time and its share of the forward pass, with the data's dimension."""
    cols = [*_ID, "data.dims", keys.PERF_LOGDET_MS, f"{keys.PERF_LOGDET_MS} std",
            keys.PERF_LOGDET_SHARE, keys.PERF_FORWARD_NOLOGDET_MS, keys.PERF_DENSITY_MS, "url"]
    out = _cols(agg, cols)
    return out[np.isfinite(out[keys.PERF_LOGDET_MS].astype(float))].reset_index(drop=True)


def speed_frame(agg: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Density time against sampling time (the MAF / IAF asymmetry), with their ratio.

    ``agg`` pools an architecture's runs per data set (``by=("dataset", "arch_label")``).
    With the finished ``runs`` that recorded their blocks, ``ratio_lo`` – ``ratio_hi`` is the
    95 % bootstrap interval of sampling ÷ density (:mod:`harness.report.ratio`: the two sides
    resampled independently, which ignores that they share runs: conservative) and
    ``resolved`` whether it tells them apart; NaN / False without blocks."""
    cols = [*_ID, "data.dims", keys.PERF_DENSITY_MS, keys.PERF_SAMPLE_MS, "url"]
    out = _cols(agg, cols)
    out = out[np.isfinite(out[keys.PERF_DENSITY_MS].astype(float))
              & np.isfinite(out[keys.PERF_SAMPLE_MS].astype(float))].copy()
    out["sample_over_density"] = out[keys.PERF_SAMPLE_MS] / out[keys.PERF_DENSITY_MS]
    lo, hi = [], []
    for dataset, label in zip(out["dataset"], out["arch_label"]):
        r = ratio.Ratio(math.nan, math.nan, math.nan)
        if runs is not None and keys.TAG_TIMING_BLOCKS in runs:
            tags = runs.loc[(runs["dataset"] == dataset) & (runs["arch_label"] == label),
                            keys.TAG_TIMING_BLOCKS]
            sides = [[b for b in (ratio.blocks_of(t, key) for t in tags) if b]
                     for key in (keys.PERF_DENSITY_MS, keys.PERF_SAMPLE_MS)]
            r = ratio.ratio(*sides)
        lo.append(r.lo)
        hi.append(r.hi)
    out["ratio_lo"], out["ratio_hi"] = lo, hi
    out["resolved"] = [ratio.resolved(a, b) for a, b in zip(lo, hi)]
    return out.reset_index(drop=True)


def dequant_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Discrete data: bpd per architecture and dequantization, the importance-weighted bound,
    and ``gap`` = bpd(uniform) − bpd(this scheme) for the same architecture label."""
    cols = [*_ID, "score", "score std", keys.EVAL_BPD_IW, f"{keys.EVAL_BPD_IW} std", "n_ok",
            "url"]
    out = _cols(agg, cols)
    out = out[(out["unit"] == "bpd") & np.isfinite(out["score"].astype(float))].copy()
    uniform = out[out["dequant"] == "uniform"].set_index(["dataset", "arch_label"])["score"]
    base = uniform.reindex(pd.MultiIndex.from_frame(out[["dataset", "arch_label"]]))
    out["gap"] = base.to_numpy() - out["score"].to_numpy()
    return out.reset_index(drop=True)


def stability_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per finished or diverged run that recorded a stability diagnostic."""
    cols = ["run_id", "dataset", "config", "arch", "arch_label", "seed", "status",
            *STABILITY_KEYS, "url"]
    keep = runs["status"].isin([keys.STATUS_FINISHED, keys.STATUS_DIVERGED])
    out = _cols(runs[keep], cols)
    out = out[out[list(STABILITY_KEYS)].notna().any(axis=1)]
    return out.sort_values(["arch_label", "config", "dataset", "seed"],
                           kind="stable").reset_index(drop=True)


def status_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run that is not a finished run with a finite score: status and last error."""
    cols = ["run_id", "run_name", "dataset", "config", "seed", "status", "mlflow_status",
            "error", "url"]
    out = _cols(runs[~runs["ok"].astype(bool)], cols)
    return out.sort_values(["status", "dataset", "config", "seed"],
                           kind="stable").reset_index(drop=True)
