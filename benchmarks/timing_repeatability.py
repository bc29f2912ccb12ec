"""Timing repeatability: the smoke suite's timing phase, three times on the same checkpoints,
then three times more beside a CPU-bound neighbour that this script starts.

    python benchmarks/timing_repeatability.py                 # train the smoke suite first
    python benchmarks/timing_repeatability.py --repeats 5 --neighbours 2

Trains the smoke suite once (inline, into a temporary SQLite store), then runs each job's
timing phase (``harness.job.run_timing``: reload the best checkpoint, time it) ``--repeats``
times with nothing else started, and ``--repeats`` times with ``--neighbours`` busy-loop
processes running. It prints, per job and ``perf/*`` timing:

* quiet: the coefficient of variation (sd / mean) of the estimator over the quiet repeats
  (target ≤ 0.05), and the same for the blocks' median and minimum (from ``timing.json``),
  the evidence for the estimator the harness reports;
* neighbour: each repeat's relative distance from the quiet mean, and whether the harness
  marked it contended (target: within 0.10, or marked).

The machine's own load (``/proc/loadavg``, other processes' CPUs) is printed beside each
phase: on a shared machine a "quiet" phase is only as quiet as the others let it be, and the
contended marks say when it was not.
"""

from __future__ import annotations

import argparse
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


def _train(suite_path: Path, uri: str, steps: int | None):
    from harness.cli import load_jobs
    from harness.job import run_training
    from harness.tracking import MlflowTracker, Store

    _, jobs = load_jobs(str(suite_path), quiet=True)
    out = []
    for job in jobs:
        config = job.config
        if steps:
            config = {**config, "train": {**config["train"], "steps": steps}}
        store = Store(uri, job.suite)
        jr = store.open_run(job, {}, None, False, params=job.flat_params())
        tracker = MlflowTracker(store.uri, jr.run_id, artifact_uri=jr.artifact_uri)
        t0 = time.perf_counter()
        result = run_training(config, tracker, _cpu())
        print(f"  trained {job.axes['arch']} · {job.axes['dataset']} · "
              f"{job.axes['dequant']}: {result.status} in {time.perf_counter() - t0:.0f} s")
        out.append((job, config, tracker))
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
    from harness.job import run_timing

    rows = []
    for job, config, tracker in jobs:
        res = run_timing(config, tracker, _cpu(), defer_record=True)
        detail = json.loads(Path(tracker.fetch("timing.json", Path(tempfile.mkdtemp()))
                                 ).read_text())
        rows.append({"job": f"{job.axes['arch']}·{job.axes['dataset']}", "phase": label,
                     "metrics": res.metrics, "detail": detail})
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
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="nfbench-timing-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    print(f"training {args.suite} into {uri}")
    jobs = _train(Path(args.suite), uri, args.steps)
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
          "estimator (first quartile), the blocks' median and minimum; contended marks")
    print(f"{'job':28} {'timing':26} {'CV q1':>7} {'CV med':>7} {'CV min':>7} {'contended':>10}")
    worst, over = 0.0, 0
    for name in dict.fromkeys(r["job"] for r in quiet):
        rows = [r for r in quiet if r["job"] == name]
        for key in TIMINGS:
            if key not in rows[0]["metrics"]:
                continue
            est = [r["metrics"][key] for r in rows]
            det = [r["detail"].get(key, {}) for r in rows]
            med = [d.get("median", math.nan) for d in det]
            low = [min(d["times"]) if d.get("times") else math.nan for d in det]
            marks = sum(bool(d.get("contended")) for d in det)
            cv = _cv(est)
            if key != "perf/logdet_ms":  # a difference near zero has no meaningful CV
                worst = max(worst, cv)
                over += cv > 0.05
            print(f"{name[:28]:28} {key:26} {cv:7.3f} {_cv(med):7.3f} {_cv(low):7.3f} "
                  f"{marks:>6}/{len(rows)}")
    print(f"quiet: worst CV {worst:.3f} (log-det excluded); {over} timings above 0.05")

    print("\nneighbour repeats: |value / quiet mean − 1| per repeat, and whether marked "
          "contended (target: ≤ 0.10 or marked)")
    ok = bad = 0
    for row in busy:
        base = [r for r in quiet if r["job"] == row["job"]]
        for key in TIMINGS:
            if key not in row["metrics"] or key == "perf/logdet_ms":
                continue
            mean = float(np.mean([r["metrics"][key] for r in base]))
            dev = abs(row["metrics"][key] / mean - 1)
            marked = bool(row["detail"].get(key, {}).get("contended"))
            fine = dev <= 0.10 or marked
            ok, bad = ok + fine, bad + (not fine)
            print(f"{row['phase']:12} {row['job'][:28]:28} {key:26} {dev:6.3f} "
                  f"{'contended' if marked else '':>10} {'' if fine else '✗'}")
    print(f"neighbour: {ok} timings within 0.10 of quiet or marked contended, {bad} neither")
    return 0


if __name__ == "__main__":
    sys.exit(main())
