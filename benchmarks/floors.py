"""The pieces of the floors timed by ``flows_vs_peers.py --floor`` and ``cnf_rows.py``.

A floor is a lower bound on one operation of one model: the work that any implementation of
that model must do, timed alone on fixed inputs of the right shapes, with everything else
(activations, flow algebra, parameter normalisation, bookkeeping) left out. Each piece here is
one kind of such work; ``flows_vs_peers.py`` sums the pieces a model has.

- **Dense products** (``GemmFloor`` in ``flows_vs_peers.py``): every linear layer of the model
  applied once, ``X W^T + b``.
- **Spline work** (:class:`SplineWork`, :func:`rq_transform`): the monotone rational-quadratic
  spline of each spline layer on the elements it transforms, with its knots given as a fixed
  input (:func:`rq_knots`: the softmax, cumulative sums and softplus that turn a conditioner's
  output into knots are *not* counted). Per element: the bin search (``torch.searchsorted``
  over the ``K − 1`` inner knots, the searched axis last, which on a CPU is about twice as fast
  as comparing against every knot with the bin axis leading), one ``gather`` of the bin's two
  knots and derivatives, and the closed form of Durkan et al. (2019). In bin ``k``, with
  ``ξ = (x − x_k)/w_k``, ``s_k = h_k/w_k``, ``c_k = d_k + d_{k+1} − 2 s_k``:

  .. math::

      y = y_k + \\frac{h_k (s_k ξ^2 + d_k ξ(1−ξ))}{s_k + c_k ξ(1−ξ)}, \\qquad
      \\log\\frac{dy}{dx} = \\log\\bigl(s_k^2 (d_{k+1} ξ^2 + 2 s_k ξ(1−ξ) + d_k (1−ξ)^2)\\bigr)
                             − 2 \\log(s_k + c_k ξ(1−ξ)),

  and the inverse solves ``a ξ^2 + b ξ + c = 0`` with ``a = h_k (s_k − d_k) + (y − y_k) c_k``,
  ``b = h_k d_k − (y − y_k) c_k``, ``c = −s_k (y − y_k)`` by the stable root
  ``ξ = 2c / (−b − \\sqrt{b^2 − 4ac})``. Outside ``[−B, B]`` the map is the identity
  (a clamp and a select, also counted). The log-det is computed where the operation needs it
  (density and train), not for sampling or the inverse.
- **Sequential steps** (:func:`dependency_chain`): a direction of an autoregressive layer that
  has to be solved (MAF's sampling, IAF's density) has a dependency chain as long as the
  layer's solve plan has steps (``D`` for a standard MADE): ``θ_s`` needs ``u_{<s}``. Its
  products are counted once, in the dense pass (ours computes each MADE unit once,
  :mod:`harness.flows.layers.made_solve`; the plain approach runs the whole MADE ``D``
  times), so what a solve must add is the chain itself: ``steps − 1`` dependent steps after
  the first, each counted as ONE element-wise op on a batch column ``(B,)`` — the least that
  an implementation built from framework ops dispatches per dependent step. (A hand-written
  kernel that solves the whole chain in one launch could do less; no library compared here
  is one.)
- **ODE evaluations** (:class:`CNFFloor`): the dense products of a CNF's network (the
  batch-sized ones; the time gates act on the scalar ``t``) applied ``nfe`` times, the number
  of function evaluations that our solve used on the same batch. Neither the solver's stage
  arithmetic nor the divergence (trace) is counted.

Every piece returns a scalar that depends on all of its work, so that a train step (backward
then an optimizer step) goes through every piece.

References:
    Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019,
    https://arxiv.org/abs/1906.04032.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CNFFloor", "SplineWork", "dependency_chain", "rq_knots", "rq_transform"]


# ── spline work ────────────────────────────────────────────────────────────────────────────
def _knot_positions(raw: Tensor, bound: float, minimum: float) -> Tensor:
    """``(K + 1, *S)`` knots on ``[−bound, bound]`` from unnormalised bin sizes ``(K, *S)``."""
    k = raw.shape[0]
    size = torch.softmax(raw, dim=0) * (1.0 - minimum * k) + minimum
    inner = torch.cumsum(size[:-1], dim=0) * (2.0 * bound) - bound
    end = inner.new_full((1, *raw.shape[1:]), bound)
    return torch.cat((-end, inner, end))


def rq_knots(
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    tail_bound: float = 3.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> Tensor:
    """The spline floor's fixed input: the table ``(3, *S, K + 1)`` of knot abscissae, knot
    ordinates and knot derivatives (``1`` at both ends) from the unconstrained parameters that
    our spline layer takes (``widths, heights (K, *S)``, ``derivatives (K − 1, *S)``; the
    parameterisation of :mod:`harness.flows.layers.splines`). Built once; not timed."""
    cw = _knot_positions(widths, tail_bound, min_bin_width)
    ch = _knot_positions(heights, tail_bound, min_bin_height)
    shift = math.log(math.expm1(1.0 - min_derivative))
    inner = F.softplus(derivatives + shift) + min_derivative
    one = torch.ones_like(inner[:1])
    return torch.stack((cw, ch, torch.cat((one, inner, one)))).movedim(1, -1).contiguous()


def rq_transform(
    x: Tensor,
    table: Tensor,
    search: Tensor,
    *,
    inverse: bool,
    tail_bound: float,
    with_log_det: bool,
) -> tuple[Tensor, Tensor | None]:
    """The spline (or its inverse) on ``x`` (shape ``S``) given its knots (module doc).

    Arguments:
        table: ``(3, *S, K + 1)`` from :func:`rq_knots`.
        search: the inner knots of the searched axis, ``table[1 if inverse else 0, ..., 1:-1]``
            made contiguous (``torch.searchsorted`` reads its sorted axis contiguously).

    Returns:
        ``(y, log|dy/dx| of the map applied, or None)``.
    """
    bound = float(tail_bound)
    inside = x.abs() <= bound
    xc = x.clamp(-bound, bound)
    idx = torch.searchsorted(search, xc.unsqueeze(-1), right=True)  # the bin, (*S, 1)
    both = torch.cat((idx, idx + 1), dim=-1).expand(3, *x.shape, 2)
    (xk, xk1), (yk, yk1), (dk, dk1) = (t.unbind(-1) for t in table.gather(-1, both).unbind(0))
    wk, hk = xk1 - xk, yk1 - yk
    s = hk / wk
    curv = dk + dk1 - 2.0 * s
    if inverse:
        diff = xc - yk
        a = hk * (s - dk) + diff * curv
        b = hk * dk - diff * curv
        c = -s * diff
        xi = (2.0 * c) / (-b - (b.square() - 4.0 * a * c).clamp_min(0.0).sqrt())
        out = xi * wk + xk
    else:
        xi = (xc - xk) / wk
        t1m = xi * (1.0 - xi)
        out = yk + hk * (s * xi.square() + dk * t1m) / (s + curv * t1m)
    out = torch.where(inside, out, x)
    if not with_log_det:
        return out, None
    t1m = xi * (1.0 - xi)
    slope = s.square() * (dk1 * xi.square() + 2.0 * s * t1m + dk * (1.0 - xi).square())
    log_det = slope.log() - 2.0 * (s + curv * t1m).log()
    if inverse:
        log_det = -log_det
    return out, torch.where(inside, log_det, torch.zeros_like(log_det))


class SplineWork(nn.Module):
    """One spline layer's work on ``(batch, elements)`` inputs with ``bins`` bins: random
    knots (fixed buffers) and inputs (standard normal: a few fall in the tails, as data do).
    Under autograd the knots and inputs enter as fresh leaves that require gradients, so that
    a train step also back-propagates through the spline (to its parameters and its input)."""

    def __init__(self, batch: int, elements: int, bins: int, tail_bound: float, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        raw = torch.randn(3 * bins - 1, batch, elements, generator=g)
        table = rq_knots(raw[:bins], raw[bins : 2 * bins], raw[2 * bins :], tail_bound)
        self.register_buffer("x", torch.randn(batch, elements, generator=g))
        self.register_buffer("table", table)
        self.register_buffer("search_forward", table[0, ..., 1:-1].contiguous())
        self.register_buffer("search_inverse", table[1, ..., 1:-1].contiguous())
        self.bins, self.tail_bound, self.elements = int(bins), float(tail_bound), int(elements)

    def forward(self, inverse: bool, with_log_det: bool) -> Tensor:
        x, table = self.x, self.table
        if torch.is_grad_enabled():
            x, table = x.detach().requires_grad_(), table.detach().requires_grad_()
        search = self.search_inverse if inverse else self.search_forward
        y, ld = rq_transform(x, table, search, inverse=inverse, tail_bound=self.tail_bound,
                             with_log_det=with_log_det)  # fmt: skip
        return y.sum() if ld is None else y.sum() + ld.sum()


# ── sequential steps ───────────────────────────────────────────────────────────────────────
def dependency_chain(start: Tensor, steps: int) -> Tensor:
    """``steps`` dependent element-wise ops on the column ``start`` ``(B,)``:
    ``c_0 = start``, ``c_{j+1} = start + c_j / 2`` (one ``addcmul`` each; contracting, so the
    values stay finite), returning ``c_steps``. Each op needs the previous one's result: the
    chain is as long as it says, whatever the runtime fuses around it."""
    half = torch.full_like(start, 0.5)
    c = start
    for _ in range(steps):
        c = torch.addcmul(start, c, half)
    return c


# ── ODE evaluations ────────────────────────────────────────────────────────────────────────
class CNFFloor(nn.Module):
    """The dense products of a CNF's network, ``nfe`` times (the module doc). ``layers``: the
    network's batch-sized ``nn.Linear`` layers, in order; each evaluation applies every one of
    them once to a fixed input of its width (the activations, time gates, solver arithmetic
    and trace are not counted). Its parameters are copies of the layers' (a train step
    reaches every one)."""

    def __init__(self, layers: list[nn.Linear], batch: int, nfe: int):
        super().__init__()
        self.nfe = int(nfe)
        self.weights = nn.ParameterList(nn.Parameter(m.weight.detach().clone()) for m in layers)
        self.biases = nn.ParameterList(nn.Parameter(m.bias.detach().clone()) for m in layers)
        g = torch.Generator().manual_seed(0)
        for i, m in enumerate(layers):
            self.register_buffer(f"input{i}", torch.randn(batch, m.in_features, generator=g))

    def forward(self) -> Tensor:
        total = torch.zeros((), device=self.input0.device)
        inputs = [getattr(self, f"input{i}") for i in range(len(self.weights))]
        for _ in range(self.nfe):
            for x, w, b in zip(inputs, self.weights, self.biases):
                total = total + torch.addmm(b, x, w.T).sum()
        return total

    def log_prob(self, _: Tensor) -> Tensor:
        """The floor behind the interface of a flow (``cnf_rows``' timed callables)."""
        return self().expand(len(self.input0))
