"""How long does `nfbench report` take on a store of 1,000 runs with curves? Target: < 15 s.

    python benchmarks/report_scale.py                     # fill a temporary store, time it
    python benchmarks/report_scale.py --store /tmp/big    # keep the store (re-used next time)
    python benchmarks/report_scale.py --runs 300 --points 51

Fills a real MLflow SQLite store (the writer's shape: tags, params, final metrics, curves as
metric histories *and* as the curves.parquet artifact, config / diagnostics / samples
artifacts) with a synthetic sweep: every architecture × data set × dequantization of the test
suite, in several hyper-parameter variants, over seeds. Then times, in this process,
``load_runs``, ``load_curves`` and the whole ``write_report``; and, when the CLI has a
``report`` command, ``nfbench report`` end to end in a fresh process. Prints each time and the
ratio target / time (> 1 means within target).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "report")]

from report_synth import DATASETS, QUALITY, fill_suite

from harness.report import write_report
from harness.tracking.read import load_curves, load_runs

SUITE = "scale"
TARGET_S = 15.0
VARIANTS = ("h64", "h128", "h256", "h512")


def _jobs(seeds: list[int]) -> list[tuple[str, str, str, list[int]]]:
    jobs = []
    for arch, per_data in QUALITY.items():
        for dataset in per_data:
            ds = DATASETS[dataset]
            schemes = ["none"] if ds.kind == "continuous" else (
                ["uniform", "variational"] if arch not in ("gaussian", "histogram")
                else ["uniform"])
            jobs += [(arch, dataset, scheme, seeds) for scheme in schemes]
    return jobs


def fill(uri: str, root: Path, runs: int, points: int, histories: bool) -> int:
    """Exactly ``runs`` runs: seed after seed of every (variant, job), cut at ``runs``."""
    per_seed = [(v, job) for v in VARIANTS for job in _jobs([0])]
    plan: dict[str, list] = {v: [] for v in VARIANTS}
    for i in range(runs):
        variant, (arch, dataset, scheme, _) = per_seed[i % len(per_seed)]
        plan[variant].append((arch, dataset, scheme, [i // len(per_seed)]))
    total = 0
    t0 = time.perf_counter()
    for variant, jobs in plan.items():
        labels = {arch: f"{arch}({variant})" for arch in QUALITY if arch not in
                  ("gaussian", "histogram")}
        outcomes = {("glow", "power", "none", 0): "failed",
                    ("realnvp", "digits", "variational", 1): "diverged"}
        truths = fill_suite(uri, SUITE, jobs, artifact_root=root, points=points,
                            arch_labels=labels, outcomes=outcomes, histories=histories,
                            revision=f"rev-{variant}")
        total += len(truths)
        print(f"  filled {total} runs ({time.perf_counter() - t0:.0f} s)", flush=True)
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="folder of the MLflow store (kept; re-used)")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--points", type=int, default=101, help="curve points per key and run")
    ap.add_argument("--no-histories", action="store_true",
                    help="curves only as Parquet artifacts (faster to fill)")
    args = ap.parse_args(argv)
    root = args.store or Path(tempfile.mkdtemp(prefix="nfbench-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(root / 'mlflow.db').resolve()}"
    try:
        have = len(load_runs(uri, [SUITE]))
    except LookupError:
        have = 0
    if have < args.runs:
        print(f"filling {uri} with about {args.runs} runs …", flush=True)
        fill(uri, root / "mlartifacts", args.runs, args.points, not args.no_histories)
    t = time.perf_counter()
    runs = load_runs(uri, [SUITE])
    t_runs = time.perf_counter() - t
    t = time.perf_counter()
    curves = load_curves(uri, runs)
    t_curves = time.perf_counter() - t
    out = root / "report"
    t = time.perf_counter()
    index = write_report([SUITE], uri, out)
    t_report = time.perf_counter() - t
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(f"runs: {len(runs)}, curve rows: {len(curves)}, site: {size:.1f} MB at {index}")
    print(f"load_runs     {t_runs:6.2f} s")
    print(f"load_curves   {t_curves:6.2f} s")
    print(f"write_report  {t_report:6.2f} s   target {TARGET_S:.0f} s   "
          f"ratio target/time {TARGET_S / t_report:.2f}")
    cli = ROOT / "harness" / "cli.py"
    if cli.is_file() and "report" in cli.read_text():
        cmd = [sys.executable, "-m", "harness.cli", "report", SUITE, "--tracking-uri", uri,
               "--out", str(root / "report-cli")]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              check=False)
        t_cli = time.perf_counter() - t
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr[-300:]}"
        print(f"nfbench report {t_cli:6.2f} s   ratio target/time {TARGET_S / t_cli:.2f}  "
              f"({status})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
