"""The Pareto fronts: quality against speed per data set, each configuration's mean score
against its sampling throughput and its density-evaluation time, with the configurations no
other is both better and faster than (:func:`pareto_frame`, :func:`figure_pareto`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ... import keys
from ..page import Section
from ..style import arch_colour, base_layout, esc, hover, no_data, unique
from ..table import pareto_mask
from .base import ID, Context, columns, per_dataset

__all__ = ["ANCHOR", "TITLE", "build", "figure_pareto", "pareto_frame"]

ANCHOR = "pareto"
TITLE = "Pareto fronts"
THROUGHPUT = keys.PERF_SAMPLE_THROUGHPUT
DENSITY_MS = keys.PERF_DENSITY_MS


def pareto_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Score with sampling throughput and density time, and which rows are on each front
    (computed per data set; references take part, rows without the timing do not)."""
    cols = [*ID, "score", keys.PERF_SAMPLE_THROUGHPUT, keys.PERF_DENSITY_MS, "n_ok", "url"]
    pts = columns(agg, cols)
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


def _front_line(part: pd.DataFrame, x: str) -> tuple[list, list]:
    """The front's points in increasing x (drawn as the staircase bounding what is reached)."""
    pts = part.sort_values(x)
    return list(pts[x]), list(pts["score"])


def figure_pareto(points: pd.DataFrame, title: str = "Pareto fronts") -> go.Figure:
    """Score against sampling throughput (left) and density-evaluation time (right).

    ``points``: :func:`pareto_frame` rows of one data set (``config arch reference score url
    perf/sample_throughput perf/density_ms front_sampling front_density``). The front (no
    configuration is both better and faster) is drawn as a staircase; references are squares.
    """
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("against sampling throughput",
                                        "against density-evaluation time"))
    base_layout(fig, title, height=440)
    if points.empty:
        return no_data(fig, "no finished run with timings")
    unit = str(points["unit"].iloc[0])
    for col, (x, front, x_high) in enumerate(
        ((THROUGHPUT, "front_sampling", True), (DENSITY_MS, "front_density", False)), start=1
    ):
        part = points[np.isfinite(points[x].astype(float)) & np.isfinite(points["score"])]
        for arch in unique(part["arch"]):
            sub = part[part["arch"] == arch]
            fig.add_trace(go.Scatter(
                x=sub[x], y=sub["score"], mode="markers", name=esc(arch), legendgroup=arch,
                showlegend=col == 1,
                marker={"size": np.where(sub[front], 13, 9), "color": arch_colour(arch),
                        "symbol": ["square" if r else "circle" for r in sub["reference"]],
                        "line": {"width": np.where(sub[front], 2, 0), "color": "#000"}},
                customdata=sub["url"],
                text=[hover(("", c), (unit, s), (x, v), ("on front", bool(f)))
                      for c, s, v, f in zip(sub["config"], sub["score"], sub[x], sub[front])],
                hovertemplate="%{text}<extra></extra>",
            ), row=1, col=col)
        on = part[part[front].astype(bool)]
        if len(on):
            fx, fy = _front_line(on, x)
            fig.add_trace(go.Scatter(  # best score reachable at ≥ x throughput / ≤ x time
                x=fx, y=fy, mode="lines", line={"shape": "vh" if x_high else "hv",
                                                "color": "#444", "dash": "dot"},
                name="Pareto front", showlegend=col == 1, hoverinfo="skip",
            ), row=1, col=col)
        fig.update_xaxes(type="log", row=1, col=col,
                         title_text="samples / s (higher is better)" if x_high
                         else "ms per batch (lower is better)")
    fig.update_yaxes(title_text=f"test {unit}", row=1, col=1)
    return fig


def build(ctx: Context) -> Section:
    """One panel per data set with timed finished runs."""
    return per_dataset(
        ctx.runs, pareto_frame(ctx.agg), ANCHOR, TITLE, figure_pareto,
        "Quality against speed: each point is a configuration's mean over finished seeds; "
        "sampling throughput = timing batch / median sampling time, density time = median ms "
        "of log_prob on one batch. Outlined points are on the Pareto front (no configuration is "
        "both better and faster); the dotted staircase is the best score reached at each speed. "
        "Failed and diverged runs are excluded.")
