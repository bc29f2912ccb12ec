"""The statistics, checked against the libraries and published values on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.report import stats

# Student's sleep data (R's ``sleep``): extra hours of sleep under two drugs, ten patients.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_and_welch_tests_match_r_on_the_sleep_data():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9,
    # p-value = 0.002833, 95 % CI -2.4598858 -0.7001142 (group 1 − group 2)
    t = stats.pair_test(SLEEP_1, SLEEP_2, paired=True)
    assert t.test == "paired t" and t.p == pytest.approx(0.002833, abs=5e-7)
    assert (t.lo, t.hi) == pytest.approx((0.7001142, 2.4598858), abs=1e-6)
    assert t.delta == pytest.approx(1.58)
    d = np.subtract(SLEEP_2, SLEEP_1)
    assert t.effect == pytest.approx(d.mean() / d.std(ddof=1))
    # R: t.test(extra ~ group, data = sleep): Welch, t = -1.8608, df = 17.776,
    # p-value = 0.07939, 95 % CI -3.3654832 0.2054832
    w = stats.pair_test(SLEEP_1, SLEEP_2, paired=False)
    assert w.test == "Welch t" and w.p == pytest.approx(0.07939, abs=5e-6)
    assert (w.lo, w.hi) == pytest.approx((-0.2054832, 3.3654832), abs=1e-6)
    assert w.p == pytest.approx(sps.ttest_ind(SLEEP_2, SLEEP_1, equal_var=False).pvalue)


def test_degenerate_samples():
    same = stats.pair_test([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], paired=True)
    assert same.p == 1.0 and same.delta == 0.0
    shift = stats.pair_test([1.62, 3.05, 2.25], [1.92, 3.35, 2.55], paired=True)
    assert shift.p == 0.0 and shift.delta == pytest.approx(0.3)  # the same shift every seed
    flat = stats.pair_test([2.0, 2.0], [2.5, 2.5], paired=False)
    assert flat.p == 0.0 and flat.test == "Welch t"
    one = stats.pair_test([1.0], [2.0, 2.1], paired=False)
    assert one.test == "none" and math.isnan(one.p) and one.poi == 1.0


def test_probability_of_improvement_is_rliables_definition():
    # lower is better: X improves on Y in 5 of the 6 pairs
    assert stats.pair_test([1, 2, 3], [2.5, 4]).poi == pytest.approx(5 / 6)
    assert stats.pair_test([1, 2], [1, 2]).poi == 0.5
    from rliable.metrics import probability_of_improvement

    x, y = np.array([[0.3], [0.1], [0.2]]), np.array([[0.25], [0.4]])
    expected = probability_of_improvement(x, y)  # higher is better in rliable
    assert stats.pair_test([0.3, 0.1, 0.2], [0.25, 0.4], lower_is_better=False).poi \
        == pytest.approx(expected)


def test_holm_matches_the_step_down_by_hand():
    # sorted: 0.01·3 = 0.03; 0.03·2 = 0.06; 0.04·1 → max(0.06, 0.04) = 0.06
    assert stats.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    out = stats.holm([0.02, math.nan])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(7)
    for m in (1, 2, 5, 40):
        p = rng.uniform(0, 0.2, m) ** 2
        p[: m // 3] = p[0]  # ties
        assert stats.holm(p).tolist() == pytest.approx(
            multipletests(p, method="holm")[1].tolist())


def test_pairwise_and_the_group_tied_with_the_best():
    rng = np.random.default_rng(3)
    base = rng.normal(0, 0.005, 5)
    scores = {
        "best": dict(enumerate(2.00 + base)),
        "close": dict(enumerate(2.001 + rng.normal(0, 0.005, 5))),
        "far": dict(enumerate(2.10 + rng.normal(0, 0.005, 5))),
        "solo": {0: 1.90},
    }
    pairs = stats.pairwise(scores)
    assert len(pairs) == 6
    row = pairs[(pairs["x"] == "best") & (pairs["y"] == "far")].iloc[0]
    assert row["test"] == "paired t" and row["p_holm"] < 0.01 and row["effect"] > 5
    raw = pairs["p"].to_numpy()
    assert pairs["p_holm"].dropna().tolist() == pytest.approx(
        stats.holm(raw)[np.isfinite(raw)].tolist())
    verdict = stats.tied_with_best(scores, pairs)
    # the lone seed has the lowest mean: it is the best, and nothing can be tested against it
    assert verdict == {"solo": "best", "best": "untested", "close": "untested",
                       "far": "untested"}
    del scores["solo"]
    verdict = stats.tied_with_best(scores, stats.pairwise(scores))
    assert verdict == {"best": "best", "close": "tied", "far": "worse"}


def test_seed_interval():
    assert all(math.isnan(v) for v in stats.seed_interval([2.0]))
    assert stats.seed_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    lo, hi = stats.seed_interval([1.0, 1.2])
    assert (lo, hi) == pytest.approx((1.0, 1.2))  # two seeds: at most their range
    x = np.random.default_rng(0).normal(5, 1, 30)
    lo, hi = stats.seed_interval(x)
    t = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert lo < x.mean() < hi and (lo, hi) == pytest.approx(t, abs=0.1)


def test_seeds_needed_matches_cohens_table():
    # Cohen (1988), Table 2.4.1: n per group for a two-sided two-sample t-test at α = 0.05
    # and power 0.80 is 64 for d = 0.5, 26 for d = 0.8 and 17 for d = 1.0
    assert stats.seeds_needed(1.0, 0.5) == 64
    assert stats.seeds_needed(1.0, 0.8) == 26
    assert stats.seeds_needed(0.01, 0.01) == 17
    assert stats.seeds_needed(0.0, 0.01) == 2 and stats.seeds_needed(1e-6, 1.0) == 2
    with pytest.raises(ValueError, match="two seeds"):
        stats.seeds_needed(math.nan, 0.01)


def test_pooled_sd():
    sd, used = stats.pooled_sd([[1.0, 3.0], [2.0, 2.0, 5.0], [7.0]])
    # (1·2 + 2·3) / (1 + 2) with variances 2 and 3
    assert used == 2 and sd == pytest.approx(math.sqrt((1 * 2 + 2 * 3) / 3))


def test_complete_design_drops_the_most_missing_first():
    nan = np.nan
    m = pd.DataFrame({"a": [1, 1, 1, 1], "b": [1, 1, 1, nan], "c": [nan, nan, nan, 1]},
                     index=["d1", "d2", "d3", "d4"], dtype=float)
    full, rows, cols = stats.complete_design(m)
    assert cols == ["c"] and rows == ["d4"] and list(full.columns) == ["a", "b"]


# Demšar (2006), Table 5(a): q_0.05 of the Nemenyi test for k = 2 … 10 configurations
DEMSAR_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031,
              9: 3.102, 10: 3.164}


@pytest.mark.parametrize("k", [3, 4, 6])
def test_friedman_and_critical_difference_against_scipy_and_demsar(k):
    rng = np.random.default_rng(k)
    n = 8
    matrix = pd.DataFrame(rng.normal(size=(n, k)) + np.arange(k) * 0.7,
                          index=[f"d{i}" for i in range(n)], columns=[f"c{j}" for j in range(k)])
    res = stats.rank_analysis(matrix)
    assert res.reason == ""
    assert res.pvalue == pytest.approx(sps.friedmanchisquare(*matrix.T.values).pvalue)
    assert res.cd == pytest.approx(DEMSAR_Q05[k] * math.sqrt(k * (k + 1) / (6 * n)),
                                   rel=2e-3)
    ranks = matrix.rank(axis=1).mean()
    assert res.ranks.to_dict() == pytest.approx(ranks.to_dict())
    assert list(res.ranks.index) == list(ranks.sort_values(kind="stable").index)
    for group in res.groups:  # every group spans at most the critical difference
        span = res.ranks[group]
        assert span.max() - span.min() <= res.cd


def test_rank_groups_are_autoranks():
    from autorank._util import get_sorted_rank_groups

    rng = np.random.default_rng(11)
    matrix = pd.DataFrame(rng.normal(size=(10, 5)) + np.arange(5) * 0.4,
                          columns=list("abcde"))
    res = stats.rank_analysis(matrix)

    class R:  # autorank's result, as its plotting helper reads it
        rankdf = pd.DataFrame({"meanrank": res.ranks})
        cd = res.cd

    _, names, groups = get_sorted_rank_groups(R, reverse=False)
    assert res.groups == [names[i : j + 1] for i, j in groups]


def test_rank_analysis_needs_five_data_sets_and_three_configurations():
    matrix = pd.DataFrame(np.arange(12.0).reshape(4, 3), columns=list("abc"))
    res = stats.rank_analysis(matrix)
    assert math.isnan(res.pvalue) and "at least 3 configurations on at least 5" in res.reason


def test_normalised_scores():
    scores = pd.DataFrame({"block": ["x", "x", "x", "y", "y"],
                           "config": ["f", "f", "g", "f", "g"],
                           "score": [1.0, 1.2, 1.5, 3.0, 4.0]})
    ref = pd.Series({"x": 2.0})  # y has no reference row: the worst mean (4.0) stands in
    out = stats.normalised_scores(scores, ref)
    assert out.tolist() == pytest.approx([1.0, 0.8, 0.5, 1.0, 0.0])


def _rliable_scheme(scores: np.ndarray, reps: int, rng: np.random.Generator):
    """rliable's ``StratifiedBootstrap`` written out (its ``library`` module cannot be
    imported with pandas 3: arch 7 breaks on import, and arch 8 no longer takes the
    ``random_state`` that rliable passes): each replicate draws every task's runs with
    replacement from that task's own runs; the aggregate is the mean over tasks of the mean
    over runs; the interval is the 2.5 and 97.5 percentiles of the replicates."""
    n, m = scores.shape
    out = np.empty(reps)
    for r in range(reps):
        idx = rng.integers(0, n, size=(n, m))
        out[r] = scores[idx, np.arange(m)].mean(axis=0).mean()
    return np.percentile(out, [2.5, 97.5])


def test_aggregate_interval_is_a_stratified_bootstrap():
    from rliable import metrics

    rng = np.random.default_rng(5)
    scores = rng.normal(0.6, 0.1, size=(5, 4)) + np.array([0.0, 0.1, -0.1, 0.2])
    point, lo, hi = stats.aggregate_interval([scores[:, j] for j in range(4)],
                                             resamples=20_000)
    assert point == pytest.approx(float(metrics.aggregate_mean(scores)))
    ref_lo, ref_hi = _rliable_scheme(scores, 20_000, np.random.default_rng(1))
    width = hi - lo
    assert lo == pytest.approx(ref_lo, abs=0.03 * width)
    assert hi == pytest.approx(ref_hi, abs=0.03 * width)


def test_aggregate_interval_small_cases():
    assert stats.aggregate_interval([[0.5], [0.7]])[0] == pytest.approx(0.6)
    assert math.isnan(stats.aggregate_interval([[0.5], [0.7]])[1])
    point, lo, hi = stats.aggregate_interval([[0.5, 0.5], [0.7]])
    assert (point, lo, hi) == pytest.approx((0.6, 0.6, 0.6))
    point, lo, hi = stats.aggregate_interval([[0.4, 0.6], [0.7]])
    # block 1 resamples to 0.4, 0.5 or 0.6; block 2 stays 0.7
    assert (point, lo, hi) == pytest.approx((0.6, 0.55, 0.65))


def test_pairs_without_seeds_to_test_them_are_drawn_grey_not_certain():
    """One seed a side (the smoke suite): P(row better) is 0 or 1 from two numbers and the
    table says "test: none"; the heatmap leaves those cells out of its colour scale and draws
    them grey, "untested". Pairs with seeds on both sides keep their probability."""
    from harness.report.sections.significance import UNTESTED_GREY, figure_poi

    scores = {"a": {0: 1.0, 1: 1.1, 2: 1.05}, "b": {0: 1.2, 1: 1.3, 2: 1.25}, "c": {0: 0.9}}
    pairs = stats.pairwise(scores)
    assert set(pairs.loc[pairs["y"] == "c", "test"]) == {"none"}
    fig = figure_poi(pairs)
    tested, untested = fig.data
    names = list(tested.x)
    a, b, c = (names.index(k) for k in "abc")
    z, grey = np.asarray(tested.z, float), np.asarray(untested.z, float)
    assert np.isnan(z[a, c]) and np.isnan(z[c, b])  # no colour from a certain-looking P
    assert not np.isnan(grey[a, c]) and not np.isnan(grey[c, b]) and np.isnan(grey[a, b])
    assert tested.text[a][c] == tested.text[c][b] == "untested"
    assert z[a, b] == pytest.approx(1.0) and z[b, a] == pytest.approx(0.0)  # a better: tested
    assert {cs[1] for cs in untested.colorscale} == {UNTESTED_GREY}
    assert untested.showscale is False
    # all tested: no grey layer at all
    assert len(figure_poi(stats.pairwise({k: scores[k] for k in "ab"})).data) == 1
