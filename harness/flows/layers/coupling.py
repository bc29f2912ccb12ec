"""Coupling layers: half of the input conditions an element-wise bijection of the other half.

With a partition ``x = (x_a, x_b)``:

.. math:: y_a = x_a, \\quad y_b = τ(x_b; θ(x_a, c)), \\quad
          \\log|\\det ∂y/∂x| = \\sum_i \\log|∂τ/∂x_{b,i}|,

so both directions cost one conditioner pass. Two partitions:

- :class:`SplitCoupling` splits axis 1 into two blocks (vector halves, image channels);
- :class:`MaskCoupling` keeps the entries where a fixed 0/1 mask is 1 (even/odd vector
  entries, image checkerboards); the conditioner sees ``x · m`` and the bijection is applied
  where ``m = 0``.

The conditioner maps ``(B, n_a, …)`` to ``(B, P · n_b, …)`` (parameter-major); the layer views
it as ``(P, B, n_b, …)`` for the element-wise transform (parameters on the leading axis). On
vectors, a conditioner that can (:class:`~harness.flows.nets.MLP`) returns its output
transposed instead, ``(P · n_b, B)``, and the element-wise transform runs on the transposed
elements ``(n_b, B)``: each parameter is then one contiguous block, which is what the spline's
reductions over bins (and a compiled kernel) read fastest.

References:
    Dinh, Krueger, Bengio, "NICE", https://arxiv.org/abs/1410.8516;
    Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP",
    https://arxiv.org/abs/1605.08803.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from harness.flows.base import Layer, StabilityAccumulator, detached
from harness.flows.layers.elementwise import Elementwise

__all__ = ["MaskCoupling", "NetFactory", "SplitCoupling", "checkerboard", "parity_mask"]

NetFactory = Callable[[int, int], nn.Module]  # (in size, out size) → net(x, context)


def _theta(out: Tensor, n_params: int) -> Tensor:
    """``(B, P·n, …)`` → ``(P, B, n, …)`` (a view)."""
    return out.unflatten(1, (n_params, -1)).movedim(1, 0)


def _features_first(net: nn.Module, x: Tensor) -> bool:
    """Whether ``net`` conditions vectors ``x`` with a transposed output (see the module doc)."""
    return x.dim() == 2 and bool(getattr(net, "features_first", False))


def _condition(net: nn.Module, a: Tensor, context: Tensor | None, n_params: int, fm: bool):
    """θ with the parameters leading: ``(P, n, B)`` features-first, else ``(P, B, n, …)``."""
    if fm:
        return net(a, context, features_first=True).unflatten(0, (n_params, -1))
    return _theta(net(a, context), n_params)


class _Coupling(Layer):
    ew: Elementwise
    _aux: Tensor | None = None
    _aux_select: Tensor | None = None

    def diagnose(self, acc: StabilityAccumulator) -> None:
        super().diagnose(acc)
        if self._aux is not None:
            aux = self._aux
            if self._aux_select is not None:
                aux = aux[self._aux_select.expand_as(aux)]
            self.ew.diagnose(acc, aux)


class SplitCoupling(_Coupling):
    """Split axis 1 into ``sizes = (n1, n2)``; condition on block 1 and transform block 2, or
    the other way round with ``flip``.

    Arguments:
        sizes: the two block sizes along axis 1.
        flip: transform the first block instead of the second.
        make_net: ``(n_a, P · n_b) → net`` with ``net(x_a, context)``.
        ew: the element-wise bijection.
    """

    def __init__(self, sizes: tuple[int, int], flip: bool, make_net: NetFactory, ew: Elementwise):
        super().__init__()
        self.sizes, self.flip, self.ew = (int(sizes[0]), int(sizes[1])), bool(flip), ew
        n_a, n_b = (self.sizes[1], self.sizes[0]) if flip else self.sizes
        self.net = make_net(n_a, ew.n_params * n_b)

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x.split(self.sizes, dim=1)
        return (x2, x1) if self.flip else (x1, x2)

    def _join(self, x: Tensor, b: Tensor) -> Tensor:
        """``x`` with its transformed block replaced by ``b``: on CPU a clone and one slice copy
        (``torch.cat`` along axis 1 is several times slower there), elsewhere ``torch.cat``."""
        if x.device.type != "cpu":
            a = x.narrow(1, self.sizes[0], self.sizes[1]) if self.flip else x[:, : self.sizes[0]]
            return torch.cat((b, a) if self.flip else (a, b), dim=1)
        y = x.clone()
        if self.flip:
            y[:, : self.sizes[0]] = b
        else:
            y[:, self.sizes[0] :] = b
        return y

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        a, b = self._parts(x)
        fm = _features_first(self.net, x)
        theta = _condition(self.net, a, context, self.ew.n_params, fm)
        yb, ld, aux = self.ew.forward(b.T if fm else b, theta, with_log_det)
        self._aux = detached(aux)
        log_det = None
        if with_log_det:
            if ld is None:
                log_det = x.new_zeros(x.shape[0])
            else:
                log_det = ld.sum(0) if fm else ld.flatten(1).sum(1)
        return self._join(x, yb.T if fm else yb), self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        a, b = self._parts(y)
        fm = _features_first(self.net, y)
        theta = _condition(self.net, a, context, self.ew.n_params, fm)
        xb, _, _ = self.ew.inverse(b.T if fm else b, theta, False)
        return self._join(y, xb.T if fm else xb)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, flip={self.flip}, ew={type(self.ew).__name__}"


class MaskCoupling(_Coupling):
    """Keep the entries where ``mask`` is 1, transform the others conditioned on ``x · mask``.

    Arguments:
        mask: 0/1 tensor of the event shape (``(D,)`` or ``(C, H, W)``).
        make_net: ``(C or D, P · (C or D)) → net``; it sees the whole masked input.
        ew: the element-wise bijection.
    """

    def __init__(self, mask: Tensor, make_net: NetFactory, ew: Elementwise):
        super().__init__()
        self.ew = ew
        self.register_buffer("mask", mask.float(), persistent=False)
        self.register_buffer("keep", mask.bool(), persistent=False)
        self.net = make_net(mask.shape[0], ew.n_params * mask.shape[0])

    def _elements(self, v: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor, bool]:
        """``(θ, elements, keep)`` in the layout the conditioner gives (see the module doc)."""
        fm = _features_first(self.net, v)
        theta = _condition(self.net, v * self.mask, context, self.ew.n_params, fm)
        return theta, (v.T if fm else v), (self.keep[:, None] if fm else self.keep), fm

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        theta, elems, keep, fm = self._elements(x, context)
        yt, ld, aux = self.ew.forward(elems, theta, with_log_det)
        self._aux = detached(aux)
        self._aux_select = None if aux is None else ~keep
        log_det = None
        if with_log_det:
            if ld is None:
                log_det = x.new_zeros(x.shape[0])
            else:
                ld = torch.where(keep, torch.zeros_like(ld), ld)
                log_det = ld.sum(0) if fm else ld.flatten(1).sum(1)
        return torch.where(self.keep, x, yt.T if fm else yt), self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        theta, elems, _, fm = self._elements(y, context)
        xt, _, _ = self.ew.inverse(elems, theta, False)
        return torch.where(self.keep, y, xt.T if fm else xt)

    def extra_repr(self) -> str:
        return f"mask={tuple(self.mask.shape)}, ew={type(self.ew).__name__}"


def parity_mask(features: int, odd: bool) -> Tensor:
    """``(D,)`` mask that keeps the even (or, with ``odd``, the odd) entries."""
    return (torch.arange(features) % 2 == int(odd)).float()


def checkerboard(shape: tuple[int, int, int], odd: bool) -> Tensor:
    """``(C, H, W)`` checkerboard mask: 1 where ``(h + w) % 2 == odd``."""
    c, h, w = shape
    board = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == int(odd)
    return board.float().expand(c, h, w).clone()
