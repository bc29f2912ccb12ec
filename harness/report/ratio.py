"""The ratio of two timings with a bootstrap interval over their blocks, and when it is resolved.

A timing is the first quartile of its blocks' times (:mod:`harness.measure.timing`); a
configuration with several runs (seeds) is timed by the mean of its runs' first quartiles.
Two configurations A and B are compared by

.. math::
    r = \\frac{\\bar q_B}{\\bar q_A}, \\qquad
    \\bar q = \\frac{1}{k}\\sum_{j=1}^{k} Q_{0.25}(t_{j,1}, \\dots, t_{j,n_j}),

and its interval is a two-level percentile bootstrap (:data:`DRAWS` draws): each draw picks
``k`` runs of a side with replacement (one run: that run), then each picked run's ``n_j``
blocks with replacement, and takes ``r`` of the resampled sides; the 95 % interval is the
2.5th and 97.5th percentiles of the draws. Resampling runs carries the spread between runs
(another seed, another hour) into the interval; with one run a side only the spread of its
blocks is there, which is all one run can show.

The comparison is *resolved* only when the interval excludes 1 and does not lie within
:data:`RESOLUTION` of it: an interval inside [0.95, 1.05] or one straddling 1 is "not
resolved", and neither side is ranked above the other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DRAWS", "LEVEL", "RESOLUTION", "Ratio", "blocks_of", "ratio", "resolved"]

QUANTILE = 0.25  # the timing estimator (harness.measure.timing.QUANTILE)
DRAWS = 2000  # bootstrap draws
LEVEL = 0.95  # the interval's coverage
RESOLUTION = 0.05  # an interval within this of 1 (relative) does not resolve a difference


@dataclass(frozen=True)
class Ratio:
    """B over A: ``value`` with its bootstrap interval ``[lo, hi]``; ``resolved`` per the
    module docstring; ``verdict`` in words ("B slower", "B faster", "not resolved")."""

    value: float
    lo: float
    hi: float

    @property
    def resolved(self) -> bool:
        return resolved(self.lo, self.hi)

    @property
    def verdict(self) -> str:
        if not self.resolved:
            return "not resolved"
        return "B slower" if self.lo > 1 else "B faster"

    def inverted(self) -> Ratio:
        """The ratio of the reciprocals (a throughput from a time): 1/r, [1/hi, 1/lo]."""
        return Ratio(1 / self.value, 1 / self.hi, 1 / self.lo)

    def text(self) -> str:
        if not math.isfinite(self.value):
            return "—"
        return f"×{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def resolved(lo: float, hi: float, resolution: float = RESOLUTION) -> bool:
    """Whether an interval of a ratio tells its sides apart: it excludes 1 and is not within
    ``resolution`` of 1 (NaN bounds: not resolved)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    inside = lo >= 1 - resolution and hi <= 1 + resolution
    return not (lo <= 1 <= hi or inside)


def _side(runs: Sequence[np.ndarray], rng: np.random.Generator, draws: int) -> np.ndarray:
    """``draws`` bootstrap replicates of a side's mean first quartile (module docstring)."""
    per_run = []
    for t in runs:
        idx = rng.integers(0, len(t), size=(draws, len(t)))
        per_run.append(np.quantile(t[idx], QUANTILE, axis=1))
    q = np.stack(per_run, axis=1)  # draws × runs
    if len(runs) == 1:
        return q[:, 0]
    pick = rng.integers(0, len(runs), size=(draws, len(runs)))
    return np.take_along_axis(q, pick, axis=1).mean(axis=1)


def ratio(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], *, draws: int = DRAWS,
          level: float = LEVEL, seed: int = 0) -> Ratio:
    """The ratio B / A of two timings from their runs' block times (``a``, ``b``: one
    sequence of block times per run), with its percentile bootstrap interval. Runs without
    blocks are left out; a side without any gives NaN."""
    sides = [[np.asarray(t, dtype=float) for t in side if len(t)] for side in (a, b)]
    if not sides[0] or not sides[1]:
        return Ratio(math.nan, math.nan, math.nan)
    point = [float(np.mean([np.quantile(t, QUANTILE) for t in side])) for side in sides]
    rng = np.random.default_rng(seed)
    boot_a, boot_b = (_side(side, rng, draws) for side in sides)
    r = boot_b / boot_a
    tail = (1 - level) / 2
    lo, hi = np.quantile(r, [tail, 1 - tail])
    return Ratio(point[1] / point[0], float(lo), float(hi))


def blocks_of(tag: object, metric: str) -> list[float]:
    """One run's block times of ``metric`` from its ``nfbench.timing.blocks`` tag (empty where
    the run has no such tag: recorded before it existed, or not timed)."""
    if not isinstance(tag, str) or not tag:
        return []
    try:
        kept = json.loads(tag)
    except ValueError:
        return []
    times = kept.get(metric, []) if isinstance(kept, dict) else []
    return [float(t) for t in times if isinstance(t, (int, float)) and math.isfinite(t)]
