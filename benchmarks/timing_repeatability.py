"""Timing repeatability: the smoke suite's timing phase, three times on the same checkpoints,
then three times more beside a CPU-bound neighbour that this script starts.

    python benchmarks/timing_repeatability.py                 # train the smoke suite first
    python benchmarks/timing_repeatability.py --repeats 5 --neighbours 2

Trains the smoke suite once (in this process, into a temporary SQLite store), then runs
each job's timing phase (``harness.job.run_timing``: reload the best checkpoint, time it)
``--repeats`` times with nothing else started, and ``--repeats`` times with ``--neighbours``
busy-loop processes running. ``--no-store`` trains the same flows in memory and times them
with ``harness.measure.time_flow`` (the timing phase without MLflow), for a machine that has
only torch, NumPy, scikit-learn and PyYAML. It prints, per job and ``perf/*`` timing:

* quiet: the coefficient of variation (sd / mean) of the estimator over the quiet repeats
  (target ≤ 0.05), and the same for the blocks' median and minimum (from ``timing.json``),
  the evidence for the estimator the harness reports; the estimator's CV over the repeats
  the harness did not mark contended, and how many unmarked repeats lie more than 0.10 from
  their timing's unmarked median (what the marks missed); the contended marks and the worst
  slowdown the canary read (``harness.measure.canary``: the machine's own speed); for the
  log-det (a difference of two timings) also its sd as a share of the forward pass;
* neighbour: each repeat's relative distance from the quiet mean (of the quiet repeats not
  marked contended, where there are any), and whether the harness marked it contended
  (target: within 0.10, or marked).

The machine's own load (``/proc/loadavg``, other processes' CPUs) is printed beside each
phase: on a shared machine a "quiet" phase is only as quiet as the others let it be, and the
contended marks say when it was not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMINGS = ("perf/density_ms", "perf/forward_nologdet_ms", "perf/logdet_ms", "perf/inverse_ms",
           "perf/sample_ms", "perf/train_step_ms")


def _store_jobs(suite_path: Path, steps: int | None) -> list[tuple[str, object]]:
    """Train every job of the suite into a temporary SQLite store; each job's timer runs its
    timing phase (``run_timing``: reload the best checkpoint from the store and time it)."""
    from harness.app import load_jobs
    from harness.job import run_timing, run_training
    from harness.tracking import MlflowTracker, Store

    tmp = Path(tempfile.mkdtemp(prefix="nfbench-timing-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    print(f"training {suite_path} into {uri}")
    _, jobs = load_jobs(str(suite_path), quiet=True)
    out = []
    for job in jobs:
        config = job.config
        if steps:
            config = dataclasses.replace(config,
                                         train=config.train.model_copy(update={"steps": steps}))
        store = Store(uri, job.suite)
        jr = store.open_run(job, {}, None, False, params=job.flat_params())
        tracker = MlflowTracker(store.uri, jr.run_id, artifact_uri=jr.artifact_uri)
        t0 = time.perf_counter()
        result = run_training(config, tracker, _cpu())
        runtime = job.axes.get("runtime", "eager")  # the smoke suite times both runtimes
        name = f"{job.axes['arch']}·{job.axes['dataset']}" + (
            "" if runtime == "eager" else f"·{runtime}")
        print(f"  trained {name}: {result.status} in {time.perf_counter() - t0:.0f} s")

        def timer(config=config, tracker=tracker):
            res = run_timing(config, tracker, _cpu(), defer_record=True)
            folder = Path(tempfile.mkdtemp())
            return res.metrics, json.loads(tracker.fetch("timing.json", folder).read_text())

        out.append((name, timer))
    return out


def _inline_jobs(suite_path: Path, steps: int | None) -> list[tuple[str, object]]:
    """The same jobs without MLflow (for a machine with only torch, NumPy and scikit-learn):
    each flow trained in memory as the suite says, its weights kept; each timer times them
    with ``harness.measure.time_flow`` as the timing phase does."""
    import copy

    import torch
    import yaml

    from harness import data, flows
    from harness.measure import time_flow

    suite = yaml.safe_load(suite_path.read_text())
    m, train, timing = suite["matrix"], suite["train"], suite.get("timing", {})
    out = []
    for arch in m["architectures"]:
        for item in m["datasets"]:
            spec = item if isinstance(item, dict) else {"name": item}
            ds = data.load(spec["name"], seed=0)
            scheme = "uniform" if ds.kind == "discrete" else "none"
            torch.manual_seed(0)
            deq = data.make_dequantizer(scheme, ds)
            shape = tuple(deq.model_shape)
            flat = spec.get("flatten") or len(shape) == 1
            dims = int(np.prod(shape))
            flow = flows.build(arch, event_shape=dims if flat else shape)
            opt = torch.optim.Adam(flow.parameters(), lr=train["optimizer"]["lr"])
            gen = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            for _ in range(steps or train["steps"]):
                idx = torch.randint(len(ds.train), (train["batch_size"],), generator=gen)
                w, lw = deq(ds.train[idx])
                loss = -(flow.log_prob(w.reshape(len(w), -1) if flat else w) + lw).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            name = f"{arch}·{spec['name']}"
            print(f"  trained {name} in {time.perf_counter() - t0:.0f} s")
            batch = timing.get("batch_size", 512)
            with torch.no_grad():
                w, _ = deq(ds.test[torch.arange(batch) % len(ds.test)])
            x = w.reshape(len(w), -1) if flat else w
            kept = copy.deepcopy(flow)

            def timer(flow=kept, x=x):
                t = time_flow(flow, x, min_run_time=timing.get("min_run_time", 0.2))
                return t.metrics, {k: {kk: vv for kk, vv in v.items()}
                                   for k, v in t.detail.items()}

            out.append((name, timer))
    return out


def _cpu():
    import torch

    return torch.device("cpu")


def _machine() -> str:
    from harness.measure import interference

    a = interference.probe()
    time.sleep(1.0)
    seen = interference.between(a, interference.probe())
    if seen is None:
        return "machine: unknown (no /proc)"
    return (f"machine: load {seen.load1:.2f}, other processes {seen.others_cpus:.2f} of "
            f"{seen.cpus} CPUs, steal {seen.steal_share:.1%}")


def _time_all(jobs, label: str) -> list[dict]:
    rows = []
    for name, timer in jobs:
        metrics, detail = timer()
        rows.append({"job": name, "phase": label, "metrics": metrics, "detail": detail})
    return rows


def _cv(values: list[float]) -> float:
    x = np.asarray(values, dtype=float)
    return float(x.std(ddof=1) / abs(x.mean())) if len(x) > 1 and x.mean() else math.nan


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default=str(ROOT / "suites" / "smoke.yaml"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--neighbours", type=int, default=1, help="CPU-bound processes to start")
    p.add_argument("--steps", type=int, default=None, help="train this many steps (default: "
                   "the suite's)")
    p.add_argument("--json", default=None, help="write every repeat's metrics and "
                   "timing.json here")
    p.add_argument("--no-store", action="store_true", help="train in memory and time with "
                   "harness.measure directly (no MLflow, Ray or pydantic needed)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    make = _inline_jobs if args.no_store else _store_jobs
    jobs = make(Path(args.suite), args.steps)
    quiet, busy = [], []
    for i in range(args.repeats):
        print(f"quiet repeat {i + 1}: {_machine()}")
        quiet += _time_all(jobs, f"quiet {i + 1}")
    neighbours = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                  for _ in range(args.neighbours)]
    try:
        time.sleep(1.0)
        for i in range(args.repeats):
            print(f"neighbour repeat {i + 1}: {_machine()}")
            busy += _time_all(jobs, f"neighbour {i + 1}")
    finally:
        for proc in neighbours:
            proc.kill()
            proc.wait()

    print("\nquiet repeats: coefficient of variation over repeats (target ≤ 0.05); the "
          "estimator (first quartile), the blocks' median and minimum; the estimator's CV over "
          "the repeats the harness did not mark contended (how many); contended marks; the "
          "worst slowdown the canary read")
    print(f"{'job':28} {'timing':26} {'CV q1':>7} {'CV med':>7} {'CV min':>7} "
          f"{'unmarked':>12} {'contended':>10} {'slowdown':>9}")
    worst = worst_unmarked = 0.0
    over = over_unmarked = misses = 0
    for name in dict.fromkeys(r["job"] for r in quiet):
        rows = [r for r in quiet if r["job"] == name]
        for key in TIMINGS:
            if key not in rows[0]["metrics"]:
                continue
            est = [r["metrics"][key] for r in rows]
            det = [r["detail"].get(key, {}) for r in rows]
            med = [d.get("median", math.nan) for d in det]
            low = [min(d["times"]) if d.get("times") else math.nan for d in det]
            marked = [bool(d.get("contended")) for d in det]
            clean = [v for v, m in zip(est, marked, strict=True) if not m]
            slow = max((float(np.median(d["slowdowns"])) for d in det if d.get("slowdowns")),
                       default=math.nan)  # the canary: the machine's own speed, worst repeat
            cv, cv_clean = _cv(est), _cv(clean) if len(clean) >= 3 else math.nan
            if key != "perf/logdet_ms":  # a difference near zero has no meaningful CV
                worst = max(worst, cv)
                over += cv > 0.05
                if math.isfinite(cv_clean):
                    worst_unmarked = max(worst_unmarked, cv_clean)
                    over_unmarked += cv_clean > 0.05
                if clean:  # an unmarked repeat far from the other unmarked ones: a miss
                    ref = float(np.median(clean))
                    misses += sum(abs(v / ref - 1) > 0.10 for v in clean)
            print(f"{name[:28]:28} {key:26} {cv:7.3f} {_cv(med):7.3f} {_cv(low):7.3f} "
                  f"{cv_clean:7.3f} ({len(clean)}) {sum(marked):>6}/{len(rows)} {slow:9.2f}")
            if key == "perf/logdet_ms":  # its spread beside the pass it is part of
                fwd = [r["detail"]["forward_ms"]["value"] for r in rows]
                sd = float(np.std(est, ddof=1)) if len(est) > 1 else math.nan
                print(f"{'':28} {'':26} log-det {np.mean(est):.4g} ms, sd {sd:.2g} ms = "
                      f"{sd / np.mean(fwd):.3f} of the forward pass ({np.mean(fwd):.4g} ms)")
            elif cv > 0.05:  # where the spread is: one repeat, or all
                print(f"{'':28} {'':26} repeats (ms): " + ", ".join(
                    f"{v:.4g}{'*' if m else ''}" for v, m in zip(est, marked, strict=True))
                    + "   (* marked contended)")
    print(f"quiet: worst CV {worst:.3f} (log-det excluded); {over} timings above 0.05")
    print(f"quiet, unmarked repeats only (timings with 3 or more): worst CV "
          f"{worst_unmarked:.3f}; {over_unmarked} timings above 0.05; {misses} unmarked "
          "repeats more than 0.10 from their timing's unmarked median (marks missed)")

    print("\nneighbour repeats: |value / quiet mean − 1| per repeat, and whether marked "
          "contended (target: ≤ 0.10 or marked)")
    ok = bad = 0
    for row in busy:
        base = [r for r in quiet if r["job"] == row["job"]]
        for key in TIMINGS:
            if key not in row["metrics"] or key == "perf/logdet_ms":
                continue
            unmarked = [r["metrics"][key] for r in base
                        if not r["detail"].get(key, {}).get("contended")]
            mean = float(np.mean(unmarked or [r["metrics"][key] for r in base]))
            dev = abs(row["metrics"][key] / mean - 1)
            marked = bool(row["detail"].get(key, {}).get("contended"))
            fine = dev <= 0.10 or marked
            ok, bad = ok + fine, bad + (not fine)
            print(f"{row['phase']:12} {row['job'][:28]:28} {key:26} {dev:6.3f} "
                  f"{'contended' if marked else '':>10} {'' if fine else '✗'}")
    print(f"neighbour: {ok} timings within 0.10 of quiet or marked contended, {bad} neither")
    if args.json:
        Path(args.json).write_text(json.dumps({"quiet": quiet, "neighbour": busy}))
        print(f"every repeat's metrics and timing.json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
