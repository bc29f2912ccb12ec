"""Test-set likelihood: NLL in nats per example and bits per dimension.

For a batch ``x`` the dequantizer gives the flow's input ``w`` and a per-example weight, and

.. math::
    \\ell(x) = \\log p_\\text{flow}(w) + \\text{log\\_weight}(x, w)

is the exact log-density of continuous data, or a lower bound on the log-probability of
discrete data (its dequantization constant, −D ln K for K levels, and every preprocessing
Jacobian are in ``log_weight``). Then ``eval/nll`` = −mean ℓ (nats per example) and

.. math::
    \\text{bpd} = \\frac{-\\bar\\ell}{D \\ln 2}

(``docs/protocols.md``, "Bits per dimension").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["batched_log_likelihood", "bpd_from_nll", "evaluate_likelihood"]


def bpd_from_nll(nll_nats: float, dims: int) -> float:
    """Bits per dimension of a negative log-likelihood in nats per example."""
    return nll_nats / (dims * math.log(2.0))


@torch.no_grad()
def batched_log_likelihood(
    fn: Callable[..., Tensor], data: Tensor, batch_size: int, device: torch.device,
    context: Tensor | None = None,
) -> Tensor:
    """``fn(x)`` (or ``fn(x, c)`` with a per-example ``context``) over ``data`` in batches on
    ``device``; returns (N,) on the CPU."""
    out = []
    for i in range(0, len(data), batch_size):
        x = data[i : i + batch_size].to(device)
        if context is None:
            y = fn(x)
        else:
            y = fn(x, context[i : i + batch_size].to(device))
        out.append(y.detach().double().cpu())
    return torch.cat(out)


def evaluate_likelihood(flow, deq, data: Tensor, batch_size: int, device: torch.device,
                        discrete: bool, context: Tensor | None = None) -> dict[str, float]:
    """``{"nll", "nll_se", "bpd"?}`` of ``data`` (bpd for discrete data only); a conditional
    flow gets each example's ``context``.

    ``nll_se`` is the standard error of the mean over examples (MAF reports ±2 s.e.).
    """

    def ll(x: Tensor, c: Tensor | None = None) -> Tensor:
        w, log_weight = deq(x)
        return flow.log_prob(w, context=c) + log_weight

    values = batched_log_likelihood(ll, data, batch_size, device, context)
    finite = torch.isfinite(values)
    out: dict[str, float] = {}
    if not bool(finite.all()):
        out["nonfinite"] = float((~finite).sum())
    nll = float(-values.mean())
    out["nll"] = nll
    out["nll_se"] = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0
    if discrete:
        out["bpd"] = bpd_from_nll(nll, deq.dims)
    return out
