"""``nsf-coupling`` and ``nsf-ar``: rational-quadratic neural spline flows.

Each transformed entry goes through a monotone rational-quadratic spline with ``bins`` bins on
``[−tail_bound, tail_bound]`` and identity (linear) tails, with minimum bin width, height and
derivative (:mod:`harness.flows.layers.splines`). ``nsf-coupling`` conditions the splines of
one part on the other (vectors and multi-scale images, as ``realnvp``); ``nsf-ar`` conditions each
entry on the previous ones through a MADE (as ``maf``: density in one pass, sampling in ``D``).
Zero-initialised conditioner outputs make both the identity when fresh.

References:
    Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019,
    https://arxiv.org/abs/1906.04032.
"""

from __future__ import annotations

from harness.flows.base import Flow
from harness.flows.families._shared import (
    autoregressive_layers,
    conv_factory,
    mlp_factory,
    vector_dim,
)
from harness.flows.layers.batchnorm import with_batch_norm
from harness.flows.layers.elementwise import Spline
from harness.flows.layers.stacks import coupling_layers
from harness.flows.zoo import register

__all__ = ["nsf_ar", "nsf_coupling", "spline"]


def spline(
    bins: int,
    tail_bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> Spline:
    """The spline element-wise transform (its hyper-parameters, and ``min_bin_width · bins <
    1``, are checked against :mod:`harness.flows.hparam_specs` before a factory runs)."""
    return Spline(bins, tail_bound, min_bin_width, min_bin_height, min_derivative)


@register(
    "nsf-coupling",
    "NSF coupling: rational-quadratic spline coupling with linear tails",
    images=True,
    vectors=True,
)
def nsf_coupling(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    layers: int = 6,
    hidden: int = 64,
    depth: int = 2,
    bins: int = 8,
    tail_bound: float = 3.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
    activation: str = "relu",
    mask: str = "halves",
    permute: str = "none",
    levels: int = 2,
    context_mode: str = "concat",
    batch_norm: bool = False,
) -> Flow:
    """Build a coupling NSF (see the module doc)."""
    ew = spline(bins, tail_bound, min_bin_width, min_bin_height, min_derivative)
    net = (hidden, depth, activation, context_dim, context_mode)
    stack = coupling_layers(
        event_shape,
        layers=layers,
        mask=mask,
        permute=permute,
        levels=levels,
        vector_net=mlp_factory(*net),
        image_net=conv_factory(*net),
        ew=ew,
    )
    stack = with_batch_norm("nsf-coupling", event_shape, stack, batch_norm)
    return Flow(stack, event_shape, context_dim)


@register(
    "nsf-ar",
    "NSF autoregressive: MADE-conditioned rational-quadratic splines",
    images=False,
    vectors=True,
)
def nsf_ar(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    layers: int = 5,
    hidden: int = 64,
    depth: int = 2,
    order: str = "reverse",
    bins: int = 8,
    tail_bound: float = 3.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
    activation: str = "relu",
    context_mode: str = "concat",
    batch_norm: bool = False,
) -> Flow:
    """Build an autoregressive NSF (see the module doc)."""
    ew = spline(bins, tail_bound, min_bin_width, min_bin_height, min_derivative)
    d = vector_dim("nsf-ar", event_shape)
    ar = autoregressive_layers(
        d, layers, hidden, depth, order, activation, context_dim, context_mode, ew, dual=False
    )
    return Flow(with_batch_norm("nsf-ar", event_shape, ar, batch_norm), event_shape, context_dim)
