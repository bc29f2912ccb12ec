"""How many seeds? Per data set, the seeds per configuration that a two-sided two-sample
t-test needs to detect given differences with 80 % power, from the pooled spread over seeds
of its flows (:func:`seeds_frame`; ``nfbench plan SUITE --seeds-for D`` prints the same frame
for any D, :mod:`harness.report.seeds_plan`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import stats
from ..html import Raw, table
from ..page import Panel, Section
from ..style import fmt
from ..table import scored
from .base import Context

__all__ = ["ANCHOR", "DIFFERENCES", "TITLE", "build", "seeds_frame"]

ANCHOR = "seeds"
TITLE = "How many seeds?"
ALPHA = stats.ALPHA
DIFFERENCES = (0.01, 0.05)  # bpd or nats: the differences the seeds table plans for


def seeds_frame(runs: pd.DataFrame, differences: tuple[float, ...] = DIFFERENCES,
                alpha: float = stats.ALPHA, power: float = stats.POWER) -> pd.DataFrame:
    """Per data set: ``unit``, ``configs`` with two seeds or more (flows only: reference rows
    are closed-form), the pooled and the largest standard deviation over seeds, the most
    seeds a configuration has now, and ``seeds for δ`` at the pooled spread for each δ in
    ``differences`` (NaN where no configuration has two seeds)."""
    cols = ["dataset", "unit", "configs", "pooled_sd", "max_sd", "seeds_now",
            *[f"seeds for {d:g}" for d in differences]]
    rows = []
    ok = scored(runs)
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


def build(ctx: Context) -> Section:
    """How many seeds per configuration would detect a difference, per data set."""
    sec = Section(ANCHOR, TITLE)
    frame = seeds_frame(ctx.runs)
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
