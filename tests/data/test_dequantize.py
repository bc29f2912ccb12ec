"""Dequantizers: contract, Jacobians against autograd, inversion, refusals."""

from __future__ import annotations

import math

import pytest
import torch

from harness import data
from harness.data import DataError, make_dequantizer
from harness.data.preprocess import logit_forward, logit_inverse
from harness.registry import UnknownNameError

from ._helpers import discrete_dataset


def test_compatibility_table() -> None:
    assert data.compatible("none", "continuous") == (True, "")
    assert data.compatible("uniform", "discrete") == (True, "")
    ok, why = data.compatible("uniform", "continuous")
    assert not ok and why == "uniform dequantization of continuous data makes no sense"
    ok, why = data.compatible("none", "discrete")
    assert not ok and "discrete data need dequantization" in why
    with pytest.raises(UnknownNameError, match="did you mean 'uniform'"):
        data.compatible("unifrom", "discrete")
    with pytest.raises(DataError, match="kind must be"):
        data.compatible("none", "images")


def test_make_dequantizer_refuses_unfit_pairs_and_options() -> None:
    moons, digits = data.load("moons"), data.load("digits")
    with pytest.raises(DataError, match="'uniform' on data set 'moons'.*makes no sense"):
        make_dequantizer("uniform", moons)
    with pytest.raises(DataError, match="'none' on data set 'digits'"):
        make_dequantizer("none", digits)
    with pytest.raises(DataError, match="valid options: logit_alpha, shift"):
        make_dequantizer("uniform", digits, logit_alfa=0.05)
    with pytest.raises(ValueError, match="logit_alpha must be a number in \\(0, 0.5\\)"):
        make_dequantizer("uniform", digits, logit_alpha=0.0)
    with pytest.raises(DataError, match="not both"):
        make_dequantizer("uniform", digits, logit_alpha=0.05, shift=-0.5)


def test_none_is_exact_identity() -> None:
    ds = data.load("8gaussians")
    deq = make_dequantizer("none", ds)
    x = ds.test[:16]
    w, lw = deq(x)
    assert torch.equal(w, x) and torch.equal(lw, torch.zeros(16))
    assert deq.bound_is_exact and deq.model_shape == (2,) and deq.dims == 2
    assert torch.equal(deq.to_data(w), x)
    lp = ds.true_log_prob
    assert lp is not None and torch.allclose(deq.iw_log_likelihood(x, lp, k=10), lp(x))
    assert not any(True for _ in deq.parameters())


@pytest.mark.parametrize("alpha,shift", [(None, 0.0), (None, -0.5), (0.05, 0.0), (1e-6, 0.0)])
def test_uniform_contract_and_round_trip(alpha: float | None, shift: float) -> None:
    ds = data.load("digits")
    deq = make_dequantizer("uniform", ds, logit_alpha=alpha, shift=shift)
    assert deq.model_shape == (1, 8, 8) and deq.dims == 64 and not deq.bound_is_exact
    x = ds.train[:32]
    w1, lw1 = deq(x)
    w2, _ = deq(x)
    assert w1.shape == x.shape and lw1.shape == (32,) and w1.dtype == x.dtype
    assert not torch.equal(w1, w2)  # fresh noise each call
    assert torch.equal(deq.to_data(w1), x)
    if alpha is None:
        y = w1 - shift
        assert ((y >= 0) & (y < 1)).all()
        assert torch.equal(torch.floor(y * 17), x)
        assert torch.allclose(lw1, torch.full((32,), -64 * math.log(17)))


def test_logit_log_det_matches_autograd_jacobian() -> None:
    """The closed-form log-det equals log |det J| of the full Jacobian from autograd."""
    torch.manual_seed(0)
    y = torch.rand(3, 5, dtype=torch.float64)
    for alpha in (1e-6, 0.05, 0.2):
        w, ld = logit_forward(y, alpha)
        for i in range(3):
            jac = torch.autograd.functional.jacobian(
                lambda v, a=alpha: logit_forward(v[None], a)[0][0], y[i]
            )
            assert float(torch.linalg.slogdet(jac)[1]) == pytest.approx(float(ld[i]), abs=1e-10)
        assert torch.allclose(logit_inverse(w, alpha), y, atol=1e-12)


def test_iw_log_likelihood_shapes_and_k_validation() -> None:
    torch.manual_seed(0)
    ds = discrete_dataset(4, (2, 3))
    deq = make_dequantizer("uniform", ds)
    calls: list[int] = []

    def log_p(w: torch.Tensor) -> torch.Tensor:
        calls.append(len(w))
        return -(w**2).reshape(len(w), -1).sum(1)

    out = deq.iw_log_likelihood(ds.test, log_p, k=10, max_batch=24)
    assert out.shape == (8,) and torch.isfinite(out).all()
    assert max(calls) <= 24 and sum(calls) == 80
    with pytest.raises(DataError, match="k must be a positive int"):
        deq.iw_log_likelihood(ds.test, log_p, k=0)
    with pytest.raises(DataError, match="expected \\(B, 2, 3\\)"):
        deq(torch.zeros(4, 6))


def test_dequantizer_follows_input_dtype() -> None:
    ds = data.load("digits")
    deq = make_dequantizer("uniform", ds, logit_alpha=0.05)
    w, lw = deq(ds.test[:4].double())
    assert w.dtype == torch.float64 and lw.dtype == torch.float64
