"""Multi-scale image flows: squeeze and factor-out (RealNVP, Glow).

- :class:`Squeeze`: ``(C, H, W) → (4C, H/2, W/2)`` by moving each 2×2 block into channels
  (a permutation of the entries: log-det 0); ``unsqueeze=True`` is its inverse.
- :class:`FactorOut`: keeps the first ``keep`` channels as they are (they leave the flow here
  and are Gaussian latents) and sends the rest through the inner layers, which may themselves
  squeeze and factor out: ``log det = log det(inner)``.

:func:`multiscale` wires the levels; each level returns to its input shape (an unsqueeze after
the factor-out), so the latent ``z`` has the image's shape, and the base is one standard
normal over every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from harness.flows.base import Layer
from harness.flows.errors import HyperParameterError

__all__ = ["FactorOut", "Squeeze", "multiscale"]

Shape = tuple[int, int, int]
Steps = Callable[[Shape], list[Layer]]


class Squeeze(Layer):
    """Space-to-depth by a factor 2 (or its inverse, with ``unsqueeze``)."""

    def __init__(self, unsqueeze: bool = False):
        super().__init__()
        self.unsqueeze = unsqueeze

    @staticmethod
    def _squeeze(x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, 4 * c, h // 2, w // 2)

    @staticmethod
    def _unsqueeze(x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c // 4, 2 * h, 2 * w)

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        y = self._unsqueeze(x) if self.unsqueeze else self._squeeze(x)
        return y, (x.new_zeros(x.shape[0]) if with_log_det else None)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return self._squeeze(y) if self.unsqueeze else self._unsqueeze(y)

    def extra_repr(self) -> str:
        return f"unsqueeze={self.unsqueeze}"


class FactorOut(Layer):
    """Pass channels ``[:keep]`` through unchanged; transform ``[keep:]`` by ``inner``."""

    def __init__(self, keep: int, inner: Sequence[Layer]):
        super().__init__()
        self.keep = int(keep)
        self.inner = nn.ModuleList(inner)

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        out, rest = x[:, : self.keep], x[:, self.keep :]
        log_det = x.new_zeros(x.shape[0]) if with_log_det else None
        for layer in self.inner:
            rest, ld = layer(rest, context, with_log_det)
            if log_det is not None and ld is not None:
                log_det = log_det + ld
        return torch.cat([out, rest], dim=1), log_det

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        out, rest = y[:, : self.keep], y[:, self.keep :]
        for layer in reversed(self.inner):
            rest = layer.inverse(rest, context)
        return torch.cat([out, rest], dim=1)

    def extra_repr(self) -> str:
        return f"keep={self.keep}"


def multiscale(
    shape: Sequence[int],
    levels: int,
    before: Steps,
    after: Steps,
    last: Steps,
    squeeze_last: bool = False,
) -> list[Layer]:
    """Layers of a ``levels``-level image flow on ``shape = (C, H, W)``.

    Each level but the last: ``before(C, H, W)``, squeeze, ``after(4C, H/2, W/2)``, factor out
    half the channels and recurse on the other half, unsqueeze. The last level is
    ``last(shape)`` (after a squeeze and followed by an unsqueeze with ``squeeze_last``, as in
    Glow). H and W must be divisible by ``2^(levels − 1)`` (``2^levels`` with
    ``squeeze_last``).
    """
    if len(shape) != 3:
        raise HyperParameterError("event_shape", f"images are (C, H, W), got {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    if not isinstance(levels, int) or levels < 1:
        raise HyperParameterError("levels", f"must be a positive int, got {levels!r}")
    need = 2 ** (levels - 1 + int(squeeze_last))
    if h % need or w % need:
        raise HyperParameterError(
            "levels",
            f"{levels} levels need H and W divisible by {need}, got {h}×{w}; use fewer levels",
        )

    def level(s: Shape, k: int) -> list[Layer]:
        if k == levels - 1:
            if not squeeze_last:
                return last(s)
            s2 = (4 * s[0], s[1] // 2, s[2] // 2)
            return [Squeeze(), *last(s2), Squeeze(unsqueeze=True)]
        s2 = (4 * s[0], s[1] // 2, s[2] // 2)
        keep = s2[0] // 2
        inner = level((s2[0] - keep, s2[1], s2[2]), k + 1)
        return [
            *before(s),
            Squeeze(),
            *after(s2),
            FactorOut(keep, inner),
            Squeeze(unsqueeze=True),
        ]

    return level((c, h, w), 0)
