"""``nfbench compare`` with statistics, on synthetic stores whose differences are known:
a true 0.02 bpd regression over 5 seeds with a 0.005 spread is flagged, a 0.002 change is
not, a timing change inside its IQR is not, one outside it is; one seed is untested."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from harness import keys
from harness.cli import main
from harness.report import Tolerance, compare

SEEDS = range(5)
SPREAD = 0.005
# arch: (bpd mean, density ms, density IQR ms)
BASE = {"realnvp": (2.00, 2.0, 0.05), "maf": (2.10, 2.0, 0.05), "glow": (2.05, 2.0, 0.40)}


def _write(client: MlflowClient, suite: str, arch: str, seed: int, bpd: float,
           density: float, iqr: float) -> None:
    exp = client.get_experiment_by_name(suite)
    exp_id = exp.experiment_id if exp else client.create_experiment(suite)
    tags = {keys.TAG_SUITE: suite, keys.TAG_ARCH: arch, keys.TAG_DATASET: "digits",
            keys.TAG_DEQUANT: "uniform", keys.TAG_SEED: str(seed),
            keys.TAG_STATUS: keys.STATUS_FINISHED, keys.TAG_DEVICE: "cpu (1 threads)",
            keys.TAG_REVISION: "r1"}
    run = client.create_run(exp_id, tags=tags)
    median, iqr_key, blocks = keys.spread_keys(keys.PERF_DENSITY_MS)
    metrics = {keys.EVAL_BPD: bpd, keys.EVAL_NLL: bpd * 64 * np.log(2),
               keys.PERF_DENSITY_MS: density, median: density + iqr / 4, iqr_key: iqr,
               blocks: 10.0, keys.PERF_CONTENDED: 0.0}
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), 0, 0)
                                               for k, v in metrics.items()],
                     params=[Param("data.kind", "discrete")])
    client.set_terminated(run.info.run_id)


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> str:
    """``base``; ``bad``: realnvp 0.02 bpd worse and 50 % slower (outside its IQR);
    ``fine``: maf 0.002 bpd worse, glow 15 % slower inside its 20 % IQR; ``one-a`` /
    ``one-b``: one seed each, 0.05 bpd apart. Every side draws its own seed noise."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'm.db'}"
    client = MlflowClient(uri)
    rng = np.random.default_rng(12)
    shifts = {"base": {}, "bad": {"realnvp": (0.02, 1.5)},
              "fine": {"maf": (0.002, 1.0), "glow": (0.0, 1.15)}}
    for suite, shift in shifts.items():
        for arch, (bpd, density, iqr) in BASE.items():
            dq, ds = shift.get(arch, (0.0, 1.0))
            for seed in SEEDS:
                noise = rng.normal(0, SPREAD)
                timing = density * ds * (1 + rng.normal(0, 0.01))
                _write(client, suite, arch, seed, bpd + dq + noise, timing, iqr)
    _write(client, "one-a", "realnvp", 0, 2.00, 2.0, 0.05)
    _write(client, "one-b", "realnvp", 0, 2.05, 2.0, 0.05)
    return uri


def _row(result, config: str, metric: str):
    t = result.table
    return t[(t["config"] == f"{config} [uniform]") & (t["metric"] == metric)].iloc[0]


def test_a_true_regression_over_five_seeds_is_flagged(known):
    result = compare("base", "bad", known)
    assert result.worse
    row = _row(result, "realnvp", keys.EVAL_BPD)
    assert row["worse"] and row["test"] == "paired t" and row["p"] < 0.05
    assert row["lo"] < 0.02 < row["hi"] and row["lo"] > 0.01  # the truth is inside
    assert row["delta"] == pytest.approx(0.02, abs=3 * SPREAD)
    speed = _row(result, "realnvp", keys.PERF_DENSITY_MS)
    assert speed["worse"] and speed["noise"] == pytest.approx(np.hypot(0.05, 0.05))
    lines = result.text.splitlines()
    assert any(ln.startswith("✗ digits") and "eval/bpd" in ln and "worse" in ln
               for ln in lines)
    assert "95 % CI of Δ" in result.text and lines[-1].startswith("WORSE: 2 rows worse")
    for arch in ("maf", "glow"):  # unchanged
        assert not _row(result, arch, keys.EVAL_BPD)["worse"]


def test_a_small_change_and_a_timing_inside_its_iqr_are_not_flagged(known):
    result = compare("base", "fine", known)
    assert not result.worse
    small = _row(result, "maf", keys.EVAL_BPD)
    assert 0 < small["delta"] < 0.01 and small["verdict"] in ("same", "untested")
    timing = _row(result, "glow", keys.PERF_DENSITY_MS)
    assert timing["change"] > 0.10  # beyond the speed tolerance …
    assert abs(timing["delta"]) < timing["noise"]  # … but inside the IQRs
    assert timing["verdict"] == "within noise" and not timing["worse"]
    assert result.text.splitlines()[-1].startswith("OK: 0 rows worse")
    # a stricter effect and level still do not flag what the test cannot tell apart
    strict = compare("base", "fine", known, tolerance=Tolerance(quality=0.001, alpha=0.01))
    assert not _row(strict, "glow", keys.PERF_DENSITY_MS)["worse"]


def test_one_seed_is_untested_not_worse(known):
    result = compare("one-a", "one-b", known)
    row = _row(result, "realnvp", keys.EVAL_BPD)
    assert row["verdict"] == "untested" and not row["worse"] and not result.worse
    assert "1 quality rows untested" in result.text


def test_the_exit_status_is_the_verdict(known, capsys):
    assert main(["compare", "base", "bad", "--tracking-uri", known]) == 1
    assert main(["compare", "base", "fine", "--tracking-uri", known]) == 0
    # a looser effect: the 0.02 regression no longer counts, the timing still does
    assert main(["compare", "base", "bad", "--tracking-uri", known, "--quality-tol",
                 "0.05"]) == 1
    out = capsys.readouterr().out
    assert "quality +0.05" in out
    assert main(["compare", "base", "bad", "--tracking-uri", known, "--alpha", "2"]) == 2
    assert "--alpha" in capsys.readouterr().err
