"""Time-conditioned dynamics networks ``f(t, z; c)`` for continuous normalizing flows.

FFJORD's *concat-squash* layers condition every layer on the time ``t``:

.. math:: \\mathrm{CS}(t, h) = (W h + b) \\odot \\sigma(a_g t + b_g) + a_b t,

a linear (or convolutional) map of ``h`` whose outputs are gated by a sigmoid of ``t`` and
shifted by a linear function of ``t``. :class:`ODENet` stacks them for vectors
(``D → [hidden] × depth → D``) and :class:`ConvODENet` for images (3×3 convolutions, the
channel count kept). A context ``c`` enters as in :mod:`harness.flows.nets`: appended to the
input (``"concat"``, as constant channels for images) or as FiLM of every hidden activation
(``"film"``: ``h ↦ h · (1 + γ(c)) + β(c)``).

The output layer is zero-initialised (its weight, bias and time shift), so a freshly built
CNF has ``f ≡ 0``: the identity map, solved in the fewest function evaluations.

References:
    Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable Reversible
    Generative Models", ICLR 2019, https://arxiv.org/abs/1810.01367 (concat-squash layers:
    ``lib/layers/diffeq_layers/basic.py`` of rtqichen/ffjord).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch
from torch import Tensor, nn

from harness.flows.nets import FiLM

__all__ = [
    "CNF_ACTIVATIONS",
    "ConcatSquashConv2d",
    "ConcatSquashLinear",
    "ConvODENet",
    "ODENet",
]

CNF_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


class _TimeGate(nn.Module):
    """``σ(a_g t + b_g)`` and ``a_b t``, each of shape ``(1, n)``, from a scalar ``t``."""

    def __init__(self, n: int):
        super().__init__()
        self.gate = nn.Linear(1, n)
        self.shift = nn.Linear(1, n, bias=False)

    def forward(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        tt = t.to(like).reshape(1, 1)
        return torch.sigmoid(self.gate(tt)), self.shift(tt)


class ConcatSquashLinear(nn.Module):
    """``(W h + b) ⊙ σ(a_g t + b_g) + a_b t`` for ``h`` of shape ``(B, n_in)``."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.layer = nn.Linear(n_in, n_out)
        self.time = _TimeGate(n_out)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        gate, shift = self.time(t, h)
        return torch.addcmul(shift, self.layer(h), gate)

    def zero_(self) -> None:
        """Make the output identically zero (weight, bias and time shift)."""
        for p in (self.layer.weight, self.layer.bias, self.time.shift.weight):
            nn.init.zeros_(p)


class ConcatSquashConv2d(nn.Module):
    """The convolutional concat-squash layer: a 3×3 convolution gated per channel by ``t``."""

    def __init__(self, n_in: int, n_out: int, kernel: int = 3):
        super().__init__()
        self.layer = nn.Conv2d(n_in, n_out, kernel, padding=kernel // 2)
        self.time = _TimeGate(n_out)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        gate, shift = self.time(t, h)
        return torch.addcmul(shift[:, :, None, None], self.layer(h), gate[:, :, None, None])

    def zero_(self) -> None:
        for p in (self.layer.weight, self.layer.bias, self.time.shift.weight):
            nn.init.zeros_(p)


class _Stack(nn.Module):
    """Shared body of :class:`ODENet` and :class:`ConvODENet` (``make`` builds one layer)."""

    def __init__(
        self,
        n: int,
        hidden: int,
        depth: int,
        activation: str,
        context_dim: int | None,
        context_mode: str,
        make: Callable[[int, int], nn.Module],
    ):
        super().__init__()
        self.concat = context_dim is not None and context_mode == "concat"
        widths = [n + (context_dim if self.concat else 0)] + [hidden] * depth + [n]
        self.layers = nn.ModuleList(make(a, b) for a, b in pairwise(widths))
        self.act = CNF_ACTIVATIONS[activation]()
        self.film = FiLM.when(context_dim, hidden, depth, context_mode)
        self.layers[-1].zero_()  # type: ignore[operator]

    def _cat(self, z: Tensor, context: Tensor) -> Tensor:
        raise NotImplementedError

    def _film(self, h: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, t: Tensor, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``dz/dt = f(t, z; c)`` with ``z`` of shape ``(B, …)`` and ``t`` a scalar."""
        h = self._cat(z, context) if self.concat and context is not None else z
        film = self.film(context) if self.film is not None and context is not None else None
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            h = layer(t, h)
            if k < last:
                h = self.act(h)
                if film is not None:
                    h = self._film(h, *film[k])
        return h


class ODENet(_Stack):
    """Vector dynamics ``R × R^D → R^D``: ``depth`` concat-squash hidden layers of ``hidden``.

    Arguments:
        features: D; hidden, depth: the hidden widths (FFJORD's toy nets: 64-64-64).
        activation: a key of :data:`CNF_ACTIVATIONS` (smooth: the solver needs smooth ``f``).
        context_dim, context_mode: the conditioning (``None`` for none), see the module doc.
    """

    def __init__(
        self,
        features: int,
        hidden: int = 64,
        depth: int = 3,
        activation: str = "softplus",
        context_dim: int | None = None,
        context_mode: str = "concat",
    ):
        super().__init__(
            features, hidden, depth, activation, context_dim, context_mode, ConcatSquashLinear
        )

    def _cat(self, z: Tensor, context: Tensor) -> Tensor:
        return torch.cat([z, context], dim=-1)

    def _film(self, h: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        return torch.addcmul(beta, h, gamma)


class ConvODENet(_Stack):
    """Image dynamics on ``(B, C, H, W)``: 3×3 concat-squash convolutions, ``hidden`` channels."""

    def __init__(
        self,
        channels: int,
        hidden: int = 64,
        depth: int = 3,
        activation: str = "softplus",
        context_dim: int | None = None,
        context_mode: str = "concat",
    ):
        super().__init__(
            channels, hidden, depth, activation, context_dim, context_mode, ConcatSquashConv2d
        )

    def _cat(self, z: Tensor, context: Tensor) -> Tensor:
        c = context[:, :, None, None].expand(-1, -1, *z.shape[-2:])
        return torch.cat([z, c], dim=1)

    def _film(self, h: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        return torch.addcmul(beta[:, :, None, None], h, gamma[:, :, None, None])
