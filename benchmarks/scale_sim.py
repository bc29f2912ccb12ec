"""The driver's bookkeeping at scale: N jobs on a simulated cluster of 1,000 GPUs, with the
real Book, Pool, claims ledger and store (SQLite or PostgreSQL).

Only the compute is simulated (:mod:`harness.schedule.sim_backend`, a virtual clock): each
driver is a real process writing real runs. The default cluster is 125 nodes × 8 GPUs × 64
CPUs, four jobs to a GPU (``resources: {cpus: 0.5, gpus: 0.25}``: 4,000 train slots), every
job 600 s of training and 20 s of timing (a whole GPU), 1 % of the nodes lost during the
run. Two scenarios, for each N of ``--sizes``:

* ``plain``: one driver runs the suite; prints the driver's CPU time per job (its store calls
  included: on SQLite the database work is in the driver's process), the store operations
  per job (MLflow client calls and the direct index queries), the time spent claiming keys
  and opening runs, its peak memory, and the simulated makespan against the ideal
  max(Σ(job GPU-seconds) / GPUs, the longest job); the CPU splits into the time inside
  MLflow's client calls and nfbench's own (claims, pool, index reads, run bookkeeping);
* ``drivers``: driver A runs the suite; a second driver B joins when a quarter of the jobs
  are trained; A is SIGKILLed when half are; a re-run C starts then and says how long it
  took (real seconds) to start its first new job; B and C finish the suite.

Both end with an audit read straight from the store: every key has exactly one run, finished.
The growth exponent between sizes is log(x₂/x₁) / log(N₂/N₁) of the per-suite totals (1.0:
linear, O(1) per job).

    python benchmarks/scale_sim.py --sizes 1000 10000 --store sqlite
    python benchmarks/scale_sim.py --sizes 1000 10000 100000 --store postgresql

``--store postgresql`` starts a server of its own from Debian's binaries (as the tests do);
``--uri`` uses a store you name (a fresh database per size is made on SQLite only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUITE = """\
name: {name}
matrix:
  architectures: [{archs}]
  datasets: [moons]
  dequantization: [none]
  seeds: [{seeds}]
train: {{steps: 100}}
timing: {{enabled: true}}
resources: {{cpus: 0.5, gpus: 0.25}}
retries: 3
"""


# ── one driver (a process of its own) ──────────────────────────────────────────────────
def _count_client_calls() -> dict[str, float]:
    """Count every MlflowClient call this process makes (a store operation each), and the
    CPU time spent inside them (the outermost call only: one client method may call
    another), so the driver's CPU splits into MLflow's share and nfbench's own."""
    from mlflow.tracking import MlflowClient

    counts = {"n": 0, "cpu_s": 0.0, "depth": 0}
    for name, fn in list(vars(MlflowClient).items()):
        if name.startswith("_") or not callable(fn):
            continue

        def wrapped(*a, __fn=fn, **k):
            if counts["depth"]:
                return __fn(*a, **k)
            counts["n"] += 1
            counts["depth"] = 1
            c0 = time.process_time()
            try:
                return __fn(*a, **k)
            finally:
                counts["cpu_s"] += time.process_time() - c0
                counts["depth"] = 0

        setattr(MlflowClient, name, wrapped)
    return counts


def driver(args) -> None:
    """Run the suite once as one driver; stats go to ``args.stats`` every second and at the
    end (a killed driver leaves its last ones)."""
    calls = _count_client_calls()
    from harness.app import load_jobs
    from harness.schedule import run_jobs
    from harness.schedule.costs import CostModel
    from harness.schedule.sim_backend import Faults, SimBackend, SimNode
    from harness.tracking import index as index_module

    index_ops = {"n": 0}
    real_read = index_module.JobIndex.read

    def counted(self, *a, **k):
        before = self.ops
        try:
            return real_read(self, *a, **k)
        finally:
            index_ops["n"] += self.ops - before

    index_module.JobIndex.read = counted
    suite, jobs = load_jobs(args.suite, quiet=True, max_jobs=args.n)
    nodes = [SimNode(f"n{i:03d}", args.cpus_per_node, args.gpus_per_node)
             for i in range(args.nodes)]
    slots = args.nodes * args.gpus_per_node * 4
    horizon = args.n * args.train_s / slots  # the train phase's ideal length
    lost = max(1, round(args.nodes * args.lose_share)) if args.lose_share > 0 else 0
    faults = Faults(lose=tuple((horizon * (i + 1) / (lost + 1), f"n{i:03d}")
                               for i in range(lost)))
    be = SimBackend(nodes, CostModel.constant(args.train_s, args.time_s), faults=faults)
    t0, c0 = time.monotonic(), time.process_time()
    state = {"first_dispatch_s": None, "dispatched": 0, "done": False}

    def on_start(info) -> None:
        state["dispatched"] += info["phase"] == "train"  # jobs started
        if state["first_dispatch_s"] is None:
            state["first_dispatch_s"] = time.monotonic() - t0

    def dump(summary=None) -> None:
        out = {"role": args.role, "n": args.n, "wall_s": time.monotonic() - t0,
               "cpu_s": time.process_time() - c0, "client_calls": calls["n"],
               "client_cpu_s": calls["cpu_s"],
               "index_queries": index_ops["n"],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "first_dispatch_s": state["first_dispatch_s"],
               "dispatched": state["dispatched"], "virtual_s": be.now(),
               "lost_nodes": len(be.lost_nodes)}
        if summary is not None:
            out.update(finished=len(summary.finished), skipped=len(summary.skipped),
                       elsewhere=len(summary.elsewhere), failed=len(summary.failed),
                       retried=summary.retried, claim_s=summary.claim_seconds,
                       driver_log_s=summary.driver_log_seconds,
                       ideal_s=max(args.train_s + args.time_s,  # the longest job
                                   args.n * args.train_s / slots  # the GPU-seconds / GPUs
                                   + args.n * args.time_s / (args.nodes * args.gpus_per_node)))
        tmp = args.stats + ".tmp"
        Path(tmp).write_text(json.dumps(out))
        os.replace(tmp, args.stats)

    def beat() -> None:
        while not state["done"]:
            dump()
            time.sleep(1.0)

    threading.Thread(target=beat, daemon=True).start()
    summary = run_jobs(suite, jobs, uri=args.uri, backend=be, out=lambda s: None, tty=False,
                       on_start=on_start)
    state["done"] = True
    dump(summary)


# ── the orchestrator ───────────────────────────────────────────────────────────────────
def _trained_count(uri: str, suite: str) -> int:
    """Jobs past their training (phase "trained" or "timed"), read straight from the store."""
    import sqlalchemy as sa

    from harness.tracking.database import database_url

    engine = sa.create_engine(database_url(uri), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as con:
            return con.execute(sa.text(
                "SELECT count(*) FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                "JOIN experiments e ON e.experiment_id = r.experiment_id "
                "WHERE e.name = :s AND r.lifecycle_stage = 'active' "
                "AND t.key = 'nfbench.phase' AND t.value IN ('trained', 'timed')"),
                {"s": suite}).scalar()
    except Exception:  # noqa: BLE001 (the store is being created)
        return 0
    finally:
        engine.dispose()


def _audit(uri: str, suite: str, n: int) -> str:
    """Every key has exactly one active run, and it finished."""
    import sqlalchemy as sa

    from harness.tracking.database import database_url

    engine = sa.create_engine(database_url(uri), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as con:
            rows = con.execute(sa.text(
                "SELECT k.value, s.value FROM runs r "
                "JOIN experiments e ON e.experiment_id = r.experiment_id "
                "JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'nfbench.key' "
                "LEFT JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = 'nfbench.status' "
                "WHERE e.name = :s AND r.lifecycle_stage = 'active'"), {"s": suite}).all()
    finally:
        engine.dispose()
    keys_ = [k for k, _ in rows]
    twice = len(keys_) - len(set(keys_))
    unfinished = sum(1 for _, s in rows if s != "finished")
    ok = len(set(keys_)) == n and twice == 0 and unfinished == 0
    return (f"audit: {len(set(keys_)):,} keys of {n:,}, {twice} with a second run, "
            f"{unfinished} not finished: {'OK' if ok else 'FAILED'}")


def _spawn(args, uri: str, suite_file: Path, n: int, role: str, work: Path,
           nodes: int | None = None) -> tuple[subprocess.Popen, Path]:
    stats = work / f"stats-{role}.json"
    cmd = [sys.executable, __file__, "--driver", "--role", role, "--suite", str(suite_file),
           "--uri", uri, "--n", str(n), "--stats", str(stats),
           "--nodes", str(nodes or args.nodes), "--gpus-per-node", str(args.gpus_per_node),
           "--cpus-per-node", str(args.cpus_per_node), "--train-s", str(args.train_s),
           "--time-s", str(args.time_s), "--lose-share", str(args.lose_share)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NFBENCH_LEASE_SECONDS": "60"}
    log = open(work / f"driver-{role}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), stats


def _read(stats: Path) -> dict:
    return json.loads(stats.read_text()) if stats.is_file() else {}


def _wait_for(pred, proc: subprocess.Popen, what: str, limit_s: float = 7200) -> None:
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            raise SystemExit(f"the driver ended before {what} (exit {proc.returncode})")
        if time.monotonic() - t0 > limit_s:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.5)


def _suite_file(work: Path, name: str, n: int) -> Path:
    """A suite of ``n`` jobs: up to 1,000 seeds of each of ``n / 1,000`` architectures (a
    suite file is at most 256 KB)."""
    archs = max(1, n // 1000)
    if n % archs:
        raise SystemExit(f"--sizes: {n} is not a multiple of {archs} (use round sizes)")
    items = ", ".join(f"{{name: realnvp, layers: 2, hidden: {8 + i}}}" for i in range(archs))
    path = work / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, archs=items,
                                 seeds=", ".join(map(str, range(n // archs)))))
    return path


def plain(args, uri: str, n: int, work: Path) -> dict:
    name = f"scale-plain-{n}"
    proc, stats = _spawn(args, uri, _suite_file(work, name, n), n, f"plain-{n}", work)
    if proc.wait() != 0:
        raise SystemExit(f"the driver failed: see {work}/driver-plain-{n}.log")
    s = _read(stats)
    s["audit"] = _audit(uri, name, n)
    return s


def drivers(args, uri: str, n: int, work: Path) -> dict:
    name = f"scale-drivers-{n}"
    suite = _suite_file(work, name, n)
    a, a_stats = _spawn(args, uri, suite, n, f"A-{n}", work)
    _wait_for(lambda: _trained_count(uri, name) >= n // 4, a, "a quarter trained")
    b, b_stats = _spawn(args, uri, suite, n, f"B-{n}", work, nodes=max(1, args.nodes // 4))
    _wait_for(lambda: _trained_count(uri, name) >= n // 2, a, "half trained")
    a.send_signal(signal.SIGKILL)
    a.wait()
    killed_at = _trained_count(uri, name)
    c, c_stats = _spawn(args, uri, suite, n, f"C-{n}", work)
    for p, role in ((b, "B"), (c, "C")):
        if p.wait() != 0:
            raise SystemExit(f"driver {role} failed: see {work}/driver-{role}-{n}.log")
    return {"A": _read(a_stats), "B": _read(b_stats), "C": _read(c_stats),
            "killed_at": killed_at, "audit": _audit(uri, name, n)}


def _growth(sizes: list[int], values: list[float]) -> str:
    pairs = [f"N^{math.log(v2 / v1) / math.log(n2 / n1):.2f}"
             for (n1, v1), (n2, v2) in zip(zip(sizes, values), zip(sizes[1:], values[1:]))
             if v1 > 0 and v2 > 0]
    return ", ".join(pairs) or "-"


def report_plain(results: dict[int, dict]) -> None:
    sizes = sorted(results)
    print("\nplain: one driver, 1 % of the nodes lost")
    head = f"{'':34s}" + "".join(f"{'N=' + format(n, ','):>14s}" for n in sizes)
    print(head + "   growth of the total")
    rows = [
        ("driver CPU per job (ms)", lambda s: 1e3 * s["cpu_s"] / s["n"], "cpu_s"),
        ("  of it in MLflow's client (ms)", lambda s: 1e3 * s.get("client_cpu_s", 0) / s["n"],
         "client_cpu_s"),
        ("  of it nfbench's own (ms)",
         lambda s: 1e3 * (s["cpu_s"] - s.get("client_cpu_s", 0)) / s["n"], None),
        ("store operations per job", lambda s: (s["client_calls"] + s["index_queries"])
         / s["n"], None),
        ("claims + opening runs per job (ms)", lambda s: 1e3 * s["claim_s"] / s["n"],
         "claim_s"),
        ("wall per job (ms)", lambda s: 1e3 * s["wall_s"] / s["n"], "wall_s"),
        ("peak driver memory (MB)", lambda s: s["peak_rss_mb"], None),
        ("makespan / ideal", lambda s: s["virtual_s"] / s["ideal_s"], None),
    ]
    for label, fn, total in rows:
        cells = "".join(f"{fn(results[n]):14.3f}" for n in sizes)
        grow = _growth(sizes, [results[n][total] for n in sizes]) if total else ""
        print(f"{label:34s}{cells}   {grow}")
    for n in sizes:
        s = results[n]
        print(f"N={n:,}: finished {s['finished']:,}, retried {s['retried']}, nodes lost "
              f"{s['lost_nodes']}, first job after {s['first_dispatch_s']:.1f} s; "
              f"{s['audit']}")


def _per_job_ms(s: dict) -> float:
    jobs = s.get("finished", 0) + s.get("elsewhere", 0) or s.get("dispatched", 0)
    return 1e3 * s["cpu_s"] / max(1, jobs)


def report_drivers(results: dict[int, dict]) -> None:
    print("\ndrivers: A runs; B joins at 1/4; A SIGKILLed at 1/2; re-run C")
    for n, r in sorted(results.items()):
        a, b, c = r["A"], r["B"], r["C"]
        print(f"N={n:,}: A killed with {r['killed_at']:,} trained "
              f"(CPU {_per_job_ms(a):.1f} ms a job started); re-run C started its first "
              f"job {c['first_dispatch_s']:.1f} s after it began; B finished "
              f"{b.get('finished', 0):,} (CPU {_per_job_ms(b):.1f} ms a job), C finished "
              f"{c.get('finished', 0):,} (CPU {_per_job_ms(c):.1f} ms a job); {r['audit']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--uri", default=None)
    ap.add_argument("--scenario", choices=["plain", "drivers", "both"], default="both")
    ap.add_argument("--nodes", type=int, default=125)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--cpus-per-node", type=float, default=64)
    ap.add_argument("--train-s", type=float, default=600.0)
    ap.add_argument("--time-s", type=float, default=20.0)
    ap.add_argument("--lose-share", type=float, default=0.01)
    ap.add_argument("--json", default=None, help="write every figure here")
    # a driver process's own arguments
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--role", default="", help=argparse.SUPPRESS)
    ap.add_argument("--suite", default="", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stats", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        driver(args)
        return
    work = Path(tempfile.mkdtemp(prefix="scale-sim-"))
    server = None
    if args.uri:
        uri_for = lambda n: args.uri  # noqa: E731
    elif args.store == "postgresql":
        sys.path.insert(0, str(ROOT / "tests"))
        from postgres_server import PostgresServer, why_not

        if why_not():
            raise SystemExit(why_not())
        server = PostgresServer()
        uri_for = lambda n: server.new_database(f"scale{n}")  # noqa: E731
    else:
        uri_for = lambda n: f"sqlite:///{work}/scale-{n}.db"  # noqa: E731
    print(f"work folder: {work}; store: {args.uri or args.store}; cluster {args.nodes} nodes × "
          f"{args.gpus_per_node} GPUs, 4 jobs a GPU", flush=True)
    out: dict = {"plain": {}, "drivers": {}}
    try:
        for n in args.sizes:
            uri = uri_for(n)
            if args.scenario in ("plain", "both"):
                out["plain"][n] = plain(args, uri, n, work)
                print(f"  plain N={n:,} done: {out['plain'][n]['audit']}", flush=True)
            if args.scenario in ("drivers", "both"):
                out["drivers"][n] = drivers(args, uri, n, work)
                print(f"  drivers N={n:,} done: {out['drivers'][n]['audit']}", flush=True)
    finally:
        if server is not None:
            server.stop()
    if out["plain"]:
        report_plain(out["plain"])
    if out["drivers"]:
        report_drivers(out["drivers"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
