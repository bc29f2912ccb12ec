"""The sequential direction of an autoregressive layer, each MADE node computed once.

Solving ``v = τ(u; θ(u))`` for ``u`` by ``D`` full passes of the MADE costs ``D`` passes. Here step
``s`` of the plan (:mod:`harness.flows.made_plan`) computes only what becomes known at that
step: the hidden units with ``τ = s`` (from the inputs and units already known), then the
parameters ``θ_i`` of the inputs of step ``s``, then those inputs ``u_i = τ^{-1}(v_i; θ_i)``. Over
all steps that is one masked MADE pass (about half of a dense one) plus the element-wise inverse of
one column per step. The log-det of the solved direction is the sum of each step's
``log|∂u_i/∂v_i|``, exact because ``θ_i`` is exact when it is used.

Activations are kept feature-major (``(units, B)``), in the plan's sorted order, so every read
is a prefix of rows and every write a block of rows. Without an autograd graph they live in
preallocated buffers written in place; when gradients are recorded the blocks are joined with
``torch.cat`` instead (an in-place write would invalidate what the backward pass saved).
The loop bounds are plain ints, so ``torch.compile`` unrolls the loop into one graph.

The masked weights, sorted and cut into each step's blocks (:class:`_SolveWeights`), are
views built once per call (:meth:`~harness.flows.nets.MADE.derived`): the ``D`` steps of a
solve share them, and with gradients they are in the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from harness.flows.layers.elementwise import Elementwise
from harness.flows.nets import MADE, activate

__all__ = ["solve"]


class _Rows:
    """``(n, B)`` feature-major activations filled block by block, read by prefixes."""

    def __init__(self, n: int, batch: int, like: Tensor, in_place: bool):
        self.in_place = in_place
        self.buf = like.new_empty(n, batch) if in_place else like.new_empty(0, batch)
        self.filled = 0

    def block(self, start: int, stop: int) -> Tensor | None:
        """The buffer rows ``[start, stop)`` to compute into (in place), else ``None``."""
        return self.buf[start:stop] if self.in_place else None

    def add(self, rows: Tensor) -> None:
        """Append computed rows (a no-op in place: they were computed into :meth:`block`)."""
        if not self.in_place:
            self.buf = rows if self.filled == 0 else torch.cat((self.buf, rows))
        self.filled += rows.shape[0]

    def prefix(self, stop: int) -> Tensor:
        return self.buf[:stop]


def _affine_rows(bias: Tensor, weight: Tensor, inputs: Tensor, out: Tensor | None) -> Tensor:
    """``bias + weight @ inputs`` (``weight`` may have no columns: then ``bias`` alone)."""
    if weight.shape[1] == 0:
        full = bias.expand(bias.shape[0], inputs.shape[1])
        return full if out is None else out.copy_(full)
    if out is None:
        return torch.addmm(bias, weight, inputs)
    return torch.addmm(bias, weight, inputs, out=out)


@dataclass(frozen=True)
class _Block:
    """The rows ``[start, stop)`` of one layer that one step computes: their weights over the
    inputs known then (a prefix of the columns) and their bias column ``(stop − start, 1)``."""

    start: int
    stop: int
    weight: Tensor
    bias: Tensor


@dataclass(frozen=True)
class _SolveWeights:
    """A MADE's weights cut into the blocks of its solve plan (see the module doc).

    ``hidden[s][k]``: hidden layer ``k``'s block at step ``s`` (``None``: no unit of that layer
    becomes known then); ``known[s][k]``: how many of layer ``k``'s units are known after step
    ``s`` (the prefix the next layer reads); ``out[s]``: the output rows of step ``s``,
    parameter-major. ``first_bias`` and ``context``: the first layer's bias column and context
    columns in sorted row order, when a context is concatenated (its part of the bias is added
    per call), else ``None``.
    """

    hidden: tuple[tuple[_Block | None, ...], ...]
    known: tuple[tuple[int, ...], ...]
    out: tuple[_Block, ...]
    first_bias: Tensor | None
    context: Tensor | None


def _sorted_weights(made: MADE) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
    """Masked weights and biases in the plan's sorted order (rows and columns), and the
    first layer's context columns (``None`` without a concatenated context)."""
    weights = made.masked_weights()
    biases = [layer.bias for layer in made.hidden] + [made.out.bias]
    d = made.features
    ctx = weights[0][:, d:] if made.concat else None
    weights[0] = weights[0][:, :d]
    prev = made._dim_order
    for k in range(len(made.hidden)):
        rows = made.hidden_order(k)
        w = weights[k] if prev is None else weights[k].index_select(1, prev)
        if rows is not None:
            w, biases[k] = w.index_select(0, rows), biases[k].index_select(0, rows)
            if k == 0 and ctx is not None:
                ctx = ctx.index_select(0, rows)
        weights[k], prev = w, rows
    w = weights[-1].index_select(0, made._out_rows)
    weights[-1] = w if prev is None else w.index_select(1, prev)
    biases[-1] = biases[-1].index_select(0, made._out_rows)
    return weights, biases, ctx


def _solve_weights(made: MADE) -> _SolveWeights:
    """The blocks of every step (:class:`_SolveWeights`), views of the sorted weights."""
    plan = made.plan
    weights, biases, ctx = _sorted_weights(made)
    cols = [b[:, None] for b in biases]
    hidden, known, out = [], [], []
    for s in range(plan.steps):
        lo, hi = plan.dim_bounds[s], plan.dim_bounds[s + 1]
        blocks: list[_Block | None] = []
        n_in = lo
        for k, ends in enumerate(plan.hidden_ends):
            start, stop = (ends[s - 1] if s else 0), ends[s]
            w = weights[k][start:stop, :n_in]
            blocks.append(_Block(start, stop, w, cols[k][start:stop]) if stop > start else None)
            n_in = ends[s]
        r0, r1 = made.params * lo, made.params * hi
        hidden.append(tuple(blocks))
        known.append(tuple(ends[s] for ends in plan.hidden_ends))
        out.append(_Block(r0, r1, weights[-1][r0:r1, :n_in], cols[-1][r0:r1]))
    return _SolveWeights(
        tuple(hidden), tuple(known), tuple(out), None if ctx is None else cols[0], ctx
    )


def solve(
    made: MADE, ew: Elementwise, v: Tensor, context: Tensor | None, with_log_det: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``u`` with ``ew.forward(u, made(u)) = v``: ``(u, Σ_i log|∂u_i/∂v_i| (B,) or None,
    aux (B, D) or None)``, ``aux`` what ``ew`` keeps for its diagnostics.

    The blocks of the weights are built once per call and shared by the steps; the per-step
    log-derivatives are stored as rows and summed once at the end."""
    plan = made.plan
    batch, d, n_params = v.shape[0], made.features, made.params
    in_place = not (torch.is_grad_enabled() and (v.requires_grad or _any_grad(made, context)))
    sw = made.derived("solve", lambda: _solve_weights(made))
    first_bias = None
    if sw.context is not None:
        assert context is not None and sw.first_bias is not None
        first_bias = torch.addmm(sw.first_bias, sw.context, context.T)
    film = None
    if made.film is not None and context is not None:
        film = []
        for k, (gamma, beta) in enumerate(made.film(context)):
            rows = made.hidden_order(k)
            g, b = gamma.T, beta.T
            if rows is not None:
                g, b = g.index_select(0, rows), b.index_select(0, rows)
            film.append((g, b))
    vt = v.T  # feature-major (D, B), in solve order
    vs = vt.contiguous() if made._dim_order is None else vt.index_select(0, made._dim_order)
    units = [_Rows(ends[-1], batch, v, in_place) for ends in plan.hidden_ends]
    solved = _Rows(d, batch, v, in_place)
    lds = _Rows(d, batch, v, in_place) if with_log_det else None
    kept = _Rows(d, batch, v, in_place) if with_log_det else None  # aux, for diagnostics
    act_in_place = film is None and _in_place_act(made)
    aux_is_ld = False  # the element-wise transform keeps its log-derivatives as its aux
    for s in range(plan.steps):
        lo, hi = plan.dim_bounds[s], plan.dim_bounds[s + 1]
        inputs = solved.prefix(lo)
        for k, (blk, rows) in enumerate(zip(sw.hidden[s], units, strict=True)):
            if blk is not None:
                start, stop = blk.start, blk.stop
                bias = blk.bias if k or first_bias is None else first_bias[start:stop]
                h = _affine_rows(bias, blk.weight, inputs, rows.block(start, stop))
                h = activate(made.act, h)
                if film is not None:
                    gamma, beta = film[k]
                    h = torch.addcmul(beta[start:stop], h, gamma[start:stop])
                _put(rows, start, stop, h, act_in_place)
            inputs = rows.prefix(sw.known[s][k])
        blk = sw.out[s]
        theta = _affine_rows(blk.bias, blk.weight, inputs, None)  # (P·n, B)
        theta = theta.view(n_params, hi - lo, batch)  # (P, n, B)
        u, ld, aux = ew.inverse(vs[lo:hi], theta, with_log_det)  # feature-major (n, B)
        _put(solved, lo, hi, u, False)
        if lds is not None and ld is not None:
            _put(lds, lo, hi, ld, False)
        aux_is_ld = aux is not None and aux is ld
        if kept is not None and aux is not None and not aux_is_ld:
            _put(kept, lo, hi, aux, False)
    log_det = None
    if lds is not None and lds.filled == d:
        log_det = lds.prefix(d).sum(0)
    if aux_is_ld:
        kept = lds  # stored once
    u_all = solved.prefix(d).T
    aux_all = kept.prefix(d).T if kept is not None and kept.filled == d else None
    if made._dim_inverse is not None:
        u_all = u_all.index_select(1, made._dim_inverse)
        aux_all = None if aux_all is None else aux_all.index_select(1, made._dim_inverse)
    else:
        u_all = u_all.contiguous()
    return u_all, log_det, aux_all


def _put(rows: _Rows, start: int, stop: int, block: Tensor, written: bool) -> None:
    """Store ``block`` as rows ``[start, stop)`` (``written``: it already is, in place)."""
    if rows.in_place and not written:
        rows.block(start, stop).copy_(block)
    rows.add(block)


def _in_place_act(made: MADE) -> bool:
    return bool(getattr(made.act, "inplace", False))


def _any_grad(made: MADE, context: Tensor | None) -> bool:
    if context is not None and context.requires_grad:
        return True
    return any(p.requires_grad for p in made.parameters())
