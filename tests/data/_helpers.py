"""Shared helpers for the data-layer tests: small synthetic discrete data sets and exact
densities on the dequantized cube, pushed through the logit by autograd (independent of the
library's closed-form log-det)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from harness.data import DataSet
from harness.data.preprocess import logit_inverse


def discrete_dataset(levels: int, event_shape: tuple[int, ...], n: int = 8) -> DataSet:
    """A tiny discrete DataSet with values cycling through all levels."""
    d = int(torch.tensor(event_shape).prod())
    vals = (torch.arange(n * d) % levels).reshape(n, *event_shape).float()
    return DataSet("synthetic", "discrete", event_shape, levels, vals, vals, vals)


def pushforward_through_logit(
    log_p_y: Callable[[Tensor], Tensor], alpha: float
) -> Callable[[Tensor], Tensor]:
    """``log p_w(w) = log p_y(y(w)) + Σ log |dy_i/dw_i|`` with the derivative from autograd.

    The map ``w → y`` is elementwise, so its Jacobian is diagonal and autograd's gradient of
    ``Σ y`` is exactly that diagonal.
    """

    def log_p_w(w: Tensor) -> Tensor:
        with torch.enable_grad():
            w_ = w.detach().requires_grad_(True)
            y = logit_inverse(w_, alpha)
            (dy,) = torch.autograd.grad(y.sum(), w_)
        ld = torch.log(dy.abs()).reshape(w.shape[0], -1).sum(1)
        return log_p_y(y.detach()) + ld

    return log_p_w
