"""The divergence ``tr(∂f/∂z)`` of a CNF's dynamics, exact or estimated, and RNODE's rates.

Pure functions of a dynamics output ``f`` (shape ``(B, …)``), the input ``z`` it was computed
from (in one autograd graph) and, for the estimator, a probe ``ε`` of ``z``'s shape:

- :func:`exact_divergence`: ``tr J = Σ_i ∂f_i/∂z_i`` from ``D`` vector-Jacobian products, one
  per row ``J_i = ∂f_i/∂z`` (cost: ``D`` backward passes; for small ``D``);
- :func:`hutchinson_divergence`: ``ε^T J ε`` from one vector-Jacobian product, unbiased when
  ``E[ε ε^T] = I`` (Rademacher or standard-normal ``ε``): ``E[ε^T J ε] = tr J``.

Both also return the rate of RNODE's Jacobian regulariser, ``‖J‖_F²`` (exact: the sum of the
squared rows; estimated: ``‖ε^T J‖²``, unbiased for the same reason: ``E[‖ε^T J‖²] =
tr(J J^T)``), when asked, and :func:`kinetic_rate` is the kinetic-energy rate ``‖f‖²``.

References:
    Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", 1989; Grathwohl et al., FFJORD, https://arxiv.org/abs/1810.01367;
    Finlay et al., "How to train your neural ODE", ICML 2020, https://arxiv.org/abs/2002.02798.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "NOISES",
    "draw_noise",
    "exact_divergence",
    "hutchinson_divergence",
    "kinetic_rate",
]

NOISES = ("rademacher", "gaussian")


def draw_noise(like: Tensor, kind: str, generator: torch.Generator | None = None) -> Tensor:
    """A probe ``ε`` shaped like ``like`` with ``E[ε ε^T] = I``: ±1 (Rademacher) or N(0, 1)."""
    if kind == "rademacher":
        bits = torch.randint(
            0, 2, like.shape, device=like.device, dtype=torch.int8, generator=generator
        )
        return bits.to(like.dtype).mul_(2).sub_(1)
    if kind == "gaussian":
        return torch.randn(like.shape, device=like.device, dtype=like.dtype, generator=generator)
    raise ValueError(f"draw_noise: noise must be one of {list(NOISES)}, got {kind!r}")


def exact_divergence(
    f: Tensor, z: Tensor, create_graph: bool, frobenius: bool = False
) -> tuple[Tensor, Tensor | None]:
    """``(tr ∂f/∂z, ‖∂f/∂z‖_F² or None)`` per sample, shape ``(B,)``, from ``D`` rows.

    ``z`` must require grad and ``f`` must have been computed from it; the event dimensions of
    both are flattened (``D = ∏ event shape``).
    """
    b = f.shape[0]
    flat = f.reshape(b, -1)
    d = flat.shape[1]
    div = f.new_zeros(b)
    fro = f.new_zeros(b) if frobenius else None
    for i in range(d):
        (row,) = torch.autograd.grad(
            flat[:, i].sum(), z, create_graph=create_graph, retain_graph=True
        )
        row = row.reshape(b, -1)
        div = div + row[:, i]
        if fro is not None:
            fro = fro + row.square().sum(-1)
    return div, fro


def hutchinson_divergence(
    f: Tensor, z: Tensor, eps: Tensor, create_graph: bool, frobenius: bool = False
) -> tuple[Tensor, Tensor | None]:
    """``(ε^T J ε, ‖ε^T J‖² or None)`` per sample, shape ``(B,)``: one vector-Jacobian product."""
    (v,) = torch.autograd.grad(f, z, eps, create_graph=create_graph)
    b = f.shape[0]
    div = (v * eps).reshape(b, -1).sum(-1)
    fro = v.square().reshape(b, -1).sum(-1) if frobenius else None
    return div, fro


def kinetic_rate(f: Tensor) -> Tensor:
    """``‖f‖²`` per sample, shape ``(B,)`` (RNODE's kinetic-energy rate)."""
    return f.reshape(f.shape[0], -1).square().sum(-1)
