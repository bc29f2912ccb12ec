"""Option specs and the registries' specs: every default passes, bad values are refused."""

from __future__ import annotations

import doctest
import math

import pytest

import harness.data.options
import harness.flows.hparam_specs
import harness.options
from harness import data, flows
from harness.data.options import dataset_options, dequant_options
from harness.flows.zoo import cross_problems, hparam_specs
from harness.options import Option, shown


@pytest.mark.parametrize("module", [harness.options, harness.flows.hparam_specs,
                                    harness.data.options])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("spec", "good", "bad"), [
    (Option.integer(1, 8), [1, 8, 5], [0, 9, 5.0, True, "5", None, 10**400]),
    (Option.number(0, 0.5, low_open=True, high_open=True, nullable=True),
     [1e-6, 0.25, None, 0.499], [0, 0.5, math.nan, math.inf, False, "0.1"]),
    (Option.number(), [0, -1e300, 2.5], [math.inf, -math.inf, math.nan, True]),
    (Option.flag(), [True, False], [0, 1, "yes", None]),
    (Option.choice("label", nullable=True), ["label", None], ["labels", 1, True]),
    (Option.text(5), ["", "abcde"], ["abcdef", 3, None]),
    (Option.mapping(nullable=True), [{}, {"a": 1}, None], [[], "x"]),
])
def test_option_accepts_and_refuses(spec, good, bad):
    for v in good:
        assert spec.problem(v) is None, (spec, v)
    for v in bad:
        why = spec.problem(v)
        assert why and why.startswith("must be"), (spec, v, why)
        assert len(why) < 200


def test_shown_never_echoes_a_huge_value():
    assert len(shown("x" * 10_000)) < 80
    assert "10^5000" in shown(10**5000)  # not converted to 5,000 digits
    assert shown(list(range(10_000))) == "a list of 10,000 items"


def test_every_architecture_has_a_spec_for_each_hyper_parameter_and_its_default_passes():
    for name in flows.names():
        specs, defaults = hparam_specs(name), flows.hparams(name)
        assert set(specs) == set(defaults), name
        for key, default in defaults.items():
            assert specs[key].problem(default) is None, (name, key, default)
        assert cross_problems(name, {}) == []


def test_specs_refuse_what_the_factories_refuse():
    """Out-of-range values the specs refuse are ones the factories refuse too (when they
    read them): the specs are no stricter on the lower bounds than the code."""
    cases = [("realnvp", "hidden", 0), ("maf", "layers", 0), ("nsf-coupling", "bins", 0),
             ("realnvp", "scale_bound", 0.0), ("nsf-ar", "tail_bound", -1.0),
             ("ffjord", "rtol", 0.0), ("realnvp", "activation", "relux")]
    for name, key, value in cases:
        assert hparam_specs(name)[key].problem(value), (name, key)
        with pytest.raises(ValueError):
            flows.build(name, event_shape=4, **{key: value})
    assert cross_problems("nsf-coupling", {"bins": 512, "min_bin_width": 0.01})
    with pytest.raises(ValueError, match="min_bin_width"):
        flows.build("nsf-coupling", event_shape=4, bins=512, min_bin_width=0.01)


def test_data_set_and_scheme_specs_cover_their_loaders_and_factories():
    for name in data.names():
        specs = dataset_options(name)
        assert {"flatten", "condition", "data_dir", "seed", "download"} <= set(specs)
    assert dataset_options("mnist")["n_bits"].problem(0)
    assert dataset_options("mnist")["n_bits"].problem(5) is None
    with pytest.raises(data.DataError, match="n_bits"):
        data.load("mnist", n_bits=0)
    for scheme in data.schemes():
        for key, spec in dequant_options(scheme).items():
            assert spec.problem(spec.default) is None, (scheme, key)
    assert data.entry("digits").meta["classes"] == 10
    assert not data.entry("moons").meta.get("classes")


def test_download_option_reaches_the_loader(monkeypatch):
    """The data option that the missing-file message names really reaches ``load``."""
    from harness.job import components
    from harness.suite.jobconfig import JobConfig

    seen = {}

    def fake_load(name, **kwargs):
        seen.update(kwargs, name=name)
        raise RuntimeError("stop here")

    monkeypatch.setattr(components.datasets, "load", fake_load)
    cfg = JobConfig.from_dict({"arch": {"name": "maf"}, "data": {
        "name": "mnist", "download": True, "flatten": True}, "dequant": {"scheme": "uniform"},
        "seed": 0, "train": {}, "eval": {}, "timing": {}})
    with pytest.raises(RuntimeError, match="stop here"):
        components.load_data(cfg)
    assert seen["name"] == "mnist" and seen["download"] is True


def test_missing_file_message_names_the_suite_option(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.load("mnist", data_dir=tmp_path)
    assert "{name: mnist, download: true}" in str(err.value)
    assert list(tmp_path.iterdir()) == []
