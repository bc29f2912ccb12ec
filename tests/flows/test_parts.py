"""The parts against independent truth: splines, MADE masks, squeeze, ActNorm, LU, duality."""

from __future__ import annotations

import pytest
import torch

from harness import flows, keys
from harness.flows.check import randomize
from harness.flows.layers.elementwise import bound_scale
from harness.flows.layers.linear import ActNorm, LULinear
from harness.flows.layers.multiscale import Squeeze
from harness.flows.layers.splines import rq_spline
from harness.flows.nets import MADE

D64 = torch.float64


def _spline_params(shape: tuple[int, ...], k: int = 6, scale: float = 1.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(n, *shape, generator=g, dtype=D64) for n in (k, k, k - 1)]


def test_spline_with_zero_parameters_is_the_identity() -> None:
    x = torch.linspace(-5, 5, 101, dtype=D64)
    w, h, d = (torch.zeros(n, 101, dtype=D64) for n in (8, 8, 7))
    y, ld = rq_spline(x, w, h, d, tail_bound=3.0)
    assert torch.allclose(y, x, atol=1e-12) and ld is not None and ld.abs().max() < 1e-12


def test_spline_is_monotone_invertible_with_identity_tails_and_true_derivative() -> None:
    x = torch.linspace(-4.5, 4.5, 2001, dtype=D64).requires_grad_(True)
    w, h, d = _spline_params((2001,))
    # one set of parameters for every x, so y(x) is a single function of x
    w, h, d = (t[:, :1].expand_as(t) for t in (w, h, d))
    y, ld = rq_spline(x, w, h, d, tail_bound=3.0)
    assert (y.diff() > 0).all()
    outside = x.detach().abs() > 3.0
    assert torch.equal(y[outside], x.detach()[outside]) and (ld[outside] == 0).all()
    (dydx,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(ld, dydx.log(), atol=1e-10)
    back, ld_inv = rq_spline(y.detach(), w, h, d, inverse=True, tail_bound=3.0)
    assert torch.allclose(back, x.detach(), atol=1e-12)
    assert torch.allclose(ld_inv, -ld.detach(), atol=1e-10)


def test_spline_refuses_impossible_minimum_bin_sizes() -> None:
    w, h, d = _spline_params((3,), k=4)
    with pytest.raises(ValueError, match="minimum bin size"):
        rq_spline(torch.zeros(3, dtype=D64), w, h, d, min_bin_width=0.3)
    with pytest.raises(ValueError, match="min_bin_width"):
        flows.build("nsf-ar", 3, bins=8, min_bin_width=0.2)


def test_bounded_scales_stay_in_bounds() -> None:
    raw = torch.linspace(-1e3, 1e3, 1001, dtype=D64)
    for clamp in ("tanh", "atan"):
        s = bound_scale(raw, 2.0, clamp)
        assert s.abs().max() <= 2.0 and (s.diff() >= 0).all()
    small = torch.tensor([1e-4], dtype=D64)
    assert torch.allclose(bound_scale(small, 2.0, "tanh"), small, rtol=1e-6)


@pytest.mark.parametrize("context_mode", ["concat", "film"])
def test_made_is_autoregressive_in_its_order(context_mode: str) -> None:
    torch.manual_seed(0)
    order = torch.randperm(6)
    made = MADE(6, 3, 32, 2, order, context_dim=2, context_mode=context_mode).double()
    randomize(made, seed=0)  # type: ignore[arg-type]
    x, c = torch.randn(6, dtype=D64), torch.randn(1, 2, dtype=D64)
    jac = torch.autograd.functional.jacobian(lambda v: made(v[None], c)[:, 0].T, x)  # (6, 3, 6)
    dep = jac.abs().sum(1) > 0  # dep[i, j]: output i depends on input j
    allowed = order[None, :] < order[:, None]
    assert not (dep & ~allowed).any()
    assert dep[allowed].float().mean() > 0.9  # and it does use what it may


def test_squeeze_is_an_exact_permutation() -> None:
    x = torch.randn(2, 3, 4, 6, dtype=D64)
    sq = Squeeze()
    y, ld = sq(x)
    assert y.shape == (2, 12, 2, 3) and ld is not None and (ld == 0).all()
    assert torch.equal(sq.inverse(y), x)
    assert torch.equal(y.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert torch.equal(y[0, :4, 0, 0], x[0, 0, :2, :2].flatten())


@pytest.mark.parametrize("shape", [(5,), (3, 4, 4)])
def test_actnorm_data_dependent_initialisation(shape: tuple[int, ...]) -> None:
    layer = ActNorm(shape[0]).double()
    x = 3.0 * torch.randn(64, *shape, dtype=D64) + 2.0
    y, _ = layer(x)
    dims = [0, *range(2, y.dim())]
    assert torch.allclose(y.mean(dims), torch.zeros(shape[0], dtype=D64), atol=1e-10)
    assert torch.allclose(y.std(dims, unbiased=False), torch.ones(shape[0], dtype=D64), atol=1e-5)
    before = layer.bias.detach().clone()
    layer(x + 5.0)  # initialised once only
    assert torch.equal(layer.bias.detach(), before) and bool(layer.initialized)


def test_lu_linear_inverse_and_log_det() -> None:
    torch.manual_seed(0)
    lu = randomize(LULinear(5).double(), seed=0)  # type: ignore[arg-type]
    w = lu.weight()
    assert torch.allclose(w @ lu.inverse_weight(), torch.eye(5, dtype=D64), atol=1e-12)
    x = torch.randn(2, 5, 3, 3, dtype=D64)
    y, ld = lu(x)
    assert ld is not None
    assert torch.allclose(ld, torch.linalg.slogdet(w)[1] * 9 * torch.ones(2, dtype=D64))
    assert torch.allclose(lu.inverse(y), x, atol=1e-12)


def test_iaf_is_the_exact_dual_of_maf() -> None:
    torch.manual_seed(0)
    maf = randomize(flows.build("maf", 4, layers=1).double(), seed=3)
    iaf = flows.build("iaf", 4, layers=1).double()
    iaf.load_state_dict(maf.state_dict())
    x = torch.randn(7, 4, dtype=D64)
    z_maf, ld_maf = maf.transform(x)
    assert torch.allclose(iaf.inverse(x), z_maf, atol=1e-12)
    z_iaf, ld_iaf = iaf.transform(z_maf)
    assert torch.allclose(z_iaf, x, atol=1e-12)
    assert ld_maf is not None and ld_iaf is not None
    assert torch.allclose(ld_iaf, -ld_maf, atol=1e-12)


def test_stability_reports_saturation_and_condition_numbers() -> None:
    torch.manual_seed(0)
    flow = randomize(flows.build("realnvp", 4, scale_bound=0.05).double(), scale=3.0, seed=0)
    flow.transform(torch.randn(64, 4, dtype=D64))
    stab = flow.stability()
    assert 0.0 < stab[keys.STAB_SATURATED_SHARE] <= 1.0
    assert stab[keys.STAB_SCALE_ABSMAX] <= 0.05
    glow = flows.build("glow", (2, 4, 4)).double()
    glow.transform(torch.randn(3, 2, 4, 4, dtype=D64))
    cond = glow.stability()[keys.STAB_COND_MAX]
    lus = [m for m in glow.modules() if isinstance(m, LULinear)]
    sv = [torch.linalg.svdvals(m.weight().detach()) for m in lus]
    truth = max(float(v.max() / v.min()) for v in sv)
    assert cond == pytest.approx(truth, rel=1e-9)
    nsf = flows.build("nsf-ar", 3)
    nsf.transform(torch.full((5, 3), 10.0))  # every input in the identity tails
    assert nsf.stability()[keys.STAB_SPLINE_TAIL_SHARE] == 1.0


def test_transform_without_log_det_skips_it_everywhere() -> None:
    for name in ("realnvp", "glow", "nsf-coupling"):
        flow = flows.build(name, (2, 4, 4))
        _, ld = flow.transform(torch.randn(2, 2, 4, 4), with_log_det=False)
        assert ld is None
        leaves = [m for m in flow.modules() if isinstance(m, flows.Layer)]
        assert all(m._last_logdet is None for m in leaves)
