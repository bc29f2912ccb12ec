"""Autoregressive layers: MAF and its dual IAF, with any element-wise bijection.

A MADE conditioner gives ``θ_i(u_{<i}, c)`` (``<`` in the layer's order), and

.. math:: v_i = τ(u_i; θ_i(u_{<i}, c)), \\qquad \\log|\\det ∂v/∂u| = \\sum_i \\log|τ'(u_i)|,

in ONE pass of the MADE. Its inverse ``u = τ^{-1}(v; θ(u))`` is solved in ``D`` steps, one
input (rank) per step, each step computing only the MADE units that become known at that step
(:mod:`harness.flows.layers.made_solve`): one masked MADE pass in all, not ``D`` full ones. The
log-det of the inverse is the sum of the steps' element-wise log-derivatives.

- MAF (``dual=False``): data → latent is the one-pass map (density in one pass, sampling in
  ``D``); Papamakarios et al. 2017, https://arxiv.org/abs/1705.07057.
- IAF (``dual=True``): the layer is the inverse of a MAF layer, so sampling (latent → data)
  is one pass and density ``D`` passes; Kingma et al. 2016, https://arxiv.org/abs/1606.04934.
"""

from __future__ import annotations

from torch import Tensor

from harness.flows.base import Layer, StabilityAccumulator, detached
from harness.flows.layers.elementwise import Elementwise
from harness.flows.layers.made_solve import solve
from harness.flows.nets import MADE

__all__ = ["Autoregressive"]


class Autoregressive(Layer):
    """One MAF (or, with ``dual``, IAF) layer over ``(B, D)`` vectors.

    Arguments:
        made: a :class:`MADE` with ``params == ew.n_params``; its order is the layer's order.
        ew: the element-wise bijection (affine for MAF/IAF, spline for NSF-AR).
        dual: IAF: data → latent is the sequential direction.
    """

    _aux: Tensor | None = None

    def __init__(self, made: MADE, ew: Elementwise, dual: bool = False):
        super().__init__()
        if made.params != ew.n_params:
            raise ValueError(
                f"Autoregressive: the MADE gives {made.params} parameters per dimension, the "
                f"element-wise transform needs {ew.n_params}"
            )
        self.made, self.ew, self.dual = made, ew, bool(dual)

    def _one_pass(
        self, u: Tensor, context: Tensor | None, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        v, ld, aux = self.ew.forward(u, self.made(u, context), with_log_det)
        return v, (None if ld is None or not with_log_det else ld.sum(-1)), aux

    def _sequential(
        self, v: Tensor, context: Tensor | None, with_log_det: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        return solve(self.made, self.ew, v, context, with_log_det)

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        run = self._sequential if self.dual else self._one_pass
        z, ld, aux = run(x, context, with_log_det)
        self._aux = detached(aux)
        log_det = None
        if with_log_det:
            log_det = x.new_zeros(x.shape[0]) if ld is None else ld
        return z, self._keep(log_det)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        run = self._one_pass if self.dual else self._sequential
        return run(y, context, False)[0]

    def diagnose(self, acc: StabilityAccumulator) -> None:
        super().diagnose(acc)
        if self._aux is not None:
            self.ew.diagnose(acc, self._aux)

    def extra_repr(self) -> str:
        return f"dual={self.dual}, ew={type(self.ew).__name__}"
