"""Dequantization: from data ``x`` to the flow's input ``w`` with every log-weight accounted for.

A :class:`Dequantizer` maps a batch of data to ``(w, log_weight)`` with

.. math::
    \\log P(x) \\ge \\mathbb{E}_{u \\sim q(\\cdot|x)}
    [\\log p_\\text{flow}(w) + \\log\\text{weight}]
    \\quad\\text{(discrete)}, \\qquad
    \\log p(x) = \\log p_\\text{flow}(w) + \\log\\text{weight} \\quad\\text{(continuous)}.

Discrete schemes (Theis et al. 2016; Ho et al. 2019 Flow++, arXiv:1902.00275) add noise
``u ∈ [0, 1)^D`` drawn from ``q(u | x)`` — uniform, or a learned conditional flow
(:mod:`harness.data.variational`) — scale to ``y = (x + u) / K ∈ [0, 1)^D`` and optionally
apply the logit (:mod:`harness.data.preprocess`). Then

.. math::
    \\log\\text{weight} = -D \\ln K + \\log\\left|\\det \\tfrac{\\partial w}{\\partial y}\\right|
        - \\log q(u \\mid x),

so ``bits_per_dim(log p_flow(w) + log_weight, D)`` is the bound in bits per dimension of the
discrete data (``docs/protocols.md``, "Bits per dimension"), the same with or without the
logit composed in. Glow's centring (``x / n_bins − 0.5``) is the option ``shift=-0.5`` (a
translation: no Jacobian).

The importance-weighted bound (Burda et al. 2016; Flow++ §3.1) with ``k`` samples,
``log (1/k) Σ_j exp(log p_flow(w_j) + log_weight_j)``, is :meth:`Dequantizer.iw_log_likelihood`;
it is ≤ log P(x), non-decreasing in ``k`` on average, and equal to the single-sample bound in
expectation at ``k = 1``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from harness.registry import Registry

from .dataset import DataSet
from .errors import DataError
from .preprocess import check_alpha, logit_forward, logit_inverse

__all__ = [
    "DEQUANTIZERS",
    "Dequantizer",
    "NoDequantizer",
    "UniformDequantizer",
    "compatible",
    "make_dequantizer",
    "schemes",
]

#: factories ``factory(ds, **options) -> Dequantizer``; meta ``kinds``: data kinds it serves
DEQUANTIZERS: Registry[Callable[..., Dequantizer]] = Registry("dequantization scheme")

_REASONS = {
    ("none", "discrete"): (
        "discrete data need dequantization ('uniform' or 'variational'): a density on "
        "integer points has unbounded likelihood"
    ),
    ("uniform", "continuous"): "uniform dequantization of continuous data makes no sense",
    ("variational", "continuous"): (
        "variational dequantization of continuous data makes no sense"
    ),
}


class Dequantizer(nn.Module):
    """Base: ``forward(x) -> (w, log_weight)``; subclasses draw the noise ``u`` and ``log q``.

    Attributes:
        scheme: the registry name.
        model_shape: the event shape the flow sees (the data's event shape).
        dims: ``D``, the number of data dimensions (for bits per dimension).
        levels: ``K`` for discrete data, None for continuous data.
        bound_is_exact: True when ``log_weight`` gives the exact log-likelihood.
    """

    scheme: str = ""
    bound_is_exact: bool = False

    def __init__(
        self,
        event_shape: tuple[int, ...],
        levels: int | None,
        logit_alpha: float | None = None,
        shift: float = 0.0,
    ):
        super().__init__()
        self.model_shape = tuple(int(s) for s in event_shape)
        self.dims = int(math.prod(self.model_shape))
        self.levels = levels
        self.logit_alpha = None if logit_alpha is None else check_alpha(logit_alpha)
        if logit_alpha is not None and shift != 0.0:
            raise DataError("dequantizer: choose logit_alpha or shift, not both")
        self.shift = float(shift)

    # ── subclasses ──────────────────────────────────────────────────────────────────
    def noise(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``u ∈ [0, 1)^shape(x)`` and ``log q(u | x)`` of shape ``(B,)``."""
        raise NotImplementedError

    # ── the common path ─────────────────────────────────────────────────────────────
    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.model_shape:
            raise DataError(
                f"{self.scheme} dequantizer: batch has shape {tuple(x.shape)}, expected "
                f"(B, {', '.join(map(str, self.model_shape))})"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Draw fresh noise: ``w`` (the flow's input) and ``log_weight`` ``(B,)`` (see module)."""
        self._check(x)
        assert self.levels is not None
        u, log_q = self.noise(x)
        y = (x + u) / self.levels
        log_weight = -log_q - self.dims * math.log(self.levels)
        if self.logit_alpha is not None:
            w, log_det = logit_forward(y, self.logit_alpha)
            return w, log_weight + log_det
        return y + self.shift, log_weight

    def to_data(self, w: Tensor) -> Tensor:
        """Flow-space samples back to data: integer levels in ``[0, K)`` as float."""
        assert self.levels is not None
        y = logit_inverse(w, self.logit_alpha) if self.logit_alpha is not None else w - self.shift
        return torch.floor(y * self.levels).clamp_(0, self.levels - 1)

    def iw_log_likelihood(
        self,
        x: Tensor,
        log_prob_fn: Callable[[Tensor], Tensor],
        k: int,
        *,
        max_batch: int = 8192,
    ) -> Tensor:
        """Importance-weighted bound ``log (1/k) Σ_j exp(log p_flow(w_j) + log_weight_j)``.

        Arguments:
            x: a batch of data ``(B, *event_shape)``.
            log_prob_fn: the flow's log-density ``w → (B',)`` (any batch size).
            k: number of noise samples per example (Flow++ evaluates with 4,096).
            max_batch: at most this many rows are passed to ``log_prob_fn`` at once.

        Returns:
            ``(B,)`` nats; runs under ``torch.no_grad()``.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise DataError(f"iw_log_likelihood: k must be a positive int, got {k!r}")
        self._check(x)
        b = x.shape[0]
        per = max(1, min(k, max_batch // max(b, 1)))
        parts, done = [], 0
        with torch.no_grad():
            while done < k:
                m = min(per, k - done)
                xr = x.repeat(m, *([1] * len(self.model_shape)))  # sample-major (m·B, …)
                w, lw = self(xr)
                ll = (log_prob_fn(w) + lw).reshape(m, b)
                parts.append(torch.logsumexp(ll, dim=0))
                done += m
            return torch.logsumexp(torch.stack(parts), dim=0) - math.log(k)

    def params(self) -> dict[str, Any]:
        """Flat params to record with a run."""
        return {
            "dequant.scheme": self.scheme,
            "dequant.logit_alpha": self.logit_alpha,
            "dequant.shift": self.shift,
        }

    def extra_repr(self) -> str:
        return (
            f"scheme={self.scheme}, model_shape={self.model_shape}, levels={self.levels}, "
            f"logit_alpha={self.logit_alpha}, shift={self.shift}"
        )


class NoDequantizer(Dequantizer):
    """Continuous data: ``w = x`` (plus an optional ``shift``), ``log_weight = 0``: exact."""

    scheme = "none"
    bound_is_exact = True

    def __init__(self, event_shape: tuple[int, ...], shift: float = 0.0):
        super().__init__(event_shape, levels=None, shift=shift)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        return x + self.shift if self.shift else x, x.new_zeros(x.shape[0])

    def to_data(self, w: Tensor) -> Tensor:
        return w - self.shift if self.shift else w

    def iw_log_likelihood(
        self, x: Tensor, log_prob_fn: Callable[[Tensor], Tensor], k: int, *, max_batch: int = 8192
    ) -> Tensor:
        """Exact: ``log p_flow(x)`` (``k`` is ignored)."""
        self._check(x)
        with torch.no_grad():
            w, lw = self(x)
            return log_prob_fn(w) + lw


class UniformDequantizer(Dequantizer):
    """``u ∼ U[0, 1)^D``: ``log q = 0`` (Theis et al. 2016; RealNVP; Glow)."""

    scheme = "uniform"

    def noise(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.rand_like(x), x.new_zeros(x.shape[0])


@DEQUANTIZERS.register("none", summary="continuous data as they are", kinds=("continuous",))
def _make_none(ds: DataSet, *, shift: float = 0.0) -> Dequantizer:
    return NoDequantizer(ds.event_shape, shift=shift)


@DEQUANTIZERS.register(
    "uniform", summary="x + u, u ~ U[0,1)^D, scaled by 1/K", kinds=("discrete",)
)
def _make_uniform(
    ds: DataSet, *, logit_alpha: float | None = None, shift: float = 0.0
) -> Dequantizer:
    return UniformDequantizer(ds.event_shape, ds.levels, logit_alpha=logit_alpha, shift=shift)


def schemes() -> list[str]:
    """Every registered dequantization scheme, sorted."""
    _ensure_loaded()
    return DEQUANTIZERS.names()


def compatible(scheme: str, kind: str) -> tuple[bool, str]:
    """Whether ``scheme`` applies to data of ``kind``, and why not (``""`` when it does).

    Raises the registry's ``UnknownNameError`` for an unknown scheme and ``DataError`` for a
    kind other than ``"continuous"`` / ``"discrete"``.
    """
    _ensure_loaded()
    meta = DEQUANTIZERS.entry(scheme).meta
    if kind not in ("continuous", "discrete"):
        raise DataError(f"compatible: kind must be 'continuous' or 'discrete', got {kind!r}")
    if kind in meta["kinds"]:
        return True, ""
    return False, _REASONS.get((scheme, kind), f"'{scheme}' does not apply to {kind} data")


def make_dequantizer(scheme: str, ds: DataSet, **options: Any) -> Dequantizer:
    """Build the dequantizer ``scheme`` for data set ``ds``; refuses unfit pairs and options.

    Options: ``uniform`` — ``logit_alpha`` (float in (0, 0.5), default off), ``shift``;
    ``none`` — ``shift``; ``variational`` — see :mod:`harness.data.variational`.
    """
    ok, why = compatible(scheme, ds.kind)
    if not ok:
        raise DataError(f"dequantization '{scheme}' on data set '{ds.name}': {why}")
    factory = DEQUANTIZERS.get(scheme)
    valid = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    bad = sorted(set(options) - set(valid))
    if bad:
        raise DataError(
            f"dequantization '{scheme}': unknown option(s) {', '.join(bad)}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    return factory(ds, **options)


#: Modules holding further schemes; each registers its scheme when imported. They are imported
#: here on first use, by name, so that they may import this module without a cycle.
SCHEME_MODULES = ("harness.data.variational",)


def _ensure_loaded() -> None:
    for module in SCHEME_MODULES:
        importlib.import_module(module)
