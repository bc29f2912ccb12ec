"""The suite layer: schema, checks against a catalogue, expansion and job keys (no torch)."""

from __future__ import annotations

import sys

import pytest

from harness.suite import Catalog, SuiteError, check_suite, expand, job_key, parse_suite

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


def test_suite_layer_imports_no_torch():
    assert "harness.suite" in sys.modules
    import subprocess

    code = "import harness.suite, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_expand_drops_senseless_combinations_with_reasons():
    suite, _ = parse_suite(BASE)
    jobs, dropped = expand(suite, CATALOG.combination)
    assert len(jobs) == 2 * 2 * 2  # arch × (moons·none, digits·uniform) × seeds
    assert {(j.dataset.name, j.dequant.name) for j in jobs} == {("moons", "none"), ("digits", "uniform")}
    assert len(dropped) == 8
    assert all(d.reason in ("uniform on continuous", "none on discrete") for d in dropped)


def test_job_keys_are_stable_and_distinct():
    suite, _ = parse_suite(BASE)
    jobs, _ = expand(suite, CATALOG.combination)
    assert len({j.key for j in jobs}) == len(jobs)
    again, _ = expand(parse_suite(BASE.replace("[0, 1]", "[1, 0]"))[0], CATALOG.combination)
    assert {j.key for j in again} == {j.key for j in jobs}  # order does not matter
    # a change of what is computed changes the key; resources and retries do not
    more = BASE.replace("steps: 10", "steps: 11")
    assert {j.key for j in expand(parse_suite(more)[0], CATALOG.combination)[0]}.isdisjoint(
        {j.key for j in jobs})
    res = BASE + "resources: {cpus: 2}\nretries: 5\n"
    assert {j.key for j in expand(parse_suite(res)[0], CATALOG.combination)[0]} == {j.key for j in jobs}
    assert job_key({"a": 1, "b": 2}) == job_key({"b": 2, "a": 1})


def test_include_and_exclude_rules():
    text = BASE + "exclude:\n  - {arch: maf, dataset: digits}\ninclude:\n  - {seed: 0}\n"
    jobs, dropped = expand(parse_suite(text)[0], CATALOG.combination)
    assert all(j.seed == 0 for j in jobs)
    assert not any(j.arch.name == "maf" and j.dataset.name == "digits" for j in jobs)
    assert len(jobs) == 3
    reasons = {d.reason for d in dropped}
    assert "matches no include rule" in reasons and "matches an exclude rule" in reasons


def test_axis_item_labels_and_params():
    suite, _ = parse_suite(BASE)
    jobs, _ = expand(suite, CATALOG.combination)
    maf = next(j for j in jobs if j.arch.name == "maf")
    assert maf.arch.display == "maf(hidden=32)"
    params = maf.flat_params()
    assert params["arch.hidden"] == "32" and params["train.steps"] == "10"
    assert params["train.optimizer.name"] == "adam"


def test_unknown_names_suggest_the_nearest_with_line_numbers():
    text = BASE.replace("realnvp", "realnpv").replace("hidden: 32", "hiden: 32")
    suite, root = parse_suite(text, "s.yaml")
    with pytest.raises(SuiteError) as err:
        check_suite(suite, CATALOG, "s.yaml", root)
    msg = str(err.value)
    assert "s.yaml:4: matrix.architectures[0]: unknown architecture 'realnpv'; did you mean 'realnvp'?" in msg
    assert "'maf' has no hyper-parameter 'hiden'; did you mean 'hidden'?" in msg
