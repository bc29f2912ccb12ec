"""How long does `nfbench report` take on a store of 1,000 runs with curves? Target: < 15 s,
on SQLite and on PostgreSQL, printed side by side.

    python benchmarks/report_scale.py                     # fill temporary stores, time them
    python benchmarks/report_scale.py --store /tmp/big    # keep the SQLite store (re-used)
    python benchmarks/report_scale.py --runs 300 --points 51
    python benchmarks/report_scale.py --backends sqlite   # SQLite only

Fills a real MLflow SQLite store (the writer's shape: tags, params, final metrics, curves as
metric histories *and* as the curves.parquet artifact, config / diagnostics / samples
artifacts) with a synthetic sweep: every architecture × data set × dequantization of the test
suite, in several hyper-parameter variants, over seeds. Then times, in this process,
``load_runs``, ``load_curves`` and the whole ``write_report``; and, when the CLI has a
``report`` command, ``nfbench report`` end to end in a fresh process. Prints each time and the
ratio target / time (> 1 means within target).

PostgreSQL: a throwaway server from Debian's package (``initdb`` + ``pg_ctl`` in a temporary
folder, as the tests start it), filled with the same runs; its artifacts on local disk as
with SQLite, so the two columns differ only in the database.
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
from harness.tracking.uri import mask_uri

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


def measure(uri: str, root: Path, args) -> dict[str, float]:
    """Fill ``uri`` when it holds fewer than ``args.runs`` runs, then time the report."""
    try:
        have = len(load_runs(uri, [SUITE]))
    except LookupError:
        have = 0
    if have < args.runs:
        print(f"filling {mask_uri(uri)} with about {args.runs} runs …", flush=True)
        t = time.perf_counter()
        fill(uri, root / "mlartifacts", args.runs, args.points, not args.no_histories)
        print(f"  filled in {time.perf_counter() - t:.0f} s", flush=True)
    times: dict[str, float] = {}
    t = time.perf_counter()
    runs = load_runs(uri, [SUITE])
    times["load_runs"] = time.perf_counter() - t
    t = time.perf_counter()
    curves = load_curves(uri, runs)
    times["load_curves"] = time.perf_counter() - t
    out = root / "report"
    t = time.perf_counter()
    index = write_report([SUITE], uri, out)
    times["write_report"] = time.perf_counter() - t
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(f"  runs: {len(runs)}, curve rows: {len(curves)}, site: {size:.1f} MB at {index}")
    times["runs"] = len(runs)
    cli = ROOT / "harness" / "cli.py"
    if cli.is_file() and "report" in cli.read_text():
        cmd = [sys.executable, "-m", "harness.cli", "report", SUITE, "--tracking-uri", uri,
               "--out", str(root / "report-cli")]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        times["nfbench report"] = time.perf_counter() - t
        if proc.returncode != 0:
            print(f"  nfbench report: exit {proc.returncode}: {proc.stderr[-300:]}")
            times["nfbench report"] = float("nan")
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="folder of the SQLite store (kept; re-used)")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--points", type=int, default=101, help="curve points per key and run")
    ap.add_argument("--no-histories", action="store_true",
                    help="curves only as Parquet artifacts (faster to fill)")
    ap.add_argument("--backends", default="sqlite,postgresql",
                    help="comma-separated: sqlite, postgresql (default both)")
    args = ap.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results: dict[str, dict[str, float]] = {}
    if "sqlite" in backends:
        root = args.store or Path(tempfile.mkdtemp(prefix="nfbench-scale-"))
        root.mkdir(parents=True, exist_ok=True)
        results["SQLite"] = measure(f"sqlite:///{(root / 'mlflow.db').resolve()}", root, args)
    if "postgresql" in backends:
        sys.path.insert(0, str(ROOT / "tests"))
        from postgres_server import PostgresServer, why_not

        reason = why_not()
        if reason:
            print(f"PostgreSQL skipped: {reason}")
        else:
            server = PostgresServer()
            try:
                root = Path(tempfile.mkdtemp(prefix="nfbench-scale-pg-"))
                results["PostgreSQL"] = measure(server.new_database("scale", mlflow=False),
                                                root, args)
            finally:
                server.stop()
    names = list(results)
    print(f"\n{'':16}" + "".join(f"{n:>12}" for n in names))
    for row in ("runs", "load_runs", "load_curves", "write_report", "nfbench report"):
        if not all(row in results[n] for n in names):
            continue
        cells = "".join(f"{results[n][row]:>12.0f}" if row == "runs" else
                        f"{results[n][row]:>11.2f}s" for n in names)
        print(f"{row:16}{cells}")
    for n in names:
        t = results[n].get("nfbench report", results[n]["write_report"])
        print(f"{n}: nfbench report {t:.2f} s, target {TARGET_S:.0f} s, "
              f"ratio target/time {TARGET_S / t:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
