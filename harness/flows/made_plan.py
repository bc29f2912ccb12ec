"""The step plan of a MADE: when each input, hidden unit and output is known in a sequential solve.

Inverting an autoregressive layer solves for the inputs ``u`` one group after another. Rather
than running the whole MADE once per group (``D`` full passes), the solve computes each node of
the network exactly once, at the first step at which every node it is connected to is known.
With the masks ``M_1 … M_L`` (hidden layers) and ``M_out`` (output rows, parameter-major), the
step of a node is

.. math::

    τ(h) = 1 + \\max_{j → h} τ(u_j) \\quad \\text{(first layer; 0 if it sees no input)}, \\qquad
    τ(h) = \\max_{g → h} τ(g) \\quad \\text{(deeper layers)},

    τ(u_i) = \\max_{h → θ_i} τ(h)
    \\quad \\text{(over the rows of dimension } i\\text{'s parameters)}.

This is a fixed point on a DAG (the masks are autoregressive), found by iteration; a cycle
means the masks are not autoregressive and is refused. For the standard MADE (hidden degree
``m`` sees the inputs of rank ``< m``) the step of the input of rank ``r`` is ``r`` and that of a
hidden unit of degree ``m`` is ``m``, so step ``s`` computes the hidden units of degree ``s``,
then the parameters of the input of rank ``s``; over all steps the work is one masked pass.

Sorted by step, every set a step reads is a prefix: the inputs known before step ``s``, the
hidden units with ``τ ≤ s``. The plan holds the sort orders (``None`` where the order is the
identity, so that nothing is gathered) and the prefix ends.

References:
    Germain et al., "MADE", ICML 2015, https://arxiv.org/abs/1502.03509.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

__all__ = ["MadePlan", "made_plan"]


@dataclass(frozen=True)
class MadePlan:
    """Where a sequential solve finds each node of a MADE (see the module doc).

    Attributes:
        steps: number of sequential steps (``D`` for a standard MADE).
        dim_order: inputs sorted by step (``None``: the identity).
        dim_bounds: the sorted inputs of step ``s`` are
            ``dim_order[dim_bounds[s]:dim_bounds[s+1]]``.
        hidden_orders: per hidden layer, its units sorted by step (``None``: the identity).
        hidden_ends: per hidden layer, ``hidden_ends[l][s]`` = number of units with ``τ ≤ s``.
        out_rows: output rows by step: the rows of step ``s`` are
            ``out_rows[P·dim_bounds[s] : P·dim_bounds[s+1]]``, parameter-major within the step
            (row ``p · n + j`` of the block: parameter ``p`` of the step's ``j``-th input).
    """

    steps: int
    dim_order: Tensor | None
    dim_bounds: tuple[int, ...]
    hidden_orders: tuple[Tensor | None, ...]
    hidden_ends: tuple[tuple[int, ...], ...]
    out_rows: Tensor


def _steps_of(prev: Tensor, mask: Tensor, offset: int) -> Tensor:
    """``τ`` of each row of ``mask``: ``offset +`` the largest ``τ`` of what it sees (0: none)."""
    seen = mask.bool()
    lifted = (prev + offset)[None, :].expand(seen.shape)
    return torch.where(seen, lifted, torch.zeros_like(lifted)).amax(dim=1)


def _order(tau: Tensor) -> Tensor | None:
    order = torch.sort(tau, stable=True).indices
    return None if torch.equal(order, torch.arange(tau.numel())) else order


def _ends(tau_sorted: Tensor, steps: int) -> tuple[int, ...]:
    return tuple(int((tau_sorted <= s).sum()) for s in range(steps))


def made_plan(hidden_masks: Sequence[Tensor], out_mask: Tensor, features: int) -> MadePlan:
    """The plan of a MADE from its masks (see the module doc).

    Arguments:
        hidden_masks: the hidden layers' 0/1 masks ``(H_l, H_{l−1})``; the first one's first
            ``features`` columns are the inputs (any further columns, a context, are ignored:
            a context is known from the start).
        out_mask: ``(P · features, H_L)``, rows parameter-major (row ``p · D + i``).
        features: ``D``.
    """
    d = int(features)
    masks = [m.detach().to("cpu") for m in hidden_masks]
    masks[0] = masks[0][:, :d]
    out = out_mask.detach().to("cpu")
    p = out.shape[0] // d
    tau_in = torch.zeros(d, dtype=torch.long)
    for _ in range(d + 2):
        taus = [_steps_of(tau_in, masks[0], 1)]
        for m in masks[1:]:
            taus.append(_steps_of(taus[-1], m, 0))
        rows = _steps_of(taus[-1], out, 0)
        new = rows.view(p, d).amax(dim=0)
        if torch.equal(new, tau_in):
            break
        tau_in = new
    else:
        raise ValueError(
            "MADE: the masks are not autoregressive (an input depends on itself through the "
            "network); rebuild the layer or load masks saved by nfbench"
        )
    steps = int(tau_in.max()) + 1
    dim_order = _order(tau_in)
    sorted_dims = torch.arange(d) if dim_order is None else dim_order
    dim_bounds = (0, *(int((tau_in <= s).sum()) for s in range(steps)))
    hidden_orders, hidden_ends = [], []
    for tau in taus:
        order = _order(tau)
        hidden_orders.append(order)
        hidden_ends.append(_ends(tau if order is None else tau[order], steps))
    params = torch.arange(p)[:, None] * d
    out_rows = torch.cat(
        [(params + sorted_dims[lo:hi][None, :]).reshape(-1) for lo, hi in pairwise(dim_bounds)]
    )
    return MadePlan(
        steps, dim_order, dim_bounds, tuple(hidden_orders), tuple(hidden_ends), out_rows
    )
