"""Tuning figures: best so far against trials and against compute, sensitivity, gain.

Pure functions of the frames of :mod:`harness.report.tuning`; each point carries its MLflow
run's URL (a trial's, or a study's) as ``customdata``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import arch_colour, base_layout, esc, hover, no_data

__all__ = ["figure_best_so_far", "figure_gain", "figure_sensitivity"]

_REASON_SYMBOL = {"steps": "circle", "asha": "x", "budget": "square", "minutes": "square",
                  "diverged": "triangle-up", "error": "triangle-up"}


def _name(row) -> str:
    return f"{row['arch_label']} · {row['dataset']}"


def figure_best_so_far(trials: pd.DataFrame, title: str = "Best so far") -> go.Figure:
    """Left: each study's best validation objective after n trials (in the trials' order);
    right: the same against the compute its ended trials had spent."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09,
                        subplot_titles=("against trials", "against compute"))
    base_layout(fig, title, height=420)
    if trials.empty or trials["best"].notna().sum() == 0:
        return no_data(fig, "no trial reached a finite validation score")
    for study, part in trials.groupby("study", sort=False):
        first = part.iloc[0]
        name, colour = esc(_name(first)), arch_colour(str(first["arch_label"]).split("(")[0])
        by_n = part.sort_values("n")
        by_c = part.sort_values("end_rank")
        common = {"mode": "lines+markers", "legendgroup": str(study), "line": {"shape": "hv"},
                  "marker": {"color": colour, "size": 7},
                  "hovertemplate": "%{text}<extra></extra>"}
        fig.add_trace(go.Scatter(
            x=by_n["n"], y=by_n["best_by_trial"], name=name, customdata=by_n["url"],
            text=[hover(("", _name(r)), ("trials", r["n"]), ("best so far", r["best_by_trial"]),
                        ("this trial", r["best"]), ("stopped by", r["stopped_by"]))
                  for _, r in by_n.iterrows()], **common), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=by_c["compute_cum"], y=by_c["best_by_compute"], name=name, showlegend=False,
            customdata=by_c["url"],
            text=[hover(("", _name(r)), (r["compute_unit"], r["compute_cum"]),
                        ("best so far", r["best_by_compute"])) for _, r in by_c.iterrows()],
            **common), row=1, col=2)
    unit = str(trials["compute_unit"].iloc[0])
    fig.update_xaxes(title_text="trials", row=1, col=1)
    fig.update_xaxes(title_text=esc(unit), row=1, col=2)
    fig.update_yaxes(title_text="best validation objective (lower is better)", row=1, col=1)
    return fig


def figure_sensitivity(trials: pd.DataFrame, title: str = "Sensitivity") -> go.Figure:
    """Each trial's best validation objective, one row per study (marker: why it stopped;
    a trial stopped early by ASHA trained fewer steps)."""
    fig = go.Figure()
    scored = trials[trials["best"].notna()] if not trials.empty else trials
    base_layout(fig, title, height=max(280, 90 + 44 * max(1, trials["study"].nunique()
                                                          if not trials.empty else 1)))
    if scored.empty:
        return no_data(fig, "no trial reached a finite validation score")
    for reason, part in scored.groupby("stopped_by", sort=True):
        fig.add_trace(go.Scatter(
            x=part["best"], y=[esc(_name(r)) for _, r in part.iterrows()], mode="markers",
            name=esc(f"stopped by {reason or '?'}"),
            marker={"symbol": _REASON_SYMBOL.get(str(reason), "circle"), "size": 10,
                    "color": [arch_colour(str(a).split("(")[0]) for a in part["arch_label"]],
                    "line": {"width": 1, "color": "#333"}},
            customdata=part["url"],
            text=[hover(("", _name(r)), ("trial", r["number"]), ("best", r["best"]),
                        ("steps", r["steps"]), ("stopped by", r["stopped_by"]))
                  for _, r in part.iterrows()],
            hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(title_text="a trial's best validation objective (lower is better)")
    fig.update_yaxes(type="category")
    return fig


def figure_gain(gain: pd.DataFrame, title: str = "Tuned over default") -> go.Figure:
    """Gain = default − tuned test score (> 0: tuning helped), with its 95 % interval."""
    fig = go.Figure()
    rows = gain[np.isfinite(gain["gain"].astype(float))] if not gain.empty else gain
    base_layout(fig, title, height=max(260, 80 + 40 * len(rows)))
    if rows.empty:
        return no_data(fig, "no study with both untuned and tuned finished rows")
    ci = rows["gain_ci"].astype(float).fillna(0).to_numpy()
    fig.add_trace(go.Scatter(
        x=rows["gain"], y=[esc(f"{a} · {d}") for a, d in zip(rows["arch_label"],
                                                              rows["dataset"])],
        mode="markers", name="gain",
        marker={"size": 12, "color": [arch_colour(str(a).split("(")[0])
                                      for a in rows["arch_label"]]},
        error_x={"type": "data", "array": ci, "visible": True, "color": "#555"},
        customdata=rows["url"],
        text=[hover(("", r["arch_label"]), ("default", r["default"]), ("tuned", r["tuned"]),
                    ("gain", r["gain"]), ("± (95 %)", r["gain_ci"]))
              for _, r in rows.iterrows()],
        hovertemplate="%{text}<extra></extra>"))
    fig.add_vline(x=0, line={"color": "#999", "dash": "dot"})
    unit = str(rows["unit"].iloc[0])
    fig.update_xaxes(title_text=esc(f"default − tuned, test {unit} (> 0: tuning helped)"))
    fig.update_yaxes(type="category")
    return fig
