"""nfbench's flows against zuko, nflows and normflows: same architectures, same sizes, one run.

For MAF, IAF, RealNVP-style affine coupling, NSF coupling and NSF autoregressive, each library
that has the architecture builds it with matched sizes (5 autoregressive or 6 coupling layers,
conditioners with 2 hidden layers of 64 units, 8 spline bins; parameter counts are printed),
and ``torch.utils.benchmark`` times, at D = 2, 8, 32 and batch 1024:

- ``density``: ``log_prob`` of a batch (no grad);
- ``train``: one Adam step on ``−mean log_prob`` (zero_grad, forward, backward, step);
- ``sample``: drawing a batch (no grad);
- ``inverse``: latent → data of a batch (no grad).

Two runtimes (``--runtime eager|compile|both``, default both), like against like:

- **eager**: every library as it is; the ratio is ours ÷ the fastest eager peer (target ≤ 1.0);
- **compiled**: every library's density, sample and inverse callables through
  ``torch.compile`` (inductor, ``dynamic=False``, ``--compile-mode``; ours through
  :func:`harness.flows.compiled_view` with the same settings; graph breaks allowed, so a peer
  that breaks graphs runs partly eager; a peer that fails to compile keeps its eager time);
  the train step compiles the density (forward and backward) and keeps Adam eager for every
  library. The ratio is compiled ours ÷ the fastest peer, eager or compiled (target ≤ 0.67,
  geometric mean ≤ 0.6). Compile time (the first call: compile + one run) is printed per row.
  Dynamo's recompile limit is raised so that no peer's shared library functions fall back to
  eager after eight models.

``--floor`` adds a pseudo-library, the floor (:class:`FlowFloor`; the pieces in
``benchmarks/floors.py``): for each row, the work that any implementation of that model and
operation must do, timed alone on fixed inputs of the right shapes. It counts

- **the dense products**, every row: our model's linear layers, each applied once (matrix
  products and bias adds; masked layers as dense weights of the same shape);
- **the spline work**, NSF coupling and NSF-AR: per layer, the rational-quadratic spline on
  the elements the layer transforms (a coupling's transformed half, all ``D`` for NSF-AR),
  its knots a fixed input: bin search (``torch.searchsorted``), the gather of the bin's knots,
  the closed-form forward with its log-det (density, train) or inverse without it (sample,
  inverse), the identity tails. Not counted: the softmax, cumulative sums and softplus that
  turn a conditioner's output into knots;
- **the sequential steps**, in the direction an autoregressive layer solves (MAF and NSF-AR:
  sample and inverse; IAF: density and train). The fewest passes the structure allows: a
  plain solve runs the whole MADE ``D`` times, ours (:mod:`harness.flows.layers.made_solve`)
  computes each MADE unit once, so the floor counts the products once (above) and adds what
  no implementation avoids, the dependency chain ``u_{<s} → θ_s → u_s`` of the layer's solve
  plan: ``steps − 1`` dependent steps per layer (``steps = D`` for a standard MADE), each ONE
  element-wise op on a batch column ``(B,)``, the least a framework-level implementation
  dispatches per dependent step (a hand-written kernel solving the whole chain in one launch
  could do less; no library here is one);
- **ffjord** (the final section, with ``--floor``): its network's batch-sized products × the
  number of function evaluations our solve used (``cnf_rows.py``; the solver's stage
  arithmetic, the time gates and the exact trace not counted).

Not counted anywhere: activations, the affine families' element-wise algebra, log-det sums,
parameter normalisation, the base density, drawing the noise; for train, the backward pass
and Adam step run through exactly the pieces above. The floor is not a peer; it is a lower
bound, not a target. Its section prints, per row, ours ÷ the floor beside ours ÷ the fastest
peer, eager (ours eager ÷ floor eager, ÷ fastest eager peer) and compiled (ours compiled ÷
the floor's faster runtime, ÷ the fastest peer in either runtime), the floor ÷ the fastest
peer (above 0.67: no implementation reaches the compiled target on that row) and what the
floor counts (products, spline elements, sequential steps); ``--json`` writes them as
``floor_rows``.

Every ratio row also gives ours ÷ the fastest peer as the ratio of the first quartiles of their
block times (each round's ``blocked_autorange`` blocks), with a 95 % bootstrap interval over
rounds, then blocks (:mod:`harness.report.ratio`), and says *not resolved* where the interval
straddles 1 or lies within ±5 % of it.

Measurements are interleaved: every callable is built and compiled first, then every round
times every (row, library, runtime) once (the median of ``blocked_autorange``), and a row's
time is the median (``--stat min``: the minimum) over rounds, so that drift of a shared machine
hits all libraries alike; the load average before and after is printed. A last section shows
the MAF / IAF asymmetry (density and sampling at D = 8 and 32). A final section
(``benchmarks/cnf_rows.py``; ``--no-cnf`` skips it) times ``ffjord`` at D = 2 and 8 against
the reference implementation's approach (a plain torchdiffeq dopri5 CNF with the same network)
and against nfbench's discrete flows.

Usage:
    python benchmarks/flows_vs_peers.py --quick          # eager: minutes; compiled: an hour+
    python benchmarks/flows_vs_peers.py --runtime eager --quick
    python benchmarks/flows_vs_peers.py --device cuda --json results.json
    python benchmarks/flows_vs_peers.py --quick --floor --models maf realnvp --ops density train
    python benchmarks/flows_vs_peers.py --quick --threads 1 --floor --runtime eager --dims 8

Matched, not identical: the parameter counts agree row by row, but nflows' and normflows'
MADE with one block and no residual connections is Linear → ReLU → Linear → Linear (one
activation), where zuko's and ours is Linear → ReLU → Linear → ReLU → Linear; their affine
scales are ``sigmoid(r + 2)`` (nflows) or ``exp(r)`` (normflows, unbounded), ours a bounded
``tanh`` clamp. Where the work is the same (one MADE or coupling pass), the 64 × 64 matrix
products dominate on a CPU and the ratios sit near 1; where ours does less (the sequential
direction of an autoregressive flow solves each MADE unit once, not D full passes) or reads
memory better (splines with the bin axis leading), they fall far below.

Needs the ``bench`` extra (``pip install zuko nflows normflows``); a missing peer is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import floors  # benchmarks/floors.py

from harness import flows
from harness.report import ratio as ratios

MODELS = ("maf", "iaf", "realnvp", "nsf-coupling", "nsf-ar")
OPS = ("density", "train", "sample", "inverse")
AR_LAYERS, COUPLING_LAYERS, HIDDEN, BINS, TAIL = 5, 6, 64, 8, 3.0
OURS = "nfbench"
PEERS = ("zuko", "nflows", "normflows")


@dataclass
class Impl:
    """One library's model behind a common interface."""

    lib: str
    module: nn.Module
    density: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]
    inverse: Callable[[Tensor], Tensor]

    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)


class PeerMLP(nn.Module):
    """``in → 64 → 64 → out`` (ReLU), zero-initialised output, ``forward(x, context=None)``:
    the coupling conditioner handed to nflows and normflows (as ours and zuko's)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, n_out),
        )  # fmt: skip
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


# ── nfbench ──────────────────────────────────────────────────────────────────────────────
def build_ours(model: str, d: int) -> Impl:
    layers = AR_LAYERS if model in ("maf", "iaf", "nsf-ar") else COUPLING_LAYERS
    hp: dict[str, object] = {"layers": layers, "hidden": HIDDEN, "depth": 2}
    if model.startswith("nsf"):
        hp.update(bins=BINS, tail_bound=TAIL)
    flow = flows.build(model, d, **hp)
    return Impl(OURS, flow, flow.log_prob, flow.sample, flow.inverse)


# ── zuko ─────────────────────────────────────────────────────────────────────────────────
def build_zuko(model: str, d: int) -> Impl | None:
    import zuko
    from zuko.flows.autoregressive import MaskedAutoregressiveTransform
    from zuko.lazy import LazyInverse
    from zuko.transforms import MonotonicRQSTransform

    hidden = (HIDDEN, HIDDEN)
    spline = {"univariate": MonotonicRQSTransform, "shapes": [(BINS,), (BINS,), (BINS - 1,)]}
    if model == "maf":
        flow = zuko.flows.MAF(d, transforms=AR_LAYERS, hidden_features=hidden)
    elif model == "iaf":
        orders = [torch.arange(d), torch.arange(d).flip(0)]
        layers = [
            LazyInverse(MaskedAutoregressiveTransform(d, order=orders[i % 2],
                                                      hidden_features=hidden))
            for i in range(AR_LAYERS)
        ]  # fmt: skip
        base = zuko.lazy.UnconditionalDistribution(
            zuko.distributions.DiagNormal, torch.zeros(d), torch.ones(d), buffer=True
        )
        flow = zuko.lazy.Flow(layers, base)
    elif model == "realnvp":
        flow = zuko.flows.NICE(d, transforms=COUPLING_LAYERS, hidden_features=hidden)
    elif model == "nsf-coupling":
        flow = zuko.flows.NICE(d, transforms=COUPLING_LAYERS, hidden_features=hidden, **spline)
    elif model == "nsf-ar":
        flow = zuko.flows.NSF(d, transforms=AR_LAYERS, bins=BINS, hidden_features=hidden)
    else:
        return None
    return Impl(
        "zuko", flow,
        lambda x: flow().log_prob(x),
        lambda n: flow().sample((n,)),
        lambda z: flow().transform.inv(z),
    )  # fmt: skip


# ── nflows ───────────────────────────────────────────────────────────────────────────────
def build_nflows(model: str, d: int) -> Impl | None:
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import (
        AffineCouplingTransform,
        CompositeTransform,
        InverseTransform,
        MaskedAffineAutoregressiveTransform,
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
        PiecewiseRationalQuadraticCouplingTransform,
        ReversePermutation,
    )

    made = {"hidden_features": HIDDEN, "num_blocks": 1, "use_residual_blocks": False}
    spl = {"num_bins": BINS, "tails": "linear", "tail_bound": TAIL}
    ts: list[nn.Module] = []
    for i in range(AR_LAYERS if model in ("maf", "iaf", "nsf-ar") else COUPLING_LAYERS):
        mask = (torch.arange(d) + i) % 2 * 2 - 1  # > 0: transformed
        if model == "maf":
            ts += [MaskedAffineAutoregressiveTransform(d, **made), ReversePermutation(d)]
        elif model == "iaf":
            ts += [InverseTransform(MaskedAffineAutoregressiveTransform(d, **made)),
                   ReversePermutation(d)]  # fmt: skip
        elif model == "nsf-ar":
            ts += [MaskedPiecewiseRationalQuadraticAutoregressiveTransform(d, **made, **spl),
                   ReversePermutation(d)]  # fmt: skip
        elif model == "realnvp":
            ts.append(AffineCouplingTransform(mask, PeerMLP))
        elif model == "nsf-coupling":
            ts.append(PiecewiseRationalQuadraticCouplingTransform(mask, PeerMLP, **spl))
        else:
            return None
    flow = Flow(CompositeTransform(ts), StandardNormal([d]))
    return Impl(
        "nflows", flow, flow.log_prob, flow.sample,
        lambda z: flow._transform.inverse(z)[0],
    )  # fmt: skip


# ── normflows ────────────────────────────────────────────────────────────────────────────
def build_normflows(model: str, d: int) -> Impl | None:
    import normflows as nf
    from normflows.flows.neural_spline.autoregressive import (
        MaskedPiecewiseRationalQuadraticAutoregressive,
    )
    from normflows.flows.neural_spline.coupling import PiecewiseRationalQuadraticCoupling

    class Swap(nf.flows.Flow):
        """Density direction = the wrapped transform's forward (as nflows), one pass."""

        def __init__(self, t: nn.Module):
            super().__init__()
            self.t = t

        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
            return self.t.inverse(z)

        def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
            return self.t(z)

    made = {"num_blocks": 1, "use_residual_blocks": False}
    spl = {"num_bins": BINS, "tails": "linear", "tail_bound": TAIL}
    layers: list[nn.Module] = []
    for i in range(AR_LAYERS if model in ("maf", "iaf", "nsf-ar") else COUPLING_LAYERS):
        if model == "maf":  # normflows' MaskedAffineAutoregressive samples in one pass (IAF)
            layers.append(nf.flows.Reverse(nf.flows.MaskedAffineAutoregressive(d, HIDDEN, **made)))
        elif model == "iaf":
            layers.append(nf.flows.MaskedAffineAutoregressive(d, HIDDEN, **made))
        elif model == "nsf-ar":
            layers.append(Swap(MaskedPiecewiseRationalQuadraticAutoregressive(
                d, HIDDEN, **made, **spl)))  # fmt: skip
        elif model == "realnvp":
            net = nf.nets.MLP([d // 2, HIDDEN, HIDDEN, 2 * (d - d // 2)], init_zeros=True)
            layers.append(nf.flows.AffineCouplingBlock(net))
        elif model == "nsf-coupling":
            mask = (torch.arange(d) + i) % 2 * 2 - 1
            layers.append(Swap(PiecewiseRationalQuadraticCoupling(mask, PeerMLP, **spl)))
        else:
            return None
        if model in ("maf", "iaf", "nsf-ar", "realnvp"):
            layers.append(nf.flows.Permute(d, mode="swap"))
    m = nf.NormalizingFlow(q0=nf.distributions.DiagGaussian(d, trainable=False), flows=layers)
    return Impl("normflows", m, m.log_prob, lambda n: m.sample(n)[0], m.forward)


# ── the floor ────────────────────────────────────────────────────────────────────────────
FLOOR = "floor"


class GemmFloor(nn.Module):
    """Every ``nn.Linear`` of our model (masked ones as dense weights of the same shape), each
    applied once to a fixed input of its width: only the matrix products and bias adds that
    any implementation with these dense weights computes, with no activation, flow algebra or
    log-det. One pass over every weight is the least any operation here needs (a density is
    one conditioner pass per layer; ours samples an autoregressive flow by solving each MADE
    unit once); :class:`FlowFloor` adds what a family needs beyond it."""

    def __init__(self, flow: nn.Module, batch: int):
        super().__init__()
        linears = [m for m in flow.modules() if isinstance(m, nn.Linear)]
        self.weights = nn.ParameterList(nn.Parameter(m.weight.detach().clone())
                                        for m in linears)  # fmt: skip
        self.biases = nn.ParameterList(nn.Parameter(m.bias.detach().clone()) for m in linears)
        for i, m in enumerate(linears):  # buffers: they follow the module to its device
            self.register_buffer(f"input{i}", torch.randn(batch, m.in_features))

    @property
    def inputs(self) -> list[Tensor]:
        return [getattr(self, f"input{i}") for i in range(len(self.weights))]

    def products(self) -> list[Tensor]:
        """``X W^T + b`` of every layer, once."""
        return [torch.addmm(b, x, w.T) for x, w, b in zip(self.inputs, self.weights,
                                                          self.biases)]  # fmt: skip

    def forward(self, _: Tensor | int) -> Tensor:
        """A scalar per output row, so that a train step backpropagates through every
        product (the sum is one reduction per layer, less work than any activation)."""
        total = torch.zeros((), device=self.inputs[0].device)
        for out in self.products():
            total = total + out.sum()
        return total.expand(len(self.inputs[0]))


def _spline_elements(layer: nn.Module) -> int:
    """How many elements of a row the layer's element-wise transform must map."""
    from harness.flows.layers.autoregressive import Autoregressive
    from harness.flows.layers.coupling import MaskCoupling, SplitCoupling

    if isinstance(layer, Autoregressive):
        return int(layer.made.features)
    if isinstance(layer, SplitCoupling):
        return layer.sizes[0] if layer.flip else layer.sizes[1]
    if isinstance(layer, MaskCoupling):
        return int((~layer.keep).sum())  # ours maps every element and selects; a floor need not
    raise TypeError(f"no spline floor for {type(layer).__name__}")


class FlowFloor(GemmFloor):
    """The floor of one operation of our model (module doc; the pieces in ``floors.py``):

    - the dense products, one pass (:class:`GemmFloor`), for every operation;
    - per spline layer, the spline work (:class:`floors.SplineWork`) on the elements that the
      layer transforms: forward with its log-det for density and train, the inverse without
      it for sample and inverse;
    - per autoregressive layer, in the direction it solves (MAF and NSF-AR: sample and
      inverse; IAF: density and train), a dependency chain of ``steps − 1`` element-wise ops
      (:func:`floors.dependency_chain`), ``steps`` that of the layer's solve plan
      (:mod:`harness.flows.made_plan`; ``D`` for a standard MADE) — the fewest sequential
      steps the structure allows; the chain starts from the layer's output product, so a
      train step back-propagates through it too.

    The affine families' element-wise algebra (``x · exp(s) + t``, a few element-wise ops
    per layer) is not counted, which keeps the floor a lower bound there too."""

    def __init__(self, flow: nn.Module, batch: int):
        super().__init__(flow, batch)
        from harness.flows.layers.autoregressive import Autoregressive
        from harness.flows.layers.elementwise import Spline

        linears = [m for m in flow.modules() if isinstance(m, nn.Linear)]
        self.splines = nn.ModuleList()
        self.chains: list[tuple[int, int, bool]] = []  # (product, dependent steps, in density)
        for layer in flow.modules():
            ew = getattr(layer, "ew", None)
            if isinstance(ew, Spline):
                work = floors.SplineWork(batch, _spline_elements(layer), ew.bins, ew.tail_bound,
                                         seed=len(self.splines))  # fmt: skip
                self.splines.append(work)
            if isinstance(layer, Autoregressive):
                out = next(i for i, m in enumerate(linears) if m is layer.made.out)
                self.chains.append((out, layer.made.plan.steps - 1, layer.dual))

    def run(self, density: bool) -> Tensor:
        """The floor of density and train (``density``) or of sample and inverse."""
        outs = self.products()
        total = torch.zeros((), device=outs[0].device)
        for out in outs:
            total = total + out.sum()
        for spline in self.splines:
            total = total + spline(inverse=not density, with_log_det=density)
        for i, steps, dual in self.chains:
            if dual == density:  # the solved direction: IAF's density, MAF's sampling
                total = total + floors.dependency_chain(outs[i][:, 0], steps).sum()
        return total.expand(len(outs[0]))

    def forward(self, _: Tensor | int) -> Tensor:
        return self.run(True)

    def sequential_steps(self, density: bool) -> int:
        """The dependent element-wise ops of the operation's chains, all layers together."""
        return sum(steps for _, steps, dual in self.chains if dual == density)

    def counts(self, op: str) -> dict[str, int]:
        """What the floor of ``op`` counts: products (linear layers, one pass), spline
        elements (all spline layers; 0: none) and sequential steps."""
        density = op in ("density", "train")
        return {"products": len(self.weights),
                "spline_elements": sum(len(s.x) * s.elements for s in self.splines),
                "sequential_steps": self.sequential_steps(density)}  # fmt: skip


def build_floor(model: str, d: int, batch: int) -> Impl:
    floor = FlowFloor(build_ours(model, d).module, batch)
    return Impl(FLOOR, floor, lambda x: floor.run(True), lambda n: floor.run(False),
                lambda z: floor.run(False))  # fmt: skip


BUILDERS: dict[str, Callable[[str, int], Impl | None]] = {
    OURS: build_ours,
    "zuko": build_zuko,
    "nflows": build_nflows,
    "normflows": build_normflows,
}


def available_peers() -> list[str]:
    return [p for p in PEERS if importlib.util.find_spec(p) is not None]


def op_fn(impl: Impl, op: str, x: Tensor, batch: int, compiled: bool) -> Callable[[], object]:
    """The timed call; ``compiled``: the library's own callables through ``torch.compile``
    (ours through :func:`harness.flows.compiled_view`, the same ``torch.compile`` settings),
    the optimizer eager for every library."""
    if compiled:
        impl = compiled_impl(impl)
    if op == "density":
        return lambda: impl.density(x)
    if op == "sample":
        return lambda: impl.sample(batch)
    if op == "inverse":
        return lambda: impl.inverse(x)
    opt = torch.optim.Adam(impl.module.parameters(), lr=1e-5)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (-impl.density(x).mean()).backward()
        opt.step()

    return step


def compiled_impl(impl: Impl) -> Impl:
    """``impl`` with density, sample and inverse compiled: ``torch.compile(dynamic=False)``
    (inductor, default mode, graph breaks allowed: a peer that breaks graphs still runs)."""
    if impl.lib == OURS:
        from harness.flows import compiled_view

        view = compiled_view(impl.module, shapes="static", mode=COMPILE_MODE)  # type: ignore[arg-type]
        return Impl(OURS, impl.module, view.log_prob, view.sample, view.inverse)
    opts = {"dynamic": False, "mode": None if COMPILE_MODE == "default" else COMPILE_MODE}

    def compile_(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def body(*args: object) -> Tensor:
            return fn(*args)

        # a code object per callable: dynamo caches graphs per code object, and a shared one
        # would hit its recompile limit (8) and silently run the rest eagerly
        own = types.FunctionType(body.__code__.replace(), body.__globals__, body.__name__,
                                 body.__defaults__, body.__closure__)  # fmt: skip
        return torch.compile(own, **opts)  # type: ignore[arg-type]

    return Impl(impl.lib, impl.module, compile_(impl.density), compile_(impl.sample),
                compile_(impl.inverse))  # fmt: skip


COMPILE_MODE = "default"


def measure(fn: Callable[[], object], min_run_time: float, grad: bool
            ) -> tuple[float, list[float]]:
    """Median seconds per call and each block's seconds per call (``blocked_autorange``;
    CUDA-synchronised by the Timer)."""
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        timer = benchmark.Timer(
            stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()
        )
        m = timer.blocked_autorange(min_run_time=min_run_time)
        return m.median, list(m.times)


def first_call(fn: Callable[[], object], grad: bool, device: torch.device) -> float:
    """Seconds of the first call (for a compiled callable: compile + one run)."""
    with torch.enable_grad() if grad else torch.no_grad():
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0


RUNTIMES = {"eager": (False,), "compile": (True,), "both": (False, True)}


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    libs = [OURS, *[p for p in available_peers() if p in args.peers]]
    if args.floor:
        libs.append(FLOOR)
    print(f"# torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"batch {args.batch}, rounds {args.rounds}, min_run_time {args.min_run_time}s, "
          f"runtime {args.runtime}")  # fmt: skip
    print(f"# machine: {machine_state()}")
    for p in (lib for lib in libs[1:] if lib != FLOOR):
        from importlib.metadata import version

        print(f"# {p} {version(p)}")
    impls: dict[tuple[str, int], dict[str, Impl]] = {}
    print("\n## parameter counts")
    for model in args.models:
        for d in args.dims:
            torch.manual_seed(0)
            row = {}
            for lib in libs:
                impl = (build_floor(model, d, args.batch) if lib == FLOOR
                        else BUILDERS[lib](model, d))  # fmt: skip
                if impl is not None:
                    impl.module.to(device)
                    row[lib] = impl
            impls[(model, d)] = row
            counts = "  ".join(f"{lib} {impl.params():>7,}" for lib, impl in row.items())
            print(f"{model:13s} D={d:<3d} {counts}")
    variants = RUNTIMES[args.runtime]
    # every timed callable, built (and, compiled, warmed up: the compile) once, up front
    fns: dict[tuple[str, int, str, str, bool], Callable[[], object]] = {}
    compile_s: dict[tuple[str, int, str, str], float] = {}
    failed: dict[tuple[str, int, str, str], str] = {}
    xs = {}
    t0 = time.perf_counter()
    for (model, d), row in impls.items():
        xs[(model, d)] = x = torch.randn(args.batch, d, device=device)
        for op in args.ops:
            for lib, impl in row.items():
                for comp in variants:
                    key = (model, d, op, lib)
                    try:
                        fn = op_fn(impl, op, x, args.batch, comp)
                        took = first_call(fn, op == "train", device)
                    except Exception as exc:  # a peer that does not compile: its eager time stands
                        if not comp or lib == OURS:
                            raise
                        failed[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                        continue
                    if comp:
                        compile_s[key] = took
                    fns[(*key, comp)] = fn
            if True in variants:
                print(f"# compiled {model} D={d} {op} after {time.perf_counter() - t0:.0f}s",
                      file=sys.stderr)  # fmt: skip
    times: dict[tuple[str, int, str, str, bool], list[float]] = {}
    blocks: dict[tuple[str, int, str, str, bool], list[list[float]]] = {}  # per round
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for key, fn in fns.items():  # interleaved: every callable once per round
            fn()  # warm-up after the others ran (caches, allocator)
            median, per_block = measure(fn, args.min_run_time, key[2] == "train")
            times.setdefault(key, []).append(median)
            blocks.setdefault(key, []).append(per_block)
        print(f"# round {r + 1}/{args.rounds} done after {time.perf_counter() - t0:.0f}s",
              file=sys.stderr)  # fmt: skip
    agg = statistics.median if args.stat == "median" else min
    med = {k: agg(v) for k, v in times.items()}
    out = report(med, impls, libs, args, blocks)
    out["compile_s"] = [{"model": k[0], "D": k[1], "op": k[2], "lib": k[3], "s": v}
                        for k, v in compile_s.items()]  # fmt: skip
    out["compile_failed"] = [{"model": k[0], "D": k[1], "op": k[2], "lib": k[3], "error": v}
                             for k, v in failed.items()]  # fmt: skip
    if compile_s:
        print_compile(compile_s, failed, libs)
    print(f"\n# machine after: {machine_state()}")
    return out


def machine_state() -> str:
    """Load and CPU model, so that a table says what else ran (a shared machine)."""
    import os
    import platform

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{cpu}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
            f"{load[2]:.2f}")  # fmt: skip


def _ratio_rows(med: dict, impls: dict, libs: list[str], args: argparse.Namespace,
                comp: bool, blocks: dict | None = None) -> list[dict]:  # fmt: skip
    """Ours (eager or compiled) ÷ the fastest peer: eager ours against eager peers; compiled
    ours against the best of every peer eager or compiled; with ``blocks`` (per key, each
    round's block times), the first quartiles' ratio with its bootstrap interval."""
    rows = []
    for model, d in impls:
        for op in args.ops:
            ours = med.get((model, d, op, OURS, comp))
            peers: dict[str, float] = {}
            keys_of: dict[str, tuple] = {}
            for lib in libs[1:]:
                if lib == FLOOR:
                    continue
                for c in ((False, True) if comp else (False,)):
                    v = med.get((model, d, op, lib, c))
                    if v is not None:
                        name = lib + (" (compiled)" if c else "")
                        peers[name] = v
                        keys_of[name] = (model, d, op, lib, c)
            best = min(peers, key=peers.__getitem__) if peers else None
            ratio = ours / peers[best] if best and ours is not None else float("nan")
            boot = ratios.Ratio(math.nan, math.nan, math.nan)
            if blocks and best and ours is not None:
                boot = ratios.ratio(blocks[keys_of[best]], blocks[(model, d, op, OURS, comp)])
            rows.append({"model": model, "D": d, "op": op, "ours_ms": None if ours is None
                         else ours * 1e3, "peer_ms": None if best is None else peers[best] * 1e3,
                         "ratio": ratio, "fastest_peer": best, "q1_ratio": boot.value,
                         "q1_lo": boot.lo, "q1_hi": boot.hi,
                         "resolved": boot.resolved})  # fmt: skip
    return rows


def _summary(rows: list[dict], target: float, label: str) -> list[str]:
    ratios = [r["ratio"] for r in rows if r["fastest_peer"] and math.isfinite(r["ratio"])]
    if not ratios:
        return []
    head = (f"# {label}: rows {len(ratios)}, ≤ {target}: {sum(r <= target for r in ratios)}, "
            f"geometric mean {statistics.geometric_mean(ratios):.2f}, "
            f"worst {max(ratios):.2f}")  # fmt: skip
    out = [head]
    by_op: dict[str, list[float]] = {}
    for r in rows:
        if r["fastest_peer"] and math.isfinite(r["ratio"]):
            by_op.setdefault(r["op"], []).append(r["ratio"])
    out.append("#   by operation: " + ", ".join(
        f"{op} {statistics.geometric_mean(v):.2f} (worst {max(v):.2f})"
        for op, v in by_op.items()))  # fmt: skip
    misses = [f"{r['model']} D={r['D']} {r['op']} {r['ratio']:.2f}" for r in rows
              if r["fastest_peer"] and r["ratio"] > target]  # fmt: skip
    if misses:
        out.append(f"#   over {target}: " + "; ".join(misses))
    return out


def _floor_rows(med: dict, impls: dict, libs: list[str], args: argparse.Namespace) -> list:
    """Every row's floor (:class:`FlowFloor`) beside the fastest peer: ours ÷ the floor (the
    share of our time above the work any implementation must do) and ours ÷ the fastest peer,
    eager and compiled. Eager: ours eager ÷ the floor eager, ÷ the fastest eager peer.
    Compiled: ours compiled ÷ the floor's faster runtime, ÷ the fastest peer eager or compiled
    (as the compiled ratio table). ``floor ÷ peer``: the floor's faster runtime ÷ the fastest
    peer in any runtime; above 0.67, no implementation can reach the compiled target."""
    print("\n## floor: what any implementation must do (products one pass + spline work + "
          "sequential steps); ours ÷ floor beside ours ÷ fastest peer")
    print(f"{'model':13s} {'D':>3s} {'op':8s} {'floor e':>8s} {'floor c':>8s} "
          f"{'e: /floor':>9s} {'/peer':>6s} {'c: /floor':>9s} {'/peer':>6s} {'fl/peer':>7s}"
          f"  counts: products, spline elements, sequential steps")  # fmt: skip

    def cell(v: float | None, width: int, digits: int) -> str:
        if v is None or not math.isfinite(v):
            return f"{'—':>{width}s}"
        return f"{v:{width}.{digits}f}"

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    rows = []
    for model, d in impls:
        floor_impl = impls[(model, d)].get(FLOOR)
        for op in args.ops:
            fl_e, fl_c = (med.get((model, d, op, FLOOR, c)) for c in (False, True))
            floor = min((v for v in (fl_e, fl_c) if v is not None), default=None)
            peers_e = [med[k] for lib in libs[1:] if lib != FLOOR
                       if (k := (model, d, op, lib, False)) in med]  # fmt: skip
            peers_c = [med[k] for lib in libs[1:] if lib != FLOOR
                       if (k := (model, d, op, lib, True)) in med]  # fmt: skip
            peer_e = min(peers_e, default=None)
            peer = min(peers_e + peers_c, default=None)
            ours_e, ours_c = (med.get((model, d, op, OURS, c)) for c in (False, True))
            if floor is None:
                continue
            ms = {k: None if v is None else v * 1e3 for k, v in (
                ("floor_ms", floor), ("floor_eager_ms", fl_e), ("floor_compiled_ms", fl_c),
                ("peer_ms", peer), ("peer_eager_ms", peer_e), ("ours_eager_ms", ours_e),
                ("ours_compiled_ms", ours_c))}  # fmt: skip
            r = {"model": model, "D": d, "op": op, **ms,
                 "counts": floor_impl.module.counts(op) if floor_impl else None,
                 "floor_over_peer": ratio(floor, peer),
                 "ours_over_floor_eager": ratio(ours_e, fl_e),
                 "ours_over_peer_eager": ratio(ours_e, peer_e),
                 "ours_over_floor_compiled": ratio(ours_c, floor),
                 "ours_over_peer_compiled": ratio(ours_c, peer)}  # fmt: skip
            # the compiled ratio where there is one, else the eager one (as before)
            r["ours_over_floor"] = (r["ours_over_floor_compiled"] if ours_c is not None
                                    else r["ours_over_floor_eager"])  # fmt: skip
            c = r["counts"] or {}
            flag = "  > 0.67" if (r["floor_over_peer"] or 0.0) > 0.67 else ""
            print(f"{model:13s} {d:3d} {op:8s} {cell(r['floor_eager_ms'], 8, 3)} "
                  f"{cell(r['floor_compiled_ms'], 8, 3)} "
                  f"{cell(r['ours_over_floor_eager'], 9, 2)} "
                  f"{cell(r['ours_over_peer_eager'], 6, 2)} "
                  f"{cell(r['ours_over_floor_compiled'], 9, 2)} "
                  f"{cell(r['ours_over_peer_compiled'], 6, 2)} {cell(r['floor_over_peer'], 7, 2)}"
                  f"  {c.get('products', 0)}, {c.get('spline_elements', 0)}, "
                  f"{c.get('sequential_steps', 0)}{flag}")  # fmt: skip
            rows.append(r)
    for runtime in ("eager", "compiled"):
        by_op: dict[str, list[float]] = {}
        for r in rows:
            if (v := r[f"ours_over_floor_{runtime}"]) is not None:
                by_op.setdefault(r["op"], []).append(v)
        if by_op:
            print(f"# {runtime} ours ÷ floor, geometric mean by operation: " + ", ".join(
                f"{op} {statistics.geometric_mean(v):.2f} (worst {max(v):.2f})"
                for op, v in by_op.items()))  # fmt: skip
    over = sum((r["floor_over_peer"] or 0.0) > 0.67 for r in rows)
    print(f"# rows where the floor alone is above 0.67 of the fastest peer: {over} of {len(rows)}")
    return rows


def report(med: dict, impls: dict, libs: list[str], args: argparse.Namespace,
           blocks: dict | None = None) -> dict:
    variants = RUNTIMES[args.runtime]
    print(f"\n## times (ms, {args.stat} over rounds); e: eager, c: compiled")
    cols = [(lib, c) for lib in libs for c in variants]
    head = f"{'model':13s} {'D':>3s} {'op':8s} " + " ".join(
        f"{(lib[:8] + (' c' if c else ' e')):>11s}" for lib, c in cols)
    print(head)
    for model, d in impls:
        for op in args.ops:
            cells = [med.get((model, d, op, lib, c)) for lib, c in cols]
            print(f"{model:13s} {d:3d} {op:8s} " + " ".join(
                f"{v * 1e3:11.3f}" if v is not None else f"{'—':>11s}"
                for v in cells))  # fmt: skip
    out: dict = {"libs": libs, "device": str(args.device), "batch": args.batch,
                 "runtime": args.runtime, "times_ms": [
                     {"model": k[0], "D": k[1], "op": k[2], "lib": k[3], "compiled": k[4],
                      "ms": v * 1e3} for k, v in med.items()]}  # fmt: skip
    for comp in variants:
        rows = _ratio_rows(med, impls, libs, args, comp, blocks)
        target = 0.67 if comp else 1.0
        title = ("compiled ours ÷ fastest peer, eager or compiled" if comp
                 else "eager ours ÷ fastest eager peer")  # fmt: skip
        print(f"\n## {title} (target ≤ {target})")
        print(f"{'model':13s} {'D':>3s} {'op':8s} {'ours ms':>10s} {'peer ms':>10s} "
              f"{'ratio':>7s}  {'Q1 ratio [95 % bootstrap]':<26s}fastest peer")  # fmt: skip
        for r in rows:
            flag = "  MISS" if r["fastest_peer"] and r["ratio"] > target else ""
            ours = f"{r['ours_ms']:10.3f}" if r["ours_ms"] is not None else f"{'—':>10s}"
            peer = f"{r['peer_ms']:10.3f}" if r["peer_ms"] is not None else f"{'—':>10s}"
            boot = ratios.Ratio(r["q1_ratio"], r["q1_lo"], r["q1_hi"])
            interval = boot.text() + ("" if boot.resolved or not math.isfinite(boot.value)
                                      else " n.r.")  # not resolved
            print(f"{r['model']:13s} {r['D']:3d} {r['op']:8s} {ours} {peer} {r['ratio']:7.2f}"
                  f"  {interval:<26s}{r['fastest_peer'] or '—'}{flag}")  # fmt: skip
        print("\n".join(_summary(rows, target, title)))
        unresolved = sum(not r["resolved"] for r in rows if r["fastest_peer"])
        print(f"#   not resolved (n.r.: the Q1 ratio's 95 % interval straddles 1 or lies "
              f"within ±5 % of it): {unresolved} of {sum(bool(r['fastest_peer']) for r in rows)}")
        out["compiled_rows" if comp else "rows"] = rows
    if FLOOR in libs:
        out["floor_rows"] = _floor_rows(med, impls, libs, args)
    if False in variants:
        print("\n## MAF / IAF asymmetry, eager (ms; the sequential direction grows with D)")
        for lib in (lib for lib in libs if lib != FLOOR):
            for d in (8, 32):
                cells = [med.get((m, d, op, lib, False)) for m in ("maf", "iaf")
                         for op in ("density", "sample")]  # fmt: skip
                if None in cells:
                    continue
                print(f"{lib:10s} D={d:<3d} MAF density {cells[0] * 1e3:8.2f} sample "
                      f"{cells[1] * 1e3:8.2f} | IAF density {cells[2] * 1e3:8.2f} sample "
                      f"{cells[3] * 1e3:8.2f}")  # fmt: skip
    return out


def print_compile(compile_s: dict, failed: dict, libs: list[str]) -> None:
    print("\n## compile time (s): first call of the compiled callable (compile + one run)")
    keys = sorted({k[:3] for k in compile_s} | {k[:3] for k in failed},
                  key=lambda k: (MODELS.index(k[0]), k[1], k[2]))  # fmt: skip
    print(f"{'model':13s} {'D':>3s} {'op':8s} " + " ".join(f"{lib:>10s}" for lib in libs))
    for k in keys:
        cells = []
        for lib in libs:
            if (*k, lib) in compile_s:
                cells.append(f"{compile_s[(*k, lib)]:10.1f}")
            else:
                cells.append(f"{'failed' if (*k, lib) in failed else '—':>10s}")
        print(f"{k[0]:13s} {k[1]:3d} {k[2]:8s} " + " ".join(cells))
    for k, err in failed.items():
        print(f"# {k[3]} {k[0]} D={k[1]} {k[2]}: compile failed ({err}); its eager time stands")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds of short timings")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    ap.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-run-time", type=float, default=0.2)
    ap.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="aggregate over rounds (min resists other jobs on a shared machine)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--runtime", choices=sorted(RUNTIMES), default="both",
                    help="eager, compiled (torch.compile, inductor) or both (default)")
    ap.add_argument("--compile-mode", choices=("default", "max-autotune"), default="default",
                    help="torch.compile mode for every library")
    ap.add_argument("--floor", action="store_true",
                    help="also time the floor of every row: our model's linear layers once, "
                         "plus the spline work and the sequential steps it must do (a lower "
                         "bound for any implementation; ffjord: the products × its NFE)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    ap.add_argument("--no-cnf", action="store_true",
                    help="skip the ffjord section (against a torchdiffeq reference CNF and "
                         "against realnvp / maf; benchmarks/cnf_rows.py)")
    args = ap.parse_args(argv)
    # nflows/normflows warn about their own zero-initialised spline nets; not our concern here
    warnings.filterwarnings("ignore", message="Inputs to the softmax are not scaled down")
    if args.quick:
        args.rounds, args.min_run_time = 3, 0.02
    if args.threads:
        torch.set_num_threads(args.threads)
    global COMPILE_MODE
    COMPILE_MODE = args.compile_mode
    # a peer whose graph breaks resumes in its own library functions, shared by every model:
    # room for all of them, so that no peer falls back to eager at dynamo's default limit (8)
    torch._dynamo.config.recompile_limit = 256
    torch._dynamo.config.accumulated_recompile_limit = 4096
    out = run(args)
    if not args.no_cnf:  # ffjord in the same benchmark (benchmarks/cnf_rows.py)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import cnf_rows

        print()
        table = cnf_rows.rows(args.quick, floor=args.floor)
        cnf_rows.print_rows(table)
        out["cnf_rows"] = table
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
