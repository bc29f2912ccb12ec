"""The seed's worked example: maximum likelihood by gradient recovers the sample moments.

An affine flow ``z = A x + b`` has density N(x; μ, Σ) with ``Σ = (AᵀA)⁻¹`` and ``μ = −A⁻¹b``;
its MLE on data is the sample mean and the (biased, 1/n) sample covariance — closed forms to
compare with, read off the fitted flow through its autograd Jacobian (so the check does not
trust the flow's own parameterization).
"""

from __future__ import annotations

import pytest
import torch

from harness import flows


def _data(n: int = 400) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.5, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.4, 0.3, 0.4]], dtype=torch.float64)
    return torch.randn(n, 3, generator=g, dtype=torch.float64) @ mix.T + torch.tensor(
        [1.0, -2.0, 0.5], dtype=torch.float64
    )


def _fit(flow: flows.Flow, x: torch.Tensor) -> None:
    opt = torch.optim.LBFGS(
        flow.parameters(), lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -flow.log_prob(x).mean()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)


def _moments(flow: flows.Flow) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of an affine flow from its Jacobian and its image of 0."""
    zero = torch.zeros(3, dtype=torch.float64)
    a = torch.autograd.functional.jacobian(lambda v: flow.transform(v[None])[0][0], zero)
    b = flow.transform(zero[None])[0][0].detach()
    return -torch.linalg.solve(a, b), torch.linalg.inv(a.T @ a)


@pytest.mark.parametrize("parameterization", ["cholesky", "lu"])
def test_gradient_mle_recovers_the_sample_mean_and_covariance(parameterization: str) -> None:
    torch.manual_seed(0)
    x = _data()
    flow = flows.build("gaussian", 3, parameterization=parameterization).double()
    _fit(flow, x)
    mean, cov = _moments(flow)
    sample_cov = torch.cov(x.T, correction=0)
    assert torch.allclose(mean, x.mean(0), atol=1e-6)
    assert torch.allclose(cov, sample_cov, atol=1e-6)
    # and the fitted log-likelihood is the closed-form Gaussian one
    ref = torch.distributions.MultivariateNormal(x.mean(0), sample_cov).log_prob(x).mean()
    with torch.no_grad():
        assert abs(float(flow.log_prob(x).mean()) - float(ref)) <= 1e-8


def test_conditional_gaussian_learns_a_context_dependent_mean() -> None:
    torch.manual_seed(0)
    c = torch.randn(600, 2, dtype=torch.float64)
    x = _data(600) + c @ torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]], dtype=torch.float64)
    flow = flows.build("gaussian", 3, context_dim=2).double()
    opt = torch.optim.Adam(flow.parameters(), lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        (-flow.log_prob(x, c).mean()).backward()
        opt.step()
    # the learned mean shift M (first rows of the context map) is the generating matrix
    shift = flow.layers[0].ctx.weight[:3].detach()  # type: ignore[index]
    assert torch.allclose(shift, torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5]]).double(),
                          atol=0.15)  # fmt: skip
