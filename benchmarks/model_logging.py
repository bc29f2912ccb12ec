"""What logging each job's flow as an MLflow LoggedModel costs, on the smoke suite.

Runs ``suites/smoke.yaml`` (its matrix as shipped; ``--steps`` shortens training) in this
process (``--backend inline``: one phase at a time, so the times are the jobs' own) into a
fresh SQLite store, and times every call that logs a model (building the pyfunc model around
the weights, uploading it, linking its metrics, tagging the run). Prints per job: the model
logging seconds, and the job's time (train + timing phase) measured in the same run, and the
ratio Σ model logging / Σ job time.

Usage: python benchmarks/model_logging.py [--steps 600]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from harness.app import load_jobs
from harness.schedule import run_jobs
from harness.tracking import MlflowTracker

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: as shipped)")
    args = ap.parse_args()
    spent: list[float] = []
    log_model = MlflowTracker.log_model

    def timed(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return log_model(self, *a, **kw)
        finally:
            spent.append(time.perf_counter() - t0)

    MlflowTracker.log_model = timed
    with tempfile.TemporaryDirectory() as tmp:
        suite = yaml.safe_load((ROOT / "suites" / "smoke.yaml").read_text())
        if args.steps:
            suite["train"].update(steps=args.steps)
        suite["system_metrics"] = {"enabled": False}
        path = Path(tmp) / "smoke.yaml"
        path.write_text(yaml.safe_dump(suite))
        s, jobs = load_jobs(str(path), quiet=True)
        summary = run_jobs(s, jobs, uri=f"sqlite:///{tmp}/mlflow.db", backend="inline",
                           out=lambda line: None)
    n = len(summary.finished)
    print(f"smoke suite, {n} finished jobs, {s.train.steps} steps, inline backend")
    print(f"model logging per job: mean {sum(spent) / max(1, len(spent)):.3f} s, "
          f"max {max(spent, default=0):.3f} s ({len(spent)} models)")
    print(f"job time per job (train + timing phases): {summary.job_seconds / max(1, n):.2f} s")
    print(f"ratio Σ model logging / Σ job time: {sum(spent) / summary.job_seconds:.4f}")


if __name__ == "__main__":
    main()
