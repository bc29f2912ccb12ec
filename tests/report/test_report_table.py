"""The results table: preparation, seed aggregation, Pareto fronts, triangle scores."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest

from harness import keys
from harness.report.published import published_for
from harness.report.sections.base import METRICS
from harness.report.sections.leaderboards import leaderboard_frame
from harness.report.sections.pareto import pareto_frame
from harness.report.sections.triangle import triangle_scores
from harness.report.table import aggregate, config_label, pareto_mask, prepare, provenance
from harness.tracking.read import load_runs


@pytest.fixture(scope="module")
def zoo(store) -> pd.DataFrame:
    return prepare(load_runs(store.uri, ["zoo"]))


def test_prepare_picks_the_quality_metric_per_data_set(zoo, store):
    kinds = zoo.groupby("dataset")["kind"].agg(set).to_dict()
    assert kinds == {"moons": {"continuous"}, "8gaussians": {"continuous"},
                     "power": {"continuous"}, "digits": {"discrete"}, "mnist": {"discrete"}}
    by_id = {t.run_id: t for t in store.runs("zoo")}
    for row in zoo.itertuples():
        t = by_id[row.run_id]
        key = keys.EVAL_BPD if t.params["data.kind"] == "discrete" else keys.EVAL_NLL
        if key in t.metrics:
            assert row.score == t.metrics[key]
        assert row.ok == (t.status == keys.STATUS_FINISHED)
        assert row.config == config_label(t.arch_label, t.dequant)
        assert row.url == (f"http://127.0.0.1:5000/#/experiments/{row.experiment_id}/runs/"
                           f"{t.run_id}")
    assert zoo.loc[zoo["arch"].isin(["gaussian", "histogram"]), "reference"].all()
    assert not zoo.loc[zoo["arch"] == "realnvp", "reference"].any()


def test_variants_of_a_data_set_stay_apart(store):
    runs = prepare(load_runs(store.uri, ["variants"]))
    assert sorted(runs["dataset"]) == ["digits(flatten=False, n_bits=5)", "digits(flatten=True)"]
    assert set(runs["dataset_name"]) == {"digits"}
    assert len(aggregate(runs, ["score"])) == 2
    # a layout option keeps the published figures, one that changes the numbers does not
    assert runs.set_index("dataset")["standard_data"].to_dict() == {
        "digits(flatten=True)": True, "digits(flatten=False, n_bits=5)": False}
    fake = pd.concat([runs.assign(dataset_name="mnist", arch="glow")])
    board = leaderboard_frame(aggregate(fake, METRICS)).set_index("dataset")
    assert board.loc["digits(flatten=True)", "published"] == pytest.approx(1.05)
    assert np.isnan(board.loc["digits(flatten=False, n_bits=5)", "published"])


def test_aggregate_is_the_mean_and_sample_std_over_finished_seeds(zoo, store):
    agg = aggregate(zoo, ["score", keys.PERF_SAMPLE_THROUGHPUT]).set_index(["dataset", "config"])
    groups: dict[tuple[str, str], list] = {}
    for t in store.runs("zoo"):
        groups.setdefault((t.dataset, config_label(t.arch_label, t.dequant)), []).append(t)
    assert set(agg.index) == set(groups)
    for key, truths in groups.items():
        done = [t for t in truths if t.status == keys.STATUS_FINISHED]
        row = agg.loc[key]
        assert row["n_runs"] == len(truths) and row["n_ok"] == len(done)
        assert row["seeds"] == ",".join(str(t.seed) for t in sorted(done, key=lambda t: t.seed))
        metric = keys.EVAL_BPD if key[0] in ("digits", "mnist") else keys.EVAL_NLL
        scores = [t.metrics[metric] for t in done]
        assert row["score"] == pytest.approx(statistics.fmean(scores), rel=1e-12)
        if len(scores) > 1:
            assert row["score std"] == pytest.approx(statistics.stdev(scores), rel=1e-9)
        else:
            assert np.isnan(row["score std"])  # one seed: no spread
        thr = [t.metrics[keys.PERF_SAMPLE_THROUGHPUT] for t in done]
        assert row[keys.PERF_SAMPLE_THROUGHPUT] == pytest.approx(statistics.fmean(thr))
        assert row["url"] in {zoo.loc[zoo["run_id"] == t.run_id, "url"].item() for t in done}


def test_aggregate_by_architecture_pools_dequantization(zoo):
    per_arch = aggregate(zoo, ["score"], by=("dataset", "arch_label")).set_index(
        ["dataset", "arch_label"])
    digits = zoo[(zoo["dataset"] == "digits") & (zoo["arch_label"] == "glow") & zoo["ok"]]
    assert per_arch.loc[("digits", "glow"), "n_ok"] == len(digits) == 6
    assert per_arch.loc[("digits", "glow"), "score"] == pytest.approx(digits["score"].mean())
    assert per_arch.loc[("digits", "glow"), "config"] == "glow"


def _dominated_brute(x, y, i, x_high):
    sx = 1 if x_high else -1
    return any(
        sx * x[j] >= sx * x[i] and y[j] <= y[i] and (sx * x[j] > sx * x[i] or y[j] < y[i])
        for j in range(len(x)) if j != i and np.isfinite(x[j]) and np.isfinite(y[j])
    )


@pytest.mark.parametrize("x_high", [True, False])
def test_pareto_front_is_exactly_the_non_dominated_points(x_high):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 12, 60).astype(float)  # integer grid: ties in both coordinates
    y = rng.integers(0, 12, 60).astype(float)
    x[[3, 9]] = np.nan
    front = pareto_mask(x, y, x_high=x_high)
    for i in range(len(x)):
        finite = np.isfinite(x[i]) and np.isfinite(y[i])
        assert front[i] == (finite and not _dominated_brute(x, y, i, x_high)), i


def test_pareto_front_by_hand():
    # throughput (higher better) vs bpd (lower better)
    x = [100, 200, 200, 50, 400, 300]
    y = [1.0, 1.5, 1.5, 2.0, 3.0, 3.5]
    assert pareto_mask(x, y, x_high=True).tolist() == [True, True, True, False, True, False]
    # time (lower better): the fastest and the best are on it, a slower-and-worse is not
    assert pareto_mask([1, 2, 3], [3, 2, 4], x_high=False).tolist() == [True, True, False]


def test_pareto_frame_excludes_failed_and_diverged_runs(zoo):
    agg = aggregate(zoo, METRICS)
    pts = pareto_frame(agg)
    assert np.isfinite(pts["score"]).all()
    # realnvp [variational] on digits has a diverged seed: averaged over finished ones only
    row = pts[(pts["dataset"] == "digits") & (pts["config"] == "realnvp [variational]")]
    assert row["n_ok"].item() == 2
    for dataset, part in pts.groupby("dataset"):
        want = pareto_mask(part[keys.PERF_SAMPLE_THROUGHPUT], part["score"], x_high=True)
        assert part["front_sampling"].tolist() == want.tolist(), dataset


def test_triangle_scores_closed_form():
    rows = []
    for dataset, scores in (("d1", (1.0, 2.0, 3.0)), ("d2", (2.0, 1.0, 4.0))):
        for (arch, err, thr, ms), s in zip((("A", 1e-6, 100, 10), ("B", 1e-4, 1000, 1),
                                            ("gaussian", 1e-8, 10000, 0.1)), scores):
            rows.append({"dataset": dataset, "config": arch, "arch": arch,
                         "reference": arch == "gaussian", "score": s, "url": f"u-{arch}",
                         keys.STAB_INV_ERR_MAX: err, keys.PERF_SAMPLE_THROUGHPUT: thr,
                         keys.PERF_DENSITY_MS: ms})
    got = triangle_scores(pd.DataFrame(rows)).set_index("config")
    # I = (L_max − L)/(L_max − L_min) with L = log10 error: −6, −4, −8
    assert got["invertibility"].to_dict() == pytest.approx({"A": 0.5, "B": 0.0, "gaussian": 1.0})
    # E: d1 (3−s)/(3−1), d2 (4−s)/(4−1), averaged
    assert got["expressivity"].to_dict() == pytest.approx(
        {"A": (1 + 2 / 3) / 2, "B": (0.5 + 1) / 2, "gaussian": 0.0})
    assert got["efficiency"].to_dict() == pytest.approx({"A": 0.0, "B": 0.5, "gaussian": 1.0})
    a = got.loc["A"]
    assert (a["a"], a["b"], a["c"]) == pytest.approx((0.5 / (4 / 3), (5 / 6) / (4 / 3), 0.0))
    placed = got.dropna(subset=["a"])
    np.testing.assert_allclose(placed[["a", "b", "c"]].sum(axis=1), 1.0)


def test_published_figures_keep_units_and_signs():
    mnist = published_for("MNIST", "realnvp")
    assert mnist[["value", "unit"]].values.tolist() == [[1.06, "bpd"]]
    maf = published_for("power", "maf").set_index("model")
    # tabular figures are log-likelihoods in the papers; stored as NLL = −LL
    assert maf.loc["MAF (5)", "value"] == pytest.approx(-0.14)
    assert maf.loc["MAF (re-run)", "value"] == pytest.approx(-0.45)
    assert set(maf["unit"]) == {"nats"}
    assert published_for("moons", "maf").empty


def test_leaderboard_frame_ranks_and_publishes(zoo):
    board = leaderboard_frame(aggregate(zoo, METRICS))
    mnist = board[board["dataset"] == "mnist"].set_index("config")
    assert mnist.loc["glow [uniform]", "published"] == pytest.approx(1.05)
    assert np.isnan(mnist.loc["gaussian [uniform]", "published"])
    for _, part in board.groupby("dataset"):
        finite = part[np.isfinite(part["score"])]
        assert finite["score"].is_monotonic_increasing
        assert finite["rank"].iloc[0] == 1


def test_provenance_says_device_batch_and_repeats(zoo):
    text = provenance(zoo[zoo["dataset"] == "digits"])
    assert "cpu (1 threads)" in text
    assert "timing batch 128" in text and "1 CPU thread(s)" in text
    assert "at least 0.2 s per measurement" in text and "no other job on the device" in text
    assert "evaluation batch 1024" in text and "seeds 0 / 1 / 2" in text
