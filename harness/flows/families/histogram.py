"""``histogram``: the reference model of discrete data, independent per-dimension categoricals
fitted in closed form.

.. math::
    P(x) = \\prod_{d=1}^{D} \\pi_d[x_d], \\qquad
    \\pi_d[k] = \\frac{n_d[k] + a}{N + aK},

with ``n_d[k]`` the number of training examples whose dimension ``d`` equals ``k`` and ``a``
the Laplace (add-``a``) smoothing (``a = 0``: the maximum-likelihood fit). Its bits per
dimension, ``−log₂ P(x) / D``, are exact: no dequantization bound. It is the floor every
image leaderboard shows beside the Gaussian: a flow that does not beat it has learnt no
dependence between pixels.

Its registry entry says so: ``reference=True`` (a baseline row, tagged ``nfbench.reference``),
``closed_form=True`` (the registered factory is the fit, ``fit(train, levels, *, laplace)``,
called by :func:`harness.flows.zoo.fit`; nothing is trained), ``data_kinds=("discrete",)`` and
``dequant_columns=("uniform",)``: its bpd is exact, so it runs once, in the ``uniform`` column.

Example:
    >>> import torch
    >>> h = Histogram.fit(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), levels=2, laplace=0.0)
    >>> h.log_prob_discrete(torch.tensor([[0.0, 1.0]])).exp()
    tensor([0.5000])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from harness.flows.zoo import register

__all__ = ["Histogram", "histogram"]


class Histogram(nn.Module):
    """Independent categorical per dimension; ``log_probs`` is a ``(D, K)`` buffer."""

    def __init__(self, event_shape: tuple[int, ...], levels: int, log_probs: Tensor):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.levels = int(levels)
        self.dims = math.prod(self.event_shape)
        if tuple(log_probs.shape) != (self.dims, self.levels):
            raise ValueError(f"Histogram: log_probs must be ({self.dims}, {self.levels})")
        self.register_buffer("log_probs", log_probs)

    @classmethod
    def fit(cls, x: Tensor, levels: int, laplace: float = 1.0) -> Histogram:
        """Closed-form fit on discrete training data ``x`` ``(N, *event_shape)``.

        Arguments:
            x: integer values in ``[0, levels)`` (any float or int dtype).
            levels: ``K``.
            laplace: add-``a`` smoothing; ``0`` gives the maximum-likelihood frequencies (and
                ``−inf`` log-probability for values never seen in training).
        """
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"Histogram.fit: levels must be an int ≥ 2, got {levels!r}")
        if laplace < 0 or not math.isfinite(laplace):
            raise ValueError(f"Histogram.fit: laplace must be ≥ 0, got {laplace!r}")
        if x.dim() < 2 or len(x) == 0:
            raise ValueError("Histogram.fit: x must be a non-empty batch (N, *event_shape)")
        flat = x.reshape(len(x), -1)
        idx = flat.round().long()
        if (idx != flat).any() or idx.min() < 0 or idx.max() >= levels:
            raise ValueError(f"Histogram.fit: x must hold integers in [0, {levels})")
        d = flat.shape[1]
        counts = torch.zeros(d, levels, dtype=torch.float64, device=x.device)
        counts.scatter_add_(1, idx.T, torch.ones_like(idx.T, dtype=torch.float64))
        probs = (counts + laplace) / (len(x) + laplace * levels)
        return cls(tuple(x.shape[1:]), levels, torch.log(probs).to(torch.float32))

    def log_prob_discrete(self, x: Tensor) -> Tensor:
        """Exact ``log P(x)`` in nats, shape ``(B,)``, in the buffer's dtype."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"Histogram: batch has shape {tuple(x.shape)}, expected (B, "
                f"{', '.join(map(str, self.event_shape))})"
            )
        idx = x.reshape(len(x), -1).round().long().clamp(0, self.levels - 1)
        d = torch.arange(self.dims, device=idx.device)
        return self.log_probs[d[None, :], idx].sum(1)

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Exact bits per dimension of each example, ``(B,)``."""
        return -self.log_prob_discrete(x) / (self.dims * math.log(2.0))

    def sample(self, n: int) -> Tensor:
        """``n`` samples ``(n, *event_shape)`` as float integer levels."""
        idx = torch.multinomial(self.log_probs.exp(), n, replacement=True)  # (D, n)
        return idx.T.to(self.log_probs.dtype).reshape(n, *self.event_shape)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.log_prob_discrete(x)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, levels={self.levels}"


@register(
    "histogram",
    "independent per-dimension categoricals, closed form: exact bpd (discrete data)",
    images=True,
    vectors=True,
    reference=True,
    closed_form=True,
    data_kinds=("discrete",),
    dequant_columns=("uniform",),
)
def histogram(train: Tensor, levels: int, *, laplace: float = 1.0) -> Histogram:
    """The fitted histogram of discrete training data ``train`` with ``levels`` values."""
    return Histogram.fit(train, levels=int(levels), laplace=float(laplace))
