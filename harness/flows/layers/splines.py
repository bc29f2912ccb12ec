"""Monotone rational-quadratic splines with identity tails, as pure functions.

On ``[−B, B]`` the spline has ``K`` bins with knots ``(x_k, y_k)`` and derivatives ``d_k``
(``d_0 = d_K = 1`` so that it joins the identity tails smoothly). In bin ``k``, with
``ξ = (x − x_k)/w_k``, ``s_k = h_k / w_k``:

.. math::

    y = y_k + \\frac{h_k (s_k ξ^2 + d_k ξ(1−ξ))}{s_k + (d_{k+1} + d_k − 2 s_k) ξ(1−ξ)}, \\qquad
    \\frac{dy}{dx} = \\frac{s_k^2 (d_{k+1} ξ^2 + 2 s_k ξ(1−ξ) + d_k (1−ξ)^2)}
                        {(s_k + (d_{k+1} + d_k − 2 s_k) ξ(1−ξ))^2}

and the inverse solves the quadratic for ``ξ`` (the numerically stable root ``2c/(−b − √Δ)``).
Everything is computed for every element on clamped inputs and then selected with
``torch.where``: no boolean indexing, so the cost does not depend on how many inputs fall in
the tails and the function traces cleanly.

Parameterization: widths ``w = m_w + (1 − K m_w) softmax(θ_w)`` (heights alike) scaled to
``2B``; inner derivatives ``d = m_d + softplus(θ_d + c)`` with ``c = log(e^{1 − m_d} − 1)``, so
that all-zero parameters give uniform bins with unit derivatives, i.e. the identity.

Layout: the bin axis LEADS (``(K, *S)`` for inputs of shape ``S``), so the softmax, the
cumulative sums and the bin look-up reduce over the outermost axis while the elements run
contiguously inside; on a CPU that is several times faster than reducing over a short last axis.
The bin's knots and derivatives are read with one ``gather`` from one table.

References:
    Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019,
    https://arxiv.org/abs/1906.04032.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["rq_spline"]


def _knots(raw: Tensor, bound: float, minimum: float) -> Tensor:
    """Knot positions ``(K + 1, *S)`` on ``[−bound, bound]`` (exact ends) from raw sizes."""
    k = raw.shape[0]
    if minimum * k >= 1.0:
        raise ValueError(f"rq_spline: minimum bin size {minimum} is too large for {k} bins")
    size = torch.softmax(raw, dim=0) * (1.0 - minimum * k) + minimum
    if torch.compiler.is_compiling():  # unrolled: fuses with its neighbours (cumsum does not)
        sums = [size[0]]
        for i in range(1, k - 1):
            sums.append(sums[-1] + size[i])
        partial = torch.stack(sums)
    else:
        partial = torch.cumsum(size[:-1], dim=0)
    inner = partial * (2.0 * bound) - bound
    end = inner.new_full((1, *raw.shape[1:]), bound)
    return torch.cat((-end, inner, end))


def rq_spline(
    x: Tensor,
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    *,
    inverse: bool = False,
    tail_bound: float = 3.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
    with_log_det: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Apply the spline (or its inverse) element-wise.

    Arguments:
        x: inputs, any shape ``S``.
        widths, heights: unnormalised bin sizes, ``(K, *S)``.
        derivatives: unconstrained inner derivatives, ``(K − 1, *S)``.
        inverse: apply the inverse map.
        tail_bound: ``B``; outside ``[−B, B]`` the map is the identity.

    Returns:
        ``(y, log|dy/dx|)`` (of the map actually applied), each of shape ``S``; the log-det is
        ``None`` when ``with_log_det`` is false.
    """
    bound = float(tail_bound)
    k = widths.shape[0]
    cw = _knots(widths, bound, min_bin_width)
    ch = _knots(heights, bound, min_bin_height)
    shift = math.log(math.expm1(1.0 - min_derivative))
    inner = F.softplus(derivatives + shift) + min_derivative
    one = torch.ones_like(inner[:1])
    table = torch.cat((cw, ch, one, inner, one)).view(3, k + 1, *x.shape)

    inside = x.abs() <= bound
    xc = x.clamp(-bound, bound)
    idx = (xc >= (ch if inverse else cw)[1:-1]).sum(dim=0, keepdim=True)  # the bin, (1, *S)
    both = torch.cat((idx, idx + 1)).expand(3, 2, *x.shape)  # knots k and k + 1
    (xk, xk1), (yk, yk1), (dk, dk1) = table.gather(1, both).unbind(0)
    wk, hk = xk1 - xk, yk1 - yk
    s = hk / wk
    curv = dk + dk1 - 2.0 * s
    if inverse:
        diff = xc - yk
        a = hk * (s - dk) + diff * curv
        b = hk * dk - diff * curv
        c = -s * diff
        disc = (b.square() - 4.0 * a * c).clamp_min(0.0)
        xi = (2.0 * c) / (-b - disc.sqrt())
        out = xi * wk + xk
    else:
        xi = (xc - xk) / wk
        t1m = xi * (1.0 - xi)
        out = yk + hk * (s * xi.square() + dk * t1m) / (s + curv * t1m)
    out = torch.where(inside, out, x)
    if not with_log_det:
        return out, None
    t1m = xi * (1.0 - xi)
    denom = s + curv * t1m
    slope = s.square() * (dk1 * xi.square() + 2.0 * s * t1m + dk * (1.0 - xi).square())
    log_det = slope.log() - 2.0 * denom.log()
    if inverse:
        log_det = -log_det
    return out, torch.where(inside, log_det, torch.zeros_like(log_det))
