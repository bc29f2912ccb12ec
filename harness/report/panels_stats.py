"""The statistics sections of a report page: across data sets (critical-difference diagram,
aggregate score), pairwise significance, seeds needed, timing noise; and the seed columns
the leaderboards show.

Pure: prepared runs in, :class:`~harness.report.sections.Section` s out (the writer turns them
into files). Captions name every test and interval (see :mod:`harness.report.stats`).
"""

from __future__ import annotations

import math

import pandas as pd

from . import derive_stats, stats
from .figures_stats import figure_aggregate, figure_cd, figure_poi, figure_timing_noise
from .html import Raw, table
from .sections import Panel, Section, slug
from .style import fmt

__all__ = ["across_section", "leaderboard_with_seeds", "seeds_section",
           "significance_section", "timing_noise_section"]

ALPHA = stats.ALPHA
ESTIMATOR_TEXT = ("Each timing is the first quartile of its blocks that ran at speed "
                  "(interference from other work only adds time, so a low quantile is the "
                  "robust estimate; a canary kernel between blocks reads the machine's speed); "
                  "the median and the IQR are recorded beside it (perf/*_ms_median, "
                  "perf/*_ms_iqr).")


def leaderboard_with_seeds(board: pd.DataFrame, runs: pd.DataFrame,
                           pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """``board`` (:func:`harness.report.derive.leaderboard_frame`) with the seed interval
    ``ci_lo ci_hi`` and ``vs_best p_best poi_best effect_best`` of
    :func:`derive_stats.seed_frame` (``pairs``: its :func:`derive_stats.pairs_frame`)."""
    seeds = derive_stats.seed_frame(runs, ALPHA, pairs)
    cols = ["ci_lo", "ci_hi", "vs_best", "p_best", "poi_best", "effect_best"]
    if seeds.empty:
        return board.assign(**{c: pd.Series(dtype=float) for c in cols})
    return board.merge(seeds[["dataset", "config", *cols]], on=["dataset", "config"],
                       how="left")


def interval_text(score: float, lo: float, hi: float, n: int) -> str:
    """``mean [lo, hi]``, or ``mean (one seed)``."""
    if not math.isfinite(score):
        return "—"
    if n <= 1 or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(score)} (one seed)"
    return f"{fmt(score)} [{fmt(lo)}, {fmt(hi)}]"


def vs_best_text(verdict: object, p: float, poi: float) -> str:
    if not isinstance(verdict, str):
        return "—"
    if verdict == "best":
        return "best"
    if verdict == "untested":
        return "untested (one seed)"
    detail = f"p = {fmt(p, 2)}" + (f", P(best better) = {poi:.2f}" if math.isfinite(poi)
                                   else "")
    return f"{'tied with best' if verdict == 'tied' else 'worse'} ({detail})"


def across_section(runs: pd.DataFrame, caption_tail: str = "") -> Section:
    """Ranks over data sets with the Friedman test and the critical-difference diagram, and
    the aggregate normalised score with its stratified-bootstrap interval."""
    sec = Section("across", "Across data sets")
    ranks, res = derive_stats.rank_frames(runs, ALPHA)
    dropped = []
    if res.dropped_configs:
        dropped.append(f"left out for missing a data set: {', '.join(res.dropped_configs)}")
    if res.dropped_blocks:
        dropped.append(f"data sets left out for missing configurations: "
                       f"{', '.join(res.dropped_blocks)}")
    what = (f"Friedman p = {fmt(res.pvalue, 3)}, Nemenyi critical difference "
            f"{fmt(res.cd, 3)} at α = {ALPHA:g} over {len(res.blocks)} data sets"
            if not res.reason else f"No rank analysis: {res.reason}")
    caption = (
        "Average rank of each architecture (its label) over the data sets (a data set under "
        "one dequantization scheme counts once; rank 1 = lowest mean test bpd / NLL), with "
        "autorank's non-parametric analysis: the Friedman test over all configurations, then "
        "the Nemenyi critical difference (CD): thick bars join configurations whose average "
        f"ranks differ by no more than the CD (not significantly different). {what}."
        + (f" {'; '.join(dropped)}." if dropped else "") + caption_tail)
    if res.reason:  # nothing to draw: publish the scores the analysis would have ranked
        scores = derive_stats.block_scores(runs)
        if len(scores):
            sec.panels.append(Panel("ranks", caption, scores))
        else:
            sec.note = caption
    else:
        rows = [[r.config, f"{r.meanrank:.2f}", "reference" if r.reference else ""]
                for r in ranks.itertuples(index=False)]
        after = table(["architecture", "average rank", ""], rows,
                      numeric=[False, True, False])
        frame = ranks.assign(friedman_p=res.pvalue, cd=res.cd, alpha=ALPHA,
                             data_sets="; ".join(res.blocks))
        sec.panels.append(Panel("ranks", caption, frame,
                                figure_cd(ranks, res, "Average ranks"), Raw(after)))
    agg = derive_stats.aggregate_frame(runs)
    def tidy(v: float) -> float:  # no −3.6e−17 for a reference row's 0
        return round(v, 9) + 0.0 if math.isfinite(v) else v

    rows = [[a.config, fmt(tidy(a.score), 3),
             f"[{fmt(tidy(a.ci_lo), 3)}, {fmt(tidy(a.ci_hi), 3)}]",
             a.n_datasets, a.n_runs] for a in agg.itertuples(index=False)]
    after = table(["architecture", "aggregate score", "95 % interval", "data sets", "runs"],
                  rows, numeric=[False, True, True, True, True]) if rows else ""
    sec.panels.append(Panel(
        "aggregate", "Each architecture's test bpd / NLL normalised per data set, "
        "(s_ref − s) / (s_ref − s_best): 0 is the best reference row (Gaussian, histogram; "
        "where a data set has none, the worst configuration), 1 the best single run; "
        "averaged over the data sets the architecture ran on, with a 95 % stratified "
        "bootstrap interval (seeds resampled within each data set, 10,000 resamples, "
        "percentile). Architectures that ran on different data sets are not directly "
        f"comparable (see the data sets column of the data).{caption_tail}", agg,
        figure_aggregate(agg, "Aggregate normalised score"), Raw(after)))
    return sec


def significance_section(runs: pd.DataFrame, pairs: pd.DataFrame | None = None) -> Section:
    """Per data set: the probability of improvement between every pair of configurations,
    with the tests behind it in a table (``pairs``: :func:`derive_stats.pairs_frame` of
    ``runs`` when the caller has it)."""
    sec = Section("significance", "Pairwise significance")
    pairs = derive_stats.pairs_frame(runs) if pairs is None else pairs
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


def seeds_section(runs: pd.DataFrame) -> Section:
    """How many seeds per configuration would detect a difference, per data set."""
    sec = Section("seeds", "How many seeds?")
    frame = derive_stats.seeds_frame(runs)
    if frame.empty:
        sec.note = "No finished run."
        return sec
    deltas = [c for c in frame.columns if c.startswith("seeds for ")]
    rows = [[d["dataset"], d["unit"], d["configs"], fmt(d["pooled_sd"], 3),
             fmt(d["max_sd"], 3), d["seeds_now"],
             *["—" if not math.isfinite(d[c]) else int(d[c]) for c in deltas]]
            for d in frame.to_dict("records")]
    after = table(["data set", "unit", "configurations with ≥ 2 seeds", "pooled sd",
                   "largest sd", "seeds now", *[f"seeds to detect {c[10:]}" for c in deltas]],
                  rows, numeric=[False, False, True, True, True, True, *[True] * len(deltas)])
    caption = (
        "Seeds per configuration needed to detect a difference of the stated size between "
        "two configurations of a data set with 80 % power (two-sided two-sample t-test, "
        f"α = {ALPHA:g}; statsmodels), from the pooled standard deviation over seeds of its "
        "flows (reference rows are closed-form and left out). `nfbench plan SUITE "
        "--seeds-for D` prints the same for any D. With fewer than two seeds per "
        "configuration the spread is unknown (—).")
    sec.panels.append(Panel("seeds-needed", caption, frame, None, Raw(after)))
    return sec


def timing_noise_section(runs: pd.DataFrame) -> Section:
    """Per data set, the relative IQR of every timing; noisy and contended ones flagged."""
    sec = Section("timing-noise", "Timing noise")
    noise = derive_stats.timing_noise_frame(runs)
    for dataset in pd.unique(noise["dataset"]) if len(noise) else []:
        part = noise[noise["dataset"] == dataset].reset_index(drop=True)
        flagged = part[part["noisy"] | (part["contended_runs"] > 0)]
        rows = [[r.config, r.metric, fmt(r.value, 4), f"{r.rel_iqr:.1%}",
                 "noisy" if r.noisy else "", f"{r.contended_runs} / {r.runs}",
                 fmt(r.others_cpus, 2), fmt(r.slowdown, 2)]
                for r in flagged.itertuples(index=False)]
        after = (table(["configuration", "timing", "ms", "IQR / median", "", "contended runs",
                        "other processes' CPUs", "slowdown (canary)"], rows,
                       numeric=[False, False, True, True, False, True, True, True]) if rows else
                 '<p class="caption">No timing on this data set is noisy or contended.</p>')
        caption = (
            f"Spread of each timing on {dataset}: the interquartile range of its "
            f"torch.utils.benchmark blocks over their median (the largest over seeds; the "
            f"log-det's over the forward pass). Cells above {derive_stats.NOISY:.0%} are "
            f"marked ! and listed below, with runs timed while other processes kept the free "
            f"CPUs busy or while the machine itself ran slow (contended; the slowdown is the "
            f"canary kernel's time between blocks over its fastest). {ESTIMATOR_TEXT}")
        sec.panels.append(Panel(f"timing-noise-{slug(str(dataset))}", caption, part,
                                figure_timing_noise(part, derive_stats.NOISY,
                                                    f"Timing noise: {dataset}"), Raw(after)))
    if not sec.panels:
        sec.note = ("No run recorded the spread of its timings (runs timed before nfbench "
                    "recorded it, or runs without a timing phase).")
    return sec
