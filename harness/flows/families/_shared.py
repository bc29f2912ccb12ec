"""Shared wiring for the architecture constructors: shapes, net factories, autoregressive stacks.

Architectures are thin constructors (one file each) over the shared parts; this module keeps
what they repeat: the vector size of an event shape, the conditioner factories for vectors and
images, and the autoregressive stacks of MAF, IAF and NSF-AR. Their hyper-parameters' types,
ranges and choices are checked before a factory runs, by the registry, against one table
(:mod:`harness.flows.hparam_specs`); what is raised here is what only the shape can tell.
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.flows.errors import HyperParameterError
from harness.flows.layers.autoregressive import Autoregressive
from harness.flows.layers.coupling import NetFactory
from harness.flows.layers.elementwise import Elementwise
from harness.flows.nets import MADE, MLP, ConvNet

__all__ = [
    "autoregressive_layers",
    "conv_factory",
    "mlp_factory",
    "orders",
    "vector_dim",
]


def vector_dim(name: str, event_shape: tuple[int, ...], minimum: int = 1) -> int:
    """``D`` of a vector event shape, refusing fewer than ``minimum`` dimensions."""
    (d,) = event_shape
    if d < minimum:
        raise HyperParameterError(
            "event_shape", f"{name} needs at least {minimum} dimensions, got {d}"
        )
    return d


def mlp_factory(
    hidden: int, depth: int, activation: str, context_dim: int | None, context_mode: str
) -> NetFactory:
    """``(n_in, n_out) → MLP`` with the given size and conditioning."""

    def make(n_in: int, n_out: int) -> MLP:
        return MLP(n_in, n_out, hidden, depth, activation, context_dim, context_mode)

    return make


def conv_factory(
    hidden: int, depth: int, activation: str, context_dim: int | None, context_mode: str
) -> NetFactory:
    """``(channels in, channels out) → ConvNet`` with the given size and conditioning."""

    def make(n_in: int, n_out: int) -> ConvNet:
        return ConvNet(n_in, n_out, hidden, depth, activation, context_dim, context_mode)

    return make


def orders(features: int, layers: int, order: str) -> list[Tensor]:
    """Autoregressive orders (ranks) per layer: ``reverse`` alternates the identity and its
    reverse; ``random`` draws a permutation per layer from torch's global generator."""
    ident = torch.arange(features)
    if order == "reverse":
        return [ident if k % 2 == 0 else ident.flip(0) for k in range(layers)]
    return [torch.randperm(features) for _ in range(layers)]


def autoregressive_layers(
    d: int,
    layers: int,
    hidden: int,
    depth: int,
    order: str,
    activation: str,
    context_dim: int | None,
    context_mode: str,
    ew: Elementwise,
    dual: bool,
) -> list[Autoregressive]:
    """``layers`` MADE-conditioned layers (MAF, or IAF with ``dual``) over ``(D,)``."""
    return [
        Autoregressive(
            MADE(d, ew.n_params, hidden, depth, o, activation, context_dim, context_mode),
            ew,
            dual=dual,
        )
        for o in orders(d, layers, order)
    ]
