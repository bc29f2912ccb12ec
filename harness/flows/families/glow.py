"""``glow``: ActNorm → invertible 1×1 convolution (LU) → affine coupling, multi-scale.

On vectors the 1×1 convolution is a learned invertible linear map ``W = PLU``; on images it
mixes channels at every pixel, and each level squeezes, runs ``layers`` steps and factors out
half the channels. ActNorm initialises from the first training batch; the coupling network
(3×3 conv → 1×1 conv → zero-initialised 3×3 conv on images) starts as the identity; the
log-scale is bounded (``scale_bound``, ``scale_clamp``). ``permute`` swaps the 1×1
convolution for a fixed ``reverse`` or ``random`` permutation (the Glow paper's ablation).
``stab/conv1x1_cond_max`` reports the largest condition number of the 1×1 convolutions.

References:
    Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS
    2018, https://arxiv.org/abs/1807.03039.
"""

from __future__ import annotations

from harness.flows.base import Flow
from harness.flows.families._shared import conv_factory, mlp_factory
from harness.flows.layers.elementwise import Affine
from harness.flows.layers.stacks import glow_layers
from harness.flows.zoo import register

__all__ = ["glow"]


@register(
    "glow",
    "Glow: ActNorm, invertible 1x1 conv (LU), affine coupling; multi-scale images",
    images=True,
    vectors=True,
)
def glow(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    layers: int = 6,
    hidden: int = 64,
    depth: int = 2,
    scale_bound: float = 3.0,
    scale_clamp: str = "tanh",
    activation: str = "relu",
    permute: str = "lu",
    levels: int = 2,
    context_mode: str = "concat",
) -> Flow:
    """Build a Glow flow (see the module doc)."""
    net = (hidden, depth, activation, context_dim, context_mode)
    stack = glow_layers(
        event_shape,
        layers=layers,
        permute=permute,
        levels=levels,
        vector_net=mlp_factory(*net),
        image_net=conv_factory(*net),
        ew=Affine(scale_bound, scale_clamp),
    )
    return Flow(stack, event_shape, context_dim)
