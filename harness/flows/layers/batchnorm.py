"""Invertible batch normalisation: a per-feature affine map normalised by batch statistics.

Per feature ``k`` (axis 1: vector entries, or image channels with the statistics pooled over
the batch and the pixels), with learned ``log γ`` and ``β`` (both 0 when fresh):

.. math::

    y_k = \\gamma_k \\, \\frac{x_k - \\mu_k}{\\sqrt{\\sigma^2_k + \\epsilon}} + \\beta_k,
    \\qquad
    \\log \\Big|\\det \\frac{\\partial y}{\\partial x}\\Big|
    = P \\sum_k \\Big[\\log \\gamma_k - \\tfrac12 \\log(\\sigma^2_k + \\epsilon)\\Big]

with ``P`` the number of pixels (1 for vectors). The statistics ``(μ, σ²)`` are:

* **training mode**: the batch's own mean and (biased) variance, differentiated through as
  in any batch normalisation; the log-det above is the Jacobian of each sample's map with
  the batch statistics held fixed (the convention of the MAF and RealNVP papers), the same
  for every sample of the batch. Each training forward also updates the running averages,
  ``running ← (1 − momentum) · running + momentum · batch`` (no gradient), and keeps the
  batch's statistics for :meth:`BatchNorm.inverse`.
* **evaluation mode**: the running averages, so the layer is one fixed affine bijection.

:meth:`BatchNorm.inverse` is exact in both modes: in evaluation mode it inverts the
running-statistics map; in training mode it inverts the map of the *last training forward*
(the statistics that forward kept), so ``inverse(forward(X)) = X`` for the batch ``X`` that
forward saw. Before any training forward those kept statistics are the running averages'
initial values (mean 0, variance 1). They are not saved with the weights (a reloaded layer
inverts with the running averages in evaluation mode, which is how sampling and evaluation
run); the running averages are.

References:
    Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density Estimation",
    NeurIPS 2017, https://arxiv.org/abs/1705.07057 (its batch normalisation layer);
    Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017,
    https://arxiv.org/abs/1605.08803.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from harness.flows.base import Layer
from harness.flows.errors import HyperParameterError
from harness.flows.layers.autoregressive import Autoregressive
from harness.flows.layers.coupling import MaskCoupling, SplitCoupling

__all__ = ["BatchNorm", "with_batch_norm"]


def _per_feature(t: Tensor, x: Tensor) -> Tensor:
    """``(C,)`` → broadcastable against ``x`` of shape ``(B, C, …)``."""
    return t.view(1, -1, *([1] * (x.dim() - 2)))


class BatchNorm(Layer):
    """Invertible batch normalisation over axis 1 (see the module doc).

    Arguments:
        features: size of axis 1 (``D`` for vectors, ``C`` for images).
        momentum: weight of each training batch in the running averages.
        eps: added to the variance (``ε`` above).
    """

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in (0, 1], got {momentum}")
        if not eps > 0.0:
            raise ValueError(f"BatchNorm: eps must be > 0, got {eps}")
        self.momentum, self.eps = float(momentum), float(eps)
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        # the last training forward's statistics, for the training-mode inverse (not saved)
        self.register_buffer("batch_mean", torch.zeros(features), persistent=False)
        self.register_buffer("batch_var", torch.ones(features), persistent=False)

    def _batch_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dims = [0, *range(2, x.dim())]
        if x.shape[0] * math.prod(x.shape[2:]) < 2:
            raise ValueError(
                "BatchNorm: a training forward needs at least 2 values per feature for batch "
                f"statistics, got a batch of shape {tuple(x.shape)}; train with a larger "
                "batch, or call .eval() to use the running statistics"
            )
        mean = x.mean(dim=dims)
        var = (x - _per_feature(mean, x)).square().mean(dim=dims)
        return mean, var

    def _update(self, mean: Tensor, var: Tensor) -> None:
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1.0 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1.0 - m).add_(var.detach(), alpha=m)
            self.batch_mean.copy_(mean.detach())
            self.batch_var.copy_(var.detach())

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        if self.training:
            mean, var = self._batch_stats(x)
            self._update(mean, var)
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = torch.rsqrt(var + self.eps)
        scale = self.log_gamma.exp() * inv_std
        y = (x - _per_feature(mean, x)) * _per_feature(scale, x) + _per_feature(self.beta, x)
        log_det = None
        if with_log_det:
            pixels = math.prod(x.shape[2:])
            per_feature = self.log_gamma + torch.log(inv_std)  # log γ − ½ log(σ² + ε)
            log_det = (per_feature.sum() * pixels).expand(x.shape[0])
        return y, self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact inverse of the running-statistics map (evaluation mode) or of the last
        training forward's map (training mode); see the module doc."""
        if self.training:
            mean, var = self.batch_mean, self.batch_var
        else:
            mean, var = self.running_mean, self.running_var
        std_over_gamma = torch.sqrt(var + self.eps) * torch.exp(-self.log_gamma)
        return (y - _per_feature(self.beta, y)) * _per_feature(std_over_gamma, y) + _per_feature(
            mean, y
        )

    def extra_repr(self) -> str:
        return f"{self.log_gamma.numel()}, momentum={self.momentum}, eps={self.eps}"


def with_batch_norm(
    name: str, event_shape: tuple[int, ...], layers: list[Layer], enabled: bool
) -> list[Layer]:
    """``layers`` with a :class:`BatchNorm` after each *step* when ``enabled`` (the
    architectures' ``batch_norm`` hyper-parameter); unchanged otherwise.

    A step is a coupling or an autoregressive layer: a permutation between steps, or NICE's
    final scaling, gets none, as in the MAF paper (a batch normalisation after each
    autoregressive layer). Vectors ``(D,)`` only: on images the statistics of a multi-scale
    stack would need one layer per scale and channel count, which no protocol here needs.
    """
    if not isinstance(enabled, bool):
        raise HyperParameterError("batch_norm", f"must be true or false, got {enabled!r}")
    if not enabled:
        return layers
    if len(event_shape) != 1:
        raise HyperParameterError(
            "batch_norm",
            f"{name}: batch normalisation between layers is for vectors (D,), got event shape "
            f"{tuple(event_shape)}; flatten the images (data option flatten: true) or set "
            "batch_norm: false",
        )
    steps = (Autoregressive, MaskCoupling, SplitCoupling)
    out: list[Layer] = []
    for layer in layers:
        out.append(layer)
        if isinstance(layer, steps):
            out.append(BatchNorm(event_shape[0]))
    return out
