"""Forecast accuracy: ``plan --forecast``'s makespan against the suite run for real on Ray.

For each setting, a calibration suite (the same architectures and data sets, other seeds) is
run first into a store of its own; then the forecast of the measured suite is made with costs
fitted from that store (:meth:`CostModel.from_store`, as ``--costs-from`` does, and the
worker start-up measured by the calibration run), and the suite is run into a fresh store.
Prints forecast and actual makespan (from the first call into the driver to its end; Ray's
own start-up excluded) and the error, and the forecast against the calibration run's own
makespan (the same configurations and the same job times: the schedule's error alone). Aim:
within 15 %.

Settings:

* ``local``: a local Ray instance of ``--cpus`` CPUs, one CPU a job;
* ``cluster``: a 3-node loopback cluster (Ray's ``cluster_utils``: a head and two nodes,
  raylets of their own), each node 2 CPUs and 2 virtual GPUs, a job holding
  ``{cpus: 0.5, gpus: 0.25}`` (four a GPU); the timing phase takes one GPU each.

The machine's other load changes a job's time between the calibration and the measured run;
the load average before each run is printed.

Usage: python benchmarks/forecast_accuracy.py [--setting local|cluster|both] [--jobs 24]
       [--steps 300] [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray

from harness.app import load_jobs
from harness.schedule import run_jobs
from harness.schedule.costs import CostModel
from harness.schedule.forecast import Cluster, forecast

ARCHS = ("{name: realnvp, layers: 4, hidden: 32}", "{name: maf, layers: 3, hidden: 32}",
         "{name: realnvp, layers: 8, hidden: 64}")
DATASETS = ("moons", "8gaussians")


def _suite(tmp: Path, name: str, seeds: list[int], steps: int, resources: str) -> tuple:
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmatrix:\n  architectures: [{', '.join(ARCHS)}]\n"
        f"  datasets: [{', '.join(DATASETS)}]\n  dequantization: [none]\n"
        f"  seeds: {seeds}\n"
        f"train: {{steps: {steps}, batch_size: 128, eval_every: 100, checkpoint_every: "
        f"{steps}, log_every: 20}}\n"
        "timing: {enabled: true, min_run_time: 0.05}\n"
        f"resources: {resources}\nsystem_metrics: {{enabled: false}}\n")
    return load_jobs(str(path), quiet=True)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def one(setting: str, jobs_n: int, steps: int, cpus: int, tmp: Path) -> float:
    per = len(ARCHS) * len(DATASETS)
    seeds = list(range(max(1, jobs_n // per)))
    calib_seeds = [100 + s for s in seeds]
    if setting == "local":
        resources, shape = "{cpus: 1}", Cluster(1, float(cpus), 0.0)
    else:
        resources, shape = "{cpus: 0.5, gpus: 0.25}", Cluster(3, 2.0, 2.0)
    cluster = None
    if setting == "local":
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    else:
        from ray.cluster_utils import Cluster as RayCluster

        cluster = RayCluster(initialize_head=True,
                             head_node_args={"num_cpus": 2, "num_gpus": 2})
        for _ in range(2):
            cluster.add_node(num_cpus=2, num_gpus=2)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
    try:
        calib_uri = f"sqlite:///{tmp}/{setting}-calib.db"
        suite, jobs = _suite(tmp, f"{setting}-calib", calib_seeds, steps, resources)
        print(f"[{setting}] calibration: {len(jobs)} jobs (load {_load()})", flush=True)
        cal = run_jobs(suite, jobs, uri=calib_uri, out=lambda s: None, tty=False)
        assert len(cal.finished) == len(jobs), cal
        costs = CostModel.from_store(calib_uri)
        suite, jobs = _suite(tmp, setting, seeds, steps, resources)
        f = forecast(suite, jobs, shape, costs, startup_s=cal.startup_seconds, scales=(1.0,))
        print(f"[{setting}] forecast: {len(jobs)} jobs on {shape.describe()}, {f.slots} "
              f"train workers, start-up {cal.startup_seconds:.1f} s (from the calibration): "
              f"makespan {f.makespan_s:.1f} s (load {_load()})", flush=True)
        t0 = time.perf_counter()
        real = run_jobs(suite, jobs, uri=f"sqlite:///{tmp}/{setting}.db", out=lambda s: None,
                        tty=False)
        took = time.perf_counter() - t0
        assert len(real.finished) == len(jobs), real
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    err = (f.makespan_s - real.wall_seconds) / real.wall_seconds
    own = (f.makespan_s - cal.wall_seconds) / cal.wall_seconds
    print(f"[{setting}] actual makespan {real.wall_seconds:.1f} s ({took:.1f} s around the "
          f"call): forecast error {100 * err:+.1f} %  (aim within ±15 %; load {_load()})",
          flush=True)
    print(f"[{setting}] the calibration run's own makespan was {cal.wall_seconds:.1f} s: the "
          f"forecast (its job times) is {100 * own:+.1f} % off it (the same jobs' configs on "
          "the same machine; what is left is the schedule's error, not the load's)",
          flush=True)
    return err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=("local", "cluster", "both"), default="both")
    ap.add_argument("--jobs", type=int, default=24, help="a multiple of 6")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    args = ap.parse_args()
    settings = ("local", "cluster") if args.setting == "both" else (args.setting,)
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings:
            one(setting, args.jobs, args.steps, args.cpus, Path(tmp))


if __name__ == "__main__":
    main()
