"""The cost of the log-determinant: the time of transform(x) with the log-det minus the time
without it, against the data dimension, and its share of the forward pass, per architecture
(:func:`logdet_frame`, :func:`figure_logdet`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ... import keys
from ..page import Section
from ..style import arch_colour, base_layout, esc, hover, no_data, unique
from .base import ID, Context, columns, single

__all__ = ["ANCHOR", "TITLE", "build", "figure_logdet", "logdet_frame"]

ANCHOR = "logdet"
TITLE = "Cost of the log-determinant"


def logdet_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Log-det time and its share of the forward pass, with the data's dimension."""
    cols = [*ID, "data.dims", keys.PERF_LOGDET_MS, f"{keys.PERF_LOGDET_MS} std",
            keys.PERF_LOGDET_SHARE, keys.PERF_FORWARD_NOLOGDET_MS, keys.PERF_DENSITY_MS, "url"]
    out = columns(agg, cols)
    return out[np.isfinite(out[keys.PERF_LOGDET_MS].astype(float))].reset_index(drop=True)


def figure_logdet(cost: pd.DataFrame, title: str = "Cost of the log-determinant") -> go.Figure:
    """Log-det time against data dimension per configuration (left, log–log) and its share
    of the forward pass (right). ``cost``: :func:`logdet_frame`. The log-det time is the
    difference of two timed forward passes, with and without it."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09,
                        subplot_titles=("log-det time (ms per batch)",
                                        "share of the forward pass"))
    base_layout(fig, title, height=440)
    if cost.empty:
        return no_data(fig, "no log-det timings recorded")
    for config in sorted(unique(cost["config"])):
        part = cost[cost["config"] == config].sort_values("data.dims")
        colour = arch_colour(str(part["arch"].iloc[0]))
        text = [hover(("", config), ("", d), ("dims", n), ("log-det ms", t), ("share", s))
                for d, n, t, s in zip(part["dataset"], part["data.dims"],
                                      part[keys.PERF_LOGDET_MS], part[keys.PERF_LOGDET_SHARE])]
        for col, y in enumerate((keys.PERF_LOGDET_MS, keys.PERF_LOGDET_SHARE), start=1):
            fig.add_trace(go.Scatter(
                x=part["data.dims"], y=part[y], mode="lines+markers", name=esc(config),
                legendgroup=config, showlegend=col == 1, line={"color": colour},
                customdata=part["url"], text=text, hovertemplate="%{text}<extra></extra>",
            ), row=1, col=col)
    fig.update_xaxes(type="log", title_text="data dimension D")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=2)
    return fig


def build(ctx: Context) -> Section:
    """One panel: every architecture (dequantization schemes pooled) and data set."""
    return single(
        ANCHOR, TITLE, logdet_frame(ctx.per_arch), figure_logdet,
        "Log-det time = time of transform(x) with the log-det − time without it (two timed "
        "passes, not a guess), against the data dimension, per architecture (mean over seeds "
        "and dequantization schemes); right: its share of the forward pass.", ctx.timed)
