"""``ffjord``: continuous normalizing flows with free-form dynamics (FFJORD).

A flow defined by an ODE ``dz/dt = f(t, z)``: flexible dynamics and an exact likelihood, paid
for in solver steps. The log-density follows the instantaneous change of variables,

.. math:: \\log p(x) = \\log \\mathcal N(z(T); 0, I)
          + \\int_0^T \\operatorname{tr} \\frac{\\partial f}{\\partial z}(t, z(t))\\, dt,
          \\qquad z(0) = x,

with the trace exact or estimated (Hutchinson), see :mod:`harness.flows.continuous.ode_layer`.

Vectors: ``blocks`` CNFs in sequence, each with its own concat-squash network
(:class:`~harness.flows.continuous.nets.ODENet`). Images ``(C, H, W)``: FFJORD's multi-scale model
(``ODENVP``): per level, ``blocks`` convolutional CNFs, a squeeze, ``blocks`` more, then half
the channels are factored out (:func:`harness.flows.layers.multiscale.multiscale`); the last
level is ``blocks`` CNFs.

Beyond the contract, a :class:`CNFFlow` offers :meth:`~CNFFlow.counters` /
:meth:`~CNFFlow.reset_counters` (function evaluations of the forward and backward solves, for
``train/nfe_forward``, ``train/nfe_backward`` and ``perf/nfe``) and
:meth:`~CNFFlow.regularizer` (the RNODE penalty of the last forward pass, to add to the loss).
Its :meth:`~CNFFlow.stability` adds ``stab/nfe`` and ``stab/exact_trace``.

Checking exactness: the inverse and the log-det are exact only up to the solver's tolerance,
so the registry entry carries ``check_hparams`` (tight ``dopri5`` tolerances) under which the
flow is a bijection to float64 round-off, for pre-flight and contract checks.

References:
    Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018,
    https://arxiv.org/abs/1806.07366; Grathwohl et al., "FFJORD", ICLR 2019,
    https://arxiv.org/abs/1810.01367; Finlay et al., "How to train your neural ODE" (RNODE),
    ICML 2020, https://arxiv.org/abs/2002.02798.

Example:
    >>> import torch
    >>> from harness import flows
    >>> flow = flows.build("ffjord", event_shape=2, hidden=16)
    >>> z, log_det = flow.eval().transform(torch.randn(4, 2))
    >>> z.shape, log_det.shape, flow.stability()["stab/exact_trace"]
    (torch.Size([4, 2]), torch.Size([4]), 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from harness import keys
from harness.flows.base import Flow, Layer
from harness.flows.continuous.nets import ConvODENet, ODENet
from harness.flows.continuous.ode_layer import CNFLayer, SolverConfig, TraceConfig
from harness.flows.zoo import register

__all__ = ["CHECK_HPARAMS", "CNFFlow", "ffjord"]

#: Hyper-parameters under which ``ffjord`` is exact to float64 round-off (pre-flight, tests).
CHECK_HPARAMS: dict[str, object] = {"solver": "dopri5", "rtol": 1e-12, "atol": 1e-12,
                                    "trace": "exact"}


class CNFFlow(Flow):
    """A :class:`~harness.flows.base.Flow` whose layers include ODE solves (:class:`CNFLayer`)."""

    def cnf_layers(self) -> list[CNFLayer]:
        """Every CNF in the flow, in forward order (nested multi-scale levels included)."""
        return [m for m in self.modules() if isinstance(m, CNFLayer)]

    def counters(self) -> dict[str, int]:
        """Function evaluations since :meth:`reset_counters`: ``nfe_forward`` (the solves of
        ``transform``/``log_prob``) and ``nfe_backward`` (adjoint or back-propagated ones)."""
        layers = self.cnf_layers()
        return {
            "nfe_forward": sum(m.counter.forward for m in layers),
            "nfe_backward": sum(m.counter.backward for m in layers),
        }

    def reset_counters(self) -> None:
        """Zero the counters of :meth:`counters`."""
        for m in self.cnf_layers():
            m.counter.reset()

    def regularizer(self) -> Tensor:
        """RNODE's penalty ``λ_K ∫‖f‖² dt + λ_J ∫‖∂f/∂z‖_F² dt`` (batch mean, summed over the
        CNFs) of the last forward pass in training mode, with its graph; 0 when off."""
        terms = [m.last_regularizer for m in self.cnf_layers() if m.last_regularizer is not None]
        if not terms:
            return self._base_anchor.new_zeros(())
        return torch.stack(terms).sum()

    def stability(self) -> dict[str, float]:
        """The base diagnostics plus ``stab/nfe`` (evaluations of the last transform's solves)
        and ``stab/exact_trace`` (1.0 when its trace was exact, 0.0 when estimated)."""
        out = super().stability()
        if self._transformed:
            layers = self.cnf_layers()
            out[keys.STAB_NFE] = float(sum(m.last_nfe for m in layers))
            out[keys.STAB_EXACT_TRACE] = float(all(m.last_exact for m in layers))
        return out


def _image_layers(
    shape: tuple[int, ...], levels: int, blocks: int, make: Callable[[int], CNFLayer]
) -> list[Layer]:
    """FFJORD's multi-scale stack: ``blocks`` CNFs before and after each squeeze."""
    from harness.flows.layers.multiscale import multiscale  # images only

    def cnfs(s: Sequence[int]) -> list[Layer]:
        return [make(s[0]) for _ in range(blocks)]

    return multiscale(shape, levels, cnfs, cnfs, cnfs)


@register(
    "ffjord",
    "FFJORD: continuous-time flow (ODE, concat-squash dynamics), exact or Hutchinson trace",
    images=True,
    vectors=True,
    continuous=True,
    check_hparams=CHECK_HPARAMS,
)
def ffjord(
    event_shape: tuple[int, ...],
    context_dim: int | None,
    *,
    hidden: int = 64,
    depth: int = 3,
    blocks: int = 1,
    activation: str = "softplus",
    solver: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int = 20,
    adjoint: bool = False,
    trace: str = "hutchinson",
    noise: str = "rademacher",
    exact_max_dim: int = 64,
    T: float = 1.0,
    kinetic: float = 0.0,
    jacobian: float = 0.0,
    max_steps: int = 10_000,
    levels: int = 2,
    context_mode: str = "concat",
) -> CNFFlow:
    """Build an FFJORD flow (see the module doc).

    Arguments (hyper-parameters):
        hidden, depth: width and number of hidden concat-squash layers (channels for images).
        blocks: CNFs in sequence (per scale for images); activation: smooth non-linearity.
        solver: ``dopri5`` (``rtol``, ``atol``) or ``rk4``/``euler`` (``steps`` equal steps).
        adjoint: back-propagate by the adjoint method instead of through the solver.
        trace: ``exact`` or ``hutchinson`` in training; noise: ``rademacher``/``gaussian``.
        exact_max_dim: in eval mode the trace is exact when ``∏ event_shape ≤ exact_max_dim``.
        T: integration time; kinetic, jacobian: RNODE weights (0 = off).
        max_steps: a solve taking more adaptive steps fails (rather than hangs).
        levels: scales of the image model; context_mode: ``concat`` or ``film``.
    """
    solver_cfg = SolverConfig(
        solver, float(rtol), float(atol), steps, float(T), adjoint, max_steps
    )
    trace_cfg = TraceConfig(
        trace, noise, math.prod(event_shape) <= exact_max_dim, float(kinetic), float(jacobian)
    )

    def vector(d: int) -> CNFLayer:
        net = ODENet(d, hidden, depth, activation, context_dim, context_mode)
        return CNFLayer(net, solver_cfg, trace_cfg)

    def image(c: int) -> CNFLayer:
        net = ConvODENet(c, hidden, depth, activation, context_dim, context_mode)
        return CNFLayer(net, solver_cfg, trace_cfg)

    layers: list[Layer]
    if len(event_shape) == 1:
        layers = [vector(event_shape[0]) for _ in range(blocks)]
    else:
        layers = _image_layers(event_shape, levels, blocks, image)
    return CNFFlow(layers, event_shape, context_dim)
