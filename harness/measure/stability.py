"""Stability diagnostics of a trained flow on a batch of test inputs.

- invertibility error: ``max`` and ``mean`` of ``|inverse(transform(w)) − w|`` (∞-norm per
  example), in the flow's working precision;
- log-det statistics over the batch;
- latent Gaussianity: the mean over dimensions of the Kolmogorov–Smirnov statistic of each
  latent coordinate against N(0, 1), and the mean excess kurtosis (both 0 for a perfect fit);
- whatever the flow's layers report through ``flow.stability()`` (saturated scales, the 1×1
  convolution's condition number, …).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import keys

__all__ = ["diagnose", "ks_statistic_normal"]


def ks_statistic_normal(z: Tensor) -> Tensor:
    """KS statistic of each column of ``z`` (N, D) against the standard normal CDF.

    .. math:: D_j = \\sup_t |F_{n,j}(t) − Φ(t)|, evaluated at the sorted sample points.
    """
    z = z.double()
    n = z.shape[0]
    s, _ = torch.sort(z, dim=0)
    cdf = 0.5 * (1 + torch.erf(s / math.sqrt(2.0)))
    i = torch.arange(1, n + 1, dtype=z.dtype, device=z.device).unsqueeze(1)
    d_plus = (i / n - cdf).max(dim=0).values
    d_minus = (cdf - (i - 1) / n).max(dim=0).values
    return torch.maximum(d_plus, d_minus)


@torch.no_grad()
def diagnose(flow, w: Tensor, context: Tensor | None = None) -> dict[str, float]:
    """``stab/*`` metrics of ``flow`` on flow inputs ``w`` (B, *event_shape)."""
    flow.eval()
    z, log_det = flow.transform(w, context=context)
    layer_stats = dict(flow.stability())
    back = flow.inverse(z, context=context)
    err = (back - w).flatten(1).abs().amax(dim=1)
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))
    zf = z.flatten(1)
    finite_rows = torch.isfinite(zf).all(dim=1)
    out = {
        keys.STAB_INV_ERR_MAX: float(err.max()),
        keys.STAB_INV_ERR_MEAN: (
            float(err[torch.isfinite(err)].mean())
            if bool(torch.isfinite(err).any())
            else float("inf")
        ),
        keys.STAB_LOGDET_MEAN: float(log_det.mean()),
        keys.STAB_LOGDET_STD: float(log_det.std()) if len(log_det) > 1 else 0.0,
        keys.STAB_LOGDET_MIN: float(log_det.min()),
        keys.STAB_LOGDET_MAX: float(log_det.max()),
    }
    zf = zf[finite_rows]
    if len(zf) > 1:
        out[keys.STAB_LATENT_KS] = float(ks_statistic_normal(zf).mean())
        centred = zf.double() - zf.double().mean(0)
        var = centred.pow(2).mean(0)
        kurt = centred.pow(4).mean(0) / var.pow(2).clamp_min(1e-300) - 3.0
        out[keys.STAB_LATENT_KURTOSIS] = float(kurt.mean())
    for k, v in layer_stats.items():
        out[k if k.startswith(keys.STAB_PREFIX) else f"{keys.STAB_PREFIX}{k}"] = float(v)
    return out
