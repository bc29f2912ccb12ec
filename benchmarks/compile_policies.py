"""Which batch-size policy should a compiled flow use? ``dynamic`` against ``static`` and ``pad``.

A job evaluates a flow on batches of several sizes: ``eval.batch_size`` examples at a time and
a ragged last batch per split, a timing batch, a sample batch. Each policy of
:func:`harness.flows.compiled_view` pays for these differently:

- ``dynamic``: one graph with a symbolic batch size (compiled once, maybe slower kernels);
- ``static``: a graph per batch size (a compile per new size, the fastest kernels);
- ``pad``: a graph per power-of-two bucket, running padded rows (fewer compiles, wasted rows).

For each architecture and policy this script runs the sequence of batch sizes a job sees
(``--sizes``, default: 1000, 1000, 648, 284, 512 — a 3,648-example test split in batches of
1000, a 3,284-example validation split's last batch, the timing batch), then times each size
(median of ``blocked_autorange``, in rounds alternating the policies) and prints compile time,
graphs, recompiles and ms per batch, plus the eager time for reference.

Usage: python benchmarks/compile_policies.py [--models maf realnvp nsf-coupling] [--dim 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import flows
from harness.flows.compiled import SHAPE_POLICIES


def _ms(fn, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["maf", "realnvp", "nsf-coupling"])
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 1000, 648, 284, 512])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-run-time", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = sorted(set(args.sizes), reverse=True)
    print(f"# torch {torch.__version__}, threads {args.threads}, D = {args.dim}, "
          f"batch sizes in order {args.sizes}, log_prob without gradients")  # fmt: skip
    for model in args.models:
        torch.manual_seed(0)
        flow = flows.build(model, args.dim).eval()
        xs = {n: torch.randn(n, args.dim) for n in sizes}
        views, first = {}, {}
        with torch.no_grad():
            for policy in SHAPE_POLICIES:
                torch._dynamo.reset()
                view = flows.compiled_view(flow, shapes=policy, fullgraph=True)
                t0 = time.perf_counter()
                for n in args.sizes:
                    view.log_prob(xs[n])
                first[policy] = time.perf_counter() - t0
                views[policy] = view
            times: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.rounds):
                for n in sizes:
                    for policy, view in [("eager", flow), *views.items()]:

                        def fn(v=view, x=xs[n]):
                            return v.log_prob(x)

                        times.setdefault((policy, n), []).append(_ms(fn, args.min_run_time))
        print(f"\n## {model}, D = {args.dim}")
        head = f"{'policy':8s} {'first pass s':>12s} {'graphs':>6s} {'recompiles':>10s} "
        print(head + " ".join(f"{f'{n} ms':>9s}" for n in sizes))
        for policy in ("eager", *SHAPE_POLICIES):
            cells = " ".join(f"{statistics.median(times[(policy, n)]):9.3f}" for n in sizes)
            if policy == "eager":
                print(f"{policy:8s} {'—':>12s} {'—':>6s} {'—':>10s} {cells}")
                continue
            st = views[policy].stats()
            print(f"{policy:8s} {first[policy]:12.1f} {st.graphs:6d} {st.recompiles:10d} {cells}")


if __name__ == "__main__":
    main()
