"""``compare``: rows that got worse are marked; the verdict is what a CI acts on."""

from __future__ import annotations

import pytest

from harness import keys
from harness.report import Tolerance, compare
from harness.tracking.read import UnknownSuiteError


def test_a_suite_against_itself_is_not_worse(store):
    result = compare("zoo", "zoo", store.uri)
    assert not result.worse
    assert not result.table["worse"].any()
    same = result.table[result.table["metric"] != "presence"]
    assert (same["delta"].fillna(0) == 0).all()
    assert "OK: 0 rows worse" in result.text


def test_regressions_in_quality_speed_and_stability_are_marked(store):
    result = compare("zoo", "zoo-b", store.uri)
    assert result.worse
    t = result.table
    worse = t[t["worse"]]
    # realnvp was made 0.2 nats worse, maf 1.5× slower, a glow run failed
    quality = worse[worse["kind"] == "quality"]
    assert set(quality["config"]) == {"realnvp"}
    assert set(quality["metric"]) == {keys.EVAL_NLL}
    assert set(quality["dataset"]) == {"moons", "8gaussians"}
    assert quality["delta"].min() > 0.15
    speed = worse[worse["kind"] == "speed"]
    assert set(speed["config"]) == {"maf(hidden=128)"}
    assert set(speed["metric"]) >= {keys.PERF_SAMPLE_THROUGHPUT, keys.PERF_DENSITY_MS}
    stability = worse[worse["kind"] == "stability"]
    assert stability[["dataset", "config", "metric"]].values.tolist() == [
        ["moons", "glow", "finished_share"]]
    # unchanged architectures are within tolerance
    assert not worse["config"].isin(["gaussian"]).any()
    # configurations zoo-b did not run are listed, not counted as worse by default
    only_a = t[(t["metric"] == "presence") & (t["note"] == "only in A")]
    assert len(only_a) > 0 and not only_a["worse"].any()
    assert "✗ moons · realnvp · quality eval/nll" in result.text
    assert result.text.splitlines()[-1].startswith("WORSE: ")


def test_tolerance_decides(store):
    loose = Tolerance(quality=1.0, speed=1.0, nonfinite=1e9)
    result = compare("zoo", "zoo-b", store.uri, tolerance=loose)
    assert set(result.table.loc[result.table["worse"], "metric"]) == {"finished_share"}
    strict = compare("zoo", "zoo-b", store.uri, tolerance=Tolerance(missing_is_worse=True))
    assert strict.table.loc[strict.table["metric"] == "presence", "worse"].all()


def test_two_revisions_of_one_suite(store):
    result = compare("revs@aaa", "revs@bbb", store.uri)
    assert result.worse
    worse = result.table[result.table["worse"]]
    assert set(worse["config"]) == {"glow"} and set(worse["kind"]) == {"quality"}
    assert "revs@aaa (4 runs)" in result.text
    assert not compare("revs@aaa1111", "revs@aaa", store.uri).worse


def test_bad_sides_are_refused_with_the_fix(store):
    with pytest.raises(ValueError, match="aaa1111, bbb2222"):
        compare("revs@zzz", "revs", store.uri)
    with pytest.raises(UnknownSuiteError, match="'nope'"):
        compare("zoo", "nope", store.uri)
