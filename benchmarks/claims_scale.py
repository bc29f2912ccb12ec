"""The claims ledger at size: first claim, take-over after a driver ended, and a second
driver finding every key held, for N keys on a real store (SQLite by default).

    python benchmarks/claims_scale.py --sizes 1000 4000 [--uri postgresql://…]

Prints, for each N, the seconds and store operations of each step, per key, and the growth
exponent between sizes (log(t2/t1) / log(N2/N1)); O(1) per key is an exponent near 1.
Windows of 200 keys are claimed at a time, as a driver with 100 workers claims ahead.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.tracking import Store  # noqa: E402

WINDOW = 200


def _timed(ledger, keys: list[str]) -> tuple[float, int, int]:
    ops0, t0 = ledger.ops, time.perf_counter()
    lost = 0
    for i in range(0, len(keys), WINDOW):
        lost += len(ledger.claim(keys[i : i + WINDOW]))
    return time.perf_counter() - t0, ledger.ops - ops0, lost


def one_size(uri: str, n: int) -> dict[str, tuple[float, int]]:
    suite = f"claims-{n}-{int(time.time() * 1000) % 10**8}"
    first = Store(uri, suite).ledger(ttl=600, jobs=n)
    first.renew()
    keys = first.order([f"{i:016x}" for i in range(n)])  # as a driver takes them
    out = {}
    t, ops, lost = _timed(first, keys)
    assert lost == 0
    out["first claim"] = (t, ops)
    second = Store(uri, suite).ledger(ttl=600, jobs=n)
    second.renew()
    t, ops, lost = _timed(second, keys)
    assert lost == n, lost
    out["second driver, all held"] = (t, ops)
    first.stop()
    rerun = Store(uri, suite).ledger(ttl=600, jobs=n)
    rerun.renew()
    t, ops, lost = _timed(rerun, keys)
    assert lost == 0 and all(g == 1 for g in rerun.held.values())
    out["take-over after it ended"] = (t, ops)
    rerun.stop()
    second.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--uri", default=None, help="a tracking URI (default: a new SQLite file)")
    args = ap.parse_args()
    uri = args.uri or f"sqlite:///{tempfile.mkdtemp()}/claims.db"
    results = {n: one_size(uri, n) for n in args.sizes}
    steps = list(next(iter(results.values())))
    print(f"{'step (per key: ms, store ops)':28s}"
          + "".join(f"{'N=' + str(n):>32s}" for n in args.sizes) + "  growth")
    for step in steps:
        cells = "".join(f"{t:7.2f} s {1e3 * t / n:5.2f} ms {ops / n:5.3f} op".rjust(32)
                        for n, (t, ops) in ((n, results[n][step]) for n in args.sizes))
        a, b = args.sizes[0], args.sizes[-1]
        grow = math.log(results[b][step][0] / results[a][step][0]) / math.log(b / a)
        print(f"{step:28s}{cells}  N^{grow:.2f}")


if __name__ == "__main__":
    main()
