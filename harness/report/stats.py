"""Statistics over seeds and data sets, as pure functions of numbers (no I/O, no figures).

Every test and interval comes from a library; this module chooses them and handles the
small and degenerate samples a benchmark produces (one seed, identical seeds):

* **Seed interval** of a configuration's mean score: the 95 % percentile bootstrap over its
  seeds (``scipy.stats.bootstrap``, 10,000 resamples, the percentile method that rliable uses).
  With n seeds it cannot be wider than their range, so with few seeds it is optimistic; one
  seed has no interval.
* **A pair of configurations** on one data set: the probability of improvement
  P(X better than Y) as rliable defines it (``rliable.metrics.probability_of_improvement``:
  the Mann–Whitney U statistic over n_X · n_Y); a **paired t-test** on the per-seed
  differences when both ran the same seeds (the same seed means the same initialisation,
  batch order and noise: the pairing removes what the seeds share), **Welch's t-test**
  otherwise (``scipy.stats``; with 5 seeds Wilcoxon's signed-rank test cannot reach
  p < 0.05, a t-test can); the 95 % interval of the difference from the same test; the effect
  size as Cohen's d (paired: d_z = mean / sd of the differences; Welch: the difference over
  √((s_X² + s_Y²) / 2)); p-values Holm-corrected across every pair of the data set
  (checked against ``statsmodels``). Identical values on both sides give p = 1; a
  difference that is the same for every seed (zero spread) gives p = 0; fewer than two seeds
  on a side give no test.
* **Tied with the best**: the configuration with the lowest mean score, and every
  configuration whose Holm-corrected p against it is ≥ α (α = 0.05).
* **Ranks across data sets**: the Friedman test and the Nemenyi critical difference of the
  average ranks, from ``autorank`` (non-parametric mode, lower scores rank first; it needs at
  least 5 data sets and 3 configurations with a score on every one of them:
  :func:`complete_design` drops the most-missing configurations or data sets first).
* **Aggregate score** of a configuration: per data set, each finished run's score normalised
  as (s_ref − s) / (s_ref − s_best), where s_ref is the best reference row's mean (Gaussian,
  histogram; the worst configuration's mean where the suite has none) and s_best the best
  single run: 0 is the baseline, 1 the best run. The aggregate is the mean over data sets of
  the per-data-set mean, with a 95 % stratified bootstrap interval (seeds resampled within
  each data set, as rliable's ``StratifiedBootstrap``; computed with ``scipy.stats.bootstrap``,
  one sample per data set).
* **Seeds needed** to detect a difference δ between two configurations of one data set at
  80 % power (two-sided two-sample t-test, α = 0.05; ``statsmodels`` ``TTestIndPower``), from
  the pooled within-configuration standard deviation of its finished flows (reference rows
  are closed-form and left out).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "POWER",
    "RankResult",
    "aggregate_interval",
    "complete_design",
    "holm",
    "normalised_scores",
    "pair_test",
    "pairwise",
    "pooled_sd",
    "rank_analysis",
    "seed_interval",
    "seeds_needed",
    "tied_with_best",
]

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.80
RESAMPLES = 10_000
MIN_BLOCKS = 5  # autorank's minimum number of data sets
MIN_POPULATIONS = 3  # the Friedman test compares at least three


def _values(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def _flat(x: np.ndarray) -> bool:
    """All equal up to float rounding (a spread no test can use)."""
    if len(x) < 2:
        return True
    scale = max(1.0, float(np.max(np.abs(x))))
    return float(np.ptp(x)) <= 64 * np.finfo(float).eps * scale


def seed_interval(values: Sequence[float], confidence: float = CONFIDENCE,
                  resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """The percentile-bootstrap interval of the mean of ``values`` (one per seed); NaNs with
    fewer than two finite values, ``(v, v)`` when they are all equal."""
    from scipy.stats import bootstrap

    x = _values(values)
    if len(x) < 2:
        return math.nan, math.nan
    if _flat(x):
        return float(x[0]), float(x[0])
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples,
                    method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class PairTest:
    """X against Y on one data set (scores: lower is better). ``delta`` = mean(Y) − mean(X)
    with its interval ``lo hi``; ``poi`` = P(X better than Y); ``test`` is ``paired t``,
    ``Welch t`` or ``none``; ``effect`` is Cohen's d of Y − X (positive: Y worse)."""

    n_x: int
    n_y: int
    mean_x: float
    mean_y: float
    delta: float
    lo: float
    hi: float
    p: float
    effect: float
    poi: float
    test: str


def _poi(x: np.ndarray, y: np.ndarray, lower_is_better: bool) -> float:
    """rliable's probability of improvement of X over Y on one task: the Mann–Whitney U
    statistic of X over n_X · n_Y, that is P(X better than Y) + ½ P(tie) over every pair of
    seeds (``rliable.metrics.probability_of_improvement``, which the tests compare it with,
    calls scipy's test once per pair of configurations: counted directly here, it costs
    nothing for the thousands of pairs of a large report)."""
    sign = -1.0 if lower_is_better else 1.0
    a, b = sign * x[:, None], sign * y[None, :]
    return float(((a > b).sum() + 0.5 * (a == b).sum()) / (len(x) * len(y)))


def pair_test(x: Sequence[float], y: Sequence[float], *, paired: bool = False,
              lower_is_better: bool = True, confidence: float = CONFIDENCE) -> PairTest:
    """Test the difference of Y from X (see the module docstring); ``paired``: the i-th
    values of X and Y come from the same seed."""
    from scipy import stats

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if paired:
        keep = np.isfinite(xa) & np.isfinite(ya)
        xa, ya = xa[keep], ya[keep]
    else:
        xa, ya = xa[np.isfinite(xa)], ya[np.isfinite(ya)]
    nx, ny = len(xa), len(ya)
    mx = float(xa.mean()) if nx else math.nan
    my = float(ya.mean()) if ny else math.nan
    delta = my - mx
    poi = _poi(xa, ya, lower_is_better) if nx and ny else math.nan
    nan = math.nan
    if paired and nx >= 2:
        d = ya - xa
        if _flat(d):  # the same difference for every seed
            p = 1.0 if _flat(np.r_[d, 0.0]) else 0.0
            return PairTest(nx, ny, mx, my, delta, delta, delta, p,
                            0.0 if p == 1.0 else math.copysign(math.inf, delta), poi,
                            "paired t")
        res = stats.ttest_rel(ya, xa)
        ci = res.confidence_interval(confidence)
        return PairTest(nx, ny, mx, my, delta, float(ci.low), float(ci.high),
                        float(res.pvalue), float(d.mean() / d.std(ddof=1)), poi, "paired t")
    if nx >= 2 and ny >= 2:
        if _flat(xa) and _flat(ya):  # no spread on either side
            p = 1.0 if _flat(np.r_[xa[:1], ya[:1]]) else 0.0
            return PairTest(nx, ny, mx, my, delta, delta, delta, p,
                            0.0 if p == 1.0 else math.copysign(math.inf, delta), poi,
                            "Welch t")
        res = stats.ttest_ind(ya, xa, equal_var=False)
        ci = res.confidence_interval(confidence)
        sd = math.sqrt((xa.var(ddof=1) + ya.var(ddof=1)) / 2)
        return PairTest(nx, ny, mx, my, delta, float(ci.low), float(ci.high),
                        float(res.pvalue), delta / sd, poi, "Welch t")
    return PairTest(nx, ny, mx, my, delta, nan, nan, nan, nan, poi, "none")


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values: sorted ascending, p₍ᵢ₎ · (m − i + 1) (i from 1), made
    non-decreasing by a running maximum and capped at 1; NaNs stay NaN and do not count in
    the family m. The same numbers as ``statsmodels``' ``multipletests(method="holm")``
    (the tests check it), written out because that function runs a full garbage collection
    on every call (a third of a second in a process that holds torch and MLflow)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        adjusted = np.maximum.accumulate(p[order] * np.arange(m, 0, -1))
        out[order] = np.minimum(adjusted, 1.0)
    return out


def pairwise(scores: Mapping[str, Mapping[int, float]], *, lower_is_better: bool = True
             ) -> pd.DataFrame:
    """Every pair of configurations of one data set. ``scores``: config → {seed: score}.

    Returns one row per ordered pair (x before y in sorted order) with the
    :class:`PairTest` fields and ``p_holm`` (Holm over the pairs of this call)."""
    cols = ["x", "y", *PairTest.__dataclass_fields__, "p_holm"]
    names = sorted(scores)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            sa, sb = scores[a], scores[b]
            same = sorted(sa) == sorted(sb) and len(sa) >= 2
            seeds = sorted(sa) if same else None
            x = [sa[s] for s in seeds] if same else list(sa.values())
            y = [sb[s] for s in seeds] if same else list(sb.values())
            t = pair_test(x, y, paired=same, lower_is_better=lower_is_better)
            rows.append([a, b, *(getattr(t, f) for f in PairTest.__dataclass_fields__)])
    out = pd.DataFrame(rows, columns=cols[:-1])
    out["p_holm"] = holm(out["p"]) if len(out) else []
    return out


def tied_with_best(scores: Mapping[str, Mapping[int, float]], pairs: pd.DataFrame,
                   alpha: float = ALPHA) -> dict[str, str]:
    """config → ``best``, ``tied`` (Holm-corrected p ≥ α against the best), ``worse`` or
    ``untested`` (fewer than two seeds on a side). ``pairs``: :func:`pairwise` of ``scores``."""
    means = {c: float(np.mean(_values(list(v.values())))) for c, v in scores.items()
             if len(_values(list(v.values())))}
    if not means:
        return {}
    best = min(sorted(means), key=lambda c: means[c])
    out = {best: "best"}
    for c in means:
        if c == best:
            continue
        row = pairs[((pairs["x"] == best) & (pairs["y"] == c))
                    | ((pairs["x"] == c) & (pairs["y"] == best))]
        p = float(row["p_holm"].iloc[0]) if len(row) else math.nan
        out[c] = "untested" if math.isnan(p) else ("tied" if p >= alpha else "worse")
    return out


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """√(Σ (n_i − 1) s_i² / Σ (n_i − 1)) over the groups with two values or more, and the
    number of such groups (NaN, 0 when there are none)."""
    num, den, used = 0.0, 0, 0
    for g in groups:
        x = _values(g)
        if len(x) >= 2:
            num += (len(x) - 1) * float(x.var(ddof=1))
            den += len(x) - 1
            used += 1
    return (math.sqrt(num / den) if den else math.nan), used


def seeds_needed(sd: float, difference: float, alpha: float = ALPHA, power: float = POWER
                 ) -> int:
    """Seeds per configuration for a two-sided two-sample t-test at level ``alpha`` to detect
    ``difference`` with probability ``power`` when the seeds' standard deviation is ``sd``
    (at least 2, the fewest a test can use)."""
    from statsmodels.stats.power import TTestIndPower

    if not difference > 0:
        raise ValueError(f"the difference to detect must be > 0, got {difference!r}")
    if not math.isfinite(sd):
        raise ValueError("no spread known: it needs a configuration with two seeds or more")
    if sd <= 0:
        return 2
    effect = difference / sd

    def enough(n: int) -> bool:
        return float(TTestIndPower().power(effect, nobs1=n, alpha=alpha, ratio=1.0,
                                           alternative="two-sided")) >= power

    # the smallest n with enough power, by doubling then bisection over the integers
    # (statsmodels' own root finder fails to bracket large effects)
    lo, hi = 1, 2
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > 2**40:
            raise ValueError(f"no number of seeds detects {difference!r} at sd {sd!r}")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return max(2, hi)


def complete_design(matrix: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The largest block design without gaps this greedy rule finds: while a cell is missing,
    drop the data set (row) or configuration (column) with the largest share of missing
    cells (a configuration on a tie). Returns the complete matrix and the dropped rows and
    columns, in the order they went."""
    m = matrix.copy()
    rows, cols = [], []
    while m.size and m.isna().to_numpy().any():
        row_share = m.isna().mean(axis=1)
        col_share = m.isna().mean(axis=0)
        r, c = row_share.idxmax(), col_share.idxmax()
        if col_share[c] >= row_share[r]:
            m = m.drop(columns=[c])
            cols.append(str(c))
        else:
            m = m.drop(index=[r])
            rows.append(str(r))
    return m, rows, cols


@dataclass
class RankResult:
    """Average ranks (1 = best) over the data sets of a complete design, the Friedman
    p-value, the Nemenyi critical difference ``cd`` at ``alpha`` and the groups of
    configurations whose average ranks differ by no more than ``cd`` (as autorank draws them);
    ``reason`` says why there is no analysis (then the numbers are NaN)."""

    ranks: pd.Series
    pvalue: float
    cd: float
    alpha: float
    blocks: list[str]
    dropped_blocks: list[str] = field(default_factory=list)
    dropped_configs: list[str] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)
    reason: str = ""


def _groups(ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal runs of consecutive configurations (by rank) spanning at most ``cd``."""
    names, r = list(ranks.index), ranks.to_numpy(float)
    out, reach = [], -1
    for i in range(len(r)):
        j = max((k for k in range(i + 1, len(r)) if abs(r[k] - r[i]) <= cd), default=None)
        if j is not None and j > reach:
            reach = j
            out.append(names[i : j + 1])
    return out


def rank_analysis(matrix: pd.DataFrame, alpha: float = ALPHA) -> RankResult:
    """Friedman / Nemenyi over ``matrix`` (rows: data sets, columns: configurations, values:
    mean scores, lower is better), made complete with :func:`complete_design` first."""
    from autorank import autorank

    full, dropped_rows, dropped_cols = complete_design(matrix)
    blank = RankResult(pd.Series(dtype=float), math.nan, math.nan, alpha,
                       [str(b) for b in full.index], dropped_rows, dropped_cols)
    if full.shape[0] < MIN_BLOCKS or full.shape[1] < MIN_POPULATIONS:
        blank.reason = (f"{full.shape[1]} configurations with a score on each of "
                        f"{full.shape[0]} data sets: the analysis needs at least "
                        f"{MIN_POPULATIONS} configurations on at least {MIN_BLOCKS} data sets")
        return blank
    data = full.copy()
    data.columns = [str(c) for c in data.columns]
    data = data.reset_index(drop=True)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = autorank(data, alpha=alpha, order="ascending", force_mode="nonparametric")
    ranks = res.rankdf["meanrank"].astype(float).sort_values(kind="stable")
    return RankResult(ranks, float(res.pvalue), float(res.cd), alpha,
                      [str(b) for b in full.index], dropped_rows, dropped_cols,
                      _groups(ranks, float(res.cd)))


def normalised_scores(scores: pd.DataFrame, reference: pd.Series) -> pd.Series:
    """Each run's score normalised per block: (s_ref − s) / (s_ref − s_best).

    ``scores``: one row per finished run with ``block config score``; ``reference``: per
    block, the reference score s_ref (NaN: use the worst configuration's mean there). s_best is
    the block's lowest run score. A block where s_ref ≤ s_best (nothing beats the reference)
    gives NaN."""
    means = scores.groupby(["block", "config"])["score"].mean()
    worst = means.groupby(level="block").max()
    ref = reference.reindex(worst.index).fillna(worst)
    best = scores.groupby("block")["score"].min()
    span = (ref - best).where(ref > best)
    return (scores["block"].map(ref) - scores["score"]) / scores["block"].map(span)


def aggregate_interval(per_block: Sequence[Sequence[float]], confidence: float = CONFIDENCE,
                       resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """The mean over blocks of the per-block mean, and its stratified-bootstrap interval
    (values resampled within each block). A block with one value contributes a constant;
    with no block of two values or more the interval is NaN."""
    from scipy.stats import bootstrap

    blocks = [_values(b) for b in per_block]
    blocks = [b for b in blocks if len(b)]
    if not blocks:
        return math.nan, math.nan, math.nan
    point = float(np.mean([b.mean() for b in blocks]))
    varied = [b for b in blocks if len(b) >= 2]
    fixed = sum(float(b.mean()) for b in blocks if len(b) < 2)
    k = len(blocks)
    if not varied:
        return point, math.nan, math.nan
    if all(_flat(b) for b in varied):
        return point, point, point

    def statistic(*samples, axis=-1):
        return (sum(s.mean(axis=axis) for s in samples) + fixed) / k

    res = bootstrap(tuple(varied), statistic, confidence_level=confidence,
                    n_resamples=resamples, method="percentile", vectorized=True,
                    rng=np.random.default_rng(seed))
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)
