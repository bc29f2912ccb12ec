"""One continuous normalizing flow: the ODE ``dz/dt = f(t, z)`` solved from ``0`` to ``T``.

The data ``x = z(0)`` is carried to the latent ``z(T)``; by the instantaneous change of
variables the log-determinant of that map is the integral of the divergence,

.. math:: \\log\\left|\\det \\frac{\\partial z(T)}{\\partial z(0)}\\right|
          = \\int_0^T \\operatorname{tr} \\frac{\\partial f}{\\partial z}(t, z(t))\\, dt,

solved jointly with ``z`` as the augmented state ``(z, ℓ)``, ``dℓ/dt = tr ∂f/∂z``; the inverse
solves ``z`` alone from ``T`` back to ``0``. Solvers are torchdiffeq's: ``dopri5`` (adaptive,
``rtol``/``atol``) or ``rk4``/``euler`` on ``steps`` equal steps, back-propagated directly
through the solver or by the adjoint method.

Step-size control looks at ``z`` only (an RMS norm of the ``z`` part of the state), so a pass
with the log-det takes exactly the steps of the pass without it and returns the same ``z``,
bit for bit: the cost of the log-det is then the cost of the trace alone, and the Hutchinson
estimate and the exact trace are integrated along the same discretised trajectory.

The trace is exact (``D`` vector-Jacobian products) when ``trace="exact"`` or, in eval mode,
when the event has at most ``exact_max_dim`` entries; otherwise Hutchinson's estimator with one
probe per sample, fixed over the solve (:mod:`harness.flows.continuous.trace`). In training with
``kinetic``/``jacobian`` weights, RNODE's regularisers ``∫‖f‖² dt`` and ``∫‖∂f/∂z‖_F² dt`` ride
along as two more states.

Function evaluations are counted in :class:`NFECounter`: ``forward`` for the solves of
:meth:`CNFLayer.forward`, ``inverse`` for :meth:`CNFLayer.inverse`, ``backward`` for the
evaluations made while back-propagating (the adjoint solve's calls, or, for direct
back-propagation, one per recorded evaluation whose vector-Jacobian product autograd takes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from harness.flows.base import Layer
from harness.flows.continuous.trace import (
    draw_noise,
    exact_divergence,
    hutchinson_divergence,
    kinetic_rate,
)

__all__ = ["SOLVERS", "TRACES", "CNFLayer", "NFECounter", "SolverConfig", "TraceConfig"]

SOLVERS = ("dopri5", "rk4", "euler")
TRACES = ("exact", "hutchinson")
_EPS_FACTOR = 8.0  # rtol must be ≥ 8 · machine epsilon of the state's dtype


@dataclass(frozen=True)
class SolverConfig:
    """How the ODE is solved: ``method`` with ``rtol``/``atol`` (adaptive) or ``steps`` equal
    steps (fixed), over ``[0, T]``; ``adjoint`` back-propagation; at most ``max_steps`` steps."""

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    steps: int = 20
    T: float = 1.0
    adjoint: bool = False
    max_steps: int = 10_000

    @property
    def adaptive(self) -> bool:
        return self.method == "dopri5"

    def options(self) -> dict[str, object]:
        """torchdiffeq ``options``: step-size control on ``z`` only, or the fixed grid."""
        if self.adaptive:
            return {"norm": _z_rms, "max_num_steps": self.max_steps}
        n = self.steps

        def grid(func: object, y0: Tensor, t: Tensor) -> Tensor:
            return torch.linspace(float(t[0]), float(t[-1]), n + 1, dtype=t.dtype, device=t.device)

        return {"grid_constructor": grid}

    def check_dtype(self, dtype: torch.dtype) -> None:
        """Refuse tolerances the dtype cannot resolve (the adaptive solver would underflow)."""
        floor = _EPS_FACTOR * torch.finfo(dtype).eps
        if self.adaptive and self.rtol < floor:
            raise ValueError(
                f"ffjord: rtol={self.rtol:g} is below what {dtype} resolves "
                f"({_EPS_FACTOR:g}·eps = {floor:.1e}); raise rtol or run the flow in float64"
            )


@dataclass(frozen=True)
class TraceConfig:
    """The divergence: ``mode`` in training (``exact``/``hutchinson``), the probe ``noise``,
    ``exact_eval`` (use the exact trace in eval mode), RNODE weights ``kinetic``/``jacobian``."""

    mode: str = "hutchinson"
    noise: str = "rademacher"
    exact_eval: bool = True
    kinetic: float = 0.0
    jacobian: float = 0.0


def _z_rms(state: Sequence[Tensor]) -> Tensor:
    """RMS of the ``z`` part of the augmented state (the step-size norm)."""
    return state[0].abs().pow(2).mean().sqrt()


class NFECounter:
    """Function evaluations since :meth:`reset`: ``forward``, ``backward``, ``inverse``."""

    def __init__(self) -> None:
        self.forward = self.backward = self.inverse = 0

    def reset(self) -> None:
        self.forward = self.backward = self.inverse = 0


class _CountBackward(torch.autograd.Function):
    """Identity on the outputs of one evaluation; its backward counts one backward NFE."""

    @staticmethod
    def forward(ctx, counter: NFECounter, *outs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.counter = counter
        return tuple(o.view_as(o) for o in outs)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[object, ...]:  # type: ignore[override]
        ctx.counter.backward += 1
        return (None, *grads)


class _Dynamics:
    """The right-hand side of one forward solve: ``(z, ℓ[, K, B]) ↦ (f, tr J[, ‖f‖², ‖J‖_F²])``.

    Made per solve, so that an adjoint backward pass sees the probe and context of its own
    forward pass. Calls while ``solving`` count as forward evaluations, later ones (the adjoint
    solve) as backward evaluations.
    """

    def __init__(
        self,
        net: nn.Module,
        context: Tensor | None,
        counter: NFECounter,
        *,
        with_log_det: bool,
        exact: bool,
        noise: Tensor | None,
        regs: bool,
        count_backward: bool,
    ):
        self.net, self.context, self.counter = net, context, counter
        self.with_log_det, self.exact, self.noise, self.regs = with_log_det, exact, noise, regs
        self.count_backward = count_backward
        self.solving = True
        self.nfe = 0

    def __call__(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if self.solving:
            self.counter.forward += 1
            self.nfe += 1
        else:
            self.counter.backward += 1
        z = state[0]
        need_graph = torch.is_grad_enabled()
        outs: tuple[Tensor, ...]
        if not self.with_log_det:
            outs = (self.net(t, z, self.context), torch.zeros_like(state[1]))
        else:
            outs = self._with_divergence(t, z, need_graph)
        if self.count_backward and self.solving and need_graph:
            outs = _CountBackward.apply(self.counter, *outs)
        return outs

    def _with_divergence(self, t: Tensor, z: Tensor, need_graph: bool) -> tuple[Tensor, ...]:
        with torch.enable_grad():
            # a fresh leaf unless z is part of the graph being built (direct back-propagation)
            zr = z if need_graph and z.requires_grad else z.detach().requires_grad_(True)
            f = self.net(t, zr, self.context)
            if self.exact:
                div, fro = exact_divergence(f, zr, need_graph, self.regs)
            else:
                assert self.noise is not None
                div, fro = hutchinson_divergence(f, zr, self.noise, need_graph, self.regs)
        outs: tuple[Tensor, ...] = (f, div)
        if self.regs:
            assert fro is not None
            outs = (f, div, kinetic_rate(f), fro)
        return outs if need_graph else tuple(o.detach() for o in outs)


class CNFLayer(Layer):
    """A CNF over one event shape: ``net(t, z, c)`` solved from ``0`` to ``T`` (module doc).

    Arguments:
        net: the dynamics ``f(t, z; c)`` (:mod:`harness.flows.continuous.nets`).
        solver: :class:`SolverConfig`; trace: :class:`TraceConfig`.

    After each forward call: ``last_nfe`` (evaluations of that solve), ``last_exact`` (whether
    the trace was exact) and ``last_regularizer`` (the weighted RNODE penalty per batch, with
    its graph, or ``None``).
    """

    def __init__(self, net: nn.Module, solver: SolverConfig, trace: TraceConfig):
        super().__init__()
        self.net = net
        self.solver = solver
        self.trace = trace
        self.counter = NFECounter()
        self.last_nfe = 0
        self.last_exact = False
        self.last_regularizer: Tensor | None = None

    def uses_exact_trace(self) -> bool:
        """Exact when asked for, or in eval mode when the event is small enough."""
        return self.trace.mode == "exact" or (not self.training and self.trace.exact_eval)

    def _solve(self, func: object, y0: object, t: Tensor, params: tuple[Tensor, ...]) -> object:
        s = self.solver
        kw = {"rtol": s.rtol, "atol": s.atol, "method": s.method, "options": s.options()}
        if s.adjoint and torch.is_grad_enabled():
            return odeint_adjoint(func, y0, t, adjoint_params=params, **kw)  # type: ignore
        return odeint(func, y0, t, **kw)  # type: ignore

    def _params(self, context: Tensor | None) -> tuple[Tensor, ...]:
        extra = (context,) if context is not None and context.requires_grad else ()
        return (*self.net.parameters(), *extra)

    def _times(self, x: Tensor, reverse: bool) -> Tensor:
        self.solver.check_dtype(x.dtype)
        ends = [self.solver.T, 0.0] if reverse else [0.0, self.solver.T]
        return torch.tensor(ends, dtype=x.dtype, device=x.device)

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        t = self._times(x, reverse=False)
        exact = self.uses_exact_trace()
        tr = self.trace
        regs = (
            with_log_det
            and self.training
            and torch.is_grad_enabled()
            and (tr.kinetic > 0 or tr.jacobian > 0)
        )
        noise = draw_noise(x, tr.noise) if with_log_det and not exact else None
        adjoint = self.solver.adjoint and torch.is_grad_enabled()
        func = _Dynamics(
            self.net,
            context,
            self.counter,
            with_log_det=with_log_det,
            exact=exact,
            noise=noise,
            regs=regs,
            count_backward=not adjoint,
        )
        zero = x.new_zeros(x.shape[0])
        y0 = (x, zero, zero, zero) if regs else (x, zero)
        try:
            sol = self._solve(func, y0, t, self._params(context))
        finally:
            func.solving = False
        self.last_nfe, self.last_exact = func.nfe, exact
        z, log_det = sol[0][-1], sol[1][-1]  # type: ignore[index]
        if regs:
            kin, jac = sol[2][-1].mean(), sol[3][-1].mean()  # type: ignore[index]
            self.last_regularizer = tr.kinetic * kin + tr.jacobian * jac
        else:
            self.last_regularizer = None
        return z, self._keep(log_det if with_log_det else None)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        t = self._times(y, reverse=True)
        net, counter = self.net, self.counter

        def func(tt: Tensor, z: Tensor) -> Tensor:
            counter.inverse += 1
            return net(tt, z, context)

        sol = self._solve(func, y, t, self._params(context))
        return sol[-1]  # type: ignore[index]

    def extra_repr(self) -> str:
        s, tr = self.solver, self.trace
        tol = f"rtol={s.rtol:g}, atol={s.atol:g}" if s.adaptive else f"steps={s.steps}"
        return f"{s.method}, {tol}, T={s.T:g}, adjoint={s.adjoint}, trace={tr.mode}/{tr.noise}"
