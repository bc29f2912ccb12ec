"""Registry behaviour: names, entries, hyper-parameter errors, shapes, preflight refusals."""

from __future__ import annotations

import pytest
import torch

from harness import flows
from harness.flows.base import Flow, Layer
from harness.flows.check import randomize
from harness.flows.zoo import REGISTRY, hparam_specs
from harness.registry import UnknownNameError


def test_names_are_sorted_and_entries_describe_themselves() -> None:
    names = flows.names()
    assert names == sorted(names) and {"maf", "realnvp"} <= set(names)
    for n in names:
        e = flows.entry(n)
        assert e.summary and isinstance(e.meta["images"], bool)
        assert isinstance(e.meta["vectors"], bool)
        assert isinstance(flows.hparams(n), dict)


def test_public_api_is_sorted() -> None:
    assert flows.__all__ == sorted(flows.__all__)
    for name in ("Flow", "build", "names", "entry", "register", "preflight", "PreflightResult"):
        assert name in flows.__all__


def test_unknown_architecture_suggests_the_nearest() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'realnvp'"):
        flows.build("realnpv", 2)


def test_unknown_hparam_names_arch_key_and_valid_keys() -> None:
    with pytest.raises(ValueError) as err:
        flows.build("maf", 4, layerz=3)
    msg = str(err.value)
    assert "'maf'" in msg and "'layerz'" in msg and "layers=5" in msg and "hidden=64" in msg


@pytest.mark.parametrize(
    "hp, key",
    [
        ({"layers": 0}, "layers"),
        ({"hidden": -1}, "hidden"),
        ({"scale_clamp": "sigmoid"}, "scale_clamp"),
        ({"scale_bound": 0.0}, "scale_bound"),
        ({"activation": "swishy"}, "activation"),
        ({"order": "sideways"}, "order"),
        ({"context_mode": "add"}, "context_mode"),
        ({"layers": 2.5}, "layers"),
        ({"hidden": True}, "hidden"),
    ],
)
def test_invalid_hparam_values(hp: dict, key: str) -> None:
    with pytest.raises(ValueError) as err:
        flows.build("maf", 4, **hp)
    assert "'maf'" in str(err.value) and f"'{key}'" in str(err.value)


def test_build_refuses_with_the_reason_of_the_hyper_parameter_table() -> None:
    """One table of rules: ``build`` refuses a value for the reason the suite checks give."""
    cases = [("maf", "hidden", 0), ("iaf", "layers", 2.5), ("realnvp", "activation", "relux"),
             ("nsf-coupling", "tail_bound", -1.0), ("ffjord", "solver", "rk45"),
             ("glow", "permute", "none"), ("gaussian", "parameterization", "qr")]
    for name, key, value in cases:
        reason = hparam_specs(name)[key].problem(value)
        assert reason, (name, key, value)
        with pytest.raises(ValueError) as err:
            flows.build(name, 4, **{key: value})
        assert f"'{name}'" in str(err.value) and f"'{key}' — {reason}" in str(err.value)


def test_maf_and_iaf_are_one_factory_in_two_variants() -> None:
    assert flows.hparams("maf") == flows.hparams("iaf")
    x = torch.randn(3, 4, dtype=torch.float64)
    torch.manual_seed(0)
    maf = randomize(flows.build("maf", 4, layers=2, hidden=8).double())
    torch.manual_seed(0)
    iaf = randomize(flows.build("iaf", 4, layers=2, hidden=8).double())
    # the same weights: each IAF layer is the inverse of the MAF layer
    assert not maf.layers[0].dual and iaf.layers[0].dual
    assert torch.allclose(iaf.layers[0].inverse(x), maf.layers[0](x)[0])
    assert not torch.allclose(maf.layers[0](x)[0], x)  # not the identity


def test_hparams_defaults_build_the_default_flow() -> None:
    for name in flows.names():
        shape = 4 if flows.entry(name).meta["vectors"] else (2, 4, 4)
        flow = flows.build(name, shape, **flows.hparams(name))
        assert isinstance(flow, Flow)


def test_image_shape_to_vectors_only_is_refused() -> None:
    vec_only = [n for n in flows.names() if not flows.entry(n).meta["images"]]
    assert vec_only
    for n in vec_only:
        with pytest.raises(ValueError, match="vectors only.*flatten"):
            flows.build(n, (1, 8, 8))


def test_bad_context_and_shapes_are_refused() -> None:
    flow = flows.build("realnvp", 4, context_dim=2)
    with pytest.raises(ValueError, match="conditional"):
        flow.log_prob(torch.randn(3, 4))
    with pytest.raises(ValueError, match="context must have shape"):
        flow.log_prob(torch.randn(3, 4), torch.randn(3, 5))
    plain = flows.build("realnvp", 4)
    with pytest.raises(ValueError, match="unconditional"):
        plain.log_prob(torch.randn(3, 4), torch.randn(3, 2))
    with pytest.raises(ValueError, match="expected a batch"):
        plain.log_prob(torch.randn(3, 5))
    with pytest.raises(ValueError, match="context_dim"):
        flows.build("realnvp", 4, context_dim=0)
    with pytest.raises(ValueError, match="D ≥ 2"):
        flows.build("realnvp", 1)


class _WrongLogDet(Layer):
    """A bijection whose log-det has the wrong sign (a typical plugin bug)."""

    def forward(self, x, context=None, with_log_det=True):
        y = 2.0 * x
        ld = None if not with_log_det else -x.new_full((x.shape[0],), x[0].numel() * 0.6931)
        return y, ld

    def inverse(self, y, context=None):
        return y / 2.0


class _NotInvertible(Layer):
    def forward(self, x, context=None, with_log_det=True):
        return x + x.square() * 0.1, (x.new_zeros(x.shape[0]) if with_log_det else None)

    def inverse(self, y, context=None):
        return y


@pytest.fixture
def broken_arches():
    added = []

    def add(name: str, layer: type[Layer]) -> None:
        @flows.register(name, "a broken test architecture")
        def factory(event_shape, context_dim, *, scale: float = 1.0):
            return Flow([layer()], event_shape, context_dim)

        added.append(name)

    yield add
    for name in added:
        REGISTRY._entries.pop(name, None)


def test_preflight_refuses_a_broken_flow_with_measured_errors(broken_arches) -> None:
    broken_arches("broken-logdet", _WrongLogDet)
    broken_arches("broken-inverse", _NotInvertible)
    res = flows.preflight("broken-logdet", 3, {})
    assert not res.ok and res.inv_err <= 1e-12 and res.logdet_err > 0.5
    assert "broken-logdet" in res.message and "FAILED" in res.message
    assert f"{res.logdet_err:.2e}" in res.message
    res = flows.preflight("broken-inverse", 3, {})
    assert not res.ok and res.inv_err > 1e-3 and "broken-inverse" in res.message


def test_preflight_reports_exceptions_instead_of_raising() -> None:
    res = flows.preflight("maf", 3, {"layers": -1})
    assert not res.ok and "layers" in res.message and "maf" in res.message
    res = flows.preflight("nosuch", 3, {})
    assert not res.ok and "unknown architecture" in res.message


def test_preflight_large_shapes_check_jacobian_on_a_smaller_one() -> None:
    res = flows.preflight("maf", 300, {"layers": 1, "hidden": 16}, batch=2)
    assert res.ok, res.message
    assert res.jacobian_shape == (64,)
