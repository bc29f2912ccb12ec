"""Pairwise significance: per data set, the probability that one configuration is better
than another for every pair (:func:`figure_poi`), with the tests behind it in a table. The
frame is :func:`harness.report.pairwise.pairs_frame` (shared with the leaderboards, which
star the configurations tied with the best).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import stats
from ..html import Raw, table
from ..page import Panel, Section, slug
from ..style import base_layout, esc, fmt, no_data
from .base import Context

__all__ = ["ANCHOR", "TITLE", "UNTESTED_GREY", "build", "figure_poi"]

ANCHOR = "significance"
TITLE = "Pairwise significance"
ALPHA = stats.ALPHA

UNTESTED_GREY = "#c8c8c8"  # a pair without the seeds to test it: no probability is drawn


def figure_poi(pairs: pd.DataFrame, alpha: float = 0.05,
               title: str = "Probability of improvement") -> go.Figure:
    """P(row better than column) for every pair of configurations of one data set (rliable's
    probability of improvement over seeds); a ``*`` marks a Holm-significant difference.
    A pair with no test (one seed on a side: its P is a certain-looking 0, ½ or 1 from two
    numbers) is not coloured by it: it is drawn in grey, "untested", by a second heatmap
    over those cells only. ``pairs``: one data set's
    :func:`harness.report.pairwise.pairs_frame` rows."""
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


def build(ctx: Context) -> Section:
    """Per data set: the probability of improvement between every pair of configurations,
    with the tests behind it in a table."""
    pairs = ctx.pairs
    sec = Section(ANCHOR, TITLE)
    for dataset in pd.unique(pairs["dataset"]) if len(pairs) else []:
        part = pairs[pairs["dataset"] == dataset].reset_index(drop=True)
        rows = [[r.x, r.y, f"{fmt(r.delta, 3)} [{fmt(r.lo, 3)}, {fmt(r.hi, 3)}]",
                 r.test, fmt(r.p, 3), fmt(r.p_holm, 3), fmt(r.effect, 3),
                 "—" if not math.isfinite(r.poi) else f"{r.poi:.2f}"]
                for r in part.itertuples(index=False)]
        after = table(["X", "Y", "Y − X [95 % CI]", "test", "p", "p (Holm)", "Cohen's d",
                       "P(X better)"], rows,
                      numeric=[False, False, True, False, True, True, True, True])
        unit = str(part["unit"].iloc[0])
        caption = (
            f"Every pair of configurations on {dataset} (test {unit}, lower is better): "
            "P(X better than Y) over seeds as rliable defines it (the Mann–Whitney U "
            "statistic over n_X · n_Y); a paired t-test over the seeds both ran, Welch's "
            "t-test when their seeds differ, no test with one seed on a side (such a pair "
            "is drawn grey, untested: its P from two numbers is 0, ½ or 1); p-values "
            f"Holm-corrected over the pairs of this data set; * marks p (Holm) < {ALPHA:g}. "
            "Cohen's d: the difference over the seeds' standard deviation (paired: of the "
            "differences).")
        sec.panels.append(Panel(f"pairs-{slug(str(dataset))}", caption, part,
                                figure_poi(part, ALPHA, f"{dataset}: P(row better)"),
                                Raw(after)))
    if not sec.panels:
        sec.note = "Nothing to compare: no data set has two configurations with finished runs."
    return sec
