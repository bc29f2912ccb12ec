"""How fast is a big matrix planned, and how fast is one over the job limit refused?

    python benchmarks/plan_scale.py                  # 10 × 10 × 2 × 1,000 = 200,000 cells
    python benchmarks/plan_scale.py --seeds 100      # a smaller matrix

Writes a suite of 10 architecture variants × 10 continuous data sets × 2 schemes (``none`` and
``uniform``: half the cells are dropped as senseless) × N seeds into a temporary folder, then
times, in this process:

- ``expand`` (the suite layer's matrix expansion) against a baseline measured in the same
  run: the straightforward expansion that builds each cell's config and hashes it whole
  (``job_config`` + ``job_key``, what ``expand`` did before); the keys must be identical;
- ``nfbench plan SUITE --max-jobs CELLS --no-preflight`` end to end (the job table written to
  an in-memory buffer; start-up imports excluded);
- ``nfbench plan`` of a 10⁶-cell suite without the flag (refused before anything is expanded).

Prints each time and the ratio baseline / expand (> 1: faster than the baseline).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.app import catalog
from harness.cli import main
from harness.suite import expand, load_suite
from harness.suite.expand import Job, job_config, job_key

DATASETS = ("moons", "8gaussians", "checkerboard", "rings", "pinwheel", "2spirals", "swissroll",
            "circles", "power", "gas")


def suite_text(seeds: int, archs: int = 10) -> str:
    items = ", ".join(f"{{name: realnvp, hidden: {16 * (i + 1)}}}" for i in range(archs))
    return (f"name: scale\nmatrix:\n  architectures: [{items}]\n"
            f"  datasets: [{', '.join(DATASETS)}]\n  dequantization: [none, uniform]\n"
            f"  seeds: [{', '.join(map(str, range(seeds)))}]\ntrain: {{steps: 10}}\n")


def baseline_expand(suite, compatible) -> list[Job]:
    """Each cell's whole config built and hashed (the reference for keys and for time)."""
    jobs, seen = [], set()
    m = suite.matrix
    for arch in m.architectures:
        for dataset in m.datasets:
            for dequant in m.dequantization:
                for seed in m.seeds:
                    if compatible(arch, dataset, dequant):
                        continue
                    config = job_config(suite, arch, dataset, dequant, seed)
                    key = job_key(config)
                    if key not in seen:
                        seen.add(key)
                        jobs.append(Job(suite.name, key, arch, dataset, dequant, seed, config))
    return jobs


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main_(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    args = ap.parse_args(argv)
    cat = catalog()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.yaml"
        path.write_text(suite_text(args.seeds))
        suite, _ = load_suite(path)
        cells = 10 * len(DATASETS) * 2 * args.seeds

        base, t_base = timed(lambda: baseline_expand(suite, cat.combination))
        (jobs, dropped), t_fast = timed(lambda: expand(suite, cat.combination))
        assert [j.key for j in jobs] == [j.key for j in base], "keys differ from the baseline"
        print(f"{cells:,} cells → {len(jobs):,} jobs, {len(dropped):,} dropped")
        print(f"expand:   {t_fast:.2f} s   baseline (whole config per cell): {t_base:.2f} s   "
              f"ratio baseline/expand {t_base / t_fast:.1f}")

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code, t_plan = timed(lambda: main(["plan", str(path), "--max-jobs", str(cells),
                                               "--no-preflight"]))
        assert code == 0, code
        print(f"nfbench plan --max-jobs {cells}: {t_plan:.2f} s "
              f"({len(buf.getvalue()) / 1e6:.1f} MB of table)")

        path.write_text(suite_text(5000, archs=10).replace(
            "dequantization: [none, uniform]", "dequantization: [none, uniform, variational, "
            "{name: uniform, shift: 0.5}, {name: none, shift: 1.0}, {name: none, shift: 2.0}, "
            "{name: none, shift: 3.0}, {name: none, shift: 4.0}, {name: none, shift: 5.0}, "
            "{name: none, shift: 6.0}]"))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code, t_refuse = timed(lambda: main(["plan", str(path), "--no-preflight"]))
        assert code == 2, code
        print(f"nfbench plan of 5,000,000 cells without --max-jobs: refused in {t_refuse:.2f} s:"
              f"\n  {err.getvalue().strip()[:160]}")


if __name__ == "__main__":
    main_()
