"""Properties every registered architecture must have (built-ins and plugins alike).

All in float64 with randomised (non-identity) weights; truth is independent of the flow's own
log-det: autograd Jacobians, numerical integration of the density, exact inverses.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from harness import flows, keys
from harness.flows.check import autograd_log_det, randomize

NAMES = flows.names()
VECTOR_NAMES = [n for n in NAMES if flows.entry(n).meta.get("vectors", True)]
IMAGE_NAMES = [n for n in NAMES if flows.entry(n).meta.get("images", False)]
IMAGE_SHAPE = (2, 4, 4)
CTX = 3


def _check_hp(name: str, **hp) -> dict:
    """``hp`` over the entry's ``check_hparams`` (e.g. tight ODE tolerances for ``ffjord``)."""
    return {**flows.entry(name).meta.get("check_hparams", {}), **hp}


def _build(name: str, shape, context_dim=None, exact: bool = True, **hp) -> flows.Flow:
    """Float64, randomised, eval mode; ``exact``: under the entry's ``check_hparams``."""
    torch.manual_seed(0)
    hp = _check_hp(name, **hp) if exact else hp
    flow = flows.build(name, shape, context_dim, **hp).double()
    return randomize(flow, seed=1).eval()


def _inputs(shape, n: int, context_dim: int | None, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    c = None if context_dim is None else torch.randn(n, context_dim, generator=g).double()
    return x, c


def _cases() -> list:
    out = []
    for n in VECTOR_NAMES:
        for d in (2, 3, 5):
            out.append(pytest.param(n, (d,), id=f"{n}-{d}"))
    for n in IMAGE_NAMES:
        out.append(pytest.param(n, IMAGE_SHAPE, id=f"{n}-image"))
    return out


@pytest.mark.parametrize("context_dim", [None, CTX], ids=["plain", "ctx"])
@pytest.mark.parametrize("name, shape", _cases())
def test_inverse_logdet_and_skip(name: str, shape, context_dim) -> None:
    flow = _build(name, shape, context_dim)
    x, c = _inputs(shape, 4, context_dim)
    contexts = [c] if c is None else [c, c.flip(0) * 2.0 + 0.5]  # two different contexts
    zs = []
    for ctx in contexts:
        z, ld = flow.transform(x, ctx)
        assert z.shape == x.shape and ld is not None and ld.shape == (x.shape[0],)
        assert torch.isfinite(z).all() and torch.isfinite(ld).all()
        assert (flow.inverse(z, ctx) - x).abs().max() <= 1e-9
        m = 2 if len(shape) == 1 else 1  # Jacobians of two vectors or one image
        truth = autograd_log_det(flow, x[:m], None if ctx is None else ctx[:m])
        assert (ld[:m] - truth).abs().max() <= 1e-8 * max(1.0, float(truth.abs().max()))
        z2, none = flow.transform(x, ctx, with_log_det=False)
        assert none is None
        assert torch.equal(z2, z)
        zs.append(z)
    if context_dim is not None:  # the context is actually used
        assert (zs[0] - zs[1]).abs().max() > 1e-6


def _grid_integral(flow: flows.Flow, context, n: int = 241) -> float:
    """Riemann sum of exp(log_prob) on an n×n grid over a box that holds the mass: the union
    of [−6, 6]² and the 0.1 %–99.9 % sample quantiles widened by half their span."""
    torch.manual_seed(5)
    s = flow.sample(4000, context)
    q = torch.quantile(s, torch.tensor([1e-3, 1 - 1e-3], dtype=s.dtype), dim=0)
    span = q[1] - q[0]
    lo = torch.minimum(q[0] - 0.5 * span, torch.full_like(span, -6.0))
    hi = torch.maximum(q[1] + 0.5 * span, torch.full_like(span, 6.0))
    axes = [torch.linspace(float(lo[i]), float(hi[i]), n, dtype=torch.float64) for i in (0, 1)]
    cell = float(axes[0][1] - axes[0][0]) * float(axes[1][1] - axes[1][0])
    return float(flow.log_prob(torch.cartesian_prod(*axes), context).exp().sum()) * cell


@pytest.mark.parametrize("context_dim", [None, CTX], ids=["plain", "ctx"])
@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_density_integrates_to_one_in_2d(name: str, context_dim) -> None:
    torch.manual_seed(0)
    # Milder random weights than elsewhere (0.15): still no identity layer, but densities
    # smooth enough for a 241² grid to resolve to well under 0.5 %.
    flow = randomize(flows.build(name, 2, context_dim).double(), 0.15, seed=1).eval()
    contexts = [None] if context_dim is None else [torch.full((CTX,), v).double() for v in (-1, 1)]
    with torch.no_grad():
        for c in contexts:
            total = _grid_integral(flow, c)
            assert abs(total - 1.0) <= 5e-3, f"{name}: ∫p = {total:.5f} (context {c})"


@pytest.mark.parametrize("context_mode", ["concat", "film"])
@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name: str, context_mode: str) -> None:
    hp = {"context_mode": context_mode} if "context_mode" in flows.hparams(name) else {}
    if not hp and context_mode == "film":
        pytest.skip(f"{name} has no context_mode")
    shape = (3,) if name in VECTOR_NAMES else IMAGE_SHAPE
    flow = _build(name, shape, CTX, **hp).train()
    x, c = _inputs(shape, 8, CTX)
    flow.log_prob(x, c).mean().backward()
    for pname, p in flow.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}: {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_sample_shapes_dtype_and_state_dict(name: str) -> None:
    shape = (3,) if name in VECTOR_NAMES else IMAGE_SHAPE
    flow = _build(name, shape, exact=False)
    assert flow.event_shape == shape
    assert flow.sample(5).shape == (5, *shape)
    assert flow.sample(5).dtype == torch.float64
    cond = _build(name, shape, CTX, exact=False)
    assert cond.sample(4, torch.randn(4, CTX).double()).shape == (4, *shape)
    assert cond.sample(4, torch.randn(CTX).double()).shape == (4, *shape)
    x, _ = _inputs(shape, 6, None)
    ref = flow.log_prob(x).detach()
    buf = io.BytesIO()
    torch.save(flow.state_dict(), buf)
    torch.manual_seed(123)  # a fresh build with other random draws (orders, permutations)
    other = flows.build(name, shape).double().eval()
    buf.seek(0)
    other.load_state_dict(torch.load(buf))
    assert torch.allclose(other.log_prob(x), ref, atol=1e-12, rtol=0)
    single = flow.float()
    assert single.log_prob(x.float()).dtype == torch.float32
    assert torch.allclose(single.log_prob(x.float()).double(), ref, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_stability_reports_known_keys_of_the_last_transform(name: str) -> None:
    shape = (3,) if name in VECTOR_NAMES else IMAGE_SHAPE
    flow = _build(name, shape)
    assert flow.stability() == {}
    x, _ = _inputs(shape, 8, None)
    flow.transform(x)
    stab = flow.stability()
    known = {v for k, v in vars(keys).items() if k.startswith("STAB_")}
    assert stab and set(stab) <= known
    assert all(isinstance(v, float) and math.isfinite(v) for v in stab.values())
    assert stab[keys.STAB_LAYER_LOGDET_ABSMAX] > 0
    if keys.STAB_SATURATED_SHARE in stab:
        assert 0.0 <= stab[keys.STAB_SATURATED_SHARE] <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_preflight_passes(name: str) -> None:
    shape = 5 if name in VECTOR_NAMES else IMAGE_SHAPE
    res = flows.preflight(name, shape, {}, context_dim=2)
    assert res.ok, res.message
    assert res.inv_err <= 1e-9 and res.logdet_err <= 1e-9
    assert name in res.message and "inverse error" in res.message


@pytest.mark.parametrize("name", NAMES)
def test_preflight_passes_on_suite_sized_shapes(name: str) -> None:
    """Deep multi-scale stacks and long autoregressive chains stay exact on data-sized shapes
    (the Jacobian on a smaller shape of the same kind, see harness.flows.check)."""
    if flows.entry(name).meta.get("continuous"):
        pytest.skip(
            "ODE flows take tens of seconds per large solve; see tests/flows/test_ffjord.py"
        )
    shapes = [128] if name in VECTOR_NAMES else []
    shapes += [(3, 16, 16)] if name in IMAGE_NAMES else []
    for shape in shapes:
        res = flows.preflight(name, shape, {}, context_dim=2, batch=4)
        assert res.ok, res.message
