"""``maf`` and ``iaf``: masked and inverse autoregressive flows.

``maf``: density in one pass, sampling in ``D`` sequential passes. ``iaf``: its dual, each
layer the inverse of a MAF layer: sampling in one pass, density in ``D`` passes. Each layer is
a MADE-conditioned affine autoregressive transform with a bounded log-scale;
the autoregressive order is reversed between layers (``order="reverse"``) or drawn at random
(``order="random"``, stored in the state dict with the masks).

References:
    Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow",
    NeurIPS 2016, https://arxiv.org/abs/1606.04934;
    Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density Estimation",
    NeurIPS 2017, https://arxiv.org/abs/1705.07057.
"""

from __future__ import annotations

from harness.flows.base import Flow
from harness.flows.families._shared import affine, autoregressive_layers, check_net, vector_dim
from harness.flows.layers.batchnorm import with_batch_norm
from harness.flows.zoo import register

__all__ = ["iaf", "maf"]


@register(
    "maf",
    "MAF: MADE affine autoregressive; density 1 pass, sampling D passes",
    images=False,
    vectors=True,
)
def maf(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    layers: int = 5,
    hidden: int = 64,
    depth: int = 2,
    order: str = "reverse",
    scale_bound: float = 3.0,
    scale_clamp: str = "tanh",
    activation: str = "relu",
    context_mode: str = "concat",
    batch_norm: bool = False,
) -> Flow:
    """Build a MAF (see the module doc)."""
    check_net(layers, hidden, depth, activation, context_mode)
    ew = affine(scale_bound, scale_clamp)
    d = vector_dim("maf", event_shape)
    ar = autoregressive_layers(
        d, layers, hidden, depth, order, activation, context_dim, context_mode, ew, dual=False
    )
    return Flow(with_batch_norm("maf", event_shape, ar, batch_norm), event_shape, context_dim)


@register(
    "iaf",
    "IAF: inverse autoregressive (dual of MAF); sampling 1 pass, density D passes",
    images=False,
    vectors=True,
)
def iaf(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    layers: int = 5,
    hidden: int = 64,
    depth: int = 2,
    order: str = "reverse",
    scale_bound: float = 3.0,
    scale_clamp: str = "tanh",
    activation: str = "relu",
    context_mode: str = "concat",
    batch_norm: bool = False,
) -> Flow:
    """Build an IAF (see the module doc)."""
    check_net(layers, hidden, depth, activation, context_mode)
    ew = affine(scale_bound, scale_clamp)
    d = vector_dim("iaf", event_shape)
    ar = autoregressive_layers(
        d, layers, hidden, depth, order, activation, context_dim, context_mode, ew, dual=True
    )
    return Flow(with_batch_norm("iaf", event_shape, ar, batch_norm), event_shape, context_dim)
