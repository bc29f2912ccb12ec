"""nfbench's flows in each runtime: eager, compiled, CUDA graphs, on one device.

For each architecture and operation (density: ``log_prob`` without gradients; train: one Adam
step on ``−mean log_prob``; sample) this prints the steady-state time of every runtime of
:func:`harness.flows.compiled_view`, its speedup over eager, the compile time (first call),
the break-even number of batches (compile time ÷ time saved per batch), graph breaks and
recompilations, and the check of the compiled view against eager
(:func:`harness.flows.compare_with_eager`). ``cuda-graphs`` runs on a CUDA device only; on a
CPU its refusal is printed instead. Timings are interleaved over rounds (median of
``blocked_autorange`` per round, minimum over rounds).

Usage:
    python benchmarks/runtimes.py                       # CPU: eager and compile
    python benchmarks/runtimes.py --device cuda         # eager, compile and cuda-graphs
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import flows
from harness.flows.compiled import RUNTIMES, RuntimeUnavailable

OPS = ("density", "train", "sample")


def _op(view, flow, op: str, x: torch.Tensor) -> Callable[[], object]:
    if op == "density":
        return lambda: view.log_prob(x)
    if op == "sample":
        return lambda: view.sample(x.shape[0])
    opt = torch.optim.Adam(flow.parameters(), lr=1e-6)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (-view.log_prob(x).mean()).backward()
        opt.step()

    return step


def _time(fn: Callable[[], object], grad: bool, min_run_time: float) -> float:
    with torch.enable_grad() if grad else torch.no_grad():
        timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=min_run_time).median


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=["maf", "iaf", "realnvp", "nsf-coupling",
                                                    "nsf-ar"])  # fmt: skip
    ap.add_argument("--dims", type=int, nargs="+", default=[8])
    ap.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-run-time", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# torch {torch.__version__}, {name}, threads {args.threads}, batch {args.batch}")
    for model in args.models:
        for d in args.dims:
            torch.manual_seed(0)
            flow = flows.build(model, d).to(device)
            x = torch.randn(args.batch, d, device=device)
            views, notes = {}, []
            for runtime in RUNTIMES:
                try:
                    views[runtime] = flows.compiled_view(flow, runtime, shapes="static")
                except RuntimeUnavailable as exc:
                    notes.append(f"{runtime}: {exc}")
            fns, first = {}, {}
            for runtime, view in views.items():
                flow.eval()
                check = flows.compare_with_eager(flow, view, x) if runtime != "eager" else None
                if check is not None:
                    notes.append(f"{runtime}: {check.message}")
                for op in args.ops:
                    flow.train(op == "train")
                    fn = _op(view, flow, op, x)
                    t0 = time.perf_counter()
                    with torch.enable_grad() if op == "train" else torch.no_grad():
                        fn()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    first[(runtime, op)] = time.perf_counter() - t0
                    fns[(runtime, op)] = fn
            times: dict[tuple[str, str], float] = {}
            for _ in range(args.rounds):
                for (runtime, op), fn in fns.items():
                    flow.train(op == "train")
                    t = _time(fn, op == "train", args.min_run_time)
                    times[(runtime, op)] = min(t, times.get((runtime, op), float("inf")))
            print(f"\n## {model}, D = {d}")
            print(f"{'runtime':12s} {'op':8s} {'ms':>9s} {'speedup':>8s} {'compile s':>10s} "
                  f"{'break-even':>11s} {'graphs':>6s} {'breaks':>6s} "
                  f"{'recompiles':>10s}")  # fmt: skip
            for (runtime, op), t in times.items():
                eager = times[("eager", op)]
                line = f"{runtime:12s} {op:8s} {t * 1e3:9.3f} {eager / t:8.2f} "
                if runtime == "eager":
                    print(line)
                    continue
                cost = first[(runtime, op)] - t
                saved = eager - t
                even = f"{cost / saved:11.0f}" if saved > 0 else f"{'never':>11s}"
                st = views[runtime].stats()
                print(line + f"{first[(runtime, op)]:10.1f} {even} {st.graphs:6d} "
                      f"{st.graph_breaks:6d} {st.recompiles:10d}")  # fmt: skip
            for note in notes:
                print(f"# {note}")


if __name__ == "__main__":
    main()
