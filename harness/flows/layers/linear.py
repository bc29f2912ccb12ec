"""Linear layers over axis 1 (vector features or image channels, shared over pixels).

- :class:`ActNorm`: ``y = (x + b) ⊙ exp(s)`` per channel, initialised from the first training
  batch so that ``y`` has zero mean and unit variance (Glow); log-det ``HW · Σ s``.
- :class:`LULinear`: ``y = W x`` with ``W = P L (U + diag(σ ⊙ exp(ℓ)))`` (``P`` a fixed
  permutation, ``L``/``U`` unit-lower/strictly-upper triangular, ``σ`` fixed signs), so
  ``log|det W| = Σ ℓ`` costs nothing; on images it is Glow's invertible 1×1 convolution.
  Its condition number is reported as ``stab/conv1x1_cond_max``.
- :class:`Permutation`: a fixed permutation (reverse or random) of axis 1; log-det 0.
- :class:`DiagonalScale`: NICE's final ``y = x ⊙ exp(s)`` with one ``s`` per element.

References:
    Kingma & Dhariwal, "Glow", NeurIPS 2018, https://arxiv.org/abs/1807.03039;
    Dinh et al., "NICE", https://arxiv.org/abs/1410.8516.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import keys
from harness.flows.base import Layer, StabilityAccumulator

__all__ = ["ActNorm", "DiagonalScale", "LULinear", "Permutation"]


def _per_channel(t: Tensor, x: Tensor) -> Tensor:
    """``(C,)`` → broadcastable against ``x`` of shape ``(B, C, …)``."""
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def _pixels(x: Tensor) -> int:
    return math.prod(x.shape[2:])


def _sync_initialized(module: ActNorm, _incompatible_keys: object) -> None:
    module.pending_init = not bool(module.initialized)  # a load_state_dict post-hook


class ActNorm(Layer):
    """Per-channel affine with data-dependent initialisation (on the first training forward).

    Whether that initialisation is still due is the buffer ``initialized`` (saved with the
    weights) mirrored in the plain attribute ``pending_init``, which the forward pass reads: a
    Python bool, so a compiled forward has no data-dependent branch (``torch.compile`` guards
    on it), and :meth:`Flow.needs_data_init` finds layers that still wait for data.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.pending_init = True
        self.register_load_state_dict_post_hook(_sync_initialized)

    def mark_initialized(self) -> None:
        """Skip the data-dependent initialisation (keep the current parameters)."""
        self.initialized.fill_(True)
        self.pending_init = False

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        self.bias.copy_(-x.mean(dim=dims))
        std = x.std(dim=dims, unbiased=False) if x.shape[0] * _pixels(x) > 1 else x.abs()[0]
        self.log_scale.copy_(-torch.log(std.reshape(-1) + self.eps))
        self.mark_initialized()

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        if self.training and self.pending_init:
            self._initialize(x)
        y = (x + _per_channel(self.bias, x)) * _per_channel(self.log_scale.exp(), x)
        log_det = None
        if with_log_det:
            log_det = (self.log_scale.sum() * _pixels(x)).expand(x.shape[0])
        return y, self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y * _per_channel(torch.exp(-self.log_scale), y) - _per_channel(self.bias, y)


class LULinear(Layer):
    """``y = W x`` over axis 1 with ``W`` in LU form, initialised as a random rotation."""

    def __init__(self, channels: int):
        super().__init__()
        q = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(q)
        diag = upper.diagonal()
        self.register_buffer("perm", p)
        self.register_buffer("sign", diag.sign())
        self.lower = nn.Parameter(lower.tril(-1))
        self.upper = nn.Parameter(upper.triu(1))
        self.log_abs_diag = nn.Parameter(diag.abs().log())
        ones = torch.ones(channels, channels)
        self.register_buffer("lower_mask", ones.tril(-1), persistent=False)
        self.register_buffer("upper_mask", ones.triu(1), persistent=False)
        self.register_buffer("eye", torch.eye(channels), persistent=False)

    @torch.no_grad()
    def perturb_(self, scale: float, generator: torch.Generator | None = None) -> None:
        """Random non-identity factors that stay well conditioned at any size (for checks):
        off-diagonal entries ``N(0, (scale/C)²)``, log-diagonal ``N(0, scale²)``."""
        c = self.log_abs_diag.numel()
        for p, std in (
            (self.lower, scale / c),
            (self.upper, scale / c),
            (self.log_abs_diag, scale),
        ):
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            p.add_(std * noise.to(device=p.device, dtype=p.dtype))

    def _factors(self) -> tuple[Tensor, Tensor]:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.upper_mask + torch.diag(self.sign * self.log_abs_diag.exp())
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix ``W = P L U``."""
        lower, upper = self._factors()
        return self.perm @ (lower @ upper)

    def inverse_weight(self) -> Tensor:
        """``W⁻¹ = U⁻¹ L⁻¹ Pᵀ`` by two triangular solves."""
        lower, upper = self._factors()
        inv_l = torch.linalg.solve_triangular(lower, self.perm.T, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, inv_l, upper=True)

    @staticmethod
    def _mix(w: Tensor, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return F.linear(x, w)
        return F.conv2d(x, w[:, :, None, None])

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        y = self._mix(self.weight(), x)
        log_det = None
        if with_log_det:
            log_det = (self.log_abs_diag.sum() * _pixels(x)).expand(x.shape[0])
        return y, self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return self._mix(self.inverse_weight(), y)

    def diagnose(self, acc: StabilityAccumulator) -> None:
        super().diagnose(acc)
        acc.max(keys.STAB_COND_MAX, float(torch.linalg.cond(self.weight().double())))


class Permutation(Layer):
    """A fixed permutation of axis 1 (``perm`` is stored in the state dict)."""

    def __init__(self, perm: Tensor):
        super().__init__()
        self.register_buffer("perm", perm.long())
        self.register_buffer("inv_perm", torch.argsort(perm).long())

    @classmethod
    def reverse(cls, channels: int) -> Permutation:
        return cls(torch.arange(channels - 1, -1, -1))

    @classmethod
    def random(cls, channels: int) -> Permutation:
        return cls(torch.randperm(channels))

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        log_det = x.new_zeros(x.shape[0]) if with_log_det else None
        return x.index_select(1, self.perm), self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y.index_select(1, self.inv_perm)


class DiagonalScale(Layer):
    """``y = x ⊙ exp(s)`` with a learned ``s`` per element of the event (NICE's last layer)."""

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(event_shape))

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        log_det = self.log_scale.sum().expand(x.shape[0]) if with_log_det else None
        return x * self.log_scale.exp(), self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y * torch.exp(-self.log_scale)
