"""Shared wiring for the architecture constructors: hyper-parameter checks and net factories.

Architectures are thin constructors (one file each) over the shared parts; this module keeps
what they repeat: the checks of the common hyper-parameters (conditioner size, activation,
context mode, bounded scales) and the conditioner factories for vectors and images.
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.flows.layers.autoregressive import Autoregressive
from harness.flows.layers.coupling import NetFactory
from harness.flows.layers.elementwise import SCALE_CLAMPS, Affine, Elementwise
from harness.flows.nets import ACTIVATIONS, CONTEXT_MODES, MADE, MLP, ConvNet
from harness.flows.zoo import HyperParameterError, check_choice, check_positive

__all__ = [
    "affine",
    "autoregressive_layers",
    "check_net",
    "conv_factory",
    "mlp_factory",
    "orders",
    "vector_dim",
]


def check_net(layers: int, hidden: int, depth: int, activation: str, context_mode: str) -> None:
    """Check the hyper-parameters every conditioner-based architecture has."""
    check_positive("layers", layers)
    check_positive("hidden", hidden)
    check_positive("depth", depth)
    check_choice("activation", activation, sorted(ACTIVATIONS))
    check_choice("context_mode", context_mode, CONTEXT_MODES)


def affine(scale_bound: float, scale_clamp: str) -> Affine:
    """The bounded affine element-wise transform, checked."""
    check_positive("scale_bound", scale_bound)
    check_choice("scale_clamp", scale_clamp, SCALE_CLAMPS)
    return Affine(scale_bound, scale_clamp)


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
    check_choice("order", order, ("reverse", "random"))
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
