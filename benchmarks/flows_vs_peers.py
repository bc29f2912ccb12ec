"""nfbench's flows against zuko, nflows and normflows: same architectures, same sizes, one run.

For MAF, IAF, RealNVP-style affine coupling, NSF coupling and NSF autoregressive, each library
that has the architecture builds it with matched sizes (5 autoregressive or 6 coupling layers,
conditioners with 2 hidden layers of 64 units, 8 spline bins; parameter counts are printed),
and ``torch.utils.benchmark`` times, at D = 2, 8, 32 and batch 1024:

- ``density``: ``log_prob`` of a batch (no grad);
- ``train``: one Adam step on ``−mean log_prob`` (zero_grad, forward, backward, step);
- ``sample``: drawing a batch (no grad);
- ``inverse``: latent → data of a batch (no grad).

Measurements are interleaved: every round times every (row, library) once (the median of
``blocked_autorange``), and a row's time is the median (``--stat min``: the minimum) over
rounds, so that drift of a shared machine hits all libraries alike. Each row
prints the times, ``ours ÷ fastest peer`` and the fastest peer. A last section shows the MAF /
IAF asymmetry (density and sampling at D = 8 and 32: the sequential direction grows with D).
A final section (``benchmarks/cnf_rows.py``; ``--no-cnf`` skips it) times ``ffjord`` at D = 2
and 8 against the reference implementation's approach (a plain torchdiffeq dopri5 CNF with the
same network) and against nfbench's discrete flows.

Usage:
    python benchmarks/flows_vs_peers.py --quick          # a few minutes on 2 CPU cores
    python benchmarks/flows_vs_peers.py --device cuda --json results.json

Matched, not identical: the parameter counts agree row by row, but nflows' and normflows'
MADE with one block and no residual connections is Linear → ReLU → Linear → Linear (one
activation), where zuko's and ours is Linear → ReLU → Linear → ReLU → Linear; their affine
scales are ``sigmoid(r + 2)`` (nflows) or ``exp(r)`` (normflows, unbounded), ours a bounded
``tanh`` clamp. On a CPU the 64 × 64 matrix products dominate every row, so the ratios sit
near 1; on a GPU kernel launches weigh more and op counts matter more (not yet measured).

Needs the ``bench`` extra (``pip install zuko nflows normflows``); a missing peer is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import flows

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


BUILDERS: dict[str, Callable[[str, int], Impl | None]] = {
    OURS: build_ours,
    "zuko": build_zuko,
    "nflows": build_nflows,
    "normflows": build_normflows,
}


def available_peers() -> list[str]:
    return [p for p in PEERS if importlib.util.find_spec(p) is not None]


def op_fn(impl: Impl, op: str, x: Tensor, batch: int) -> Callable[[], object]:
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


def measure(fn: Callable[[], object], min_run_time: float, grad: bool) -> float:
    """Median seconds per call (``blocked_autorange``; CUDA-synchronised by the Timer)."""
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        timer = benchmark.Timer(
            stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()
        )
        return timer.blocked_autorange(min_run_time=min_run_time).median


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    libs = [OURS, *[p for p in available_peers() if p in args.peers]]
    print(f"# torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"batch {args.batch}, rounds {args.rounds}, min_run_time {args.min_run_time}s")  # fmt: skip
    for p in libs[1:]:
        from importlib.metadata import version

        print(f"# {p} {version(p)}")
    impls: dict[tuple[str, int], dict[str, Impl]] = {}
    print("\n## parameter counts")
    for model in args.models:
        for d in args.dims:
            torch.manual_seed(0)
            row = {}
            for lib in libs:
                impl = BUILDERS[lib](model, d)
                if impl is not None:
                    impl.module.to(device)
                    row[lib] = impl
            impls[(model, d)] = row
            counts = "  ".join(f"{lib} {impl.params():>7,}" for lib, impl in row.items())
            print(f"{model:13s} D={d:<3d} {counts}")
    times: dict[tuple[str, int, str, str], list[float]] = {}
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for (model, d), row in impls.items():
            x = torch.randn(args.batch, d, device=device)
            for op in args.ops:
                for lib, impl in row.items():
                    fn = op_fn(impl, op, x, args.batch)
                    fn()  # warm-up (and lazy initialisation)
                    key = (model, d, op, lib)
                    times.setdefault(key, []).append(measure(fn, args.min_run_time, op == "train"))
        print(f"# round {r + 1}/{args.rounds} done after {time.perf_counter() - t0:.0f}s",
              file=sys.stderr)  # fmt: skip
    agg = statistics.median if args.stat == "median" else min
    med = {k: agg(v) for k, v in times.items()}
    return report(med, impls, libs, args)


def report(med: dict, impls: dict, libs: list[str], args: argparse.Namespace) -> dict:
    print(f"\n## times (ms, {args.stat} over rounds) and ours ÷ fastest peer")
    head = f"{'model':13s} {'D':>3s} {'op':8s} " + " ".join(f"{lib:>10s}" for lib in libs)
    print(head + f" {'ratio':>7s}  fastest peer")
    rows, misses = [], []
    for model, d in impls:
        for op in args.ops:
            cells = {lib: med.get((model, d, op, lib)) for lib in libs}
            peers = {k: v for k, v in cells.items() if k != OURS and v is not None}
            best = min(peers, key=peers.__getitem__) if peers else None
            ratio = cells[OURS] / peers[best] if best else float("nan")
            text = " ".join(f"{v * 1e3:10.3f}" if v is not None else f"{'—':>10s}"
                            for v in cells.values())  # fmt: skip
            flag = "" if not best or ratio <= 1.0 else "  MISS"
            print(f"{model:13s} {d:3d} {op:8s} {text} {ratio:7.2f}  {best or '—'}{flag}")
            rows.append({"model": model, "D": d, "op": op, "ms": {k: None if v is None else
                         v * 1e3 for k, v in cells.items()}, "ratio": ratio, "fastest_peer": best})  # fmt: skip
            if flag:
                misses.append(f"{model} D={d} {op}: {ratio:.2f}")
    ratios = [r["ratio"] for r in rows if r["fastest_peer"]]
    if ratios:
        print(f"\n# rows {len(ratios)}, ratio ≤ 1.0: {sum(r <= 1.0 for r in ratios)}, "
              f"≤ 0.67: {sum(r <= 0.67 for r in ratios)}, geometric mean "
              f"{statistics.geometric_mean(ratios):.2f}, worst {max(ratios):.2f}")  # fmt: skip
    if misses:
        print("# rows slower than the fastest peer: " + "; ".join(misses))
    print("\n## MAF / IAF asymmetry (ms; the sequential direction grows with D)")
    for lib in libs:
        for d in (8, 32):
            cells = [
                med.get((m, d, op, lib)) for m in ("maf", "iaf") for op in ("density", "sample")
            ]
            if None in cells:
                continue
            print(f"{lib:10s} D={d:<3d} MAF density {cells[0] * 1e3:8.2f} sample {cells[1] * 1e3:8.2f}"
                  f" | IAF density {cells[2] * 1e3:8.2f} sample {cells[3] * 1e3:8.2f}")  # fmt: skip
    return {"rows": rows, "libs": libs, "device": str(args.device), "batch": args.batch}


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
    out = run(args)
    if not args.no_cnf:  # issue 5: ffjord in the same benchmark (benchmarks/cnf_rows.py)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import cnf_rows

        print()
        table = cnf_rows.rows(args.quick)
        cnf_rows.print_rows(table)
        out["cnf_rows"] = table
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
