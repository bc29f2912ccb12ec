"""The tidy frames behind the statistics of a report, from the prepared runs.

Pure functions (no I/O) over :func:`harness.report.table.prepare`'s table; the numerics are
:mod:`harness.report.stats`. Only finished runs with a finite score count.

* :func:`seed_frame`: per configuration of a data set, the seed interval and where it stands
  against the data set's best configuration;
* :func:`pairs_frame`: every pair of configurations of each data set;
* :func:`rank_frames`: the ranks across data sets (the critical-difference diagram);
* :func:`aggregate_frame`: the normalised aggregate score with its stratified interval;
* :func:`seeds_frame`: the seeds needed per data set to detect given differences;
* :func:`timing_noise_frame`: each configuration's timing spreads and contention.

Across data sets a *data set* is a data set under one dequantization scheme (the bound being
estimated), and a *configuration* is an architecture label, so that one architecture is
followed across continuous and discrete data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import keys
from . import stats

__all__ = [
    "DIFFERENCES",
    "NOISY",
    "aggregate_frame",
    "block_label",
    "block_scores",
    "pairs_frame",
    "rank_frames",
    "seed_frame",
    "seeds_frame",
    "timing_noise_frame",
]

DIFFERENCES = (0.01, 0.05)  # bpd or nats: the differences the seeds table plans for
NOISY = 0.10  # a timing whose IQR is above this share of its median is flagged


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["ok"].astype(bool)] if len(runs) else runs


def _scores(part: pd.DataFrame) -> dict[str, dict[int, float]]:
    """config → {seed: score}. A run without a seed, or a second run of a seed (two
    revisions in one suite), gets a negative stand-in key: every run counts, and such a
    configuration is not paired by seed."""
    out: dict[str, dict[int, float]] = {}
    for i, (config, seed, score) in enumerate(zip(part["config"], part["seed"], part["score"])):
        runs = out.setdefault(str(config), {})
        key = int(seed) if pd.notna(seed) and int(seed) not in runs else -1 - i
        runs[key] = float(score)
    return out


def seed_frame(runs: pd.DataFrame, alpha: float = stats.ALPHA,
               pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (dataset, config): ``n_seeds mean ci_lo ci_hi`` (the 95 % bootstrap interval of
    the mean; NaN with one seed), ``vs_best`` (best / tied / worse / untested) and, against
    the best configuration, ``p_best`` (Holm-corrected over the data set's pairs),
    ``poi_best`` (probability that the best is better) and ``effect_best`` (Cohen's d).
    ``pairs``: :func:`pairs_frame` of ``runs`` when the caller has it."""
    cols = ["dataset", "config", "n_seeds", "mean", "ci_lo", "ci_hi", "vs_best", "p_best",
            "poi_best", "effect_best"]
    rows = []
    ok = _ok(runs)
    every = pairs_frame(runs) if pairs is None else pairs
    for dataset, part in ok.groupby("dataset", sort=True):
        scores = _scores(part)
        pairs = every[every["dataset"] == dataset]
        verdict = stats.tied_with_best(scores, pairs, alpha)
        best = next((c for c, v in verdict.items() if v == "best"), None)
        for config, by_seed in sorted(scores.items()):
            values = list(by_seed.values())
            lo, hi = stats.seed_interval(values)
            p = poi = effect = math.nan
            if best is not None and config != best:
                row = pairs[((pairs["x"] == best) & (pairs["y"] == config))
                            | ((pairs["x"] == config) & (pairs["y"] == best))].iloc[0]
                flip = row["x"] != best  # the table holds (x, y) in sorted order
                p = float(row["p_holm"])
                poi = 1 - float(row["poi"]) if flip else float(row["poi"])
                effect = -float(row["effect"]) if flip else float(row["effect"])
            rows.append([dataset, config, len(values), float(np.mean(values)), lo, hi,
                         verdict.get(config, "untested"), p, poi, effect])
    return pd.DataFrame(rows, columns=cols)


def pairs_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Every pair (x, y) of configurations of each data set: :func:`stats.pairwise`'s
    columns with ``dataset`` and ``unit`` first."""
    parts = []
    ok = _ok(runs)
    for dataset, part in ok.groupby("dataset", sort=True):
        pairs = stats.pairwise(_scores(part))
        pairs.insert(0, "unit", str(part["unit"].iloc[0]))
        pairs.insert(0, "dataset", dataset)
        parts.append(pairs)
    if not parts:
        return pd.DataFrame(columns=["dataset", "unit", "x", "y", "n_x", "n_y", "mean_x",
                                     "mean_y", "delta", "lo", "hi", "p", "effect", "poi",
                                     "test", "p_holm"])
    return pd.concat(parts, ignore_index=True)


def block_label(dataset: str, dequant: str, n_schemes: int, suite: str | None = None) -> str:
    """``dataset`` (with ``[scheme]`` where the data set ran under several, and ``suite ·``
    first where the runs come from several suites)."""
    text = f"{dataset} [{dequant}]" if n_schemes > 1 else str(dataset)
    return f"{suite} · {text}" if suite else text


def _blocks(runs: pd.DataFrame) -> pd.Series:
    ok = runs
    schemes = ok.groupby("dataset")["dequant"].transform("nunique")
    several = ok["suite"].nunique() > 1 if "suite" in ok else False
    return pd.Series([block_label(d, q, n, s if several else None)
                      for d, q, n, s in zip(ok["dataset"], ok["dequant"], schemes,
                                            ok.get("suite", pd.Series("", index=ok.index)))],
                     index=ok.index, dtype=object)


def _population(runs: pd.DataFrame) -> pd.DataFrame:
    ok = _ok(runs).copy()
    if ok.empty:
        return ok.assign(block=pd.Series(dtype=object))
    ok["block"] = _blocks(ok)
    return ok


def block_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean score per data set (``block``) and configuration (architecture label), long."""
    ok = _population(runs)
    if ok.empty:
        return pd.DataFrame(columns=["block", "config", "score", "n_seeds"])
    g = ok.groupby(["block", "arch_label"], sort=True)["score"]
    out = pd.DataFrame({"score": g.mean(), "n_seeds": g.size()}).reset_index()
    return out.rename(columns={"arch_label": "config"})


def rank_frames(runs: pd.DataFrame, alpha: float = stats.ALPHA
                ) -> tuple[pd.DataFrame, stats.RankResult]:
    """Average ranks over data sets (rows: ``config meanrank reference arch group``) and the
    :class:`stats.RankResult` (Friedman p, critical difference, what was dropped)."""
    ok = _population(runs)
    cols = ["config", "meanrank", "arch", "reference", "groups"]
    if ok.empty:
        empty = stats.RankResult(pd.Series(dtype=float), math.nan, math.nan, alpha, [],
                                 reason="no finished run")
        return pd.DataFrame(columns=cols), empty
    matrix = ok.pivot_table(index="block", columns="arch_label", values="score",
                            aggfunc="mean")
    res = stats.rank_analysis(matrix, alpha)
    first = ok.groupby("arch_label")[["arch", "reference"]].first()
    rows = []
    for config, rank in res.ranks.items():
        member = [i for i, g in enumerate(res.groups) if config in g]
        rows.append([config, float(rank), first.loc[config, "arch"],
                     bool(first.loc[config, "reference"]), ",".join(map(str, member))])
    return pd.DataFrame(rows, columns=cols), res


def aggregate_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (architecture label): the mean over data sets of its normalised
    score (0 = the best reference row, 1 = the best run; :func:`stats.normalised_scores`),
    its 95 % stratified-bootstrap interval, the data sets it covers and its seeds."""
    cols = ["config", "arch", "reference", "score", "ci_lo", "ci_hi", "n_datasets", "n_runs",
            "datasets"]
    ok = _population(runs)
    if ok.empty:
        return pd.DataFrame(columns=cols)
    refs = ok[ok["reference"].astype(bool)]
    ref_score = refs.groupby(["block", "arch_label"])["score"].mean().groupby(level="block").min()
    frame = ok[["block", "arch_label", "score"]].rename(columns={"arch_label": "config"})
    ok = ok.assign(norm=stats.normalised_scores(frame, ref_score).to_numpy())
    rows = []
    for config, part in ok.groupby("arch_label", sort=True):
        part = part[np.isfinite(part["norm"].astype(float))]
        if part.empty:
            continue
        blocks = [g["norm"].to_numpy(float) for _, g in part.groupby("block", sort=True)]
        point, lo, hi = stats.aggregate_interval(blocks)
        rows.append([config, part["arch"].iloc[0], bool(part["reference"].iloc[0]), point, lo,
                     hi, len(blocks), len(part), ", ".join(sorted(map(str,
                                                                      part["block"].unique())))])
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def seeds_frame(runs: pd.DataFrame, differences: tuple[float, ...] = DIFFERENCES,
                alpha: float = stats.ALPHA, power: float = stats.POWER) -> pd.DataFrame:
    """Per data set: ``unit``, ``configs`` with two seeds or more (flows only: reference rows
    are closed-form), the pooled and the largest standard deviation over seeds, the most
    seeds a configuration has now, and ``seeds for δ`` at the pooled spread for each δ in
    ``differences`` (NaN where no configuration has two seeds)."""
    cols = ["dataset", "unit", "configs", "pooled_sd", "max_sd", "seeds_now",
            *[f"seeds for {d:g}" for d in differences]]
    rows = []
    ok = _ok(runs)
    for dataset, part in ok.groupby("dataset", sort=True):
        flows = part[~part["reference"].astype(bool)]
        groups = [g["score"].to_numpy(float) for _, g in flows.groupby("config")]
        sd, used = stats.pooled_sd(groups)
        sds = [float(np.std(g, ddof=1)) for g in groups if len(g) >= 2]
        needed = [stats.seeds_needed(sd, d, alpha, power) if math.isfinite(sd) else math.nan
                  for d in differences]
        rows.append([dataset, str(part["unit"].iloc[0]), used, sd,
                     max(sds) if sds else math.nan,
                     max((len(g) for g in groups), default=0), *needed])
    return pd.DataFrame(rows, columns=cols)


def timing_noise_frame(runs: pd.DataFrame, threshold: float = NOISY) -> pd.DataFrame:
    """Per (dataset, config) and timed metric: the median over seeds of the estimator, the
    largest relative IQR (IQR / median of the blocks; the log-det's IQR over its block pairs /
    the median of the forward pass without it) over seeds, ``noisy`` (it is above
    ``threshold``), the mean blocks, how many of its runs were timed under contention, the
    most CPUs other processes kept busy and the largest slowdown the canary read."""
    cols = ["dataset", "config", "metric", "value", "rel_iqr", "noisy", "blocks",
            "contended_runs", "runs", "others_cpus", "slowdown", "url"]
    ok = _ok(runs)
    parts = []
    forward_median = keys.spread_keys(keys.PERF_FORWARD_NOLOGDET_MS)[0]
    contended = (ok[keys.PERF_CONTENDED] > 0 if keys.PERF_CONTENDED in ok
                 else pd.Series(False, index=ok.index))
    others = ok.get(keys.PERF_OTHERS_CPUS, np.nan)
    slowdown = ok.get(keys.PERF_SLOWDOWN, np.nan)  # runs timed before the canary: none
    for key in keys.TIMED_MS:
        median, iqr, blocks = keys.spread_keys(key)
        # the log-det is a difference of two passes: its spread is read against the pass
        scale = forward_median if key == keys.PERF_LOGDET_MS else median
        if iqr not in ok or scale not in ok:
            continue
        frame = pd.DataFrame({
            "dataset": ok["dataset"], "config": ok["config"], "value": ok[key],
            "rel_iqr": (ok[iqr].astype(float) / ok[scale].astype(float).abs())
            .replace([np.inf, -np.inf], np.nan),
            "blocks": ok.get(blocks, np.nan), "contended": contended,
            "others": others, "slowdown": slowdown, "url": ok["url"]})
        frame = frame[ok[iqr].notna() & ok[scale].notna()]
        g = frame.groupby(["dataset", "config"], sort=True)
        out = g.agg(value=("value", "median"), rel_iqr=("rel_iqr", "max"),
                    blocks=("blocks", "mean"), contended_runs=("contended", "sum"),
                    runs=("value", "size"), others_cpus=("others", "max"),
                    slowdown=("slowdown", "max"), url=("url", "first")).reset_index()
        out.insert(2, "metric", key)
        parts.append(out)
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["noisy"] = out["rel_iqr"] > threshold
    out["contended_runs"] = out["contended_runs"].astype(int)
    return out[cols]
