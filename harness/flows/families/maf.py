"""``maf`` and ``iaf``: masked and inverse autoregressive flows, one factory in two variants.

``maf``: density in one pass, sampling in ``D`` sequential passes. ``iaf``: its dual, each
layer the inverse of a MAF layer: sampling in one pass, density in ``D`` passes. Each layer is
a MADE-conditioned affine autoregressive transform with a bounded log-scale;
the autoregressive order is reversed between layers (``order="reverse"``) or drawn at random
(``order="random"``, stored in the state dict with the masks). The two share every
hyper-parameter; :func:`made_affine` makes the factory of either variant.

References:
    Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow",
    NeurIPS 2016, https://arxiv.org/abs/1606.04934;
    Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density Estimation",
    NeurIPS 2017, https://arxiv.org/abs/1705.07057.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.flows.base import Flow
from harness.flows.families._shared import autoregressive_layers, vector_dim
from harness.flows.layers.batchnorm import with_batch_norm
from harness.flows.layers.elementwise import Affine
from harness.flows.zoo import register

__all__ = ["VARIANTS", "iaf", "maf", "made_affine"]

#: variant → whether its layers are the duals (inverses) of MAF's
VARIANTS = {"maf": False, "iaf": True}


def made_affine(variant: str) -> Callable[..., Flow]:
    """The factory of ``variant`` (``"maf"`` or ``"iaf"``): the same hyper-parameters, the
    layers MAF's or their duals."""
    dual = VARIANTS[variant]

    def factory(
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
        ew = Affine(scale_bound, scale_clamp)
        d = vector_dim(variant, event_shape)
        ar = autoregressive_layers(
            d, layers, hidden, depth, order, activation, context_dim, context_mode, ew, dual=dual
        )
        stack = with_batch_norm(variant, event_shape, ar, batch_norm)
        return Flow(stack, event_shape, context_dim)

    factory.__name__ = factory.__qualname__ = variant
    factory.__doc__ = f"Build {'an IAF' if dual else 'a MAF'} (see the module doc)."
    return factory


maf = register(
    "maf",
    "MAF: MADE affine autoregressive; density 1 pass, sampling D passes",
    images=False,
    vectors=True,
)(made_affine("maf"))

iaf = register(
    "iaf",
    "IAF: inverse autoregressive (dual of MAF); sampling 1 pass, density D passes",
    images=False,
    vectors=True,
)(made_affine("iaf"))
