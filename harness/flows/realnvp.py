"""``realnvp``: affine coupling with alternating masks and bounded scales.

Vectors: couplings over alternating halves (``mask="halves"``) or even/odd entries
(``mask="parity"``); each coupling's conditioner is an MLP with a zero-initialised output, so
the fresh flow is the identity. The log-scale is bounded (``scale_bound`` with a ``tanh`` or
``atan`` soft clamp).

References:
    Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017,
    https://arxiv.org/abs/1605.08803.
"""

from __future__ import annotations

from harness.flows.base import Flow, Layer
from harness.flows.common import affine, check_net, mlp_factory, vector_dim
from harness.flows.coupling import MaskCoupling, NetFactory, SplitCoupling, parity_mask
from harness.flows.elementwise import Elementwise
from harness.flows.zoo import check_choice, register

__all__ = ["realnvp", "vector_couplings"]


def vector_couplings(
    d: int, layers: int, mask: str, make_net: NetFactory, ew: Elementwise
) -> list[Layer]:
    """``layers`` couplings over ``(D,)`` alternating which part is transformed."""
    check_choice("mask", mask, ("halves", "parity"))
    out: list[Layer] = []
    for k in range(layers):
        if mask == "halves":
            out.append(SplitCoupling((d // 2, d - d // 2), k % 2 == 1, make_net, ew))
        else:
            out.append(MaskCoupling(parity_mask(d, k % 2 == 1), make_net, ew))
    return out


@register(
    "realnvp",
    "RealNVP: affine coupling, alternating masks, bounded scales",
    images=False,
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
    context_mode: str = "concat",
) -> Flow:
    """Build a RealNVP flow (see the module doc)."""
    check_net(layers, hidden, depth, activation, context_mode)
    ew = affine(scale_bound, scale_clamp)
    d = vector_dim("realnvp", event_shape, 2)
    make_net = mlp_factory(hidden, depth, activation, context_dim, context_mode)
    return Flow(vector_couplings(d, layers, mask, make_net, ew), event_shape, context_dim)
