"""The stability panel and the invertibility–expressivity–efficiency triangle.

Pure functions of the frames of :mod:`harness.report.derive` and
:mod:`harness.report.scores`; every point links to a run.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import keys
from .scores import DEFINITIONS
from .style import arch_colour, base_layout, esc, hover, no_data, unique

__all__ = ["PANELS", "figure_stability", "figure_triangle"]

# (metric, subplot title, log axis)
PANELS = (
    (keys.STAB_INV_ERR_MAX, "invertibility error max |f⁻¹(f(x)) − x|", True),
    (keys.STAB_SATURATED_SHARE, "share of saturated scales", False),
    (keys.STAB_NONFINITE_STEPS, "non-finite training steps", False),
    (keys.STAB_LATENT_KS, "latent KS statistic vs N(0, 1)", False),
    (keys.STAB_NFE, "CNF function evaluations", False),
    (keys.STAB_COND_MAX, "Glow 1×1 conv condition number", True),
)


def _jitter(run_id: str) -> float:
    """A fixed horizontal offset per run in [−0.25, 0.25] (deterministic, not random)."""
    return (zlib.crc32(run_id.encode()) % 1000) / 2000 - 0.25


def figure_stability(stab: pd.DataFrame, title: str = "Stability") -> go.Figure:
    """Each diagnostic per architecture label, one point per run (finished: dots; diverged:
    red crosses). ``stab``: :func:`harness.report.derive.stability_frame`. Panels whose
    metric no run logged (NFE without FFJORD, the condition number without Glow) are empty."""
    fig = make_subplots(rows=2, cols=3, vertical_spacing=0.22, horizontal_spacing=0.07,
                        subplot_titles=[esc(t) for _, t, _ in PANELS])
    configs = sorted(unique(stab["arch_label"])) if not stab.empty else []
    base_layout(fig, title, height=640 + 8 * len(configs))
    if stab.empty:
        return no_data(fig, "no finished or diverged runs")
    pos = {c: i for i, c in enumerate(configs)}
    x = np.array([pos[c] + _jitter(r) for c, r in zip(stab["arch_label"], stab["run_id"])])
    shown: set[str] = set()
    for i, (metric, _, log) in enumerate(PANELS):
        row, col = divmod(i, 3)
        if metric not in stab or stab[metric].notna().sum() == 0:
            fig.add_annotation(text="not recorded in this suite", showarrow=False,
                               x=0.5, y=0.5, xref=f"x{i + 1 if i else ''} domain",
                               yref=f"y{i + 1 if i else ''} domain", font={"color": "#888"})
            continue
        for arch in unique(stab["arch"]):
            for status, symbol in (("finished", "circle"), ("diverged", "x")):
                m = (stab["arch"] == arch) & (stab["status"] == status) & stab[metric].notna()
                if not m.any():
                    continue
                part = stab[m]
                name = esc(arch) if status == "finished" else esc(f"{arch} (diverged)")
                fig.add_trace(go.Scatter(
                    x=x[m.to_numpy()], y=part[metric], mode="markers", name=name,
                    legendgroup=name, showlegend=name not in shown,
                    marker={"symbol": symbol, "size": 8 if status == "finished" else 10,
                            "color": arch_colour(arch) if status == "finished" else "#d62728"},
                    customdata=part["url"],
                    text=[hover(("", c), ("", d), ("seed", s), ("status", st), (metric, v))
                          for c, d, s, st, v in zip(part["config"], part["dataset"],
                                                    part["seed"], part["status"],
                                                    part[metric])],
                    hovertemplate="%{text}<extra></extra>",
                ), row=row + 1, col=col + 1)
                shown.add(name)
        if log:
            fig.update_yaxes(type="log", row=row + 1, col=col + 1)
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(configs))),
                     ticktext=[esc(c) for c in configs], tickangle=-35,
                     range=[-0.6, len(configs) - 0.4])
    return fig


def figure_triangle(scores: pd.DataFrame,
                    title: str = "Invertibility – expressivity – efficiency") -> go.Figure:
    """Each configuration placed in a ternary plot by its three normalised scores.
    ``scores``: :func:`harness.report.scores.triangle_scores`; definitions in
    :data:`harness.report.scores.DEFINITIONS` (the page prints them under the figure)."""
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
