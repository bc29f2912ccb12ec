"""The ``nfbench`` command line: every subcommand, flag, default and help text.

:func:`parser` builds it; :mod:`harness.cli` runs the command it parses. A bad command line
becomes one line (:class:`~harness.refusals.UsageError`), never argparse's usage block.
"""

from __future__ import annotations

import argparse

from . import refusals
from .refusals import UsageError

__all__ = ["parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, whose complaints become one line (:class:`UsageError`) instead of a usage
    block and ``SystemExit``."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nfbench", description="Benchmark normalizing flows.")
    sub = p.add_subparsers(dest="command", required=True)

    def tracking(sp):
        sp.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                             "sqlite:///mlflow.db in the working directory)")

    def max_jobs(sp):
        sp.add_argument("--max-jobs", type=refusals.job_limit, default=None, metavar="N",
                        help="refuse a suite whose matrix has more than N cells "
                             "(default 10,000)")

    r = sub.add_parser("run", help="run a suite on Ray and record it in MLflow")
    r.add_argument("suite")
    r.add_argument("--address", default=None, help="join a Ray cluster (default: local Ray)")
    r.add_argument("--backend", choices=("ray", "inline"), default="ray",
                   help="where workers run: Ray actors (default), or 'inline': one job "
                        "phase at a time in this process, for debugging")
    tracking(r)
    r.add_argument("--force", action="store_true", help="re-run jobs that already finished")
    r.add_argument("--no-preflight", action="store_true",
                   help="skip the flow pre-flight check (building each flow on a tiny batch)")
    r.add_argument("--no-report", action="store_true", help="write no report at the end")
    r.add_argument("--out", default=None, help="report folder (default: reports/SUITE)")
    r.add_argument("--num-cpus", type=refusals.positive_number, default=None,
                   help="CPUs of the local Ray instance (default: all)")
    r.add_argument("--data-dir", default=None, help="data directory (default: $NFBENCH_DATA)")
    r.add_argument("--tune-storage", default=None, metavar="PATH",
                   help="where Ray Tune keeps the studies' state and trial checkpoints "
                        "(default: $NFBENCH_TUNE_STORAGE, else tune/ beside an SQLite store; "
                        "on a multi-node cluster a path every node reaches)")
    max_jobs(r)

    pl = sub.add_parser("plan", help="print the expanded job table, run nothing")
    pl.add_argument("suite")
    pl.add_argument("--no-preflight", action="store_true")
    pl.add_argument("--data-dir", default=None)
    pl.add_argument("--seeds-for", type=refusals.positive_difference, default=None,
                    metavar="D", help="also print the seeds per configuration needed to "
                    "detect a difference of D (bpd or nats) at 80 %% power, from the suite's "
                    "finished runs in the store")
    tracking(pl)
    max_jobs(pl)
    fc = pl.add_argument_group("forecast", "the suite's makespan on a cluster, simulated with "
                               "phase times from earlier runs (writes nothing anywhere)")
    fc.add_argument("--forecast", action="store_true",
                    help="print the makespan, device-hours, utilisation, longest job and the "
                         "makespan at ½×–4× the nodes instead of the job table")
    fc.add_argument("--costs-from", default=None, metavar="URI",
                    help="MLflow store whose finished runs give each job's phase times "
                         "(matched by architecture, data set, runtime and training steps)")
    fc.add_argument("--nodes", type=refusals.job_limit, default=None, metavar="N")
    fc.add_argument("--cpus-per-node", type=refusals.positive_number, default=None)
    fc.add_argument("--gpus-per-node", type=refusals.tolerance, default=None)
    fc.add_argument("--memory-per-node", type=refusals.positive_number, default=None,
                    metavar="GIB")
    fc.add_argument("--cluster", default=None, metavar="FILE",
                    help="a Ray cluster-launcher YAML: its worker type's max_workers nodes "
                         "and their size (flags above override)")
    fc.add_argument("--worker-type", default=None,
                    help="the worker type of --cluster (default: its only one)")
    fc.add_argument("--startup-s", type=refusals.tolerance, default=None, metavar="S",
                    help="seconds a worker takes to start (default 5)")

    rp = sub.add_parser("report", help="write the HTML report of one or more suites")
    rp.add_argument("suites", nargs="+")
    tracking(rp)
    rp.add_argument("--out", default=None, help="output folder (default: reports/SUITE)")
    rp.add_argument("--ui-base", default=None,
                    help="MLflow UI that figure points link to (default: http://127.0.0.1:5000)")

    st = sub.add_parser("status", help="where a suite stands: counts, running jobs, failures, "
                                       "time left (reads the tracking store only)")
    st.add_argument("suite")
    tracking(st)

    c = sub.add_parser("compare", help="compare two suites; exit 1 when something got worse")
    c.add_argument("a")
    c.add_argument("b")
    tracking(c)
    c.add_argument("--quality-tol", type=refusals.tolerance, default=0.01,
                   help="the effect: bpd / nats a row must lose, significantly, to count as "
                        "worse (default 0.01)")
    c.add_argument("--speed-tol", type=refusals.tolerance, default=0.10,
                   help="relative slow-down allowed, beyond the timings' IQR (default 0.10)")
    c.add_argument("--alpha", type=refusals.significance, default=0.05,
                   help="significance level of the tests over seeds, Holm-corrected "
                        "(default 0.05)")
    c.add_argument("--missing-is-worse", action="store_true",
                   help="a configuration of A missing from B counts as worse")

    pm = sub.add_parser("promote", help="register each data set's best flow of a suite under "
                                        "the alias best-<data set> (the report's choice)")
    pm.add_argument("suite", help="the suite (its MLflow experiment)")
    pm.add_argument("--name", default=None,
                    help="the registered model's name (default: the suite's name)")
    tracking(pm)

    s = sub.add_parser("submit", help="send a suite to a Ray cluster as a Ray job")
    s.add_argument("suite")
    s.add_argument("--address", required=True, help="Ray dashboard address, http://HEAD:8265")
    s.add_argument("--tracking-uri", default=None,
                   help="MLflow URI as seen from the cluster (default: the cluster nodes' "
                        "$MLFLOW_TRACKING_URI; cluster.yaml: the head's MLflow)")
    s.add_argument("--force", action="store_true")
    s.add_argument("--follow", "--wait", dest="follow", action="store_true",
                   help="stream the job's log until the suite ends, then print where its "
                        "report is (--wait: the same)")
    max_jobs(s)

    sub.add_parser("list", help="list architectures and data sets")

    k = sub.add_parser("keys", help="list every metric, tag and artifact name with its meaning")
    k.add_argument("--markdown", action="store_true", help="as a Markdown table")
    return p
