"""Conditioner networks: :class:`MLP`, :class:`MADE` (masked MLP) and :class:`ConvNet`.

Each takes an optional context ``c`` of shape ``(B, context_dim)`` through one of two modes:

- ``"concat"``: ``c`` is appended to the input (as constant channels for images; for MADE
  the context inputs connect to every hidden unit, which keeps the network autoregressive);
- ``"film"``: every hidden activation ``h`` becomes ``h · (1 + γ(c)) + β(c)`` with ``γ, β``
  one linear map of ``c`` (Perez et al. 2018, https://arxiv.org/abs/1709.07871).

The output layer is zero-initialised by default, so a freshly built flow is the identity.

References:
    MADE: Germain et al. 2015, https://arxiv.org/abs/1502.03509.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.flows.made_plan import MadePlan, made_plan

__all__ = [
    "ACTIVATIONS",
    "CONTEXT_MODES",
    "MADE",
    "MLP",
    "ConvNet",
    "FiLM",
    "activate",
    "made_degrees",
]

T = TypeVar("T")

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),  # in place: one allocation less per layer
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}
CONTEXT_MODES = ("concat", "film")


def activate(act: nn.Module, x: Tensor) -> Tensor:
    """``act(x)``, an in-place ReLU as ``torch.relu_(x)`` itself: on a small batch the module
    call and the functional wrapper around the kernel cost about as much as the kernel."""
    if type(act) is nn.ReLU and act.inplace:
        return torch.relu_(x)
    return act(x)


class FiLM(nn.Module):
    """``(1 + γ_k(c), β_k(c))`` for ``depth`` hidden layers of width ``hidden`` from one linear
    map of the context ``c`` (feature-wise linear modulation, Perez et al. 2018)."""

    def __init__(self, context_dim: int, hidden: int, depth: int):
        super().__init__()
        self.hidden, self.depth = hidden, depth
        self.linear = nn.Linear(context_dim, 2 * hidden * depth)

    @classmethod
    def when(
        cls, context_dim: int | None, hidden: int, depth: int, context_mode: str
    ) -> FiLM | None:
        """The FiLM of a net conditioned with ``context_mode="film"``, else None."""
        if context_dim is None or context_mode != "film":
            return None
        return cls(context_dim, hidden, depth)

    def forward(self, context: Tensor) -> list[tuple[Tensor, Tensor]]:
        gb = self.linear(context).unflatten(-1, (self.depth, 2, self.hidden))
        return [(1.0 + gb[:, k, 0], gb[:, k, 1]) for k in range(self.depth)]


def _zero(module: nn.Module) -> None:
    for p in module.parameters():
        nn.init.zeros_(p)


class MLP(nn.Module):
    """``in_features → [hidden] × depth → out_features`` with an optional context.

    Arguments:
        in_features, out_features: input and output sizes.
        hidden: width of the hidden layers; depth: how many hidden layers (≥ 1).
        activation: a key of :data:`ACTIVATIONS`.
        context_dim, context_mode: the conditioning (``None`` for none), see the module doc.
        zero_last: zero-initialise the output layer.

    ``forward(x, context, features_first=True)`` returns the output transposed,
    ``(out_features, B)`` and contiguous, computed as ``W hᵀ`` (the same product): a layer
    that reads blocks of output features (a coupling's parameters) then reads contiguous rows.
    """

    features_first = True  # forward supports features_first=True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: int,
        depth: int,
        activation: str = "relu",
        context_dim: int | None = None,
        context_mode: str = "concat",
        zero_last: bool = True,
    ):
        super().__init__()
        self.concat = context_dim is not None and context_mode == "concat"
        first = in_features + (context_dim if self.concat else 0)
        widths = [first] + [hidden] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.act = ACTIVATIONS[activation]()
        self.out = nn.Linear(hidden, out_features)
        self.film = FiLM.when(context_dim, hidden, depth, context_mode)
        if zero_last:
            _zero(self.out)

    def forward(
        self, x: Tensor, context: Tensor | None = None, features_first: bool = False
    ) -> Tensor:
        if self.concat:
            assert context is not None
            x = torch.cat([x, context], dim=-1)
        film = self.film(context) if self.film is not None and context is not None else None
        for k, layer in enumerate(self.hidden):
            h = torch.addmm(layer.bias, x, layer.weight.T) if x.dim() == 2 else layer(x)
            x = activate(self.act, h)
            if film is not None:
                gamma, beta = film[k]
                x = torch.addcmul(beta, x, gamma)
        if features_first:
            return torch.addmm(self.out.bias[:, None], self.out.weight, x.T)
        return self.out(x)


def made_degrees(order: Tensor, hidden: int) -> Tensor:
    """Hidden-unit degrees in ``1 … D−1`` for inputs ranked by ``order`` (0-based): each
    degree equally often (cycled), sorted, so that the units a sequential solve computes at
    one step are adjacent (:mod:`harness.flows.made_plan`)."""
    d = order.numel()
    return torch.sort(torch.arange(hidden) % max(d - 1, 1) + 1).values


class _MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (a buffer)."""

    def __init__(self, mask: Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.linear(x, self.weight * self.mask, self.bias)


def _replan(module: MADE, _incompatible_keys: object) -> None:
    module._set_plan()  # a load_state_dict post-hook (a module-level function: picklable)


class MADE(nn.Module):
    """Masked autoencoder: output ``(P, B, D)`` whose ``[:, :, i]`` depends on ``x_j`` only for
    ``order[j] < order[i]`` (and on the whole context).

    Arguments:
        features: D; params: P outputs per dimension.
        order: ``(D,)`` the rank of each dimension in the autoregressive order.
        hidden, depth, activation, context_dim, context_mode, zero_last: as :class:`MLP`.
    """

    def __init__(
        self,
        features: int,
        params: int,
        hidden: int,
        depth: int,
        order: Tensor,
        activation: str = "relu",
        context_dim: int | None = None,
        context_mode: str = "concat",
        zero_last: bool = True,
    ):
        super().__init__()
        self.features, self.params = features, params
        self.concat = context_dim is not None and context_mode == "concat"
        deg_in = order.long() + 1
        deg_h = made_degrees(order, hidden)
        first = (deg_h[:, None] >= deg_in[None, :]).float()
        if self.concat:
            assert context_dim is not None
            first = torch.cat([first, torch.ones(hidden, context_dim)], dim=1)
        masks = [first] + [(deg_h[:, None] >= deg_h[None, :]).float()] * (depth - 1)
        self.hidden = nn.ModuleList(_MaskedLinear(m) for m in masks)
        out_mask = (deg_in.repeat(params)[:, None] > deg_h[None, :]).float()  # P-major units
        self.out = _MaskedLinear(out_mask)
        self.act = ACTIVATIONS[activation]()
        self.film = FiLM.when(context_dim, hidden, depth, context_mode)
        if zero_last:
            _zero(self.out)
        self.plan: MadePlan
        self._set_plan()
        self.register_load_state_dict_post_hook(_replan)

    def _set_plan(self) -> None:
        """Derive the sequential solve's plan from the masks (again after loading masks)."""
        self.plan = made_plan([m.mask for m in self.hidden], self.out.mask, self.features)
        device = self.out.mask.device
        order = self.plan.dim_order
        tensors = {
            "_dim_order": order,
            "_dim_inverse": None if order is None else torch.argsort(order),
            "_out_rows": self.plan.out_rows,
        }
        for k, h in enumerate(self.plan.hidden_orders):
            tensors[f"_hidden_order{k}"] = h
        for name, t in tensors.items():
            t = None if t is None else t.to(device)
            if name in self._buffers:
                setattr(self, name, t)
            else:
                self.register_buffer(name, t, persistent=False)

    def hidden_order(self, k: int) -> Tensor | None:
        """Hidden layer ``k``'s units sorted by solve step (``None``: already sorted)."""
        return getattr(self, f"_hidden_order{k}")

    def masked_weights(self) -> list[Tensor]:
        """The masked weight matrices ``W ⊙ M`` (hidden layers, then output), computed on
        every call: once per forward, and once per sequential solve (its ``D`` steps share
        them)."""
        return list(self.derived("masked", self._masked_weights))

    def _masked_weights(self) -> tuple[Tensor, ...]:
        return tuple(m.weight * m.mask for m in (*self.hidden, self.out))

    def derived(self, name: str, build: Callable[[], T]) -> T:
        """``build()``: a value derived from the weights, built on every call.

        Nothing derived from the weights is kept between calls. A cache keyed on the tensors'
        version counters goes stale: torch's fused optimizer steps (``Adam(fused=True)``,
        which the trainer uses) write the parameters without bumping their version counters
        (measured: ``_version`` stays 0 after a fused step), and evaluating with the weights
        of an earlier step picks the wrong best checkpoint. ``name`` labels the value for a
        profiler's reading only."""
        del name
        return build()

    def forward(
        self, x: Tensor, context: Tensor | None = None, weights: list[Tensor] | None = None
    ) -> Tensor:
        """``(P, B, D)``; each layer ``addmm(b, h, (W ⊙ M)ᵀ)``, the masked weights' transposes
        kept without gradients (:meth:`derived`), or those of ``weights`` when given."""
        if weights is None:
            wt = self.derived("transposed", lambda: tuple(w.T for w in self.masked_weights()))
        else:
            wt = tuple(w.T for w in weights)
        if self.concat:
            assert context is not None
            x = torch.cat([x, context], dim=-1)
        film = self.film(context) if self.film is not None and context is not None else None
        for k, layer in enumerate(self.hidden):
            x = activate(self.act, torch.addmm(layer.bias, x, wt[k]))
            if film is not None:
                gamma, beta = film[k]
                x = torch.addcmul(beta, x, gamma)
        out = torch.addmm(self.out.bias, x, wt[-1])
        return out.unflatten(-1, (self.params, self.features)).movedim(-2, 0)


class ConvNet(nn.Module):
    """Image conditioner: 3×3 conv → (1×1 conv) × (depth − 1) → zero-initialised 3×3 conv.

    Glow's coupling network (openai/glow) with ``depth=2``; a context is appended as constant
    channels (``concat``) or modulates every hidden channel (``film``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int,
        depth: int,
        activation: str = "relu",
        context_dim: int | None = None,
        context_mode: str = "concat",
        zero_last: bool = True,
    ):
        super().__init__()
        self.concat = context_dim is not None and context_mode == "concat"
        first = in_channels + (context_dim if self.concat else 0)
        convs = [nn.Conv2d(first, hidden, 3, padding=1)]
        convs += [nn.Conv2d(hidden, hidden, 1) for _ in range(depth - 1)]
        self.hidden = nn.ModuleList(convs)
        self.act = ACTIVATIONS[activation]()
        self.out = nn.Conv2d(hidden, out_channels, 3, padding=1)
        self.film = FiLM.when(context_dim, hidden, depth, context_mode)
        if zero_last:
            _zero(self.out)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.concat:
            assert context is not None
            c = context[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            x = torch.cat([x, c], dim=1)
        film = self.film(context) if self.film is not None and context is not None else None
        for k, layer in enumerate(self.hidden):
            x = self.act(layer(x))
            if film is not None:
                gamma, beta = film[k]
                x = torch.addcmul(beta[:, :, None, None], x, gamma[:, :, None, None])
        return self.out(x)
