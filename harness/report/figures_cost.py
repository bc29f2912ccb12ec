"""Cost figures: the log-det's cost, the MAF / IAF asymmetry, the dequantization gap.

Pure functions of the frames of :mod:`harness.report.derive`; every point links to a run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import keys
from .style import arch_colour, base_layout, esc, hover, no_data, unique

__all__ = ["figure_asymmetry", "figure_dequant", "figure_logdet"]


def figure_logdet(cost: pd.DataFrame, title: str = "Cost of the log-determinant") -> go.Figure:
    """Log-det time against data dimension per configuration (left, log–log) and its share
    of the forward pass (right). ``cost``: :func:`harness.report.derive.logdet_frame`.
    The log-det time is the difference of two timed forward passes, with and without it."""
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


def _interval(lo: float, hi: float, resolved: bool) -> str:
    """A ratio's bootstrap interval in words ("—" where no blocks were recorded)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "—"
    return f"{lo:.3f} – {hi:.3f}" + ("" if resolved else ", not resolved")


def figure_asymmetry(speed: pd.DataFrame,
                     title: str = "Density against sampling time") -> go.Figure:
    """Sampling time against density-evaluation time, log–log, with the diagonal.

    ``speed``: :func:`harness.report.derive.speed_frame`. Above the diagonal a flow samples
    slower than it evaluates densities (MAF: D passes to sample); below, the reverse (IAF).
    """
    fig = go.Figure()
    base_layout(fig, title, height=460)
    if speed.empty:
        return no_data(fig, "no density and sampling timings recorded")
    for arch in unique(speed["arch"]):
        part = speed[speed["arch"] == arch]
        nan = [np.nan] * len(part)
        fig.add_trace(go.Scatter(
            x=part[keys.PERF_DENSITY_MS], y=part[keys.PERF_SAMPLE_MS], mode="markers",
            name=esc(arch), marker={"size": 10, "color": arch_colour(arch)},
            customdata=part["url"],
            text=[hover(("", c), ("", d), ("density ms", x), ("sampling ms", y),
                        ("sampling / density", r), ("95 % interval", _interval(lo, hi, ok)))
                  for c, d, x, y, r, lo, hi, ok in zip(
                      part["config"], part["dataset"], part[keys.PERF_DENSITY_MS],
                      part[keys.PERF_SAMPLE_MS], part["sample_over_density"],
                      part.get("ratio_lo", nan), part.get("ratio_hi", nan),
                      part.get("resolved", nan))],
            hovertemplate="%{text}<extra></extra>",
        ))
    values = np.r_[speed[keys.PERF_DENSITY_MS], speed[keys.PERF_SAMPLE_MS]].astype(float)
    values = values[values > 0]
    if len(values):
        lo, hi = values.min() / 1.5, values.max() * 1.5
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="equal cost",
                                 line={"color": "#888", "dash": "dot"}, hoverinfo="skip"))
    fig.update_xaxes(type="log", title_text="density evaluation, ms per batch")
    fig.update_yaxes(type="log", title_text="sampling, ms per batch")
    return fig


_SCHEMES = (("uniform", "score", "uniform"), ("variational", "score", "variational (bound)"),
            ("variational", keys.EVAL_BPD_IW, "variational (importance-weighted)"))


def figure_dequant(gap: pd.DataFrame, title: str = "Dequantization gap") -> go.Figure:
    """Test bpd per architecture under uniform and variational dequantization, and the
    importance-weighted bound, one panel per discrete data set.
    ``gap``: :func:`harness.report.derive.dequant_frame`."""
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
