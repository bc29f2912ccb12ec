"""Element-wise (univariate) bijections ``y = τ(x; θ)`` fed parameters by a conditioner.

Couplings and autoregressive layers share these: a layer's conditioner produces ``θ`` with the
parameters on the LEADING axis (``(n_params, *x.shape)``: each parameter a block of the
elements' shape, which is what a parameter-major conditioner output is, and what the spline's
reductions over bins want), and the element-wise transform returns the per-element
log-derivative ``log |∂y/∂x|`` (summed by the layer), or ``None`` where it is 0.

- :class:`Affine`: ``y = x · exp(s) + t`` with a bounded log-scale ``s = b · tanh(r / b)``
  (``"tanh"``), ``s = (2b/π) · atan(r / b)`` (``"atan"``, a softer clamp) or ``s = r``
  (``"none"``); ``log |∂y/∂x| = s``.
- :class:`Additive`: ``y = x + t`` (NICE; volume preserving).
- :class:`Spline`: a monotone rational-quadratic spline on ``[−B, B]`` with identity tails
  (Durkan et al. 2019), numerics in :mod:`harness.flows.layers.splines`.

Each also says what the stability diagnostics need: :meth:`diagnose` turns the auxiliary
tensor kept from the last forward (the scales, or the inputs) into ``stab/*`` numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from harness import keys
from harness.flows.base import StabilityAccumulator
from harness.flows.layers.splines import rq_spline_packed

__all__ = ["SCALE_CLAMPS", "Additive", "Affine", "Elementwise", "Spline", "bound_scale"]

SCALE_CLAMPS = ("tanh", "atan", "none")


def bound_scale(raw: Tensor, bound: float, clamp: str) -> Tensor:
    """Map an unconstrained ``raw`` log-scale into ``(−bound, bound)`` (identity near 0 for
    ``tanh``; slope 2/π for ``atan``; ``none`` leaves it unbounded)."""
    if clamp == "tanh":  # b·tanh(r/b) = 2b·σ(2r/b) − b: sigmoid is far cheaper than tanh on CPU
        return torch.sigmoid(raw * (2.0 / bound)).mul(2.0 * bound).sub(bound)
    if clamp == "atan":
        return (2.0 * bound / math.pi) * torch.atan(raw / bound)
    return raw


class Elementwise:
    """A univariate bijection family; ``n_params`` parameters per element."""

    n_params: int = 0

    def forward(
        self, x: Tensor, theta: Tensor, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(y, log|∂y/∂x| or None, aux for diagnose or None)``."""
        raise NotImplementedError

    def inverse(
        self, y: Tensor, theta: Tensor, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(x, log|∂x/∂y| or None, aux)``."""
        raise NotImplementedError

    def diagnose(self, acc: StabilityAccumulator, aux: Tensor) -> None:
        """Report diagnostics from ``aux`` (default: nothing)."""


class Affine(Elementwise):
    """``y = x · exp(s) + t``, ``θ = (t, r)``, ``s = bound_scale(r)``.

    The inverse ``x = (y − t) · exp(−s)`` computes ``−s`` directly as ``bound_scale(−r)`` (every
    clamp is odd) and returns it as both the log-derivative and the aux (the diagnostics read
    ``|s|``). The ``tanh`` clamp runs as ``s = addcmul(−b, σ(r · 2/b), 2b)`` with the constants
    kept as 0-d tensors of the input's dtype and device: a Python number in an operation is
    wrapped into a tensor and converted on every call, which costs as much as the operation
    on a small batch."""

    n_params = 2

    def __init__(self, bound: float = 3.0, clamp: str = "tanh"):
        self.bound, self.clamp = float(bound), clamp
        self._constants: dict[tuple[torch.dtype, torch.device], tuple[Tensor, ...]] = {}

    def _scale(self, raw: Tensor, negate: bool) -> Tensor:
        """``s = bound_scale(r)``, or with ``negate`` ``−s = bound_scale(−r)``."""
        if self.clamp != "tanh" or torch.compiler.is_compiling():
            return bound_scale(-raw if negate else raw, self.bound, self.clamp)
        c = self._constants_like(raw)
        return torch.addcmul(c[2], torch.sigmoid(raw * c[int(negate)]), c[3])

    def _constants_like(self, like: Tensor) -> tuple[Tensor, ...]:
        """``(2/b, −2/b, −b, 2b)`` as 0-d tensors of ``like``'s dtype and device."""
        key = (like.dtype, like.device)
        kept = getattr(self, "_constants", None)
        if kept is None:  # an Affine pickled before it had constants
            kept = self._constants = {}
        c = kept.get(key)
        if c is None:
            b = self.bound
            with torch.inference_mode(False):  # usable by autograd later, whatever the mode now
                c = tuple(torch.tensor(v, dtype=like.dtype, device=like.device)
                          for v in (2.0 / b, -2.0 / b, -b, 2.0 * b))  # fmt: skip
            kept[key] = c
        return c

    def forward(
        self, x: Tensor, theta: Tensor, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        t, r = theta.unbind(0)
        s = self._scale(r, False)
        return torch.addcmul(t, x, s.exp()), s, s

    def inverse(
        self, y: Tensor, theta: Tensor, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        t, r = theta.unbind(0)
        neg = self._scale(r, True)
        return (y - t) * neg.exp(), neg, neg

    def diagnose(self, acc: StabilityAccumulator, aux: Tensor) -> None:
        if self.clamp == "none":
            acc.max(keys.STAB_SCALE_ABSMAX, float(aux.abs().max()) if aux.numel() else 0.0)
        else:
            acc.scale(aux, self.bound)


class Additive(Elementwise):
    """``y = x + t`` (volume preserving: log-det 0)."""

    n_params = 1

    def forward(
        self, x: Tensor, theta: Tensor, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        return x + theta[0], None, None

    def inverse(
        self, y: Tensor, theta: Tensor, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        return y - theta[0], None, None


class Spline(Elementwise):
    """Rational-quadratic spline with ``bins`` bins on ``[−tail_bound, tail_bound]``, identity
    outside; ``3·bins − 1`` parameters (widths, heights, inner derivatives). All-zero
    parameters give the identity (uniform bins, unit derivatives)."""

    def __init__(
        self,
        bins: int = 8,
        tail_bound: float = 3.0,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        self.bins, self.tail_bound = int(bins), float(tail_bound)
        self.min_w, self.min_h, self.min_d = min_bin_width, min_bin_height, min_derivative
        self.n_params = 3 * self.bins - 1

    def _call(
        self, v: Tensor, theta: Tensor, inverse: bool, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        k = self.bins
        theta = theta.contiguous()  # the bin reductions run over the leading axis
        y, ld = rq_spline_packed(
            v,
            theta[: 2 * k].view(2, k, *v.shape),  # widths and heights, one after the other
            theta[2 * k :],
            inverse=inverse,
            tail_bound=self.tail_bound,
            min_bin_width=self.min_w,
            min_bin_height=self.min_h,
            min_derivative=self.min_d,
            with_log_det=with_log_det,
        )
        return y, ld, v

    def forward(
        self, x: Tensor, theta: Tensor, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        return self._call(x, theta, False, with_log_det)

    def inverse(
        self, y: Tensor, theta: Tensor, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        x, ld, _ = self._call(y, theta, True, with_log_det)
        return x, ld, None

    def diagnose(self, acc: StabilityAccumulator, aux: Tensor) -> None:
        if aux.numel():
            share = float((aux.abs() >= self.tail_bound).double().mean())
            acc.max(keys.STAB_SPLINE_TAIL_SHARE, share)
