"""Across data sets: the average rank of each architecture over the data sets with the
Friedman test and the Nemenyi critical-difference diagram (:func:`rank_frames`,
:func:`figure_cd`), and its normalised score averaged over data sets with a stratified
bootstrap interval (:func:`aggregate_frame`, :func:`figure_aggregate`).

Across data sets a *data set* is a data set under one dequantization scheme (the bound being
estimated; with several suites, a suite's data set), and a *configuration* is an architecture
label, so that one architecture is followed across continuous and discrete data. The same
section heads the front page of a report of several suites (:func:`across_section`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import stats
from ..html import Raw, table
from ..page import Panel, Section
from ..stats import RankResult
from ..style import arch_colour, base_layout, esc, fmt, hover, no_data
from ..table import scored
from .base import Context

__all__ = ["ANCHOR", "TITLE", "across_section", "aggregate_frame", "block_label",
           "block_scores", "build", "figure_aggregate", "figure_cd", "rank_frames"]

ANCHOR = "across"
TITLE = "Across data sets"
ALPHA = stats.ALPHA


def block_label(dataset: str, dequant: str, n_schemes: int, suite: str | None = None) -> str:
    """``dataset`` (with ``[scheme]`` where the data set ran under several, and ``suite ·``
    first where the runs come from several suites)."""
    text = f"{dataset} [{dequant}]" if n_schemes > 1 else str(dataset)
    return f"{suite} · {text}" if suite else text


def _blocks(runs: pd.DataFrame) -> pd.Series:
    ok = runs
    schemes = ok.groupby("dataset")["dequant"].transform("nunique")
    several = ok["suite"].nunique() > 1 if "suite" in ok else False
    return pd.Series([block_label(d, q, n, s if several else None)
                      for d, q, n, s in zip(ok["dataset"], ok["dequant"], schemes,
                                            ok.get("suite", pd.Series("", index=ok.index)))],
                     index=ok.index, dtype=object)


def _population(runs: pd.DataFrame) -> pd.DataFrame:
    ok = scored(runs).copy()
    if ok.empty:
        return ok.assign(block=pd.Series(dtype=object))
    ok["block"] = _blocks(ok)
    return ok


def block_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean score per data set (``block``) and configuration (architecture label), long."""
    ok = _population(runs)
    if ok.empty:
        return pd.DataFrame(columns=["block", "config", "score", "n_seeds"])
    g = ok.groupby(["block", "arch_label"], sort=True)["score"]
    out = pd.DataFrame({"score": g.mean(), "n_seeds": g.size()}).reset_index()
    return out.rename(columns={"arch_label": "config"})


def rank_frames(runs: pd.DataFrame, alpha: float = stats.ALPHA
                ) -> tuple[pd.DataFrame, stats.RankResult]:
    """Average ranks over data sets (rows: ``config meanrank reference arch group``) and the
    :class:`stats.RankResult` (Friedman p, critical difference, what was dropped)."""
    ok = _population(runs)
    cols = ["config", "meanrank", "arch", "reference", "groups"]
    if ok.empty:
        empty = stats.RankResult(pd.Series(dtype=float), math.nan, math.nan, alpha, [],
                                 reason="no finished run")
        return pd.DataFrame(columns=cols), empty
    matrix = ok.pivot_table(index="block", columns="arch_label", values="score",
                            aggfunc="mean")
    res = stats.rank_analysis(matrix, alpha)
    first = ok.groupby("arch_label")[["arch", "reference"]].first()
    rows = []
    for config, rank in res.ranks.items():
        member = [i for i, g in enumerate(res.groups) if config in g]
        rows.append([config, float(rank), first.loc[config, "arch"],
                     bool(first.loc[config, "reference"]), ",".join(map(str, member))])
    return pd.DataFrame(rows, columns=cols), res


def aggregate_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (architecture label): the mean over data sets of its normalised
    score (0 = the best reference row, 1 = the best run; :func:`stats.normalised_scores`),
    its 95 % stratified-bootstrap interval, the data sets it covers and its seeds."""
    cols = ["config", "arch", "reference", "score", "ci_lo", "ci_hi", "n_datasets", "n_runs",
            "datasets"]
    ok = _population(runs)
    if ok.empty:
        return pd.DataFrame(columns=cols)
    refs = ok[ok["reference"].astype(bool)]
    ref_score = refs.groupby(["block", "arch_label"])["score"].mean().groupby(level="block").min()
    frame = ok[["block", "arch_label", "score"]].rename(columns={"arch_label": "config"})
    ok = ok.assign(norm=stats.normalised_scores(frame, ref_score).to_numpy())
    rows = []
    for config, part in ok.groupby("arch_label", sort=True):
        part = part[np.isfinite(part["norm"].astype(float))]
        if part.empty:
            continue
        blocks = [g["norm"].to_numpy(float) for _, g in part.groupby("block", sort=True)]
        point, lo, hi = stats.aggregate_interval(blocks)
        rows.append([config, part["arch"].iloc[0], bool(part["reference"].iloc[0]), point, lo,
                     hi, len(blocks), len(part), ", ".join(sorted(map(str,
                                                                      part["block"].unique())))])
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def figure_cd(ranks: pd.DataFrame, result: RankResult,
              title: str = "Critical-difference diagram") -> go.Figure:
    """Average ranks over data sets (1 = best, on the left), Demšar's diagram: each
    configuration hangs from the rank axis by a line to its label (the better half on the
    left, the rest on the right); a thick bar joins configurations whose average ranks
    differ by no more than the Nemenyi critical difference (shown above the axis).

    ``ranks``: :func:`rank_frames`'s rows; ``result`` its :class:`~.stats.RankResult`."""
    k = len(ranks)
    fig = go.Figure()
    base_layout(fig, title, height=max(260, 150 + 34 * math.ceil(max(k, 1) / 2)))
    if k == 0 or not math.isfinite(result.cd):
        return no_data(fig, result.reason or "no ranks")
    rows = ranks.sort_values("meanrank", kind="stable").reset_index(drop=True)
    half = math.ceil(k / 2)
    left, right = 0.5, k + 0.5
    fig.add_trace(go.Scatter(x=[1, k], y=[0, 0], mode="lines", line={"color": "#222"},
                             hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(x=list(range(1, k + 1)), y=[0] * k, mode="markers+text",
                             marker={"symbol": "line-ns-open", "size": 10, "color": "#222"},
                             text=[str(i) for i in range(1, k + 1)], textposition="top center",
                             hoverinfo="skip", showlegend=False))
    cd_y = 0.9
    fig.add_trace(go.Scatter(
        x=[1, 1 + result.cd], y=[cd_y, cd_y], mode="lines+markers+text",
        line={"color": "#b00020", "width": 3}, marker={"symbol": "line-ns-open", "size": 12},
        text=["", f"CD = {result.cd:.2f}"], textposition="middle right", hoverinfo="skip",
        showlegend=False))
    for i, r in rows.iterrows():
        on_left = i < half
        depth = -(i + 1) * 0.55 if on_left else -(k - i) * 0.55
        end = left if on_left else right
        colour = arch_colour(str(r["arch"]))
        fig.add_trace(go.Scatter(
            x=[r["meanrank"], r["meanrank"], end], y=[0, depth, depth], mode="lines",
            line={"color": colour, "width": 1.5}, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(
            x=[end], y=[depth], mode="markers+text", marker={"size": 7, "color": colour,
                                                              "symbol": "square" if
                                                              r["reference"] else "circle"},
            text=[f"{esc(r['config'])} ({r['meanrank']:.2f})"],
            textposition="middle left" if on_left else "middle right", showlegend=False,
            hovertext=[hover(("", r["config"]), ("average rank", r["meanrank"]))],
            hovertemplate="%{hovertext}<extra></extra>"))
    ranks_of = dict(zip(rows["config"], rows["meanrank"]))
    for g, group in enumerate(result.groups):
        xs = [ranks_of[c] for c in group if c in ranks_of]
        y = -0.18 - 0.14 * g
        fig.add_trace(go.Scatter(
            x=[min(xs) - 0.03, max(xs) + 0.03], y=[y, y], mode="lines",
            line={"color": "#222", "width": 5}, showlegend=False,
            hovertext=[f"not significantly different: {', '.join(map(esc, group))}"] * 2,
            hovertemplate="%{hovertext}<extra></extra>"))
    lowest = -0.55 * half - 0.3
    fig.update_xaxes(range=[left - 0.35 * k - 1.2, right + 0.35 * k + 1.2], visible=False)
    fig.update_yaxes(range=[lowest, 1.3], visible=False)
    fig.update_layout(margin={"l": 20, "r": 20, "t": 50, "b": 20})
    return fig


def figure_aggregate(agg: pd.DataFrame, title: str = "Aggregate score") -> go.Figure:
    """Each configuration's normalised score averaged over data sets (0 = the best reference
    row, 1 = the best run) with its 95 % stratified-bootstrap interval, best at the top.
    ``agg``: :func:`aggregate_frame`."""
    fig = go.Figure()
    base_layout(fig, title, height=max(260, 60 + 30 * len(agg)))
    rows = agg[np.isfinite(agg["score"].astype(float))] if len(agg) else agg
    if rows.empty:
        return no_data(fig, "no configuration with a normalised score")
    rows = rows.sort_values("score", kind="stable")
    plus = (rows["ci_hi"] - rows["score"]).fillna(0).clip(lower=0)
    minus = (rows["score"] - rows["ci_lo"]).fillna(0).clip(lower=0)
    fig.add_trace(go.Scatter(
        x=rows["score"], y=[esc(c) for c in rows["config"]], mode="markers",
        marker={"size": 11, "color": [arch_colour(a) for a in rows["arch"]],
                "symbol": ["square" if r else "circle" for r in rows["reference"]]},
        error_x={"type": "data", "array": plus, "arrayminus": minus, "visible": True,
                 "color": "#555"},
        text=[hover(("", c), ("score", s), ("95 % interval", f"{fmt(lo, 3)} – {fmt(hi, 3)}"),
                    ("data sets", n), ("runs", m))
              for c, s, lo, hi, n, m in zip(rows["config"], rows["score"], rows["ci_lo"],
                                            rows["ci_hi"], rows["n_datasets"], rows["n_runs"])],
        hovertemplate="%{text}<extra></extra>", showlegend=False))
    for x, name in ((0.0, "reference"), (1.0, "best run")):
        fig.add_vline(x=x, line={"color": "#999", "dash": "dot"}, annotation_text=name,
                      annotation_position="top")
    fig.update_xaxes(title_text="normalised score, mean over data sets (higher is better)")
    fig.update_yaxes(type="category", categoryorder="array",
                     categoryarray=[esc(c) for c in rows["config"]])
    return fig


def across_section(runs: pd.DataFrame, caption_tail: str = "") -> Section:
    """Ranks over data sets with the Friedman test and the critical-difference diagram, and
    the aggregate normalised score with its stratified-bootstrap interval."""
    sec = Section(ANCHOR, TITLE)
    ranks, res = rank_frames(runs, ALPHA)
    dropped = []
    if res.dropped_configs:
        dropped.append(f"left out for missing a data set: {', '.join(res.dropped_configs)}")
    if res.dropped_blocks:
        dropped.append(f"data sets left out for missing configurations: "
                       f"{', '.join(res.dropped_blocks)}")
    what = (f"Friedman p = {fmt(res.pvalue, 3)}, Nemenyi critical difference "
            f"{fmt(res.cd, 3)} at α = {ALPHA:g} over {len(res.blocks)} data sets"
            if not res.reason else f"No rank analysis: {res.reason}")
    caption = (
        "Average rank of each architecture (its label) over the data sets (a data set under "
        "one dequantization scheme counts once; rank 1 = lowest mean test bpd / NLL), with "
        "autorank's non-parametric analysis: the Friedman test over all configurations, then "
        "the Nemenyi critical difference (CD): thick bars join configurations whose average "
        f"ranks differ by no more than the CD (not significantly different). {what}."
        + (f" {'; '.join(dropped)}." if dropped else "") + caption_tail)
    if res.reason:  # nothing to draw: publish the scores the analysis would have ranked
        scores = block_scores(runs)
        if len(scores):
            sec.panels.append(Panel("ranks", caption, scores))
        else:
            sec.note = caption
    else:
        rows = [[r.config, f"{r.meanrank:.2f}", "reference" if r.reference else ""]
                for r in ranks.itertuples(index=False)]
        after = table(["architecture", "average rank", ""], rows,
                      numeric=[False, True, False])
        frame = ranks.assign(friedman_p=res.pvalue, cd=res.cd, alpha=ALPHA,
                             data_sets="; ".join(res.blocks))
        sec.panels.append(Panel("ranks", caption, frame,
                                figure_cd(ranks, res, "Average ranks"), Raw(after)))
    agg = aggregate_frame(runs)
    def tidy(v: float) -> float:  # no −3.6e−17 for a reference row's 0
        return round(v, 9) + 0.0 if math.isfinite(v) else v

    rows = [[a.config, fmt(tidy(a.score), 3),
             f"[{fmt(tidy(a.ci_lo), 3)}, {fmt(tidy(a.ci_hi), 3)}]",
             a.n_datasets, a.n_runs] for a in agg.itertuples(index=False)]
    after = table(["architecture", "aggregate score", "95 % interval", "data sets", "runs"],
                  rows, numeric=[False, True, True, True, True]) if rows else ""
    sec.panels.append(Panel(
        "aggregate", "Each architecture's test bpd / NLL normalised per data set, "
        "(s_ref − s) / (s_ref − s_best): 0 is the best reference row (Gaussian, histogram; "
        "where a data set has none, the worst configuration), 1 the best single run; "
        "averaged over the data sets the architecture ran on, with a 95 % stratified "
        "bootstrap interval (seeds resampled within each data set, 10,000 resamples, "
        "percentile). Architectures that ran on different data sets are not directly "
        f"comparable (see the data sets column of the data).{caption_tail}", agg,
        figure_aggregate(agg, "Aggregate normalised score"), Raw(after)))
    return sec


def build(ctx: Context) -> Section:
    """The section over the suite's data sets."""
    return across_section(ctx.runs)
