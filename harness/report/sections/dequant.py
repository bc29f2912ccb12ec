"""The dequantization gap: on discrete data, test bpd per architecture under uniform and
variational dequantization (the variational bound), and the importance-weighted bound of
the variational runs (:func:`dequant_frame`, :func:`figure_dequant`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ... import keys
from ..page import Section
from ..style import base_layout, esc, hover, no_data, unique
from .base import ID, Context, columns, single

__all__ = ["ANCHOR", "TITLE", "build", "dequant_frame", "figure_dequant"]

ANCHOR = "dequant"
TITLE = "Dequantization gap"


def dequant_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Discrete data: bpd per architecture and dequantization, the importance-weighted bound,
    and ``gap`` = bpd(uniform) − bpd(this scheme) for the same architecture label."""
    cols = [*ID, "score", "score std", keys.EVAL_BPD_IW, f"{keys.EVAL_BPD_IW} std", "n_ok",
            "url"]
    out = columns(agg, cols)
    out = out[(out["unit"] == "bpd") & np.isfinite(out["score"].astype(float))].copy()
    uniform = out[out["dequant"] == "uniform"].set_index(["dataset", "arch_label"])["score"]
    base = uniform.reindex(pd.MultiIndex.from_frame(out[["dataset", "arch_label"]]))
    out["gap"] = base.to_numpy() - out["score"].to_numpy()
    return out.reset_index(drop=True)


_SCHEMES = (("uniform", "score", "uniform"), ("variational", "score", "variational (bound)"),
            ("variational", keys.EVAL_BPD_IW, "variational (importance-weighted)"))


def figure_dequant(gap: pd.DataFrame, title: str = "Dequantization gap") -> go.Figure:
    """Test bpd per architecture under uniform and variational dequantization, and the
    importance-weighted bound, one panel per discrete data set.
    ``gap``: :func:`dequant_frame`."""
    datasets = unique(gap["dataset"]) if not gap.empty else []
    fig = make_subplots(rows=1, cols=max(1, len(datasets)), horizontal_spacing=0.06,
                        subplot_titles=[esc(d) for d in datasets] or None)
    base_layout(fig, title, height=440)
    if gap.empty:
        return no_data(fig, "no discrete data in this suite")
    colours = {"uniform": "#1f77b4", "variational (bound)": "#ff7f0e",
               "variational (importance-weighted)": "#2ca02c"}
    for col, dataset in enumerate(datasets, start=1):
        part = gap[gap["dataset"] == dataset]
        for scheme, metric, name in _SCHEMES:
            rows = part[part["dequant"] == scheme]
            if metric not in rows or not np.isfinite(rows[metric].astype(float)).any():
                continue
            std = rows.get(f"{metric} std", pd.Series(0.0, index=rows.index)).fillna(0)
            fig.add_trace(go.Bar(
                x=[esc(a) for a in rows["arch_label"]], y=rows[metric], name=name,
                legendgroup=name, showlegend=col == 1, marker_color=colours[name],
                error_y={"type": "data", "array": std, "visible": True},
                customdata=rows["url"],
                text=[hover(("", a), (name, v), ("gap to uniform", g))
                      for a, v, g in zip(rows["arch_label"], rows[metric], rows["gap"])],
                hovertemplate="%{text}<extra></extra>", textposition="none",
            ), row=1, col=col)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="test bpd (lower is better)", row=1, col=1)
    return fig


def build(ctx: Context) -> Section:
    """One panel, a subplot per discrete data set."""
    return single(
        ANCHOR, TITLE, dequant_frame(ctx.agg), figure_dequant,
        "Discrete data: test bpd under uniform and variational dequantization (the variational "
        "bound) and the importance-weighted bound of the variational runs; gap = uniform − "
        "variational for the same architecture (in the hover).", ctx.timed, timing=False)
