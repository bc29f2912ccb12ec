"""The invertibility–expressivity–efficiency triangle: three normalised scores per
configuration (:func:`triangle_scores`), drawn as a ternary plot (:func:`figure_triangle`) with
the scores and their definitions in a table under it.

All three lie in [0, 1], 1 best, and are relative to the configurations of one suite:

* invertibility  I = (L_max − L) / (L_max − L_min), with L the mean over data sets of
  log10 max(stab/inv_err_max, 1e-12) (1 for every configuration when all L are equal);
* expressivity   E = mean over data sets of clip((s_ref − s) / (s_ref − s_best), 0, 1), with s
  the mean test bpd / NLL, s_best the best configuration's and s_ref the best reference row's
  (the Gaussian, the histogram; the worst configuration's where the suite has none) on that
  data set;
* efficiency     F = mean over data sets of the mean of two min–max scores on log scales:
  sampling throughput (higher is better) and density-evaluation time (lower is better).

A configuration is placed in the triangle at (I, E, F) / (I + E + F): the corner it leans to
is what it is best at *relative to its own other scores*; the sum (its size) says how good it
is overall.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ... import keys
from ..html import Link, e, table
from ..page import Section
from ..style import arch_colour, base_layout, esc, fmt, hover, no_data, unique
from .base import Context, single

__all__ = ["ANCHOR", "DEFINITIONS", "TITLE", "build", "figure_triangle", "triangle_scores"]

ANCHOR = "triangle"
TITLE = "Invertibility – expressivity – efficiency"

DEFINITIONS = {
    "invertibility": "I = (L_max − L) / (L_max − L_min), L = mean over data sets of "
                     "log10 max(stab/inv_err_max, 1e-12): the smallest round-trip error "
                     "scores 1, the largest 0.",
    "expressivity": "E = mean over data sets of clip((s_ref − s) / (s_ref − s_best), 0, 1), "
                    "s = mean test bpd or NLL, s_best = the best configuration's, s_ref = the "
                    "best reference row's (the worst configuration's where there is none).",
    "efficiency": "F = mean over data sets of ½ [min–max score of log sampling throughput "
                  "(higher is better) + min–max score of log density time (lower is better)].",
    "placement": "Each configuration sits at (I, E, F) / (I + E + F); marker size grows with "
                 "I + E + F. Scores are relative to the configurations of this suite.",
}

FLOOR = 1e-12


def _minmax(values: pd.Series, higher_better: bool) -> pd.Series:
    lo, hi = values.min(), values.max()
    if not np.isfinite(lo) or not np.isfinite(hi) or hi == lo:
        return pd.Series(np.where(values.notna(), 1.0, np.nan), index=values.index)
    scaled = (values - lo) / (hi - lo)
    return scaled if higher_better else 1 - scaled


def triangle_scores(agg: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: ``invertibility expressivity efficiency`` (see module docstring),
    ``total`` = their sum, ternary coordinates ``a b c`` (NaN when a score is missing or the
    total is 0), and ``n_datasets``, ``arch``, ``url`` (its first data set's link)."""
    cols = ["config", "arch", "reference", "invertibility", "expressivity", "efficiency",
            "total", "a", "b", "c", "n_datasets", "url"]
    rows = agg[np.isfinite(agg["score"].astype(float))].copy() if "score" in agg else agg
    if rows.empty:
        return pd.DataFrame(columns=cols)
    inv = rows.get(keys.STAB_INV_ERR_MAX, pd.Series(np.nan, index=rows.index)).astype(float)
    rows["_logerr"] = np.log10(np.maximum(inv, FLOOR))
    by_data = rows.groupby("dataset")
    best = by_data["score"].transform("min")
    refs = rows[rows["reference"].astype(bool)] if "reference" in rows else rows.iloc[:0]
    ref_rows = refs.groupby(["dataset", "config"])["score"].mean().groupby("dataset").min()
    ref = rows["dataset"].map(ref_rows).fillna(by_data["score"].transform("max"))
    span = (ref - best).where(ref > best)
    rows["_expr"] = ((ref - rows["score"]) / span).clip(0, 1).fillna(1.0)
    effs = []
    for col, high in ((keys.PERF_SAMPLE_THROUGHPUT, True), (keys.PERF_DENSITY_MS, False)):
        if col in rows:
            logged = np.log10(rows[col].astype(float).where(rows[col] > 0))
            effs.append(logged.groupby(rows["dataset"]).transform(
                lambda s, h=high: _minmax(s, h)))
    rows["_eff"] = pd.concat(effs, axis=1).mean(axis=1) if effs else np.nan
    g = rows.groupby("config", sort=True)
    out = g.agg(arch=("arch", "first"), reference=("reference", "first"),
                logerr=("_logerr", "mean"), expressivity=("_expr", "mean"),
                efficiency=("_eff", "mean"), n_datasets=("dataset", "nunique"),
                url=("url", "first"))
    out["invertibility"] = _minmax(out["logerr"], higher_better=False)
    out["total"] = out[["invertibility", "expressivity", "efficiency"]].sum(axis=1, min_count=3)
    share = out[["invertibility", "expressivity", "efficiency"]].div(
        out["total"].where(out["total"] > 0), axis=0)
    out["a"], out["b"], out["c"] = share["invertibility"], share["expressivity"], \
        share["efficiency"]
    return out.reset_index()[cols]


def figure_triangle(scores: pd.DataFrame,
                    title: str = "Invertibility – expressivity – efficiency") -> go.Figure:
    """Each configuration placed in a ternary plot by its three normalised scores.
    ``scores``: :func:`triangle_scores`; definitions in :data:`DEFINITIONS` (the page prints
    them under the figure)."""
    fig = go.Figure()
    base_layout(fig, title, height=560)
    placed = scores.dropna(subset=["a", "b", "c"]) if not scores.empty else scores
    if placed.empty:
        return no_data(fig, "not enough measurements to place any configuration")
    for arch in unique(placed["arch"]):
        part = placed[placed["arch"] == arch]
        fig.add_trace(go.Scatterternary(
            a=part["a"], b=part["b"], c=part["c"], mode="markers+text", name=esc(arch),
            text=[esc(c) for c in part["config"]], textposition="top center",
            textfont={"size": 10},
            marker={"size": 8 + 6 * part["total"].astype(float),
                    "color": arch_colour(arch, bool(part["reference"].any())),
                    "line": {"width": 1, "color": "#333"},
                    "symbol": ["square" if r else "circle" for r in part["reference"]]},
            customdata=part["url"],
            hovertext=[hover(("", c), ("invertibility", i), ("expressivity", e),
                             ("efficiency", f), ("data sets", n))
                       for c, i, e, f, n in zip(part["config"], part["invertibility"],
                                                part["expressivity"], part["efficiency"],
                                                part["n_datasets"])],
            hovertemplate="%{hovertext}<extra></extra>",
        ))
    fig.update_layout(ternary={
        "sum": 1,
        "aaxis": {"title": {"text": "invertibility"}, "min": 0},
        "baxis": {"title": {"text": "expressivity"}, "min": 0},
        "caxis": {"title": {"text": "efficiency"}, "min": 0},
    }, meta={"definitions": DEFINITIONS})
    return fig


def _triangle_after(scores: pd.DataFrame) -> str:
    rows = [[s.config, fmt(s.invertibility, 3), fmt(s.expressivity, 3), fmt(s.efficiency, 3),
             fmt(s.total, 3), Link(s.url, "MLflow")] for s in scores.itertuples(index=False)]
    defs = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in DEFINITIONS.items())
    return (table(["architecture", "invertibility I", "expressivity E", "efficiency F",
                   "I + E + F", "run"], rows, numeric=[False, True, True, True, True, False])
            + f'<dl class="defs">{defs}</dl>')


def build(ctx: Context) -> Section:
    """One panel: the triangle of the finished runs' architectures, the scores under it."""
    scores = triangle_scores(ctx.per_arch)
    if scores["a"].isna().all():  # no configuration has all three scores: nothing to place
        scores = scores.iloc[:0]
    return single(
        ANCHOR, TITLE, scores, figure_triangle,
        "Each architecture (its label; dequantization schemes pooled) placed by three "
        "normalised scores (definitions under the figure; all relative to this suite).",
        ctx.timed, _triangle_after(scores))
