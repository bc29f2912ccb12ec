"""Harness overhead: short jobs on 2 workers through real Ray and a real SQLite MLflow store.

Prints
- scheduling efficiency = Σ in-job time / (wall time × workers), wall time measured from the
  first call into the scheduler (worker start-up included, Ray start-up excluded) to the end,
  and the same after the workers' start-up; every job is claimed in the suite's ledger and
  the driver renews its lease throughout, so claims and leases are included;
- the driver's own bookkeeping: claiming keys and opening runs, writing final batches;
- logging share = time the jobs spent in MLflow calls / Σ in-job time;
- the driver's peak memory (resident set) during the run;
- planning a matrix of 10⁵ jobs (``nfbench plan --max-jobs``) in a fresh process: its time and
  peak memory.
Aim: efficiency ≥ 0.95 after start-up with 200 jobs, logging ≤ 3 %.

With MLflow's system metrics on (the default, every 10 s and once at the end of training),
the monitor's time (start, stop, sampling, its MLflow calls) is part of the logging share and
printed on a line of its own; ``--system-metrics off`` measures without them.

Usage: python benchmarks/harness_overhead.py [--jobs 200] [--steps 200] [--workers 2]
       [--plan-jobs 100000] [--no-plan]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray

from harness.app import load_jobs
from harness.schedule import run_jobs

SUITE = """\
name: overhead
matrix:
  architectures: [{{name: realnvp, layers: 4, hidden: 32}}]
  datasets: [moons]
  dequantization: [none]
  seeds: {seeds}
train: {{steps: {steps}, batch_size: 128, eval_every: 50, checkpoint_every: 100, log_every: 10}}
timing: {{enabled: false}}
resources: {{cpus: 1}}
"""

PLAN = """\
import contextlib, io, resource, sys, time
from harness.app import catalog
from harness.cli import main
catalog()  # the registries' imports (torch, …), so that what follows is the planning itself
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["plan", sys.argv[1], "--max-jobs", sys.argv[2], "--no-preflight"])
t1 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"RESULT {code} {t1 - t0:.3f} {peak:.0f} {base:.0f}", file=sys.stderr)
"""


DATASETS = ("moons", "8gaussians", "checkerboard", "rings", "pinwheel", "2spirals",
            "swissroll", "circles", "power", "gas")


def _plan_suite(n: int) -> str:
    """n jobs (n = 1, or a multiple of 100): 10 architecture variants × 10 data sets × seeds."""
    if n == 1:
        archs, sets, seeds = ["realnvp"], ["moons"], 1
    else:
        archs = [f"{{name: realnvp, hidden: {16 * (i + 1)}}}" for i in range(10)]
        sets, seeds = list(DATASETS), n // 100
    return (f"name: plan\nmatrix:\n  architectures: [{', '.join(archs)}]\n"
            f"  datasets: [{', '.join(sets)}]\n  dequantization: [none]\n"
            f"  seeds: [{', '.join(map(str, range(seeds)))}]\ntrain: {{steps: 10}}\n")


def plan_scale(n: int, tmp: Path) -> None:
    """``nfbench plan`` of an n-job suite in a fresh process, after its imports: the time to
    check, expand and print the job table, and the peak memory above the imports'."""
    path = tmp / "plan.yaml"
    path.write_text(_plan_suite(n))
    proc = subprocess.run([sys.executable, "-c", PLAN, str(path), str(n)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("RESULT"))
    code, seconds, peak, base = line.split()[1:]
    assert code == "0", proc.stderr
    grew = float(peak) - float(base)
    print(f"planning {n:,} jobs (nfbench plan, the job table printed): {float(seconds):.2f} s, "
          f"peak memory {float(peak):,.0f} MB ({grew:,.0f} MB above the imports', "
          f"{1024 * grew / n:.1f} kB a job)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plan-jobs", type=int, default=100_000, help="a multiple of 100")
    ap.add_argument("--no-plan", action="store_true")
    ap.add_argument("--system-metrics", default="10", metavar="SECONDS|off",
                    help="MLflow's system metrics in every job: the sampling interval "
                         "(default 10, the suites' default), or off")
    args = ap.parse_args()
    os.environ["NFBENCH_SYSTEM_METRICS"] = args.system_metrics  # the driver reads it
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overhead.yaml"
        path.write_text(SUITE.format(seeds=list(range(args.jobs)), steps=args.steps))
        suite, jobs = load_jobs(str(path), quiet=True, max_jobs=max(args.jobs, 10_000))
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False,
                 log_to_driver=False)
        ray_start = time.perf_counter() - t0
        try:
            summary = run_jobs(suite, jobs, uri=f"sqlite:///{tmp}/mlflow.db",
                               out=lambda s: None)
        finally:
            ray.shutdown()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert len(summary.finished) == args.jobs, summary
        eff = summary.job_seconds / (summary.wall_seconds * summary.slots)
        share = summary.log_seconds / summary.job_seconds
        print(f"jobs {args.jobs} × {args.steps} steps on {summary.slots} workers "
              f"(Ray start-up {ray_start:.1f} s, not counted)")
        print(f"wall {summary.wall_seconds:.1f} s · in-job {summary.job_seconds:.1f} s · "
              f"mean job {summary.job_seconds / args.jobs:.2f} s · "
              f"MLflow in jobs {summary.log_seconds:.2f} s")
        steady = summary.job_seconds / ((summary.wall_seconds - summary.startup_seconds)
                                        * summary.slots)
        print(f"scheduling efficiency {eff:.3f}")
        print(f"  of which start-up (workers import torch, first runs claimed and opened) "
              f"{summary.startup_seconds:.1f} s; after start-up {steady:.3f}  (aim ≥ 0.95)")
        driver = summary.claim_seconds + summary.driver_log_seconds
        print(f"driver bookkeeping beside the workers: claims and run opening "
              f"{summary.claim_seconds:.2f} s, final batches {summary.driver_log_seconds:.2f} s "
              f"({100 * driver / summary.wall_seconds:.1f} % of wall time, overlapping the jobs)")
        print(f"logging share         {share:.4f}  ({100 * share:.2f} %, aim ≤ 3 %): MLflow calls "
              "inside jobs (checkpoints, artifacts)")
        sm_share = summary.system_metrics_seconds / summary.job_seconds
        print(f"system metrics        {args.system_metrics}"
              + (" s interval" if args.system_metrics != "off" else "")
              + f": {summary.system_metrics_points} points, "
              f"{summary.system_metrics_seconds:.2f} s "
              f"in jobs ({100 * sm_share:.2f} % of job time, within the logging share; "
              f"aim: logging share ≤ 2 % with them on)")
        print(f"driver peak memory    {peak_mb:,.0f} MB (resident)")
        if not args.no_plan:
            plan_scale(args.plan_jobs, Path(tmp))


if __name__ == "__main__":
    main()
