"""Timing ratios with bootstrap intervals over the recorded blocks (harness.report.ratio) and
``nfbench compare``'s speed rows built on them: same code is "not resolved", a flow made 20 %
slower is resolved with an interval that excludes 1."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_synth import fill_suite

from harness import keys
from harness.report import Tolerance, compare, ratio
from harness.report.compare import compare_runs
from harness.report.table import prepare
from harness.tracking.read import load_runs

SPREAD = 0.05  # σ of the log block times (a 2-core VM's timings: IQR about 5–10 %)
BLOCKS = 16


def test_the_estimator_is_the_timings_own():
    from harness.measure import timing

    assert ratio.QUANTILE == timing.QUANTILE


def test_resolved_only_outside_five_percent_and_excluding_one():
    assert not ratio.resolved(0.98, 1.03)  # straddles 1
    assert not ratio.resolved(1.01, 1.04)  # excludes 1 but within ±5 %
    assert not ratio.resolved(0.96, 0.99)
    assert ratio.resolved(1.02, 1.08) and ratio.resolved(0.90, 0.97)
    assert not ratio.resolved(math.nan, 1.2)
    r = ratio.Ratio(1.2, 1.1, 1.3)
    assert r.verdict == "B slower" and r.inverted().verdict == "B faster"
    assert ratio.Ratio(1.0, 0.97, 1.02).verdict == "not resolved"


@pytest.mark.parametrize("runs", [1, 3])
def test_the_bootstrap_interval_covers_the_true_ratio(runs):
    """Block times log-normal with known medians m_A = 2 ms and m_B = 2.4 ms and one σ: every
    quantile's ratio is m_B / m_A = 1.2, so the first quartiles' ratio is 1.2. Over 300
    independent experiments the 95 % interval covers 1.2 in 88–99 % of them (a percentile
    bootstrap of a quantile of 16 blocks runs a little short of its nominal level; the
    binomial's own spread at 95 % of 300 is ±2.5 %). With several runs a side, each run has
    its own offset (σ 0.03) and the interval carries it: resampling runs, not only blocks."""
    rng = np.random.default_rng(24)
    truth, covered = 1.2, 0
    n = 300

    def side(median: float) -> list[np.ndarray]:
        offsets = rng.normal(0, 0.03 if runs > 1 else 0.0, runs)
        return [median * np.exp(o + SPREAD * rng.standard_normal(BLOCKS)) for o in offsets]

    for i in range(n):
        r = ratio.ratio(side(2.0), side(2.0 * truth), draws=1000, seed=i)
        covered += r.lo <= truth <= r.hi
    assert 0.88 <= covered / n <= 0.99, covered / n


def _blocks_tags(uri: str, suite: str, base: dict, factor: dict[str, float], seed: int) -> None:
    """Give every finished run of ``suite`` recorded blocks: log-normal (σ SPREAD) around the
    timing ``base`` holds for its (arch, data set, seed), times ``factor`` of its arch, and
    make its timing metrics their first quartiles (as the timing phase records them); none
    was contended."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(suite)
    rng = np.random.default_rng(seed)
    for run in client.search_runs([exp.experiment_id]):
        if run.data.tags.get(keys.TAG_STATUS) != keys.STATUS_FINISHED:
            continue
        arch = run.data.params["arch.name"]
        where = (arch, run.data.params["data.name"], run.data.params["seed"])
        blocks = {}
        for key in keys.BLOCKED_MS:
            times = base[where][key] * factor.get(arch, 1.0) * np.exp(
                SPREAD * rng.standard_normal(BLOCKS))
            blocks[key] = [float(f"{t:.4g}") for t in times]
            client.log_metric(run.info.run_id, key, float(np.quantile(times, 0.25)), step=1)
        client.log_metric(run.info.run_id, keys.PERF_CONTENDED, 0.0, step=1)  # at speed
        client.set_tag(run.info.run_id, keys.TAG_TIMING_BLOCKS,
                       json.dumps(blocks, separators=(",", ":")))


@pytest.fixture(scope="module")
def timed(tmp_path_factory):
    """Three suites of the same jobs: ``same-a`` and ``same-b`` one code run twice (fresh
    block noise), ``slow`` the same with maf 20 % slower in every timing."""
    root = tmp_path_factory.mktemp("ratio")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    jobs = [(a, "moons", "none", [0, 1]) for a in ("realnvp", "maf", "gaussian")]
    for suite in ("same-a", "same-b", "slow"):
        fill_suite(uri, suite, jobs, artifact_root=root / "art", samples=False,
                   histories=False, points=5)
    client = MlflowClient(tracking_uri=uri)
    base = {}
    for run in client.search_runs([client.get_experiment_by_name("same-a").experiment_id]):
        p = run.data.params
        base[(p["arch.name"], p["data.name"], p["seed"])] = run.data.metrics
    for seed, (suite, factor) in enumerate([("same-a", {}), ("same-b", {}),
                                            ("slow", {"maf": 1.2})]):
        _blocks_tags(uri, suite, base, factor, seed)
    return uri


def test_the_same_code_twice_resolves_no_timing(timed):
    result = compare("same-a", "same-b", timed)
    speed = result.table[result.table["kind"] == "speed"]
    assert len(speed) == 9 and speed["ratio"].notna().all()
    assert (speed["verdict"] == "not resolved").all(), speed[["config", "metric", "ratio",
                                                              "ratio_lo", "ratio_hi"]]
    assert not result.worse
    assert "not resolved" in result.text and "×" in result.text


def test_a_flow_made_20_percent_slower_is_resolved_with_an_interval_excluding_one(timed):
    result = compare("same-a", "slow", timed)
    speed = result.table[result.table["kind"] == "speed"]
    maf = speed[speed["config"].str.startswith("maf")]
    assert len(maf) == 3 and (maf["verdict"] == "worse").all() and maf["worse"].all()
    assert (maf["ratio_lo"] > 1.0).all() and (maf["ratio_lo"] <= 1.2).all()
    assert (maf["ratio_hi"] >= 1.2).all() and (maf["ratio_hi"] < 1.4).all()
    rest = speed[~speed["config"].str.startswith("maf")]
    assert (rest["verdict"] == "not resolved").all()
    assert "✗" in result.text and "B's time over A's ×1.2" in result.text
    # the same blocks timed under contention on one side: not ranked
    runs = prepare(load_runs(timed, ["same-a", "slow"]))
    runs.loc[runs["experiment"] == "slow", keys.PERF_CONTENDED] = 1.0
    busy = compare_runs(runs[runs["experiment"] == "same-a"], runs[runs["experiment"] == "slow"],
                        Tolerance())
    busy_maf = busy[(busy["kind"] == "speed") & busy["config"].str.startswith("maf")]
    assert (busy_maf["verdict"] == "not resolved").all() and not busy_maf["worse"].any()
    assert busy_maf["contended"].all() and (busy_maf["ratio_lo"] > 1.0).all()


_ONE_JOB = """
import sys
import torch
from harness import keys
from harness.app import catalog
from harness.job import run_timing, run_training
from harness.suite import expand, parse_suite
from harness.tracking import MlflowTracker, Store

torch.set_num_threads(1)
uri, name = sys.argv[1:]
suite, _ = parse_suite(f'''
name: {name}
matrix: {{architectures: [realnvp], datasets: [moons], dequantization: [none], seeds: [0]}}
train: {{steps: 30, batch_size: 128, eval_every: 30, checkpoint_every: 30, log_every: 10}}
eval: {{batch_size: 500}}
timing: {{batch_size: 256, min_run_time: 0.1}}
''')
job = expand(suite, catalog().combination)[0][0]
store = Store(uri, job.suite)
run = store.open_run(job, {}, None, False, params=job.flat_params())
tracker = MlflowTracker(store.uri, run.run_id, artifact_uri=run.artifact_uri)
run_training(job.config, tracker, torch.device("cpu"))
run_timing(job.config, tracker, torch.device("cpu"))
store.close_run(run.run_id, keys.STATUS_FINISHED)
"""


@pytest.mark.slow
def test_two_runs_of_the_same_code_end_to_end_resolve_no_timing(sqlite_uri):
    """One job run twice, each in a process of its own (train, time, record), as the suite
    would: ``compare`` reads the blocks the timing phase recorded, its ratios are the first
    quartiles' ratio of those blocks, and no timing difference is resolved."""
    import subprocess

    for name in ("twice-a", "twice-b"):
        subprocess.run([sys.executable, "-c", _ONE_JOB, sqlite_uri, name], check=True,
                       capture_output=True, timeout=600)
    result = compare("twice-a", "twice-b", sqlite_uri)
    speed = result.table[result.table["kind"] == "speed"]
    assert len(speed) == 3
    runs = prepare(load_runs(sqlite_uri, ["twice-a", "twice-b"])).set_index("experiment")
    for r in speed.itertuples(index=False):
        timed = keys.PERF_SAMPLE_MS if r.metric == keys.PERF_SAMPLE_THROUGHPUT else r.metric
        q1 = {side: np.quantile(ratio.blocks_of(runs.loc[side, keys.TAG_TIMING_BLOCKS], timed),
                                0.25) for side in ("twice-a", "twice-b")}
        assert r.ratio == pytest.approx(q1["twice-b"] / q1["twice-a"], rel=1e-9)
        assert r.ratio_lo <= r.ratio <= r.ratio_hi
    assert (speed["verdict"] == "not resolved").all(), speed[["metric", "ratio", "ratio_lo",
                                                              "ratio_hi", "contended"]]
    assert not result.worse


def test_the_asymmetry_panel_gives_sampling_over_density_an_interval(timed):
    """The report's density-against-sampling panel: per architecture, sampling ÷ density with
    its bootstrap interval over the runs' blocks (maf samples in D = 2 passes: resolved)."""
    from harness.report.sections.asymmetry import figure_asymmetry, speed_frame
    from harness.report.sections.base import METRICS
    from harness.report.table import aggregate

    runs = prepare(load_runs(timed, ["same-a"]))
    per_arch = aggregate(runs, METRICS, by=("dataset", "arch_label"))
    speed = speed_frame(per_arch, runs[runs["ok"]]).set_index("arch")
    for arch, r in speed.iterrows():
        assert r["ratio_lo"] <= r["sample_over_density"] <= r["ratio_hi"], arch
    assert speed.loc["maf", "resolved"] and speed.loc["maf", "ratio_lo"] > 1.5
    hovers = " ".join(t for trace in figure_asymmetry(speed.reset_index()).data
                      for t in (trace.text or ()))
    assert "95 % interval" in hovers
    assert speed_frame(per_arch)["ratio_lo"].isna().all()  # no runs: no interval
