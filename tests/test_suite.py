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
    assert {(j.dataset.name, j.dequant.name) for j in jobs} == {
        ("moons", "none"), ("digits", "uniform")
    }
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
    res_jobs = expand(parse_suite(res)[0], CATALOG.combination)[0]
    assert {j.key for j in res_jobs} == {j.key for j in jobs}
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
    assert (
        "s.yaml:4: matrix.architectures[0]: unknown architecture 'realnpv'; "
        "did you mean 'realnvp'?"
    ) in msg
    assert "'maf' has no hyper-parameter 'hiden'; did you mean 'hidden'?" in msg


# ── bounded YAML, fast expansion, the job limit, option specs ────────────────
RICH = """
name: rich
matrix:
  architectures:
    - realnvp
    - {name: maf, hidden: 32, label: maf-32}
    - {name: maf, hidden: 48, extra: {b: [1, 2], a: "ü"}}
  datasets: [moons, {name: digits, flatten: true, z: 1, a: null}]
  dequantization: [none, uniform, {name: uniform, logit_alpha: 0.05}]
  seeds: [3, 0, 1]
include: [{seed: 0}, {dataset: digits}]
exclude: [{arch: maf-32, dequant: none}]
train: {steps: 7, optimizer: {name: adamw, betas: [0.8, 0.99]}}
"""


def test_expand_keys_equal_the_hash_of_each_whole_config():
    """The fast expansion hashes pieces; its keys and configs equal hashing each job's whole
    config (what keys always were), so no finished run is forgotten."""
    from harness.suite.expand import job_config

    suite, _ = parse_suite(RICH)
    jobs, dropped = expand(suite, CATALOG.combination)
    assert jobs and dropped
    for j in jobs:
        whole = job_config(suite, j.arch, j.dataset, j.dequant, j.seed)
        assert j.config.as_dict() == whole
        assert j.key == job_key(whole)


def test_download_option_changes_no_key():
    plain, _ = parse_suite(BASE)
    fetch, _ = parse_suite(BASE.replace("[moons, digits]", "[moons, {name: digits, "
                                                          "download: true}]"))
    a, _ = expand(plain, CATALOG.combination)
    b, _ = expand(fetch, CATALOG.combination)
    assert [j.key for j in a] == [j.key for j in b]
    assert any(j.config.data.download is True for j in b)


def test_job_limit_counts_cells_before_expanding():
    from harness.suite import count_cells

    suite, root = parse_suite(BASE, "s.yaml")
    assert count_cells(suite) == 2 * 2 * 2 * 2  # 16 cells, 8 of them jobs
    check_suite(suite, CATALOG, "s.yaml", root, max_jobs=16)
    with pytest.raises(SuiteError) as err:
        check_suite(suite, CATALOG, "s.yaml", root, max_jobs=15)
    assert "s.yaml:4: matrix: 16 jobs" in str(err.value)  # BASE opens with a blank line
    assert "--max-jobs 16" in str(err.value)


def test_aliases_within_the_bound_are_read_and_past_it_refused():
    from harness.suite.bounded_yaml import MAX_ALIAS_NODES, check_bounds

    row = "[" + ", ".join(["1"] * 99) + "]"  # a sequence of 100 nodes
    ok = f"a: &a {row}\nb: [" + ", ".join(["*a"] * (MAX_ALIAS_NODES // 100)) + "]\n"
    check_bounds(ok)  # exactly MAX_ALIAS_NODES repeated nodes
    with pytest.raises(Exception, match="aliases repeat more than"):
        check_bounds(ok.replace("[*a", "[*a, *a"))
    merged = BASE + "eval: &e {batch_size: 10}\ntiming: {<<: *e, threads: 2}\n"
    suite, _ = parse_suite(merged)  # a merge key within the bound
    assert (suite.timing.batch_size, suite.timing.threads) == (10, 2)


def test_booleans_are_not_numbers_anywhere():
    for field, text in (("train.steps", "train: {steps: on}"),
                        ("train.optimizer.lr", "train: {steps: 3, optimizer: {lr: yes}}"),
                        ("resources.cpus", "train: {steps: 3}\nresources: {cpus: true}"),
                        ("retries", "train: {steps: 3}\nretries: no")):
        with pytest.raises(SuiteError, match=field.replace(".", r"\.") + ".*boolean"):
            parse_suite(BASE.replace("train: {steps: 10}", text))


def test_option_specs_refuse_with_the_place():
    from harness.options import Option

    cat = Catalog(
        arch_hparams=CATALOG.arch_hparams, dataset_kind=CATALOG.dataset_kind,
        dequant_schemes=CATALOG.dequant_schemes, dequant_ok=CATALOG.dequant_ok,
        dataset_options={"digits": {"flatten": Option.flag(), "condition": Option.choice("label")},
                         "moons": {"flatten": Option.flag(), "condition": Option.choice("label")}},
        dataset_classes={"digits": 10, "moons": None},
    )
    text = BASE.replace("[moons, digits]", "[{name: moons, condition: label}, "
                                           "{name: digits, flaten: true}]")
    text = text.replace("hidden: 32", "hidden: 2.5")
    suite, root = parse_suite(text, "s.yaml")
    with pytest.raises(SuiteError) as err:
        check_suite(suite, cat, "s.yaml", root)
    problems = err.value.problems
    assert any(p.startswith("s.yaml:4: matrix.architectures[1].hidden: must be an int")
               for p in problems), problems
    assert any(p.startswith("s.yaml:5: matrix.datasets[0].condition: data set 'moons' has no "
                            "class labels") for p in problems), problems
    assert any("matrix.datasets[1].flaten" in p and "did you mean 'flatten'" in p
               for p in problems), problems


def test_mlflow_parameter_names_match_mlflow_rules():
    """The suite layer's copy of MLflow's parameter-name rules agrees with MLflow's."""
    from mlflow.utils.validation import (
        MAX_ENTITY_KEY_LENGTH,
        MAX_PARAM_VAL_LENGTH,
        path_not_unique,
        validate_param_and_metric_name,
    )

    from harness.suite.checks import (
        MLFLOW_PARAM_KEY_MAX,
        MLFLOW_PARAM_VALUE_MAX,
        param_name_problem,
    )

    assert (MLFLOW_PARAM_KEY_MAX, MLFLOW_PARAM_VALUE_MAX) == (MAX_ENTITY_KEY_LENGTH,
                                                               MAX_PARAM_VAL_LENGTH)
    names = ["data.n_bits", "arch.hidden", "data.x y!", "data.a/b", "data.a//b", "data.a/../b",
             "data./x", "data.x/", "data.ü", "data.a:b", "data.a\tb", "data.a;b", "data.é-1",
             "data." + "k" * 250, "data.x\n"]
    for name in names:
        mlflow_ok = (bool(validate_param_and_metric_name(name)) and not path_not_unique(name)
                     and len(name) <= MAX_ENTITY_KEY_LENGTH)
        assert (param_name_problem(name) is None) == mlflow_ok, name


def test_a_data_option_key_mlflow_cannot_store_is_refused():
    """Where a data set's options are not specified, a key MLflow refuses as a run parameter
    is still caught before any run exists."""
    suite, root = parse_suite(BASE.replace("[moons, digits]", "[{name: moons, 'x y!': 1}]"),
                              "s.yaml")
    with pytest.raises(SuiteError) as err:
        check_suite(suite, CATALOG, "s.yaml", root)
    assert "s.yaml:5: matrix.datasets[0].x y!: the run parameter 'data.x y!'" in str(err.value)
