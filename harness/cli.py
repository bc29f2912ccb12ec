"""The ``nfbench`` command: run, plan, report, compare, submit, list.

Bad input (a malformed suite, an unknown name, an impossible resource request, a flow that
fails its pre-flight check) is refused before anything is scheduled, with exit status 2 and
a message that names the place and the fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]

EXIT_BAD_INPUT = 2


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


# ── suite loading and checking ──────────────────────────────────────────────────────────
def catalog():
    """The registries as plain data, for the torch-free suite checks."""
    from . import data, flows
    from .suite import Catalog

    def dequant_ok(scheme: str, kind: str) -> str | None:
        ok, reason = data.compatible(scheme, kind)
        return None if ok else reason

    from .job.reference import REFERENCE_MODELS

    schemes = list(data.schemes())
    arch_hparams = {n: flows.hparams(n) for n in flows.names()}
    arch_hparams.update({n: hp for n, (hp, _) in REFERENCE_MODELS.items()})

    class _Catalog(Catalog):
        def combination(self, arch, dataset, dequant):
            if arch.name in REFERENCE_MODELS:  # closed-form rows: discrete data, run once
                kind = self.dataset_kind.get(dataset.name)
                if kind != "discrete":
                    return f"the {arch.name} reference row is for discrete data"
                if dequant.name != "uniform":
                    return (f"the {arch.name}'s bpd is exact, with no dequantization: it runs "
                            "once, in the 'uniform' column")
                return None
            return super().combination(arch, dataset, dequant)

    return _Catalog(
        arch_hparams=arch_hparams,
        dataset_kind={n: data.entry(n).meta["kind"] for n in data.names()},
        dequant_schemes=schemes,
        dequant_ok=dequant_ok,
    )


def load_jobs(path: str, quiet: bool = False, check_flows: bool = False):
    """Parse, check and expand a suite (``check_flows``: and pre-flight its flows); raise
    SuiteError on any problem."""
    from .suite import check_suite, expand, load_suite

    suite, root = load_suite(path)
    cat = catalog()
    check_suite(suite, cat, str(path), root)
    jobs, dropped = expand(suite, cat.combination)
    if not quiet:
        for d in dropped:
            a = d.axes
            print(f"dropped {a['arch']} · {a['dataset']} · {a['dequant']} · seed {a['seed']}: "
                  f"{d.reason}")
    if not jobs:
        from .suite import SuiteError

        raise SuiteError(str(path), [f"{path}: matrix: the matrix expands to no job "
                                     f"({len(dropped)} combinations dropped, listed above); "
                                     "check the axes and the include/exclude rules"])
    if check_flows:
        problems = preflight(jobs)
        if problems:
            from .suite import SuiteError

            raise SuiteError(str(path), problems + [
                "fix the architecture, or skip this check with --no-preflight"])
    return suite, jobs


def preflight(jobs, out=print) -> list[str]:
    """Check each (architecture, data shape) pair on a tiny batch; problems as lines."""
    from . import data, flows

    check = getattr(flows, "preflight", None)
    if check is None:
        return []
    problems, seen = [], set()
    from .job.reference import REFERENCE_MODELS

    for job in jobs:
        name = job.arch.name
        if name in REFERENCE_MODELS:
            continue
        shape = tuple(data.entry(job.dataset.name).meta["event_shape"])
        flat = job.dataset.options.get("flatten", False)
        if len(shape) > 1 and (flat or not flows.entry(name).meta.get("images", False)):
            import math

            shape = (math.prod(shape),)
        sig = (name, repr(sorted(job.arch.options.items())), shape)
        if sig in seen:
            continue
        seen.add(sig)
        res = check(name, shape if len(shape) > 1 else shape[0], dict(job.arch.options))
        if not res.ok:
            problems.append(f"pre-flight: {job.arch.display} on {job.dataset.name} {shape}: "
                            f"{res.message}")
    return problems


# ── commands ────────────────────────────────────────────────────────────────────────────
def cmd_plan(args) -> int:
    suite, jobs = load_jobs(args.suite, check_flows=not args.no_preflight)
    res = suite.resources
    print(f"suite {suite.name}: {len(jobs)} jobs, each {res.cpus:g} CPU"
          + (f" + {res.gpus:g} GPU" if res.gpus else ""))
    header = f"{'key':16}  {'architecture':28} {'data set':14} {'dequant':12} {'seed':>4}  resources"
    print(header)
    print("-" * len(header))
    for j in jobs:
        a = j.axes
        print(f"{j.key:16}  {a['arch'][:28]:28} {a['dataset'][:14]:14} {a['dequant'][:12]:12} "
              f"{a['seed']:>4}  cpu={res.cpus:g} gpu={res.gpus:g}")
    return 0


def cmd_run(args) -> int:
    suite, jobs = load_jobs(args.suite, check_flows=not args.no_preflight)
    from .schedule import run_jobs
    from .tracking import resolve_uri
    from .tracking.uri import mask_uri

    uri = resolve_uri(args.tracking_uri)
    print(f"suite {suite.name}: {len(jobs)} jobs → MLflow {mask_uri(uri)}")
    summary = run_jobs(suite, jobs, uri=uri, address=args.address, force=args.force,
                       num_cpus=args.num_cpus)
    print(f"suite {suite.name}: {len(summary.finished)} finished, {len(summary.diverged)} "
          f"diverged, {len(summary.failed)} failed, {len(summary.skipped)} skipped "
          f"in {summary.wall_seconds:.0f} s")
    if not args.no_report:
        index = _report([suite.name], uri, args.out or f"reports/{suite.name}")
        if index:
            print(f"report: {index}")
    return 0 if not summary.failed else 1


def _report(suites: list[str], uri: str, out: str, ui_base: str | None = None) -> Path | None:
    from .report import write_report

    kwargs = {"ui_base": ui_base} if ui_base else {}
    return Path(write_report(suites, uri, out, **kwargs)).resolve()


def cmd_report(args) -> int:
    from .tracking import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    out = args.out or (f"reports/{args.suites[0]}" if len(args.suites) == 1 else "reports/site")
    index = _report(args.suites, uri, out, args.ui_base)
    print(f"report: {index}")
    return 0


def cmd_compare(args) -> int:
    from .report import compare
    from .tracking import resolve_uri

    from .report import Tolerance

    tol = Tolerance(quality=args.quality_tol, speed=args.speed_tol,
                    missing_is_worse=args.missing_is_worse)
    result = compare(args.a, args.b, resolve_uri(args.tracking_uri), tolerance=tol)
    print(result.text)
    return 1 if result.worse else 0


def cmd_list(args) -> int:
    from . import data, flows

    print("architectures:")
    for e in flows.entries() if hasattr(flows, "entries") else [flows.entry(n) for n in flows.names()]:
        kinds = "/".join(k for k in ("vectors", "images") if e.meta.get(k))
        print(f"  {e.name:14} {e.summary}" + (f"  [{kinds}]" if kinds else ""))
    from .job.reference import REFERENCE_MODELS

    for name, (_, summary) in REFERENCE_MODELS.items():
        print(f"  {name:14} {summary}  [reference row]")
    print("data sets:")
    for n in data.names():
        e = data.entry(n)
        m = e.meta
        levels = f", {m['levels']} levels" if m.get("levels") else ""
        print(f"  {n:14} {m['kind']}, shape {tuple(m['event_shape'])}{levels}"
              + (f"  {e.summary}" if e.summary else ""))
    return 0


def cmd_submit(args) -> int:
    from .submit import submit

    suite, jobs = load_jobs(args.suite, quiet=True)
    return submit(args, suite, jobs)


# ── parser ──────────────────────────────────────────────────────────────────────────────
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nfbench", description="Benchmark normalizing flows.")
    sub = p.add_subparsers(dest="command", required=True)

    def tracking(sp):
        sp.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                             "sqlite:///mlflow.db in the working directory)")

    r = sub.add_parser("run", help="run a suite on Ray and record it in MLflow")
    r.add_argument("suite")
    r.add_argument("--address", default=None, help="join a Ray cluster (default: local Ray)")
    tracking(r)
    r.add_argument("--force", action="store_true", help="re-run jobs that already finished")
    r.add_argument("--no-preflight", action="store_true", help="skip the flow pre-flight check")
    r.add_argument("--no-report", action="store_true", help="write no report at the end")
    r.add_argument("--out", default=None, help="report folder (default: reports/SUITE)")
    r.add_argument("--num-cpus", type=float, default=None,
                   help="CPUs of the local Ray instance (default: all)")
    r.add_argument("--data-dir", default=None, help="data directory (default: $NFBENCH_DATA)")
    r.set_defaults(fn=cmd_run)

    pl = sub.add_parser("plan", help="print the expanded job table, run nothing")
    pl.add_argument("suite")
    pl.add_argument("--no-preflight", action="store_true")
    pl.add_argument("--data-dir", default=None)
    pl.set_defaults(fn=cmd_plan)

    rp = sub.add_parser("report", help="write the HTML report of one or more suites")
    rp.add_argument("suites", nargs="+")
    tracking(rp)
    rp.add_argument("--out", default=None, help="output folder (default: reports/SUITE)")
    rp.add_argument("--ui-base", default=None,
                    help="MLflow UI that figure points link to (default: http://127.0.0.1:5000)")
    rp.set_defaults(fn=cmd_report)

    c = sub.add_parser("compare", help="compare two suites; exit 1 when something got worse")
    c.add_argument("a")
    c.add_argument("b")
    tracking(c)
    c.add_argument("--quality-tol", type=float, default=0.02,
                   help="bpd / nats a row may lose before it counts as worse (default 0.02)")
    c.add_argument("--speed-tol", type=float, default=0.10,
                   help="relative slow-down allowed (default 0.10)")
    c.add_argument("--missing-is-worse", action="store_true",
                   help="a configuration of A missing from B counts as worse")
    c.set_defaults(fn=cmd_compare)

    s = sub.add_parser("submit", help="send a suite to a Ray cluster as a Ray job")
    s.add_argument("suite")
    s.add_argument("--address", required=True, help="Ray dashboard address, http://HEAD:8265")
    s.add_argument("--tracking-uri", default=None,
                   help="MLflow URI as seen from the cluster (default: http://127.0.0.1:5000, "
                        "the head node's server in cluster.yaml)")
    s.add_argument("--force", action="store_true")
    s.add_argument("--wait", action="store_true", help="follow the job's logs until it ends")
    s.set_defaults(fn=cmd_submit)

    ls = sub.add_parser("list", help="list architectures and data sets")
    ls.set_defaults(fn=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "data_dir", None):
        os.environ["NFBENCH_DATA"] = str(Path(args.data_dir).resolve())
    from .registry import UnknownNameError
    from .report.safety import ReportInputError
    from .schedule.resources import ResourceError
    from .suite import SuiteError
    from .tracking.read import UnknownSuiteError

    try:
        return int(args.fn(args) or 0)
    except SuiteError as exc:
        _err(f"error: the suite cannot run ({len(exc.problems)} problem"
             f"{'s' if len(exc.problems) > 1 else ''}):")
        for line in exc.problems:
            _err(f"  {line}")
        return EXIT_BAD_INPUT
    except (ResourceError, UnknownNameError, UnknownSuiteError, ReportInputError) as exc:
        _err(f"error: {exc}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:
        from .schedule.driver import WorkerStartError

        if isinstance(exc, WorkerStartError):
            _err(f"error: {exc}")
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
