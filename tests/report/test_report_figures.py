"""Figures: pure functions of their frames; what they draw equals the numbers, every point
links to a run, text from runs is escaped, and empty frames give an annotated figure."""

from __future__ import annotations

import re
import statistics

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from harness import keys
from harness.report import (
    figure_asymmetry,
    figure_curves,
    figure_dequant,
    figure_heatmap,
    figure_leaderboard,
    figure_logdet,
    figure_pareto,
    figure_stability,
    figure_triangle,
)
from harness.report.sections.asymmetry import speed_frame
from harness.report.sections.base import METRICS
from harness.report.sections.curves import curve_frame
from harness.report.sections.dequant import dequant_frame
from harness.report.sections.heatmap import heatmap_frame
from harness.report.sections.leaderboards import leaderboard_frame
from harness.report.sections.logdet import logdet_frame
from harness.report.sections.pareto import pareto_frame
from harness.report.sections.stability import stability_frame
from harness.report.sections.triangle import triangle_scores
from harness.report.table import aggregate, prepare
from harness.tracking.read import load_curves, load_runs

URL = re.compile(r"^http://127\.0\.0\.1:5000/#/experiments/\d+/runs/[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def frames(store):
    raw = load_runs(store.uri, ["zoo"])
    runs = prepare(raw)
    curves = load_curves(store.uri, raw)
    agg = aggregate(runs, METRICS)
    per_arch = aggregate(runs, METRICS, by=("dataset", "arch_label"))
    return {"runs": runs, "curves": curves, "agg": agg, "per_arch": per_arch}


def _builders(f):
    board = leaderboard_frame(f["agg"])
    pts = pareto_frame(f["agg"])
    curves = curve_frame(f["runs"], f["curves"], f["agg"])
    return {
        "leaderboard": (figure_leaderboard, board[board["dataset"] == "digits"]),
        "pareto": (figure_pareto, pts[pts["dataset"] == "moons"]),
        "heatmap": (figure_heatmap, heatmap_frame(f["agg"])),
        "curves": (figure_curves, curves[curves["dataset"] == "digits"]),
        "logdet": (figure_logdet, logdet_frame(f["per_arch"])),
        "asymmetry": (figure_asymmetry, speed_frame(f["per_arch"])),
        "dequant": (figure_dequant, dequant_frame(f["agg"])),
        "stability": (figure_stability, stability_frame(f["runs"])),
        "triangle": (figure_triangle, triangle_scores(f["per_arch"])),
    }


NAMES = ["leaderboard", "pareto", "heatmap", "curves", "logdet", "asymmetry", "dequant",
         "stability", "triangle"]


@pytest.mark.parametrize("name", NAMES)
def test_every_point_links_to_its_run_and_the_figure_is_valid(frames, name):
    fn, frame = _builders(frames)[name]
    assert len(frame) > 0
    fig = fn(frame)
    go.Figure(fig.to_dict())  # Plotly's own validation (the curves are built unvalidated)
    linked = 0
    for trace in fig.data:
        if trace.hoverinfo == "skip":
            continue  # bands, diagonals, front staircases: not points
        if trace.customdata is None:  # a line links to its run as a whole
            urls = [trace.meta["url"]]
        else:
            urls = [u for u in np.ravel(np.asarray(trace.customdata, dtype=object)) if u]
        assert urls and all(URL.match(str(u)) for u in urls), (name, trace.name)
        linked += len(urls)
    assert linked > 0


@pytest.mark.parametrize("name", NAMES)
def test_empty_frames_give_an_annotated_figure(frames, name):
    fn, frame = _builders(frames)[name]
    fig = fn(frame.iloc[:0])
    assert isinstance(fig, go.Figure)
    assert any("no " in (a.text or "") or "not " in (a.text or "")
               for a in fig.layout.annotations)


def test_leaderboard_draws_means_with_std_and_published(frames):
    board = leaderboard_frame(frames["agg"])
    mnist = board[board["dataset"] == "mnist"]
    fig = figure_leaderboard(mnist)
    drawn = {}
    for trace in fig.data:
        for x, y, err in zip(trace.x, trace.y, (trace.error_x.array if trace.error_x.array
                                                 is not None else [None] * len(trace.x))):
            drawn[(trace.name, y)] = (x, err)
    assert drawn[("published", "glow [uniform]")][0] == pytest.approx(1.05)
    assert drawn[("published", "realnvp [uniform]")][0] == pytest.approx(1.06)
    digits = board[board["dataset"] == "digits"]
    fig = figure_leaderboard(digits)
    flows = next(t for t in fig.data if t.name == "flows")
    for x, y, err in zip(flows.x, flows.y, flows.error_x.array):
        row = digits[digits["config"] == y]
        assert x == pytest.approx(row["score"].item())
        assert err == pytest.approx(np.nan_to_num(row["score std"].item()))


def test_pareto_front_staircase_passes_through_the_front(frames):
    pts = pareto_frame(frames["agg"])
    moons = pts[pts["dataset"] == "moons"]
    fig = figure_pareto(moons)
    stairs = [t for t in fig.data if t.name == "Pareto front"]
    assert len(stairs) == 2
    front = moons[moons["front_sampling"]]
    assert sorted(stairs[0].x) == sorted(front[keys.PERF_SAMPLE_THROUGHPUT])
    assert stairs[0].line.shape == "vh" and stairs[1].line.shape == "hv"
    # the best-scoring configuration is always on both fronts
    best = moons.loc[moons["score"].idxmin()]
    assert best["front_sampling"] and best["front_density"]


def test_heatmap_is_zero_at_each_columns_best(frames):
    cells = heatmap_frame(frames["agg"])
    fig = figure_heatmap(cells)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.nanmin(z) == 0 and np.nanmax(z) == 1
    assert (np.nanmin(z, axis=0) == 0).all()
    assert "digits [variational] (bpd)" in list(fig.data[0].x)


def test_curve_means_are_seed_means_of_the_logged_curves(frames, store):
    bands = curve_frame(frames["runs"], frames["curves"], frames["agg"])
    truths = [t for t in store.runs("zoo") if t.dataset == "moons" and t.arch == "realnvp"]
    assert all(t.status == keys.STATUS_FINISHED for t in truths)
    line = bands[(bands["dataset"] == "moons") & (bands["config"] == "realnvp")
                 & (bands["key"] == keys.TRAIN_NLL)].set_index("step")
    for step in (0, 200, 400):
        values = [c.loc[(c["key"] == keys.TRAIN_NLL) & (c["step"] == step), "value"].item()
                  for c in (t.curves for t in truths)]
        assert line.loc[step, "mean"] == pytest.approx(statistics.fmean(values))
        assert line.loc[step, "std"] == pytest.approx(statistics.stdev(values))
        assert line.loc[step, "n"] == 3
    fig = figure_curves(bands[bands["dataset"] == "moons"])
    mean = next(t for t in fig.data if t.name == "realnvp" and t.xaxis == "x")
    np.testing.assert_allclose(mean.y, line["mean"].to_numpy())


def test_curves_are_thinned_to_at_most_max_points(frames):
    bands = curve_frame(frames["runs"], frames["curves"], frames["agg"], max_points=5)
    sizes = bands.groupby(["dataset", "config", "key"]).size()
    assert sizes.max() <= 6 and sizes.min() >= 2  # every k-th step, plus the last
    last = bands.groupby(["dataset", "config", "key"])["step"].max()
    assert (last[last.index.get_level_values("key") == keys.TRAIN_NLL] == 400).all()


def test_text_from_runs_is_escaped_in_figures(frames):
    board = leaderboard_frame(frames["agg"])
    part = board[board["dataset"] == "moons"].copy()
    part.loc[part.index[0], "config"] = "<script>alert(1)</script>"
    fig = figure_leaderboard(part, title="<b>t</b>")
    ys = [y for t in fig.data for y in t.y]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ys
    assert "<script>" not in fig.to_json()
    assert fig.layout.title.text == "&lt;b&gt;t&lt;/b&gt;"


def test_dequant_gap_is_uniform_minus_variational(frames):
    gap = dequant_frame(frames["agg"]).set_index(["dataset", "config"])
    u = gap.loc[("digits", "nsf-coupling [uniform]"), "score"]
    v = gap.loc[("digits", "nsf-coupling [variational]"), "score"]
    assert gap.loc[("digits", "nsf-coupling [variational]"), "gap"] == pytest.approx(u - v)
    assert gap.loc[("digits", "nsf-coupling [uniform]"), "gap"] == 0
    fig = figure_dequant(gap.reset_index())
    assert {t.name for t in fig.data} == {"uniform", "variational (bound)",
                                          "variational (importance-weighted)"}


def test_stability_shows_diverged_runs_apart(frames):
    stab = stability_frame(frames["runs"])
    assert (stab["status"] == keys.STATUS_DIVERGED).sum() == 1
    fig = figure_stability(stab)
    diverged = [t for t in fig.data if "(diverged)" in (t.name or "")]
    assert diverged and all(t.marker.symbol == "x" for t in diverged)
    assert not any(t.name == "gaussian" and t.xaxis == "x5" for t in fig.data)  # NFE: ffjord only
    assert isinstance(fig.layout.height, int)
    assert pd.notna(stab[keys.STAB_NFE]).sum() == 6
