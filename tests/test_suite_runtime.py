"""The runtime axis of a suite: names, expansion, keys (eager keys unchanged), rules, config."""

from __future__ import annotations

import pytest

from harness.suite import Catalog, SuiteError, check_suite, expand, job_key, parse_suite
from harness.suite.expand import job_config
from harness.suite.jobconfig import JobConfig, RuntimeConfig
from harness.suite.schema import RUNTIME_MODES, RUNTIME_SHAPES, RUNTIMES

BASE = """
name: t
matrix:
  architectures: [realnvp, {name: maf, hidden: 32}]
  datasets: [moons, digits]
  dequantization: [none, uniform]
  seeds: [0, 1]
train: {steps: 10}
"""
CATALOG = Catalog(
    arch_hparams={"realnvp": {"layers": 4, "hidden": 64}, "maf": {"layers": 5, "hidden": 64}},
    dataset_kind={"moons": "continuous", "digits": "discrete"},
    dequant_schemes=["none", "uniform"],
    dequant_ok=lambda s, k: None if (s == "none") == (k == "continuous") else f"{s} on {k}",
)
def with_runtime(runtime: str) -> str:
    return BASE.replace("seeds: [0, 1]", f"seeds: [0, 1]\n  runtime: {runtime}")


def _jobs(text: str):
    suite, root = parse_suite(text)
    check_suite(suite, CATALOG, "s.yaml", root)
    return suite, *expand(suite, CATALOG.combination)


def test_suite_names_equal_the_flow_layer_constants():
    """The suite layer imports no torch, so it spells the names again: they must agree."""
    from harness.flows import compiled

    assert RUNTIMES == compiled.RUNTIMES
    assert RUNTIME_MODES == compiled.COMPILE_MODES
    assert RUNTIME_SHAPES == compiled.SHAPE_POLICIES


def test_eager_keys_are_those_of_before_the_runtime_axis():
    """Keys of the smoke suite's jobs as the code before the runtime axis wrote them to
    MLflow (read from its store): an eager job's config and key did not change."""
    from pathlib import Path

    from harness.app import catalog

    path = Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml"
    suite, _ = parse_suite(path.read_text())
    jobs, _ = expand(suite, catalog().combination)
    eager = {j.key for j in jobs if j.runtime.eager}
    assert eager == {"c2dced610f865632", "8d2cb7ad23260831", "e499d7af8791cd2f",
                     "ea03d443e69fb573"}
    assert all("runtime" not in j.config.as_dict() for j in jobs if j.runtime.eager)
    # and writing runtime: [eager] is the same as leaving it out
    _, plain, _ = _jobs(BASE)
    _, explicit, _ = _jobs(with_runtime("[eager]"))
    assert [j.key for j in plain] == [j.key for j in explicit]


def test_runtime_expands_like_an_axis_with_distinct_keys():
    suite, jobs, dropped = _jobs(with_runtime(
        "[eager, compile, {name: compile, mode: max-autotune, shapes: pad}]"))
    plain = _jobs(BASE)[1]
    assert len(jobs) == 3 * len(plain) and len(dropped) == 3 * 8
    assert len({j.key for j in jobs}) == len(jobs)
    assert {j.runtime.display for j in jobs} == {
        "eager", "compile", "compile(mode=max-autotune, shapes=pad)"}
    for j in jobs:
        whole = job_config(suite, j.arch, j.dataset, j.dequant, j.seed, j.runtime)
        assert j.config.as_dict() == whole and j.key == job_key(whole)
        assert JobConfig.from_dict(whole) == j.config  # the typed config round-trips
        if j.runtime.eager:
            assert "runtime" not in whole and j.config.runtime == RuntimeConfig()
        else:
            assert whole["runtime"]["name"] == "compile" and j.flat_params()[
                "runtime.shapes"] == j.runtime.shapes
    default = next(j for j in jobs if j.runtime.display == "compile")
    assert default.config.runtime == RuntimeConfig("compile", "default", "dynamic")


def test_a_repeated_runtime_is_one_job():
    _, jobs, dropped = _jobs(with_runtime("[compile, {name: compile, shapes: dynamic}]"))
    assert len(jobs) == len(_jobs(BASE)[1])
    assert sum(d.reason.startswith("duplicate of job") for d in dropped) == len(jobs)


def test_rules_select_by_runtime_name_or_display():
    text = with_runtime("[eager, compile, {name: compile, mode: max-autotune}]")
    _, jobs, _ = _jobs(text + "exclude: [{runtime: compile, dataset: digits}]\n")
    assert {(j.runtime.name, j.dataset.name) for j in jobs} == {
        ("eager", "moons"), ("eager", "digits"), ("compile", "moons")}
    _, jobs, _ = _jobs(text + "include: [{runtime: 'compile(mode=max-autotune)'}]\n")
    assert {j.runtime.display for j in jobs} == {"compile(mode=max-autotune)"}


def test_cuda_graphs_needs_a_gpu_per_job():
    with pytest.raises(SuiteError) as err:
        _jobs(with_runtime("[eager, cuda-graphs]"))
    assert "s.yaml:8: matrix.runtime[1]" in str(err.value) and "GPU only" in str(err.value)
    _, jobs, _ = _jobs(with_runtime("[cuda-graphs]") + "resources: {gpus: 1}\n")
    assert jobs[0].config.as_dict()["runtime"]["name"] == "cuda-graphs"


def test_job_limit_counts_runtimes():
    with pytest.raises(SuiteError) as err:
        suite, root = parse_suite(with_runtime("[eager, compile]"))
        check_suite(suite, CATALOG, "s.yaml", root, max_jobs=31)
    assert "32 jobs" in str(err.value) and "2 runtimes" in str(err.value)
