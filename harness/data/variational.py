"""Variational dequantization (Ho et al. 2019, Flow++, arXiv:1902.00275, §3.1).

The noise ``u ∈ (0, 1)^D`` is drawn from a conditional flow ``q(u | x)`` trained jointly with
the density model on the variational bound

.. math::
    \\log P(x) \\ge \\mathbb{E}_{u \\sim q(\\cdot|x)}
        \\left[\\log p_\\text{flow}(w(x, u)) + \\log\\text{weight}(x, u)\\right],
    \\qquad \\log\\text{weight} = -D \\ln K + \\log|\\det \\partial w/\\partial y|
        - \\log q(u \\mid x),

evaluated with the importance-weighted bound over ``k`` samples
(:meth:`~harness.data.dequantize.Dequantizer.iw_log_likelihood`; ``docs/protocols.md``, "Bits per
dimension").

The sampler: ``z ∼ Logistic(0, 1)^D``, ``ε = g(z; c)`` with ``g`` a conditional flow from
:mod:`harness.flows` (its ``transform``, so the log-det is fused with the sampling pass),
``u = sigmoid(ε)``; the context ``c = x / (K − 1) − ½`` is the flattened data. Then

.. math::
    \\log q(u \\mid x) = \\log \\mathrm{Logistic}(z)
        - \\log|\\det \\partial ε/\\partial z| - \\sum_i \\log \\sigma'(ε_i).

Flow++ draws ``z`` from a Gaussian; a logistic base is used here because ``sigmoid`` of a
logistic variable is exactly uniform, so a freshly initialised ``g`` (the identity, as the zoo's
flows are) makes ``q`` *exactly* uniform dequantization and training can only tighten the
bound from there.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .dataset import DataSet
from .dequantize import DEQUANTIZERS, Dequantizer
from .errors import DataError
from .preprocess import sum_except_batch

__all__ = ["VariationalDequantizer"]

_EPS = 1e-6  # keeps the logistic draw finite: v ∈ [ε, 1 − ε]


def _log_sigmoid_prime(t: Tensor) -> Tensor:
    """``log σ'(t) = −softplus(t) − softplus(−t)``, which is also the logistic log-density."""
    return -F.softplus(t) - F.softplus(-t)


class VariationalDequantizer(Dequantizer):
    """``u ∼ q(u | x)``, a conditional flow from :mod:`harness.flows` (see the module)."""

    scheme = "variational"

    def __init__(
        self,
        event_shape: tuple[int, ...],
        levels: int,
        flow: str = "realnvp",
        flow_options: dict[str, Any] | None = None,
        logit_alpha: float | None = None,
        shift: float = 0.0,
    ):
        super().__init__(event_shape, levels, logit_alpha=logit_alpha, shift=shift)
        from harness import flows  # imported here: only this scheme needs the flow library

        try:
            self.q = flows.build(
                flow, event_shape=self.dims, context_dim=self.dims, **(flow_options or {})
            )
        except (ValueError, TypeError) as err:
            raise DataError(f"variational dequantization: q flow '{flow}': {err}") from None
        self.flow_name = flow
        self.flow_options = dict(flow_options or {})

    def context(self, x: Tensor) -> Tensor:
        """The conditioning vector: ``x / (K − 1) − ½`` flattened, shape ``(B, D)``."""
        assert self.levels is not None
        return x.reshape(x.shape[0], -1) / max(self.levels - 1, 1) - 0.5

    def q_sample_from(self, z: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map base draws ``z`` ``(B, D)`` to ``u`` (shaped like ``x``) and ``log q(u | x)``."""
        eps, log_det = self.q.transform(z, self.context(x))
        assert log_det is not None
        u = torch.sigmoid(eps)
        log_q = sum_except_batch(_log_sigmoid_prime(z)) - log_det
        log_q = log_q - sum_except_batch(_log_sigmoid_prime(eps))
        return u.reshape(x.shape), log_q

    def noise(self, x: Tensor) -> tuple[Tensor, Tensor]:
        v = torch.rand(x.shape[0], self.dims, device=x.device, dtype=x.dtype)
        v = v.clamp(_EPS, 1 - _EPS)
        z = torch.log(v) - torch.log1p(-v)
        return self.q_sample_from(z, x)

    def params(self) -> dict[str, Any]:
        out = super().params()
        out["dequant.flow"] = self.flow_name
        out.update({f"dequant.flow.{k}": v for k, v in self.flow_options.items()})
        return out


@DEQUANTIZERS.register(
    "variational",
    summary="x + u, u ~ q(u|x) a conditional flow trained jointly (Flow++)",
    kinds=("discrete",),
)
def _make_variational(
    ds: DataSet,
    *,
    flow: str = "realnvp",
    flow_options: dict[str, Any] | None = None,
    logit_alpha: float | None = None,
    shift: float = 0.0,
) -> Dequantizer:
    assert ds.levels is not None
    return VariationalDequantizer(
        ds.event_shape, ds.levels, flow, flow_options, logit_alpha=logit_alpha, shift=shift
    )
