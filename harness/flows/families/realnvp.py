"""``realnvp``: affine coupling with alternating masks, bounded scales, multi-scale images.

Vectors: couplings over alternating halves (``mask="halves"``) or even/odd entries
(``mask="parity"``), optionally permuted between couplings (``permute``). Images: checkerboard
and channel masks with squeeze and factor-out over ``levels`` scales
(:mod:`harness.flows.layers.stacks`). Conditioners (MLP or 3×3/1×1 conv nets) end in a
zero-initialised layer, so the fresh flow is the identity; the log-scale is bounded by
``scale_bound`` through a ``tanh`` or ``atan`` soft clamp.

References:
    Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017,
    https://arxiv.org/abs/1605.08803.
"""

from __future__ import annotations

from harness.flows.base import Flow
from harness.flows.families._shared import conv_factory, mlp_factory
from harness.flows.layers.batchnorm import with_batch_norm
from harness.flows.layers.elementwise import Affine
from harness.flows.layers.stacks import coupling_layers
from harness.flows.zoo import register

__all__ = ["realnvp"]


@register(
    "realnvp",
    "RealNVP: affine coupling, alternating/checkerboard/channel masks, multi-scale images",
    images=True,
    vectors=True,
)
def realnvp(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    layers: int = 6,
    hidden: int = 64,
    depth: int = 2,
    scale_bound: float = 3.0,
    scale_clamp: str = "tanh",
    activation: str = "relu",
    mask: str = "halves",
    permute: str = "none",
    levels: int = 2,
    context_mode: str = "concat",
    batch_norm: bool = False,
) -> Flow:
    """Build a RealNVP flow (see the module doc)."""
    net = (hidden, depth, activation, context_dim, context_mode)
    stack = coupling_layers(
        event_shape,
        layers=layers,
        mask=mask,
        permute=permute,
        levels=levels,
        vector_net=mlp_factory(*net),
        image_net=conv_factory(*net),
        ew=Affine(scale_bound, scale_clamp),
    )
    stack = with_batch_norm("realnvp", event_shape, stack, batch_norm)
    return Flow(stack, event_shape, context_dim)
