"""The stability section: one point per finished or diverged run for each diagnostic
(round-trip error, saturated scales, non-finite steps, latent KS statistic, CNF function
evaluations, Glow's 1×1 convolution condition number), per architecture label.

:func:`stability_frame` is the runs' diagnostics (:data:`~.base.STABILITY_KEYS`);
:func:`figure_stability` draws them, every point linking to its run.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ... import keys
from ..page import Section
from ..style import arch_colour, base_layout, esc, hover, no_data, unique
from .base import STABILITY_KEYS, Context, columns, single

__all__ = ["ANCHOR", "PANELS", "TITLE", "build", "figure_stability", "stability_frame"]

ANCHOR = "stability"
TITLE = "Stability"

# (metric, subplot title, log axis)
PANELS = (
    (keys.STAB_INV_ERR_MAX, "invertibility error max |f⁻¹(f(x)) − x|", True),
    (keys.STAB_SATURATED_SHARE, "share of saturated scales", False),
    (keys.STAB_NONFINITE_STEPS, "non-finite training steps", False),
    (keys.STAB_LATENT_KS, "latent KS statistic vs N(0, 1)", False),
    (keys.STAB_NFE, "CNF function evaluations", False),
    (keys.STAB_COND_MAX, "Glow 1×1 conv condition number", True),
)


def stability_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per finished or diverged run that recorded a stability diagnostic."""
    cols = ["run_id", "dataset", "config", "arch", "arch_label", "seed", "status",
            *STABILITY_KEYS, "url"]
    keep = runs["status"].isin([keys.STATUS_FINISHED, keys.STATUS_DIVERGED])
    out = columns(runs[keep], cols)
    out = out[out[list(STABILITY_KEYS)].notna().any(axis=1)]
    return out.sort_values(["arch_label", "config", "dataset", "seed"],
                           kind="stable").reset_index(drop=True)


def _jitter(run_id: str) -> float:
    """A fixed horizontal offset per run in [−0.25, 0.25] (deterministic, not random)."""
    return (zlib.crc32(run_id.encode()) % 1000) / 2000 - 0.25


def figure_stability(stab: pd.DataFrame, title: str = "Stability") -> go.Figure:
    """Each diagnostic per architecture label, one point per run (finished: dots; diverged:
    red crosses). ``stab``: :func:`stability_frame`. Panels whose metric no run logged (NFE
    without FFJORD, the condition number without Glow) are empty."""
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


def build(ctx: Context) -> Section:
    """One panel of the finished and diverged runs' diagnostics."""
    runs = ctx.runs
    return single(
        ANCHOR, TITLE, stability_frame(runs), figure_stability,
        "One point per finished (dot) or diverged (red cross) run: max round-trip error on test "
        "data, share of bounded scales near their bound, training steps skipped for a "
        "non-finite loss, mean KS statistic of the latent against N(0, 1), CNF function "
        "evaluations, Glow's 1×1 convolution condition number.",
        runs[runs["status"].isin([keys.STATUS_FINISHED, keys.STATUS_DIVERGED])], timing=False)
