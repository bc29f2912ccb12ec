"""Preprocessing steps with their log-dets: pure functions.

Every step maps the dequantized data ``y ∈ [0, 1]^D`` towards the flow's input ``w`` and returns
``log |det ∂w/∂y|`` per example, which enters ``eval/bpd`` (``docs/protocols.md``, "Bits per
dimension"), so that the same model measured with or without a step composed in gives the
same bits per dimension.

Logit (Dinh et al. 2017 RealNVP §4.1; Papamakarios et al. 2017 MAF; Grathwohl et al. 2019
FFJORD — α = 1e-6 for MNIST, 0.05 for CIFAR-10):

.. math::
    s = \\alpha + (1 - 2\\alpha) y, \\qquad w = \\operatorname{logit}(s),

    \\log\\left|\\det \\frac{\\partial w}{\\partial y}\\right|
        = D \\ln(1 - 2\\alpha) - \\sum_i [\\ln s_i + \\ln(1 - s_i)],

computed from ``w`` as ``D ln(1 − 2α) + Σ [softplus(w) + softplus(−w)]`` (since
``ln s = −softplus(−w)`` and ``ln(1 − s) = −softplus(w)``), which is finite wherever ``w`` is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_alpha", "logit_forward", "logit_inverse", "sum_except_batch"]


def sum_except_batch(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``(B, ...) → (B,)``."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def check_alpha(alpha: float) -> float:
    """Validate the logit's α: it must lie in (0, 0.5) (α = 0 makes logit(0) = −∞)."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < 0.5:
        raise ValueError(
            f"logit_alpha must be a number in (0, 0.5), got {alpha!r}; "
            "use 1e-6 (MNIST in MAF/FFJORD) or 0.05 (CIFAR-10, RealNVP)"
        )
    return float(alpha)


def logit_forward(y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """``w = logit(α + (1 − 2α) y)`` and ``log |det ∂w/∂y|`` per example, shape ``(B,)``."""
    alpha = check_alpha(alpha)
    s = alpha + (1.0 - 2.0 * alpha) * y
    w = torch.log(s) - torch.log1p(-s)
    d = y[0].numel()
    log_det = d * math.log1p(-2.0 * alpha) + sum_except_batch(F.softplus(w) + F.softplus(-w))
    return w, log_det


def logit_inverse(w: Tensor, alpha: float) -> Tensor:
    """``y = (sigmoid(w) − α) / (1 − 2α)``, the inverse of :func:`logit_forward`."""
    alpha = check_alpha(alpha)
    return (torch.sigmoid(w) - alpha) / (1.0 - 2.0 * alpha)
