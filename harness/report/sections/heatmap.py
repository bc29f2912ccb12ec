"""The architecture × data set heat map: each architecture label's mean score on each data
set, coloured by where it lies between the best and the worst there (:func:`heatmap_frame`,
:func:`figure_heatmap`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..page import Section
from ..style import base_layout, esc, fmt, no_data, unique
from .base import ID, Context, columns, single

__all__ = ["ANCHOR", "TITLE", "build", "figure_heatmap", "heatmap_frame"]

ANCHOR = "heatmap"
TITLE = "Architecture × data set"


def heatmap_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Score per architecture label (``row``) and data set (``column``: the data set, with
    the dequantization scheme where the suite used several on it), and ``relative`` =
    (score − best) / (worst − best) within the column (0 when all score the same)."""
    cells = columns(agg, [*ID, "score", "url"])
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


def figure_heatmap(cells: pd.DataFrame, title: str = "Architecture × data set") -> go.Figure:
    """Relative score per architecture (rows) and data set (columns).

    ``cells``: :func:`heatmap_frame` (``row column score unit relative url``). Colour is
    ``relative`` = (score − best) / (worst − best) within the column (0 = best there); the
    text is the score itself.
    """
    fig = go.Figure()
    if cells.empty:
        return no_data(base_layout(fig, title), "no finished runs")
    columns = unique(cells["column"])
    rows = sorted(unique(cells["row"]))

    def grid(values: str) -> pd.DataFrame:
        return cells.pivot_table(index="row", columns="column", values=values,
                                 aggfunc="first").reindex(index=rows, columns=columns)

    units = dict(zip(cells["column"], cells["unit"]))
    text = [[fmt(v, 3) for v in row] for row in grid("score").to_numpy()]
    fig.add_trace(go.Heatmap(
        z=grid("relative").to_numpy(float), x=[esc(f"{c} ({units[c]})") for c in columns],
        y=[esc(r) for r in rows], text=text, texttemplate="%{text}",
        customdata=grid("url").fillna("").to_numpy(object), colorscale="RdYlGn_r", zmin=0,
        zmax=1, colorbar={"title": {"text": "0 best<br>1 worst"}},
        hovertemplate="%{y} on %{x}: %{text}<extra></extra>",
    ))
    base_layout(fig, title, height=max(300, 120 + 28 * len(rows)))
    fig.update_yaxes(autorange="reversed")
    return fig


def build(ctx: Context) -> Section:
    """One panel: every data set of the suite."""
    return single(
        ANCHOR, TITLE, heatmap_frame(ctx.agg), figure_heatmap,
        "Colour: (score − best) / (worst − best) within each data set (0 = best there); text: "
        "mean test bpd or NLL over finished seeds.", ctx.timed, timing=False)
