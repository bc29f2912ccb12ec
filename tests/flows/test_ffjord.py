"""``ffjord``: the continuous-time flow against independent truth.

Float64, weights randomised strongly enough that the flow is far from the identity (log-dets of
order 0.1–1). Truth: the trace and Frobenius norm of autograd Jacobians, ``log|det|`` of the
autograd Jacobian of the *solved* map (through the solver), a numerical integral of the density
on a grid, quadrature of RNODE's integrands along a trajectory solved by torchdiffeq directly,
forward hooks on the dynamics network for the evaluation counts.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchdiffeq import odeint

from harness import flows, keys
from harness.flows.check import autograd_log_det, randomize
from harness.flows.continuous.nets import ODENet
from harness.flows.continuous.ode_layer import CNFLayer
from harness.flows.continuous.trace import draw_noise, exact_divergence, hutchinson_divergence
from harness.flows.families.ffjord import CHECK_HPARAMS, CNFFlow

SCALE = 2.0  # randomisation: log-dets of order 0.1–1 with 16 hidden units
TIGHT = {"rtol": 1e-11, "atol": 1e-11}


def _flow(shape, context_dim=None, *, seed=1, scale=SCALE, **hp) -> CNFFlow:
    torch.manual_seed(0)
    hp.setdefault("hidden", 16)
    flow = flows.build("ffjord", shape, context_dim, **hp).double()
    return randomize(flow, scale=scale, seed=seed).eval()  # type: ignore[return-value]


def _x(n: int, d: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _jacobians(net: torch.nn.Module, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``∂f/∂z`` of the dynamics at each row of ``z``, shape ``(B, D, D)``, by autograd."""

    def f(v: torch.Tensor) -> torch.Tensor:
        return net(t, v[None])[0]

    return torch.stack([torch.autograd.functional.jacobian(f, zi) for zi in z])


def _se_check(mean: torch.Tensor, se: torch.Tensor, truth: torch.Tensor) -> None:
    """``mean`` within 4 standard errors of ``truth``, and the check has power: 4 SE is at most
    10 % of the truth or 0.01, whichever is larger (so a bias of that size would be caught)."""
    assert (se > 0).all()
    assert ((mean - truth).abs() <= 4 * se).all(), (mean, truth, se)
    assert (4 * se <= torch.clamp(0.1 * truth.abs(), min=0.01)).all(), (se, truth)


def _mean_se(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])


# ── 1. Hutchinson's estimate agrees with the exact trace in expectation ─────────────────────
@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_divergences_against_the_autograd_jacobian(noise: str) -> None:
    torch.manual_seed(0)
    net = randomize(ODENet(5, 16, 2).double(), scale=SCALE, seed=3)  # type: ignore[arg-type]
    z, t = _x(3, 5), torch.tensor(0.4, dtype=torch.float64)
    jac = _jacobians(net, t, z)
    true_tr = jac.diagonal(dim1=1, dim2=2).sum(-1)
    true_fro = jac.square().sum((1, 2))
    zr = z.clone().requires_grad_(True)
    div, fro = exact_divergence(net(t, zr), zr, create_graph=False, frobenius=True)
    assert torch.allclose(div, true_tr, rtol=0, atol=1e-12)
    assert fro is not None and torch.allclose(fro, true_fro, rtol=1e-12, atol=0)
    gen, chunks, m = torch.Generator().manual_seed(4), 5, 20_000  # 100k probes per row
    est = []
    for _ in range(chunks):
        zr = z.repeat(m, 1).requires_grad_(True)
        eps = draw_noise(zr, noise, gen)
        tr, fr = hutchinson_divergence(net(t, zr), zr, eps, False, frobenius=True)
        assert fr is not None
        est.append(torch.stack([tr.view(m, 3), fr.view(m, 3)], 1))
    mean, se = _mean_se(torch.cat(est))
    _se_check(mean, se, torch.stack([true_tr, true_fro]))


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_log_det_is_unbiased_for_the_solved_flow(noise: str) -> None:
    """Same steps (step control on z only), so E[ε^T M ε] = tr M for the discrete integral M."""
    rtol = atol = 1e-5  # the solver's tolerances (ffjord's defaults)
    flow = _flow(3, noise=noise, trace="hutchinson", rtol=rtol, atol=atol)
    x, n = _x(3, 3), 12_000
    z_exact, ld_exact = flow.transform(x)
    nfe_exact = flow.stability()[keys.STAB_NFE]
    assert flow.stability()[keys.STAB_EXACT_TRACE] == 1.0
    flow.train()
    torch.manual_seed(5)
    with torch.no_grad():
        z_est, ld_est = flow.transform(x.repeat(n, 1))
    assert flow.stability()[keys.STAB_EXACT_TRACE] == 0.0
    # The noise must not steer the step control. A batch of 12,000 copies is computed with
    # other kernels than a batch of 3, so on some CPUs rounding may flip the acceptance of one
    # dopri5 step (6 evaluations); the states then agree to the solver's tolerance, not bitwise.
    assert abs(flow.stability()[keys.STAB_NFE] - nfe_exact) <= 6
    tol = 10 * (atol + rtol * float(z_exact.abs().max()))
    assert float((z_est.view(n, 3, 3) - z_exact.expand(n, 3, 3)).abs().max()) <= tol
    assert ld_exact.abs().min() > 0.05  # a non-trivial log-det
    _se_check(*_mean_se(ld_est.view(n, 3)), ld_exact.detach())


# ── 2. log-det = log|det| of the autograd Jacobian of the solved map; inverse; ∫ p = 1 ─────
@pytest.mark.parametrize("context_dim, mode", [(None, "concat"), (2, "concat"), (2, "film")])
@pytest.mark.parametrize("d", [2, 3])
def test_log_det_matches_autograd_through_the_solver(d: int, context_dim, mode: str) -> None:
    # FiLM multiplies every hidden unit: a milder randomisation keeps |z| of order 1
    flow = _flow(d, context_dim, context_mode=mode, scale=SCALE if mode == "concat" else 1.0,
                 **TIGHT)  # fmt: skip
    x = _x(2, d)
    c = None if context_dim is None else _x(2, context_dim, seed=3)
    z, ld = flow.transform(x, c)
    truth = autograd_log_det(flow, x, c)
    assert truth.abs().max() > 0.01  # far from the identity
    assert (ld - truth).abs().max() <= 1e-8 * max(1.0, float(truth.abs().max()))
    assert (flow.inverse(z, c) - x).abs().max() <= 1e-8
    z2, none = flow.transform(x, c, with_log_det=False)
    assert none is None and torch.equal(z2, z)  # same steps, same z, bit for bit


def test_inverse_error_is_bounded_by_the_tolerance() -> None:
    x = _x(16, 2)
    errors = []
    for tol in (1e-4, 1e-7, 1e-10):
        flow = _flow(2, rtol=tol, atol=tol)
        with torch.no_grad():
            errors.append(float((flow.inverse(flow.transform(x)[0]) - x).abs().max()))
        assert errors[-1] <= 100 * tol, (tol, errors[-1])
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("solver, order", [("euler", 1), ("rk4", 4)])
def test_fixed_step_solvers_converge_at_their_order(solver: str, order: int) -> None:
    x = _x(8, 2)
    with torch.no_grad():
        ref, ref_ld = _flow(2, **TIGHT).transform(x)
        errs = []
        for steps in (8, 16):
            flow = _flow(2, solver=solver, steps=steps)
            z, ld = flow.transform(x)
            assert flow.stability()[keys.STAB_NFE] == steps * (4 if solver == "rk4" else 1)
            errs.append(max(float((z - ref).abs().max()), float((ld - ref_ld).abs().max())))
    assert errs[0] / errs[1] >= 0.8 * 2**order


@pytest.mark.parametrize("context_dim", [None, 2])
def test_density_integrates_to_one_in_2d(context_dim) -> None:
    flow = _flow(2, context_dim)
    t = torch.linspace(-7.0, 7.0, 141, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    c = None if context_dim is None else torch.tensor([0.5, -1.0], dtype=torch.float64)
    with torch.no_grad():
        p = flow.log_prob(grid, c).exp()
    total = float(p.sum()) * float(t[1] - t[0]) ** 2
    assert abs(total - 1.0) <= 0.01, total
    assert flow.stability()[keys.STAB_EXACT_TRACE] == 1.0
    base = torch.exp(-0.5 * grid.square().sum(-1)) / (2 * math.pi)
    assert (p - base).abs().max() > 1e-3  # not the base density: the flow does something


# ── counting, trace choice, regularisers ───────────────────────────────────────────────────
def _hook_count(flow: CNFFlow) -> list[int]:
    calls = [0]
    for m in flow.cnf_layers():
        m.net.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(
    "hp, per_step",
    [({"solver": "euler", "steps": 6}, 1), ({"solver": "rk4", "steps": 3}, 4),
     ({"solver": "dopri5"}, None), ({"solver": "dopri5", "adjoint": True}, None)],
    ids=["euler", "rk4", "dopri5", "dopri5-adjoint"],
)  # fmt: skip
def test_counters_match_the_evaluations_of_the_network(hp: dict, per_step) -> None:
    flow = _flow(3, blocks=2, **hp).train()
    calls = _hook_count(flow)
    x = _x(8, 3)
    flow.reset_counters()
    loss = -flow.log_prob(x).mean()
    forward_calls = calls[0]
    assert flow.counters() == {"nfe_forward": forward_calls, "nfe_backward": 0}
    assert flow.stability()[keys.STAB_NFE] == forward_calls
    loss.backward()
    backward = flow.counters()["nfe_backward"]
    if hp.get("adjoint"):  # the adjoint solve calls the network again
        assert backward == calls[0] - forward_calls > 0
    else:  # one vector-Jacobian product per evaluation that reached the loss
        assert calls[0] == forward_calls
        assert 0 < backward <= forward_calls
    if per_step is not None:
        steps = hp["steps"]
        assert forward_calls == backward == 2 * per_step * steps
    with torch.no_grad():
        flow.inverse(flow.transform(x)[0])
    assert flow.counters()["nfe_forward"] == 2 * forward_calls  # inverse solves not counted
    flow.reset_counters()
    assert flow.counters() == {"nfe_forward": 0, "nfe_backward": 0}


def test_adjoint_gradients_match_direct_back_propagation() -> None:
    x = _x(8, 2)
    grads = []
    for adjoint in (False, True):
        flow = _flow(2, 2, trace="exact", adjoint=adjoint, rtol=1e-9, atol=1e-9).train()
        c = _x(8, 2, seed=3)
        (-flow.log_prob(x, c).mean()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in flow.parameters()]))
    assert grads[0].norm() > 1e-3
    assert (grads[0] - grads[1]).norm() <= 1e-6 * grads[0].norm()


def test_trace_choice_follows_mode_and_dimension() -> None:
    x = _x(4, 3)
    flow = _flow(3)
    for train, hp, exact in [
        (False, {}, 1.0),
        (True, {}, 0.0),
        (True, {"trace": "exact"}, 1.0),
        (False, {"exact_max_dim": 2}, 0.0),
    ]:
        flow = _flow(3, **hp).train(train)
        flow.transform(x)
        stab = flow.stability()
        assert stab[keys.STAB_EXACT_TRACE] == exact, (train, hp)
        known = {v for k, v in vars(keys).items() if k.startswith("STAB_")}
        assert set(stab) <= known and stab[keys.STAB_NFE] > 0
    assert _flow(3).stability() == {}


def _simpson(y: torch.Tensor, h: float) -> torch.Tensor:
    w = torch.ones(y.shape[0], dtype=y.dtype)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return (w[:, None] * y).sum(0) * h / 3


def test_rnode_regularisers_match_quadrature_along_the_trajectory() -> None:
    x = _x(4, 2)
    flow = _flow(2, trace="exact", kinetic=0.7, jacobian=0.3, **TIGHT).train()
    flow.log_prob(x)
    reg = flow.regularizer()
    assert reg.dim() == 0 and reg.requires_grad
    net = flow.cnf_layers()[0].net
    ts = torch.linspace(0.0, 1.0, 65, dtype=torch.float64)
    with torch.no_grad():
        traj = odeint(lambda t, z: net(t, z), x, ts, rtol=1e-11, atol=1e-11)
    kin, fro = [], []
    for t, z in zip(ts, traj):
        kin.append(net(t, z).detach().square().sum(-1))
        fro.append(_jacobians(net, t, z).square().sum((1, 2)))
    h = float(ts[1] - ts[0])
    truth = 0.7 * _simpson(torch.stack(kin), h).mean() + 0.3 * _simpson(torch.stack(fro), h).mean()
    assert truth > 1e-2
    assert abs(float(reg.detach()) - float(truth)) <= 1e-6 * float(truth)
    grads = torch.autograd.grad(reg, list(net.parameters()), allow_unused=True)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    flow.eval().log_prob(x)
    assert float(flow.regularizer()) == 0.0  # eval mode: off
    plain = _flow(2).train()
    plain.log_prob(x)
    assert float(plain.regularizer()) == 0.0  # weights 0: off


# ── images: FFJORD's multi-scale model ─────────────────────────────────────────────────────
def test_multiscale_image_flow_inverse_and_log_det() -> None:
    flow = _flow((2, 4, 4), 2, hidden=8, levels=2, rtol=1e-10, atol=1e-10)
    assert len(flow.cnf_layers()) == 3  # before and after the squeeze, then the last level
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(2)).double()
    c = _x(2, 2, seed=3)
    z, ld = flow.transform(x, c)
    truth = autograd_log_det(flow, x, c)
    assert truth.abs().max() > 0.01  # far from the identity
    assert (ld - truth).abs().max() <= 1e-8 * max(1.0, float(truth.abs().max()))
    assert (flow.inverse(z, c) - x).abs().max() <= 1e-8
    assert flow.sample(3, c[0]).shape == (3, 2, 4, 4)
    with pytest.raises(ValueError, match="levels"):
        flows.build("ffjord", (1, 4, 4), levels=4)


# ── hyper-parameters ───────────────────────────────────────────────────────────────────────
def test_hyperparameters_have_defaults_and_bad_values_are_refused() -> None:
    hp = flows.hparams("ffjord")
    brief = {"hidden", "depth", "blocks", "solver", "rtol", "atol", "steps", "adjoint", "trace",
             "noise", "T", "kinetic", "jacobian", "context_mode"}  # fmt: skip
    assert brief <= set(hp) and hp["solver"] == "dopri5" and hp["kinetic"] == 0.0
    assert flows.entry("ffjord").meta["check_hparams"] == CHECK_HPARAMS
    with pytest.raises(ValueError, match="unknown hyper-parameter 'tol'"):
        flows.build("ffjord", 2, tol=1e-3)
    for bad in [{"solver": "rk45"}, {"trace": "approx"}, {"noise": "uniform"}, {"rtol": 0.0},
                {"steps": 0}, {"kinetic": -1.0}, {"context_mode": "add"}, {"T": -1.0},
                {"activation": "relu"}, {"rtol": 1e-15}]:  # fmt: skip
        with pytest.raises(ValueError, match=f"'{next(iter(bad))}'"):
            flows.build("ffjord", 2, **bad)
    flow32 = flows.build("ffjord", 2, rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="rtol=1e-08.*float64"):
        flow32.transform(torch.randn(3, 2))


def test_float32_agrees_with_float64() -> None:
    flow = _flow(3, rtol=1e-6, atol=1e-6)
    x = _x(16, 3)
    ref = flow.log_prob(x).detach()
    single = flow.float().log_prob(x.float())
    assert single.dtype == torch.float32
    assert torch.allclose(single.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    flow = _flow(3, 2, **TIGHT)
    x, c = _x(8, 3), _x(8, 2, seed=3)
    z, ld = flow.transform(x, c)
    gpu = flow.cuda()
    zg, ldg = gpu.transform(x.cuda(), c.cuda())
    assert torch.allclose(zg.cpu(), z, atol=1e-8) and torch.allclose(ldg.cpu(), ld, atol=1e-8)
    assert gpu.sample(4, c[0].cuda()).device.type == "cuda"
    assert isinstance(flow.cnf_layers()[0], CNFLayer)
