"""Every pair of configurations of a data set, tested once, and where each configuration
stands against the data set's best: the frames that the leaderboards, the pairwise
significance section and ``nfbench promote`` share.

Pure functions (no I/O) over :func:`harness.report.table.prepare`'s table; the numerics are
:mod:`harness.report.stats`. Only finished runs with a finite score count.

* :func:`pairs_frame`: every pair of configurations of each data set (the tests, p-values
  Holm-corrected over the data set's pairs, the probability of improvement);
* :func:`seed_frame`: per configuration of a data set, the seed interval and where it stands
  against the data set's best configuration.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import stats
from .table import scored

__all__ = ["pairs_frame", "seed_frame"]


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
    ok = scored(runs)
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
    ok = scored(runs)
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
