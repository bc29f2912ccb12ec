"""Compiled views of a flow (the ``compile`` and ``cuda-graphs`` runtimes) and their checks.

:func:`compiled_view` wraps a flow in a :class:`CompiledFlow` whose ``log_prob``,
``transform``, ``inverse`` and ``sample`` run through ``torch.compile`` (inductor) while sharing
the flow's parameters, so an optimizer over ``flow.parameters()`` trains the compiled view.

- **Runtimes**: ``eager`` (the flow itself, behind the same interface), ``compile``
  (``torch.compile``; never CUDA graphs) and ``cuda-graphs`` (inductor's CUDA graph trees,
  ``mode="reduce-overhead"``): on a CUDA device only, refused elsewhere with
  :class:`RuntimeUnavailable`.
- **Batch sizes** (``shapes``): ``dynamic`` marks the batch dimension of every input dynamic,
  so one graph serves every batch size ≥ 2 (a batch of one specialises once); ``static``
  compiles a graph per batch size (``torch.compile(dynamic=False)``); ``pad`` pads each
  batch with zero rows to the next power of two (at least 8) and compiles a static graph per
  bucket, slicing the padding off the results (every layer treats rows independently; the
  data-dependent initialisation of ActNorm runs eagerly on the real batch first).
  ``benchmarks/compile_policies.py`` measures the three on evaluation batches of varying size.
- **Measured**: :meth:`CompiledFlow.stats` gives the time of the first call of each method
  (compile and one run: ``compile_s`` is their sum), the graphs compiled, the graph breaks of
  those first calls (graphs − 1 per first call, as ``torch._dynamo.explain`` counts them) and
  the recompilations after them with their time. Each view compiles functions with code
  objects of their own, so its graphs are its own: views of other flows in the same process
  neither evict them nor count against its recompile limit.
- **Checked**: :func:`compare_with_eager` runs the eager flow and the view on one batch and
  compares log-densities and inverses within a tolerance set by the dtype.

A method is compiled per (grad mode, train mode): training (with gradients) and evaluation
(without) each have a first call; later compilations count as recompiles.
"""

from __future__ import annotations

import math
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch._dynamo.utils import counters

from harness.flows.base import Flow

__all__ = [
    "COMPILE_MODES",
    "RUNTIMES",
    "SHAPE_POLICIES",
    "CompileStats",
    "CompiledFlow",
    "EagerCheck",
    "RuntimeUnavailable",
    "compare_with_eager",
    "compiled_view",
]

RUNTIMES = ("eager", "compile", "cuda-graphs")
SHAPE_POLICIES = ("dynamic", "static", "pad")
COMPILE_MODES = ("default", "max-autotune")  # inductor search depth; CUDA graphs by runtime
PAD_MIN = 8


class RuntimeUnavailable(ValueError):
    """The runtime cannot run here (CUDA graphs without a CUDA device, an unknown option)."""


@dataclass
class CompileStats:
    """What compiling a view cost (see the module doc); times in seconds."""

    runtime: str
    mode: str
    shapes: str
    first_call_s: dict[str, float] = field(default_factory=dict)
    graphs: int = 0
    graph_breaks: int = 0
    recompiles: int = 0
    recompile_s: float = 0.0

    @property
    def compile_s(self) -> float:
        """Time to the first compiled call of each method (compile + one run), summed."""
        return sum(self.first_call_s.values())


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a code object of its own: dynamo caches compiled graphs per code object."""
    return types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )


def _graphs_so_far() -> int:
    return int(counters["stats"]["unique_graphs"])


def _bucket(n: int) -> int:
    return max(PAD_MIN, 1 << max(n - 1, 0).bit_length())


def _pad(t: Tensor | None, size: int) -> Tensor | None:
    if t is None or t.shape[0] == size:
        return t
    return torch.cat((t, t.new_zeros(size - t.shape[0], *t.shape[1:])))


def _mode_for(runtime: str, mode: str, device: torch.device) -> str:
    if mode not in COMPILE_MODES:
        raise RuntimeUnavailable(
            f"compiled_view: mode must be one of {list(COMPILE_MODES)}, got {mode!r} (CUDA "
            "graphs are the runtime 'cuda-graphs', not a mode)"
        )
    if runtime == "cuda-graphs":
        if device.type != "cuda" or not torch.cuda.is_available():
            raise RuntimeUnavailable(
                f"runtime 'cuda-graphs' needs the flow on a CUDA device; it is on {device} "
                f"(torch.cuda.is_available() = {torch.cuda.is_available()}): use runtime "
                "'compile' or 'eager' here, or move the flow to a GPU"
            )
        return "reduce-overhead" if mode == "default" else "max-autotune"
    return "default" if mode == "default" else "max-autotune-no-cudagraphs"


class CompiledFlow:
    """A view of ``flow`` whose operations run compiled (see the module doc).

    Use :func:`compiled_view` to make one. The view shares the flow's parameters and buffers;
    ``view.flow`` is the eager flow.
    """

    def __init__(self, flow: Flow, runtime: str, mode: str, shapes: str, fullgraph: bool):
        if runtime not in RUNTIMES:
            raise RuntimeUnavailable(
                f"compiled_view: runtime must be one of {list(RUNTIMES)}, got {runtime!r}"
            )
        if shapes not in SHAPE_POLICIES:
            raise RuntimeUnavailable(
                f"compiled_view: shapes must be one of {list(SHAPE_POLICIES)}, got {shapes!r}"
            )
        self.flow = flow
        self.runtime, self.shapes, self.fullgraph = runtime, shapes, bool(fullgraph)
        device = flow._base_anchor.device
        self.device = device
        self._torch_mode = None if runtime == "eager" else _mode_for(runtime, mode, device)
        self._stats = CompileStats(runtime, mode, shapes)
        self._seen: set[str] = set()
        f = flow

        def log_prob(x: Tensor, context: Tensor | None) -> Tensor:
            return f.log_prob(x, context)

        def transform(
            x: Tensor, context: Tensor | None, with_log_det: bool
        ) -> tuple[Tensor, Tensor | None]:
            return f.transform(x, context, with_log_det)

        def inverse(z: Tensor, context: Tensor | None) -> Tensor:
            return f.inverse(z, context)

        self._fns: dict[str, Callable[..., Any]] = {}
        for name, body in (("log_prob", log_prob), ("transform", transform), ("inverse", inverse)):
            if runtime == "eager":
                self._fns[name] = body
            else:
                self._fns[name] = torch.compile(
                    _own_code(body),
                    mode=self._torch_mode,
                    fullgraph=self.fullgraph,
                    dynamic=False if shapes in ("static", "pad") else None,
                )

    # ── the flow's operations ───────────────────────────────────────────────────────────
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``flow.log_prob`` compiled, shape ``(B,)``."""
        return self._call("log_prob", x, context)

    def transform(
        self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """``flow.transform`` compiled: ``(z, log-det or None)``."""
        return self._call("transform", x, context, with_log_det)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``flow.inverse`` compiled."""
        return self._call("inverse", z, context)

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` samples: base noise drawn eagerly (torch's generator, as ``flow.sample``),
        then the compiled inverse."""
        context = self.flow._context(context, n, "sample")
        a = self.flow._base_anchor
        z = torch.randn(n, *self.flow.event_shape, device=a.device, dtype=a.dtype)
        return self.inverse(z, context)

    __call__ = log_prob

    # ── the flow's module state, shared ──────────────────────────────────────────────────
    @property
    def training(self) -> bool:
        return self.flow.training

    def train(self, mode: bool = True) -> CompiledFlow:
        """Set the flow's training mode (a method compiles once per mode); returns the view."""
        self.flow.train(mode)
        return self

    def eval(self) -> CompiledFlow:
        return self.train(False)

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """The flow's parameters (the view has none of its own)."""
        return self.flow.parameters(recurse)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.flow.event_shape

    @property
    def context_dim(self) -> int | None:
        return self.flow.context_dim

    def stability(self) -> dict[str, float]:
        """The flow's diagnostics of its last transform (compiled calls included)."""
        return self.flow.stability()

    def stats(self) -> CompileStats:
        """Compile time, graphs, graph breaks and recompilations so far (a copy)."""
        s = self._stats
        return CompileStats(
            s.runtime,
            s.mode,
            s.shapes,
            dict(s.first_call_s),
            s.graphs,
            s.graph_breaks,
            s.recompiles,
            s.recompile_s,
        )

    # ── machinery ───────────────────────────────────────────────────────────────────────
    def _call(self, name: str, x: Tensor, context: Tensor | None, *extra: Any) -> Any:
        fn = self._fns[name]
        if self.runtime == "eager":
            return fn(x, context, *extra)
        if self.flow.training and self.flow.needs_data_init():
            return getattr(self.flow, name)(x, context, *extra)  # data-dependent init: eager
        if context is not None and context.dim() == 1:
            context = context.expand(x.shape[0], -1)
        n = x.shape[0]
        if self.shapes == "pad":
            size = _bucket(n)
            x, context = _pad(x, size), _pad(context, size)  # type: ignore[assignment]
        elif self.shapes == "dynamic" and n > 1:
            torch._dynamo.mark_dynamic(x, 0)
            if context is not None:
                torch._dynamo.mark_dynamic(context, 0)
        if self.runtime == "cuda-graphs":
            torch.compiler.cudagraph_mark_step_begin()
        key = f"{name}/{'grad' if torch.is_grad_enabled() else 'no_grad'}/" + (
            "train" if self.flow.training else "eval"
        )
        before = _graphs_so_far()
        t0 = time.perf_counter()
        out = fn(x, context, *extra)
        compiled = _graphs_so_far() - before
        if compiled:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            took = time.perf_counter() - t0
            self._stats.graphs += compiled
            if key in self._seen:
                self._stats.recompiles += 1
                self._stats.recompile_s += took
            else:
                self._stats.first_call_s[key] = took
                self._stats.graph_breaks += compiled - 1
        self._seen.add(key)
        return self._finish(out, n)

    def _finish(self, out: Any, n: int) -> Any:
        """Drop padding rows; copy results out of CUDA graph memory (the next replay reuses it)."""
        copy = self.runtime == "cuda-graphs"

        def fix(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            t = t[:n] if self.shapes == "pad" and t.shape[0] != n else t
            return t.clone() if copy else t

        if isinstance(out, tuple):
            return tuple(fix(t) for t in out)
        return fix(out)


def compiled_view(
    flow: Flow,
    runtime: str = "compile",
    *,
    mode: str = "default",
    shapes: str = "dynamic",
    fullgraph: bool = False,
) -> CompiledFlow:
    """A :class:`CompiledFlow` over ``flow`` (see the module doc).

    Arguments:
        flow: the flow, already on its device and in its dtype.
        runtime: ``eager``, ``compile`` or ``cuda-graphs`` (CUDA only).
        mode: ``default`` or ``max-autotune`` (inductor's autotuning of matmul kernels; more
            compile time).
        shapes: the batch-size policy, ``dynamic``, ``static`` or ``pad``.
        fullgraph: raise on a graph break instead of counting it.

    Raises:
        RuntimeUnavailable: an unknown option, or CUDA graphs off a CUDA device.

    Example:
        >>> import torch
        >>> from harness import flows
        >>> view = compiled_view(flows.build("realnvp", 2), runtime="eager")
        >>> view.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    return CompiledFlow(flow, runtime, mode, shapes, fullgraph)


@dataclass(frozen=True)
class EagerCheck:
    """Compiled against eager on one batch (see :func:`compare_with_eager`)."""

    logprob_err: float
    logprob_tol: float
    inverse_err: float
    inverse_tol: float
    ok: bool
    message: str


def _max_abs(a: Tensor, b: Tensor) -> float:
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        same = torch.equal(torch.isfinite(a), torch.isfinite(b))
        finite = torch.isfinite(a) & torch.isfinite(b)
        if not same:
            return math.inf
        return float((a[finite] - b[finite]).abs().max()) if finite.any() else 0.0
    return float((a - b).abs().max()) if a.numel() else 0.0


def _finite_absmax(t: Tensor) -> float:
    finite = t[torch.isfinite(t)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def compare_with_eager(
    flow: Flow,
    compiled: CompiledFlow,
    x: Tensor,
    context: Tensor | None = None,
    *,
    rtol: float | None = None,
) -> EagerCheck:
    """Compare a compiled view with its eager flow on the batch ``x``, without gradients.

    - log-density: ``max |log p_compiled(x) − log p_eager(x)|``;
    - inverse: ``z = flow.transform(x)`` (eager), then ``max |inverse_compiled(z) −
      inverse_eager(z)|``.

    Each passes when it is at most ``rtol · max(1, max |eager value|)``, with ``rtol`` by default
    ``√ε`` of the dtype (3.5e-4 in float32, 1.5e-8 in float64): half the digits, far above
    the rounding differences of reordered sums and fused kernels, far below any wrong result.
    A non-finite value where the other is finite fails.
    """
    eps = torch.finfo(x.dtype).eps if x.dtype.is_floating_point else torch.finfo().eps
    tol = math.sqrt(eps) if rtol is None else float(rtol)
    with torch.no_grad():
        lp_eager = flow.log_prob(x, context)
        lp_comp = compiled.log_prob(x, context)
        z, _ = flow.transform(x, context, with_log_det=False)
        inv_eager = flow.inverse(z, context)
        inv_comp = compiled.inverse(z, context)
    lp_err = _max_abs(lp_comp, lp_eager)
    inv_err = _max_abs(inv_comp, inv_eager)
    lp_tol = tol * max(1.0, _finite_absmax(lp_eager))
    inv_tol = tol * max(1.0, _finite_absmax(inv_eager))
    ok = lp_err <= lp_tol and inv_err <= inv_tol
    message = (
        f"compiled ({compiled.runtime}) against eager on a batch of {x.shape[0]}: "
        f"{'ok' if ok else 'MISMATCH'}: max |Δ log p| {lp_err:.3g} (tolerance {lp_tol:.3g}), "
        f"max |Δ inverse| {inv_err:.3g} (tolerance {inv_tol:.3g})"
    )
    return EagerCheck(lp_err, lp_tol, inv_err, inv_tol, ok, message)
