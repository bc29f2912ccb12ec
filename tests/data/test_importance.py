"""The importance-weighted bound against closed forms: a Beta(2, 3) density per dimension on
the dequantized cube, whose cell masses (the exact log P(x)) and cell-averaged log-density
(the exact single-sample bound) are polynomials and logs in closed form."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from harness.data import make_dequantizer

from ._helpers import discrete_dataset

K, D = 4, 2


def log_p_y(y: Tensor) -> Tensor:
    """Beta(2, 3) per dimension: ``12 y (1 − y)²``."""
    return (math.log(12) + torch.log(y) + 2 * torch.log1p(-y)).reshape(len(y), -1).sum(1)


def _cdf(y: Tensor) -> Tensor:
    return 6 * y**2 - 8 * y**3 + 3 * y**4


def _antiderivative_log_p(y: Tensor) -> Tensor:
    """∫ [ln 12 + ln y + 2 ln(1 − y)] dy, with t ln t → 0 at t = 0."""

    def xlogx(t: Tensor) -> Tensor:
        return torch.where(t > 0, t * torch.log(t.clamp_min(1e-300)), torch.zeros_like(t))

    return y * math.log(12) + (xlogx(y) - y) - 2 * (xlogx(1 - y) - (1 - y))


def exact_log_p(x: Tensor) -> Tensor:
    lo, hi = x / K, (x + 1) / K
    return torch.log(_cdf(hi) - _cdf(lo)).sum(1)


def exact_elbo(x: Tensor) -> Tensor:
    """E_u[log p_y((x + u)/K) − ln K] per dimension, summed: the single-sample bound."""
    lo, hi = x / K, (x + 1) / K
    return (K * (_antiderivative_log_p(hi) - _antiderivative_log_p(lo)) - math.log(K)).sum(1)


def all_outcomes(repeat: int) -> Tensor:
    g = torch.meshgrid(torch.arange(K), torch.arange(K), indexing="ij")
    x = torch.stack([t.reshape(-1) for t in g], 1).double()
    return x.repeat(repeat, 1)


def test_closed_forms_are_consistent() -> None:
    """Jensen: ELBO < log P; and the cell masses sum to one."""
    x = all_outcomes(1)
    assert (
        float(exact_log_p(x).exp().sum()) == 1.0
        or abs(float(exact_log_p(x).exp().sum()) - 1) < 1e-12
    )
    assert (exact_elbo(x) < exact_log_p(x)).all()


def test_iw_bound_tightens_with_k_and_never_loosens() -> None:
    torch.manual_seed(0)
    ds = discrete_dataset(K, (D,))
    deq = make_dequantizer("uniform", ds)
    x = all_outcomes(400)  # 6,400 rows
    truth, elbo = float(exact_log_p(x).mean()), float(exact_elbo(x).mean())
    means, ses = {}, {}
    for k in (1, 4, 16, 64):
        iw = deq.iw_log_likelihood(x, log_p_y, k=k)
        means[k] = float(iw.mean())
        ses[k] = float(iw.std()) / math.sqrt(len(iw))
    assert abs(means[1] - elbo) < 4 * ses[1]  # k = 1 is the single-sample bound
    ks = sorted(means)
    for k in ks:
        assert means[k] <= truth + 4 * ses[k]  # a bound on log P(x)
        assert means[k] >= elbo - 4 * ses[k]  # never looser than the single-sample bound
    for a, b in itertools.pairwise(ks):
        assert means[b] > means[a] - 4 * math.hypot(ses[a], ses[b])  # tightens with k
    assert truth - means[64] < 0.1 * (truth - elbo)  # and most of the gap is gone
