"""Density against sampling time (the MAF / IAF asymmetry): ms per batch of log_prob and of
sample per architecture and data set, with sampling ÷ density and its bootstrap interval
over the runs' recorded blocks (:func:`speed_frame`, :func:`figure_asymmetry`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ... import keys
from .. import ratio
from ..page import Section
from ..style import arch_colour, base_layout, esc, hover, no_data, unique
from .base import ID, Context, columns, single

__all__ = ["ANCHOR", "TITLE", "build", "figure_asymmetry", "speed_frame"]

ANCHOR = "asymmetry"
TITLE = "Density against sampling time (MAF / IAF asymmetry)"


def speed_frame(agg: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Density time against sampling time (the MAF / IAF asymmetry), with their ratio.

    ``agg`` pools an architecture's runs per data set (``by=("dataset", "arch_label")``).
    With the finished ``runs`` that recorded their blocks, ``ratio_lo`` – ``ratio_hi`` is the
    95 % bootstrap interval of sampling ÷ density (:mod:`harness.report.ratio`: the two sides
    resampled independently, which ignores that they share runs: conservative) and
    ``resolved`` whether it tells them apart; NaN / False without blocks."""
    cols = [*ID, "data.dims", keys.PERF_DENSITY_MS, keys.PERF_SAMPLE_MS, "url"]
    out = columns(agg, cols)
    out = out[np.isfinite(out[keys.PERF_DENSITY_MS].astype(float))
              & np.isfinite(out[keys.PERF_SAMPLE_MS].astype(float))].copy()
    out["sample_over_density"] = out[keys.PERF_SAMPLE_MS] / out[keys.PERF_DENSITY_MS]
    lo, hi = [], []
    for dataset, label in zip(out["dataset"], out["arch_label"]):
        r = ratio.Ratio(math.nan, math.nan, math.nan)
        if runs is not None and keys.TAG_TIMING_BLOCKS in runs:
            tags = runs.loc[(runs["dataset"] == dataset) & (runs["arch_label"] == label),
                            keys.TAG_TIMING_BLOCKS]
            sides = [[b for b in (ratio.blocks_of(t, key) for t in tags) if b]
                     for key in (keys.PERF_DENSITY_MS, keys.PERF_SAMPLE_MS)]
            r = ratio.ratio(*sides)
        lo.append(r.lo)
        hi.append(r.hi)
    out["ratio_lo"], out["ratio_hi"] = lo, hi
    out["resolved"] = [ratio.resolved(a, b) for a, b in zip(lo, hi)]
    return out.reset_index(drop=True)


def _interval(lo: float, hi: float, resolved: bool) -> str:
    """A ratio's bootstrap interval in words ("—" where no blocks were recorded)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "—"
    return f"{lo:.3f} – {hi:.3f}" + ("" if resolved else ", not resolved")


def figure_asymmetry(speed: pd.DataFrame,
                     title: str = "Density against sampling time") -> go.Figure:
    """Sampling time against density-evaluation time, log–log, with the diagonal.

    ``speed``: :func:`speed_frame`. Above the diagonal a flow samples slower than it
    evaluates densities (MAF: D passes to sample); below, the reverse (IAF).
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


def build(ctx: Context) -> Section:
    """One panel: every architecture (dequantization schemes pooled) and data set."""
    return single(
        ANCHOR, TITLE, speed_frame(ctx.per_arch, ctx.timed), figure_asymmetry,
        "Ms per batch (first quartile of the timing blocks, mean over seeds) of log_prob "
        "(density) and of sample (sampling), per architecture and data set; MAF needs D "
        "passes to sample and IAF D passes to evaluate a density. The hover gives sampling ÷ "
        "density with its 95 % bootstrap interval over the runs' recorded blocks ('not "
        "resolved' when it straddles 1 or lies within ±5 % of it).", ctx.timed)
