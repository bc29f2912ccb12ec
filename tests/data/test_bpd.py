"""Bits per dimension: the convention, exact answers through the full dequantization path."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from harness import data
from harness.data import bits_per_dim, flow_bits_per_dim, make_dequantizer, nll_to_bpd
from harness.data.bpd import bpd_to_nll

from ._helpers import discrete_dataset, pushforward_through_logit


def test_bits_per_dim_convention() -> None:
    ll = torch.tensor([-10.0, -20.0], dtype=torch.float64)
    assert torch.allclose(
        bits_per_dim(ll, 5), torch.tensor([2.0, 4.0], dtype=torch.float64) / math.log(2)
    )
    assert nll_to_bpd(10.0, 5) == pytest.approx(2.0 / math.log(2))
    assert bpd_to_nll(nll_to_bpd(3.7, 11), 11) == pytest.approx(3.7)
    with pytest.raises(ValueError, match="dims"):
        bits_per_dim(ll, 0)
    with pytest.raises(ValueError, match="same shape"):
        flow_bits_per_dim(ll, ll[:1], 5)


@pytest.mark.parametrize("levels", [2, 17, 256])
@pytest.mark.parametrize("alpha", [None, 1e-6, 0.05])
def test_uniform_density_on_cube_gives_log2_levels(levels: int, alpha: float | None) -> None:
    """A flow density uniform on [0, 1]^D (pushed through the logit when it is composed in)
    gives exactly log2(K) bits per dimension, whatever the noise."""
    torch.manual_seed(0)
    ds = discrete_dataset(levels, (1, 3, 3))
    deq = make_dequantizer("uniform", ds, logit_alpha=alpha)
    x = ds.train.double()

    def log_p_y(y: Tensor) -> Tensor:
        assert ((y >= 0) & (y <= 1)).all()
        return y.new_zeros(y.shape[0])

    log_p = log_p_y if alpha is None else pushforward_through_logit(log_p_y, alpha)
    w, log_weight = deq(x)
    bpd = flow_bits_per_dim(log_p(w), log_weight, deq.dims)
    assert torch.allclose(bpd, torch.full_like(bpd, math.log2(levels)), atol=1e-9, rtol=0)


def _categorical_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three independent pixels with 4 levels and known probabilities; every outcome."""
    probs = torch.tensor(
        [[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]],
        dtype=torch.float64,
    )
    grids = torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij")
    x = torch.stack([g.reshape(-1) for g in grids], 1).double()  # (64, 3): every outcome
    p_x = probs[0, x[:, 0].long()] * probs[1, x[:, 1].long()] * probs[2, x[:, 2].long()]
    return probs, x, p_x


@pytest.mark.parametrize("alpha", [None, 1e-6, 0.05])
def test_categorical_pixels_give_exact_entropy(alpha: float | None) -> None:
    """Piecewise-constant flow density K·π_d[⌊K y_d⌋] per pixel: the bound is tight, and the
    P(x)-weighted bpd over every outcome equals the entropy Σ_d H(π_d) / (D ln 2)."""
    torch.manual_seed(1)
    probs, x, p_x = _categorical_case()
    k = probs.shape[1]
    ds = discrete_dataset(k, (3,))
    deq = make_dequantizer("uniform", ds, logit_alpha=alpha)

    def log_p_y(y: Tensor) -> Tensor:
        cell = torch.floor(y * k).long().clamp(0, k - 1)
        per = torch.log(k * probs[torch.arange(3), cell])
        return per.sum(1)

    log_p = log_p_y if alpha is None else pushforward_through_logit(log_p_y, alpha)
    w, log_weight = deq(x)
    bpd = flow_bits_per_dim(log_p(w), log_weight, deq.dims)
    entropy_bits = float(-(probs * torch.log2(probs)).sum()) / 3
    assert float((p_x * bpd).sum()) == pytest.approx(entropy_bits, abs=1e-9)
    # per outcome it is exact: −log2 P(x) / D
    assert torch.allclose(bpd, -torch.log2(p_x) / 3, atol=1e-9)
    # and so is the importance-weighted estimate, for any number of samples
    iw = deq.iw_log_likelihood(x, log_p, k=5)
    assert torch.allclose(iw, torch.log(p_x), atol=1e-9)


def test_logit_composed_in_or_left_out_changes_no_bpd() -> None:
    """The same model (a product of Beta(2, 3) densities on y) measured on digits with and
    without the logit composed in: identical bpd with the same noise (≤ 1e-6; float64, since
    the test's own pushforward recomputes y from w, which float32 cannot do near α)."""
    ds = data.load("digits")
    x = ds.test.double()

    def log_p_y(y: Tensor) -> Tensor:  # Beta(2, 3): 12 y (1 − y)^2
        return (math.log(12) + torch.log(y) + 2 * torch.log1p(-y)).reshape(len(y), -1).sum(1)

    results = []
    for alpha in (None, 0.05, 1e-6):
        deq = make_dequantizer("uniform", ds, logit_alpha=alpha)
        torch.manual_seed(7)
        w, log_weight = deq(x)
        log_p = log_p_y if alpha is None else pushforward_through_logit(log_p_y, alpha)
        results.append(flow_bits_per_dim(log_p(w), log_weight, deq.dims))
    assert torch.isfinite(results[0]).all()
    for other in results[1:]:
        assert (other - results[0]).abs().max().item() <= 1e-6
