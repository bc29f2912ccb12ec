"""Variational dequantization: exact uniform start, log q against autograd, training tightens."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("harness.flows")

from harness import data
from harness.data import DataError, flow_bits_per_dim, make_dequantizer
from harness.data.variational import VariationalDequantizer

from ._helpers import discrete_dataset, pushforward_through_logit
from .test_importance import D, K, all_outcomes, exact_elbo, exact_log_p, log_p_y


def _perturb(deq: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in deq.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_fresh_q_is_exactly_uniform() -> None:
    ds = data.load("digits")
    deq = make_dequantizer("variational", ds)
    assert isinstance(deq, VariationalDequantizer) and deq.model_shape == (1, 8, 8)
    w, lw = deq(ds.test[:16])
    assert w.shape == (16, 1, 8, 8) and ((w >= 0) & (w <= 1)).all()
    assert torch.allclose(lw, torch.full((16,), -64 * math.log(17)), atol=1e-3)
    assert torch.equal(deq.to_data(w), ds.test[:16])
    assert any(p.requires_grad for p in deq.parameters())


def test_log_q_matches_autograd_jacobian() -> None:
    """log q(u|x) = log Logistic(z) − log|det ∂u/∂z|, the Jacobian from autograd."""
    torch.manual_seed(0)
    ds = discrete_dataset(5, (3,))
    deq = make_dequantizer("variational", ds, flow_options={"layers": 3, "hidden": 16}).double()
    _perturb(deq)
    x = ds.test[:4].double()
    v = torch.rand(4, 3, dtype=torch.float64)
    z = torch.log(v) - torch.log1p(-v)
    u, log_q = deq.q_sample_from(z, x)
    log_q = log_q.detach()
    assert ((u > 0) & (u < 1)).all()
    for i in range(4):
        jac = torch.autograd.functional.jacobian(
            lambda zi, i=i: deq.q_sample_from(zi[None], x[i : i + 1])[0].reshape(-1), z[i]
        )
        base = float(
            (-torch.nn.functional.softplus(z[i]) - torch.nn.functional.softplus(-z[i])).sum()
        )
        expected = base - float(torch.linalg.slogdet(jac)[1])
        assert float(log_q[i]) == pytest.approx(expected, abs=1e-8)


def test_logit_composed_in_changes_no_bpd_with_variational_noise() -> None:
    ds = discrete_dataset(K, (D,))
    plain = make_dequantizer("variational", ds).double()
    _perturb(plain, scale=0.05, seed=1)
    with_logit = make_dequantizer("variational", ds, logit_alpha=0.05).double()
    with_logit.load_state_dict(plain.state_dict())
    x = all_outcomes(4)
    out = []
    for deq, log_p in ((plain, log_p_y), (with_logit, pushforward_through_logit(log_p_y, 0.05))):
        torch.manual_seed(3)
        w, lw = deq(x)
        out.append(flow_bits_per_dim(log_p(w), lw, D))
    assert (out[0] - out[1]).abs().max() <= 1e-6


def test_training_q_tightens_the_bound() -> None:
    """With a fixed Beta(2, 3) model the optimal q is the model restricted to each cell (the
    bound is then exact): a short training run closes most of uniform's gap, and the bound
    stays below the exact log P(x)."""
    torch.manual_seed(0)
    ds = discrete_dataset(K, (D,))
    deq = make_dequantizer("variational", ds, flow_options={"layers": 2, "hidden": 16}).double()
    opt = torch.optim.Adam(deq.parameters(), lr=1e-2)
    x = all_outcomes(16)
    for _ in range(100):
        w, lw = deq(x)
        loss = -(log_p_y(w) + lw).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x_eval = all_outcomes(200)
    with torch.no_grad():
        w, lw = deq(x_eval)
        bound = log_p_y(w) + lw
    truth, uniform = float(exact_log_p(x_eval).mean()), float(exact_elbo(x_eval).mean())
    se = float(bound.std()) / math.sqrt(len(bound))
    assert float(bound.mean()) <= truth + 4 * se
    assert float(bound.mean()) - uniform > 0.8 * (truth - uniform)


def test_variational_option_errors() -> None:
    ds = data.load("digits")
    with pytest.raises(DataError, match="q flow 'realnvp'.*widht"):
        make_dequantizer("variational", ds, flow_options={"widht": 3})
    with pytest.raises(DataError, match="valid options: flow, flow_options, logit_alpha, shift"):
        make_dequantizer("variational", ds, layers=3)
