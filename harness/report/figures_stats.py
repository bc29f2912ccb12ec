"""Statistics figures: the critical-difference diagram, the aggregate score with its
interval, the probability of improvement between configurations, the timing noise.

Pure functions of the frames of :mod:`harness.report.derive_stats` (the same frames are
published beside the figures as CSV and Parquet); they return Plotly figures.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import keys
from .stats import RankResult
from .style import arch_colour, base_layout, esc, fmt, hover, no_data

__all__ = ["UNTESTED_GREY", "figure_aggregate", "figure_cd", "figure_poi", "figure_timing_noise"]


def figure_cd(ranks: pd.DataFrame, result: RankResult,
              title: str = "Critical-difference diagram") -> go.Figure:
    """Average ranks over data sets (1 = best, on the left), Demšar's diagram: each
    configuration hangs from the rank axis by a line to its label (the better half on the
    left, the rest on the right); a thick bar joins configurations whose average ranks
    differ by no more than the Nemenyi critical difference (shown above the axis).

    ``ranks``: :func:`harness.report.derive_stats.rank_frames`'s rows; ``result`` its
    :class:`~harness.report.stats.RankResult`."""
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
    ``agg``: :func:`harness.report.derive_stats.aggregate_frame`."""
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


UNTESTED_GREY = "#c8c8c8"  # a pair without the seeds to test it: no probability is drawn


def figure_poi(pairs: pd.DataFrame, alpha: float = 0.05,
               title: str = "Probability of improvement") -> go.Figure:
    """P(row better than column) for every pair of configurations of one data set (rliable's
    probability of improvement over seeds); a ``*`` marks a Holm-significant difference.
    A pair with no test (one seed on a side: its P is a certain-looking 0, ½ or 1 from two
    numbers) is not coloured by it: it is drawn in grey, "untested", by a second heatmap
    over those cells only. ``pairs``: one data set's
    :func:`harness.report.derive_stats.pairs_frame` rows."""
    fig = go.Figure()
    if pairs.empty:
        return no_data(base_layout(fig, title), "fewer than two configurations")
    names = sorted(set(pairs["x"]) | set(pairs["y"]))
    n = len(names)
    z = np.full((n, n), np.nan)
    grey = np.full((n, n), np.nan)
    text = [["" for _ in names] for _ in names]
    pos = {c: i for i, c in enumerate(names)}
    for r in pairs.itertuples(index=False):
        i, j = pos[r.x], pos[r.y]
        if str(r.test) == "none" or not math.isfinite(r.poi):
            grey[i, j] = grey[j, i] = 0.0
            text[i][j] = text[j][i] = "untested"
            continue
        star = "*" if math.isfinite(r.p_holm) and r.p_holm < alpha else ""
        z[i, j], z[j, i] = r.poi, 1 - r.poi
        text[i][j] = f"{r.poi:.2f}{star}"
        text[j][i] = f"{1 - r.poi:.2f}{star}"
    labels = [esc(c) for c in names]
    fig.add_trace(go.Heatmap(
        z=z, x=labels, y=labels, text=text, texttemplate="%{text}", zmin=0, zmax=1,
        colorscale="RdBu", colorbar={"title": {"text": "P(row<br>better)"}},
        hovertemplate="P(%{y} better than %{x}) = %{text}<extra></extra>", name="tested"))
    if np.isfinite(grey).any():
        fig.add_trace(go.Heatmap(
            z=grey, x=labels, y=labels, text=text, texttemplate="%{text}", zmin=0, zmax=1,
            colorscale=[[0, UNTESTED_GREY], [1, UNTESTED_GREY]], showscale=False,
            name="untested", hovertemplate="%{y} vs %{x}: untested (one seed on a side: "
            "run more seeds)<extra></extra>"))
    base_layout(fig, title, height=max(300, 140 + 30 * n))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=-30)
    return fig


def figure_timing_noise(noise: pd.DataFrame, threshold: float = 0.10,
                        title: str = "Timing noise") -> go.Figure:
    """The largest relative IQR over seeds of each timing (configuration × metric) of one
    data set; cells above ``threshold`` are marked ``!`` and contended runs counted in the
    hover. ``noise``: :func:`harness.report.derive_stats.timing_noise_frame` rows."""
    fig = go.Figure()
    if noise.empty:
        return no_data(base_layout(fig, title), "no timing spread recorded")
    configs = sorted(noise["config"].unique())
    metrics = list(dict.fromkeys(noise["metric"]))
    grid = noise.pivot_table(index="config", columns="metric", values="rel_iqr",
                             aggfunc="max").reindex(index=configs, columns=metrics)
    cont = noise.pivot_table(index="config", columns="metric", values="contended_runs",
                             aggfunc="max").reindex(index=configs, columns=metrics)
    text = [[("—" if not math.isfinite(v) else f"{v:.1%}" + (" !" if v > threshold else ""))
             for v in row] for row in grid.to_numpy(float)]
    hovers = [[f"{esc(c)} · {esc(m)}: IQR {t}, contended runs {fmt(k)}"
               for m, t, k in zip(metrics, trow, krow)]
              for c, trow, krow in zip(configs, text, cont.to_numpy(float))]
    fig.add_trace(go.Heatmap(
        z=grid.to_numpy(float), x=[esc(m.removeprefix(keys.PERF_PREFIX)) for m in metrics],
        y=[esc(c) for c in configs], text=text, texttemplate="%{text}", zmin=0,
        zmax=max(0.3, threshold * 2), colorscale="YlOrRd",
        colorbar={"title": {"text": "IQR /<br>median"}}, hovertext=hovers,
        hovertemplate="%{hovertext}<extra></extra>"))
    base_layout(fig, title, height=max(260, 120 + 28 * len(configs)))
    fig.update_yaxes(autorange="reversed")
    return fig
