"""The flow contract: :class:`Layer` (one bijection) and :class:`Flow` (base + layers).

A flow maps data ``x`` to a latent ``z = f(x)`` with a standard-normal base, so

.. math::
    \\log p(x \\mid c) = \\log \\mathcal N(f(x; c); 0, I)
    + \\log |\\det \\partial f / \\partial x|.

Every layer computes its log-det *fused* with its forward pass (no second pass), and may skip it
(``with_log_det=False``) so that the cost of the log-det can be measured as the difference of
two timed passes. Layers keep detached references to what the stability diagnostics need
(per-layer log-det, bounded scales) from their last forward call; :meth:`Flow.stability` turns
them into numbers only when asked, so the forward pass pays nothing for the diagnostics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from harness import keys

__all__ = ["Flow", "Layer", "StabilityAccumulator", "detached"]

_LOG_2PI = math.log(2.0 * math.pi)


class StabilityAccumulator:
    """Collects per-layer diagnostics into the ``stab/*`` dictionary of :meth:`Flow.stability`.

    Saturation is pooled over every bounded scale of every layer (a share of all scales, not a
    mean of per-layer shares); the other entries are maxima over layers.
    """

    def __init__(self) -> None:
        self.saturated = 0.0
        self.scales = 0.0
        self.maxima: dict[str, float] = {}

    def scale(self, s: Tensor, bound: float, near: float = 0.95) -> None:
        """Record bounded scales ``s`` (|s| ≤ bound); saturated means |s| ≥ near · bound."""
        self.saturated += float((s.abs() >= near * bound).sum())
        self.scales += s.numel()
        self.max(keys.STAB_SCALE_ABSMAX, float(s.abs().max()) if s.numel() else 0.0)

    def max(self, key: str, value: float) -> None:
        """Keep the largest value seen under ``key``."""
        self.maxima[key] = max(value, self.maxima.get(key, -math.inf))

    def result(self) -> dict[str, float]:
        out = dict(self.maxima)
        if self.scales:
            out[keys.STAB_SATURATED_SHARE] = self.saturated / self.scales
        return out


class Layer(nn.Module):
    """One bijective layer ``y = f(x; c)`` with a fused log|det ∂y/∂x| of shape ``(B,)``.

    Subclasses implement :meth:`forward` and :meth:`inverse`; containers of layers and layers
    with diagnostics override :meth:`diagnose`. ``_last_logdet`` holds the detached log-det of
    the last forward call (``None`` when it was skipped). A layer that initialises itself from
    the first training batch (ActNorm) sets ``pending_init`` until it has.
    """

    _last_logdet: Tensor | None = None
    pending_init: bool = False

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def _keep(self, log_det: Tensor | None) -> Tensor | None:
        """Remember ``log_det`` (detached) for the diagnostics and return it unchanged."""
        self._last_logdet = detached(log_det)
        return log_det

    def diagnose(self, acc: StabilityAccumulator) -> None:
        """Report this layer's diagnostics from its last forward call (default: log-det)."""
        if self._last_logdet is not None and self._last_logdet.numel():
            acc.max(keys.STAB_LAYER_LOGDET_ABSMAX, float(self._last_logdet.abs().max()))


def detached(t: Tensor | None) -> Tensor | None:
    """``t`` without its autograd graph: ``t.detach()``, or ``t`` itself where it has no graph
    (without gradients: one dispatched view less per kept tensor)."""
    return t.detach() if t is not None and t.requires_grad else t


def _as_shape(event_shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = (int(event_shape),) if isinstance(event_shape, int) else tuple(map(int, event_shape))
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"event_shape must be positive sizes, got {event_shape!r}")
    return shape


class Flow(nn.Module):
    """A standard-normal base and a stack of bijective :class:`Layer` s (data → latent).

    Arguments:
        layers: the bijections, applied in order from data to latent.
        event_shape: ``(D,)`` for vectors or ``(C, H, W)`` for images.
        context_dim: size of the conditioning vector, or ``None`` for an unconditional flow.

    The base's constants are buffers, so ``.to(device)`` and ``.double()`` move everything.
    """

    def __init__(
        self,
        layers: Iterable[Layer],
        event_shape: int | Sequence[int],
        context_dim: int | None = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.event_shape: tuple[int, ...] = _as_shape(event_shape)
        self.context_dim = context_dim
        self.register_buffer("_base_anchor", torch.zeros(()))  # carries device and dtype
        self._transformed = False

    # ── checks ────────────────────────────────────────────────────────────────────────
    def _check(self, x: Tensor, context: Tensor | None, what: str) -> Tensor | None:
        n = len(self.event_shape)
        if tuple(x.shape[-n:]) != self.event_shape or x.dim() != n + 1:
            raise ValueError(
                f"Flow.{what}: expected a batch of shape "
                f"(B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}"
            )
        return self._context(context, x.shape[0], what)

    def _context(self, context: Tensor | None, batch: int, what: str) -> Tensor | None:
        if self.context_dim is None:
            if context is not None:
                raise ValueError(
                    f"Flow.{what}: this flow is unconditional (context_dim=None) but got a "
                    "context; build it with context_dim=... to condition it"
                )
            return None
        if context is None:
            raise ValueError(
                f"Flow.{what}: this flow is conditional (context_dim={self.context_dim}); "
                f"pass context=<tensor of shape (B, {self.context_dim})>"
            )
        if context.dim() == 1:
            context = context.expand(batch, -1)
        if tuple(context.shape) != (batch, self.context_dim):
            raise ValueError(
                f"Flow.{what}: context must have shape ({batch}, {self.context_dim}) or "
                f"({self.context_dim},), got {tuple(context.shape)}"
            )
        return context

    # ── the contract ──────────────────────────────────────────────────────────────────
    def transform(
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Data → latent: ``(z, log|det ∂z/∂x|)`` with the log-det of shape ``(B,)``.

        With ``with_log_det=False`` the same ``z`` comes back with ``None``, and no log-det is
        computed by any layer.
        """
        context = self._check(x, context, "transform")
        log_det: Tensor | None = None
        for layer in self.layers:
            x, ld = layer(x, context, with_log_det)
            if with_log_det and ld is not None:
                log_det = ld if log_det is None else log_det + ld
        if with_log_det and log_det is None:
            log_det = x.new_zeros(x.shape[0])
        self._transformed = True
        return x, log_det

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Latent → data, the exact inverse of :meth:`transform`."""
        context = self._check(z, context, "inverse")
        for layer in reversed(self.layers):
            z = layer.inverse(z, context)
        return z

    def base_log_prob(self, z: Tensor) -> Tensor:
        """log N(z; 0, I) summed over the event dimensions, shape ``(B,)``."""
        d = math.prod(self.event_shape)
        return -0.5 * z.reshape(z.shape[0], -1).square().sum(-1) - 0.5 * d * _LOG_2PI

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(x | c) = log N(z) + log|det ∂z/∂x|, shape ``(B,)``."""
        z, log_det = self.transform(x, context)
        assert log_det is not None
        return self.base_log_prob(z) + log_det

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` samples of shape ``(n, *event_shape)``; a context is ``(n, C)`` or ``(C,)``."""
        context = self._context(context, n, "sample")
        a = self._base_anchor
        z = torch.randn(n, *self.event_shape, device=a.device, dtype=a.dtype)
        return self.inverse(z, context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """``log_prob`` (so that ``flow(x)`` works with hooks and ``torch.compile``)."""
        return self.log_prob(x, context)

    def counters(self) -> dict[str, int]:
        """Work counters since :meth:`reset_counters` (a continuous flow counts its function
        evaluations: ``nfe_forward``, ``nfe_backward``); ``{}`` for a flow that counts none."""
        return {}

    def reset_counters(self) -> None:
        """Zero the counters of :meth:`counters` (nothing to do for a flow without any)."""

    def regularizer(self) -> Tensor | None:
        """A training penalty added to the loss, with its graph (a continuous flow's RNODE
        terms), or None for a flow that has none."""
        return None

    def needs_data_init(self) -> bool:
        """Whether a layer still waits for its data-dependent initialisation (the first
        training forward): a compiled view runs that forward eagerly."""
        return any(isinstance(m, Layer) and m.pending_init for m in self.modules())

    def stability(self) -> dict[str, float]:
        """Diagnostics of the LAST :meth:`transform` call (``stab/*`` keys); ``{}`` before one."""
        if not self._transformed:
            return {}
        acc = StabilityAccumulator()
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, Layer):
                    module.diagnose(acc)
        return acc.result()

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, context_dim={self.context_dim}"
