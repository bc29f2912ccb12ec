"""``gaussian``: a full-covariance Gaussian, the affine flow every leaderboard needs as a row.

``z = A (x − μ)``: with ``parameterization="cholesky"``, ``A`` is lower triangular with a
positive diagonal ``exp(ℓ)`` (so ``Σ⁻¹ = AᵀA`` is the precision in Cholesky form, density in
one matrix product, sampling by a triangular solve); with ``"lu"``, ``A = PLU`` is a general
invertible matrix (a one-layer affine flow). Either way ``log|det ∂z/∂x| = Σ ℓ`` and maximum
likelihood recovers the sample mean and covariance. A context shifts the mean and scales the
axes linearly: ``z = exp(G c) ⊙ A (x − μ − M c)`` (``M``, ``G`` zero-initialised).

References:
    The "Gaussian" rows of Papamakarios et al., MAF (NeurIPS 2017), Table 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.flows.base import Flow, Layer
from harness.flows.families._shared import vector_dim
from harness.flows.layers.linear import LULinear
from harness.flows.zoo import register

__all__ = ["ContextShift", "TriangularLinear", "gaussian"]


class ContextShift(Layer):
    """``y = (x − μ − M c) ⊙ exp(G c)`` (without a context: ``y = x − μ``)."""

    def __init__(self, features: int, context_dim: int | None):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(features))
        self.ctx = None
        if context_dim is not None:
            self.ctx = nn.Linear(context_dim, 2 * features, bias=False)
            nn.init.zeros_(self.ctx.weight)

    def _terms(self, context: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if self.ctx is None or context is None:
            return self.loc, None
        shift, log_scale = self.ctx(context).chunk(2, dim=-1)
        return self.loc + shift, log_scale

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        loc, log_scale = self._terms(context)
        y = x - loc
        log_det = x.new_zeros(x.shape[0]) if with_log_det else None
        if log_scale is not None:
            y = y * log_scale.exp()
            log_det = log_scale.sum(-1) if with_log_det else None
        return y, self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        loc, log_scale = self._terms(context)
        if log_scale is not None:
            y = y * torch.exp(-log_scale)
        return y + loc


class TriangularLinear(Layer):
    """``z = A y`` with ``A`` lower triangular, diagonal ``exp(ℓ)``; log-det ``Σ ℓ``."""

    def __init__(self, features: int):
        super().__init__()
        self.lower = nn.Parameter(torch.zeros(features, features))
        self.log_diag = nn.Parameter(torch.zeros(features))
        self.register_buffer("mask", torch.ones(features, features).tril(-1), persistent=False)

    def matrix(self) -> Tensor:
        """The matrix ``A``."""
        return self.lower * self.mask + torch.diag(self.log_diag.exp())

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        log_det = self.log_diag.sum().expand(x.shape[0]) if with_log_det else None
        return x @ self.matrix().T, self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        a = self.matrix()
        return torch.linalg.solve_triangular(a, y.T, upper=False).T


@register(
    "gaussian",
    "Gaussian: full-covariance Gaussian by maximum likelihood (an affine flow; reference row)",
    images=False,
    vectors=True,
    reference=True,
)
def gaussian(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    parameterization: str = "cholesky",
) -> Flow:
    """Build the full-covariance Gaussian (see the module doc)."""
    d = vector_dim("gaussian", event_shape)
    linear = TriangularLinear(d) if parameterization == "cholesky" else LULinear(d)
    return Flow([ContextShift(d, context_dim), linear], event_shape, context_dim)
