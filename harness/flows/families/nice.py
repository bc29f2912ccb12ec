"""``nice``: additive coupling (volume preserving) with a final diagonal scaling.

The couplings ``y_b = x_b + t(x_a)`` have unit Jacobian determinant; the only volume change
is NICE's last layer ``z = x ⊙ exp(s)``. Vectors and multi-scale images as in ``realnvp``
(:mod:`harness.flows.layers.stacks`).

References:
    Dinh, Krueger, Bengio, "NICE: Non-linear Independent Components Estimation", ICLR 2015,
    https://arxiv.org/abs/1410.8516.
"""

from __future__ import annotations

from harness.flows.base import Flow
from harness.flows.families._shared import conv_factory, mlp_factory
from harness.flows.layers.batchnorm import with_batch_norm
from harness.flows.layers.elementwise import Additive
from harness.flows.layers.linear import DiagonalScale
from harness.flows.layers.stacks import coupling_layers
from harness.flows.zoo import register

__all__ = ["nice"]


@register(
    "nice",
    "NICE: additive (volume-preserving) coupling, alternating masks, final diagonal scaling",
    images=True,
    vectors=True,
)
def nice(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    layers: int = 6,
    hidden: int = 64,
    depth: int = 2,
    activation: str = "relu",
    mask: str = "halves",
    permute: str = "none",
    levels: int = 2,
    context_mode: str = "concat",
    batch_norm: bool = False,
) -> Flow:
    """Build a NICE flow (see the module doc)."""
    net = (hidden, depth, activation, context_dim, context_mode)
    stack = coupling_layers(
        event_shape,
        layers=layers,
        mask=mask,
        permute=permute,
        levels=levels,
        vector_net=mlp_factory(*net),
        image_net=conv_factory(*net),
        ew=Additive(),
    )
    stack = with_batch_norm("nice", event_shape, stack, batch_norm)
    return Flow([*stack, DiagonalScale(event_shape)], event_shape, context_dim)
