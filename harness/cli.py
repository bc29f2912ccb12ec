"""The ``nfbench`` command: run, plan, report, status, compare, promote, submit, list.

Bad input (a malformed suite, an unknown name or option, a suite over the job limit, an
impossible resource request, an unusable tracking URI, a bad flag, a flow that fails its
pre-flight check) is refused before anything exists — no MLflow store, no folder, no Ray —
with exit status 2 and one line that names the place (``FILE:LINE: field`` or the flag) and
the fix. Every line printed for an error is cut to ``MAX_LINE`` characters.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from . import refusals
from .refusals import UsageError

__all__ = ["main"]

EXIT_BAD_INPUT = 2
MAX_LINE = 500  # characters of one printed error line
DROPPED_SHOWN = 20  # dropped cells listed one per line; the rest are counted by reason


def _err(msg: str) -> None:
    for line in str(msg).splitlines() or [""]:
        if len(line) > MAX_LINE:
            line = f"{line[: MAX_LINE - 30]}… ({len(line):,} characters)"
        print(line, file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse, whose complaints become one line (:class:`UsageError`) instead of a usage
    block and ``SystemExit``."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# ── suite loading and checking ──────────────────────────────────────────────────────────
def catalog():
    """The registries as plain data (names, option specs, metadata), for the torch-free suite
    checks."""
    from . import data, flows
    from .data.options import dataset_options, dequant_cross_problems, dequant_options
    from .flows.zoo import cross_problems, hparam_specs
    from .suite import Catalog

    def dequant_ok(scheme: str, kind: str) -> str | None:
        ok, reason = data.compatible(scheme, kind)
        return None if ok else reason

    schemes = list(data.schemes())
    arch_names = flows.names(closed_form=True)
    deq_options = {s: dequant_options(s) for s in schemes}
    names = data.names()
    return Catalog(
        arch_hparams={n: flows.hparams(n) for n in arch_names},
        dataset_kind={n: data.entry(n).meta["kind"] for n in names},
        dequant_schemes=schemes,
        dequant_ok=dequant_ok,
        dataset_options={n: dataset_options(n) for n in names},
        arch_options={n: hparam_specs(n) for n in arch_names},
        dequant_options=deq_options,
        dataset_classes={n: data.entry(n).meta.get("classes") for n in names},
        arch_cross=cross_problems,
        dequant_cross=dequant_cross_problems,
        flows=flows.names(),
        arch_meta={n: dict(flows.entry(n).meta) for n in arch_names},
    )


def _print_dropped(dropped) -> None:
    """One line per dropped cell, the first ``DROPPED_SHOWN``; then counts by reason."""
    for d in dropped[:DROPPED_SHOWN]:
        a = d.axes
        rt = "" if a.get("runtime", "eager") == "eager" else f" · {a['runtime']}"
        print(f"dropped {a['arch']} · {a['dataset']} · {a['dequant']}{rt} · seed {a['seed']}: "
              f"{d.reason}")
    if len(dropped) > DROPPED_SHOWN:
        rest = Counter(d.reason for d in dropped[DROPPED_SHOWN:])
        print(f"dropped {len(dropped) - DROPPED_SHOWN:,} more: "
              + "; ".join(f"{n:,} × {reason}" for reason, n in rest.most_common()))


def _load(path: str, quiet: bool = False, check_flows: bool = False, max_jobs: int | None = None):
    """``load_jobs``, also returning the YAML node tree (for line numbers)."""
    from .suite import MAX_JOBS, SuiteError, check_suite, expand, load_suite

    suite, root = load_suite(path)
    cat = catalog()
    check_suite(suite, cat, str(path), root, max_jobs=max_jobs or MAX_JOBS)
    jobs, dropped = expand(suite, cat.combination)
    if not quiet:
        _print_dropped(dropped)
    if not jobs:
        raise SuiteError(str(path), [f"{path}: matrix: the matrix expands to no job "
                                     f"({len(dropped)} combinations dropped"
                                     + (", listed above" if not quiet else "")
                                     + "); check the axes and the include/exclude rules"])
    if check_flows:
        _preflight(path, suite, root, jobs)
    return suite, root, jobs


def _preflight(path: str, suite, root, jobs) -> None:
    """Pre-flight every flow of ``jobs``; SuiteError naming each failing architecture item."""
    from .suite import SuiteError

    problems = preflight(jobs, where=_arch_place(path, suite, root))
    if problems:
        raise SuiteError(str(path), [
            f"{p}; fix the architecture, or skip this check with --no-preflight"
            for p in problems])


def load_jobs(path: str, quiet: bool = False, check_flows: bool = False, *,
              max_jobs: int | None = None):
    """Parse, check and expand a suite (``check_flows``: and pre-flight its flows); raise
    SuiteError on any problem. ``max_jobs``: the job limit (default ``MAX_JOBS``)."""
    suite, _, jobs = _load(path, quiet, check_flows, max_jobs)
    return suite, jobs


def preflight(jobs, out=print, where=None) -> list[str]:
    """Check each (architecture, data shape) pair on a tiny batch; problems as lines
    (``where(arch_item)``: the place of an architecture item, ``FILE:LINE: field``)."""
    from . import data, flows

    problems, seen = [], set()
    for job in jobs:
        name = job.arch.name
        if flows.entry(name).meta.get("closed_form"):  # fitted, not built: nothing to check
            continue
        shape = flows.model_shape(name, data.entry(job.dataset.name).meta["event_shape"],
                                  job.config.data.layout)
        sig = (name, repr(sorted(job.arch.options.items())), shape)
        if sig in seen:
            continue
        seen.add(sig)
        res = flows.preflight(name, shape if len(shape) > 1 else shape[0], dict(job.arch.options))
        if not res.ok:
            place = f"{where(job.arch)}: " if where else ""
            problems.append(f"{place}pre-flight: {job.arch.display} on {job.dataset.name} "
                            f"{shape}: {res.message}")
    return problems


def _arch_place(path: str, suite, root):
    """``item → 'FILE:LINE: matrix.architectures[i]'`` for the items of ``suite``."""
    from .suite import line_of

    def where(item) -> str:
        for i, a in enumerate(suite.matrix.architectures):
            if a is item:
                line = line_of(root, ("matrix", "architectures", i))
                return f"{path}:{line}: matrix.architectures[{i}]" if line else str(path)
        return str(path)

    return where


# ── commands ────────────────────────────────────────────────────────────────────────────
def cmd_plan(args) -> int:
    cluster = _forecast_cluster(args)  # the flags first: bad ones are refused before anything
    suite, jobs = load_jobs(args.suite, check_flows=not args.no_preflight,
                            max_jobs=args.max_jobs)
    if cluster is not None:
        return _forecast(args, suite, jobs, cluster)
    res = suite.resources
    out = [f"suite {suite.name}: {len(jobs)} jobs, each {res.cpus:g} CPU"
           + (f" + {res.gpus:g} GPU" if res.gpus else "")]
    header = (f"{'key':16}  {'architecture':28} {'data set':14} {'dequant':12} "
              f"{'runtime':14} {'seed':>4}  resources")
    out += [header, "-" * len(header)]
    tail = f"  cpu={res.cpus:g} gpu={res.gpus:g}"
    for j in jobs:
        a = j.axes
        out.append(f"{j.key:16}  {a['arch'][:28]:28} {a['dataset'][:14]:14} "
                   f"{a['dequant'][:12]:12} {a['runtime'][:14]:14} {a['seed']:>4}{tail}")
    out += _plan_studies(suite, jobs)
    sys.stdout.write("\n".join(out) + "\n")
    if args.seeds_for is not None:
        _seeds_for(args, suite)
    return 0


_FORECAST_FLAGS = ("nodes", "cpus_per_node", "gpus_per_node", "memory_per_node", "cluster",
                   "worker_type", "costs_from", "startup_s")


def _forecast_cluster(args):
    """``plan --forecast``'s cluster from its flags (None without --forecast)."""
    if not args.forecast:
        given = [f for f in _FORECAST_FLAGS if getattr(args, f) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag}: only with --forecast (add --forecast, or drop {flag})")
        return None
    if args.seeds_for is not None:
        raise UsageError("--seeds-for: not with --forecast (run plan twice)")
    if args.costs_from is None:
        raise UsageError("--forecast: --costs-from URI is required (a store with finished "
                         "runs of the suite's architectures and data sets, whose phase "
                         "times the forecast uses)")
    from .tracking.uri import TrackingUriError, check_tracking_uri

    try:
        check_tracking_uri(args.costs_from, "--costs-from", must_exist=True)
    except TrackingUriError as exc:  # its fix names the flag this command has
        raise UsageError(str(exc).replace("--tracking-uri", "--costs-from")) from None
    from .schedule.forecast import Cluster, ClusterFileError, cluster_from_yaml

    if args.cluster is not None:
        if not Path(args.cluster).is_file():
            raise UsageError(f"--cluster: {args.cluster[:200]} is not a file (give a Ray "
                             "cluster-launcher YAML such as cluster.yaml)")
        try:
            base = cluster_from_yaml(args.cluster, args.worker_type)
        except (ClusterFileError, OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    elif args.worker_type is not None:
        raise UsageError("--worker-type: only with --cluster FILE")
    elif args.nodes is None or args.cpus_per_node is None:
        raise UsageError("--forecast: give the cluster's shape: --nodes N --cpus-per-node C "
                         "[--gpus-per-node G] [--memory-per-node GIB], or --cluster "
                         "cluster.yaml")
    else:
        base = Cluster(1, 0.0)
    return Cluster(
        int(args.nodes) if args.nodes is not None else base.nodes,
        args.cpus_per_node if args.cpus_per_node is not None else base.cpus,
        args.gpus_per_node if args.gpus_per_node is not None else base.gpus,
        args.memory_per_node if args.memory_per_node is not None else base.memory_gb)


def _forecast(args, suite, jobs, cluster) -> int:
    """``plan --forecast``: the suite's makespan on ``cluster``, with costs fitted from the
    finished runs in ``--costs-from`` (read only; nothing is written anywhere)."""
    from .schedule.costs import CostModel, NoCostError
    from .schedule.forecast import forecast, format_forecast
    from .tracking import resolve_uri
    from .tracking.uri import mask_uri

    uri = resolve_uri(args.costs_from)
    costs = CostModel.from_store(uri)
    costs.source = f"--costs-from {mask_uri(uri)}"
    res = suite.resources
    print(f"suite {suite.name}: {len(jobs)} jobs, each {res.cpus:g} CPU"
          + (f" + {res.gpus:g} GPU" if res.gpus else "")
          + f"; costs from {len(costs.rows)} group(s) of finished runs in {mask_uri(uri)}")
    try:
        f = forecast(suite, jobs, cluster, costs,
                     startup_s=args.startup_s if args.startup_s is not None else 5.0)
    except NoCostError as exc:
        raise UsageError(f"{exc}; run those jobs first (a few seeds are enough: the forecast "
                         "takes the median), or point --costs-from at a store that has "
                         "them") from None
    format_forecast(f)
    if suite.tune is not None:
        print("  (the tuning stage's trials are not in the forecast: only the suite's jobs)")
    return 0


def _plan_studies(suite, jobs) -> list[str]:
    """The tuning stage's lines of ``plan``: one per study, before the job table's end."""
    from .suite.studies import plan_studies

    studies = plan_studies(suite, jobs)
    if not studies:
        return []
    t = suite.tune
    b = t.budget
    budget = ", ".join(x for x in (f"{b.trials} trials" if b.trials else "",
                                   f"{b.cpu_hours:g} CPU-h" if b.cpu_hours else "",
                                   f"{b.gpu_hours:g} GPU-h" if b.gpu_hours else "") if x)
    sched = (f"ASHA (grace {t.scheduler.grace_period or suite.train.eval_every} steps, "
             f"reduction {t.scheduler.reduction_factor:g})" if t.scheduler else "no early stop")
    out = ["", f"tuning first: {len(studies)} studies, each {budget}, {t.search} search, {sched}, "
           f"objective {t.objective or 'validation bpd / nll'}; then each study's best "
           f"values retrained over seeds {', '.join(map(str, suite.matrix.seeds))}"
           + ("" if t.defaults else " (untuned rows left out: tune.defaults is false)")]
    header = f"{'study':16}  {'architecture':28} {'data set':14} {'dequant':12}  space"
    out += [header, "-" * len(header)]
    for s in studies:
        a = s.axes
        space = ", ".join(f"{k} {next(iter(v))}{list(v.values())[0]}"
                          for k, v in s.plain_space().items())
        out.append(f"{s.key:16}  {a['arch'][:28]:28} {a['dataset'][:14]:14} "
                   f"{a['dequant'][:12]:12}  {space[:200]}")
    return out


def _seeds_for(args, suite) -> None:
    """``plan --seeds-for D``: the seeds that detect D, from the suite's runs in the store."""
    from .report.seeds_plan import NoRunsError, seeds_plan

    uri = refusals.tracking_uri(args, must_exist=True)
    try:
        print("\n" + seeds_plan(uri, suite.name, args.seeds_for))
    except NoRunsError as exc:
        raise UsageError(f"--seeds-for: {exc}; run it first (nfbench run "
                         f"{str(args.suite)[:200]}), or pass --tracking-uri pointing at its "
                         "store") from None


def cmd_run(args) -> int:
    from .suite import SuiteError

    refusals.check_address(args.address, "--address", http=False)
    suite, root, jobs = _load(args.suite, max_jobs=args.max_jobs)
    uri = refusals.tracking_uri(args, must_exist=False)
    from .tracking.system_metrics import interval_setting

    interval_setting()  # $NFBENCH_SYSTEM_METRICS, checked before anything exists
    if refusals.is_local(args.address):
        refusals.check_machine(suite, root, args.suite, args.num_cpus)
        missing = refusals.missing_data(suite, root, args.suite)
        if missing:
            raise SuiteError(str(args.suite), missing)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out: {args.out[:200]} is a file; the report needs a folder")
    if suite.tune is not None and args.backend != "ray":
        raise UsageError("--backend inline: this suite has a tune: section, whose trials run "
                         "on Ray Tune; drop --backend inline (or the tune: section)")
    if not args.no_preflight:  # the slowest check last
        _preflight(args.suite, suite, root, jobs)
    from .schedule.stages import run_suite
    from .suite.studies import plan_studies
    from .tracking.uri import mask_uri

    studies = plan_studies(suite, jobs)
    print(f"suite {suite.name}: {len(jobs)} jobs"
          + (f" and {len(studies)} tuning studies (their tuned jobs come after)" if studies
             else "") + f" → MLflow {mask_uri(uri)}")
    summary = run_suite(suite, jobs, studies, uri=uri, address=args.address, force=args.force,
                        num_cpus=args.num_cpus, backend=args.backend,
                        tune_storage=args.tune_storage)
    if summary.studies:
        done = sum(1 for o in summary.studies if o.values is not None)
        print(f"suite {suite.name}: {done} of {len(summary.studies)} studies found a best "
              "configuration")
    print(f"suite {suite.name}: {len(summary.finished)} finished, {len(summary.diverged)} "
          f"diverged, {len(summary.failed)} failed, {len(summary.skipped)} skipped "
          f"in {summary.wall_seconds:.0f} s")
    print(_mlflow_line(uri, summary.experiment_id))
    if not args.no_report:
        index = _report([suite.name], uri, args.out or f"reports/{suite.name}")
        if index:
            print(f"report: {index}")
    return 0 if not summary.failed else 1


def _mlflow_line(uri: str, experiment_id: str) -> str:
    """Where to see the suite's runs in MLflow's UI (its runs table, model-training side)."""
    from .tracking.conventions import ui_url
    from .tracking.uri import mask_uri, split_credentials

    if uri.startswith(("http://", "https://")):
        return f"runs in MLflow: {ui_url(mask_uri(split_credentials(uri)[0]), experiment_id)}"
    return (f"runs in MLflow: mlflow ui --backend-store-uri {mask_uri(uri)}, then "
            f"{ui_url('http://127.0.0.1:5000', experiment_id)}")


def _report(suites: list[str], uri: str, out: str, ui_base: str | None = None) -> Path | None:
    from .report import write_report

    kwargs = {"ui_base": ui_base} if ui_base else {}
    return Path(write_report(suites, uri, out, **kwargs)).resolve()


def cmd_report(args) -> int:
    if args.ui_base is not None:  # the flags first, then the store
        from .report.safety import check_ui_base

        check_ui_base(args.ui_base)
    uri = refusals.tracking_uri(args, must_exist=True)
    out = args.out or (f"reports/{args.suites[0]}" if len(args.suites) == 1 else "reports/site")
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out: {out[:200]} is a file; the report needs a folder")
    index = _report(args.suites, uri, out, args.ui_base)
    print(f"report: {index}")
    return 0


def cmd_status(args) -> int:
    from .tracking.status import format_status, suite_status
    from .tracking.uri import mask_uri

    uri = refusals.tracking_uri(args, must_exist=True)
    print(format_status(suite_status(uri, args.suite), mask_uri(uri)))
    return 0


def cmd_compare(args) -> int:
    from .report import Tolerance, compare

    uri = refusals.tracking_uri(args, must_exist=True)
    tol = Tolerance(quality=args.quality_tol, speed=args.speed_tol, alpha=args.alpha,
                    missing_is_worse=args.missing_is_worse)
    try:
        result = compare(args.a, args.b, uri, tolerance=tol)
    except ValueError as exc:  # compare's own refusal: SUITE@REV with no runs at REV
        raise UsageError(str(exc)) from None
    print(result.text)
    return 1 if result.worse else 0


def cmd_promote(args) -> int:
    import re

    from .report.promote import promote

    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}", args.name):
        raise UsageError(f"--name: {args.name[:200]!r} is not a registered model name nfbench "
                         "makes; use letters, digits, '_', '.' and '-' (default: the suite's "
                         "name)")
    uri = refusals.tracking_uri(args, must_exist=True)
    promote(args.suite, uri, name=args.name)
    return 0


def cmd_list(args) -> int:
    from . import data, flows

    print("architectures:")
    for e in (flows.entry(n) for n in flows.names(closed_form=True)):
        kinds = "/".join(k for k in ("vectors", "images") if e.meta.get(k))
        marks = [kinds] if kinds else []
        if e.meta.get("reference"):
            marks.append("reference row")
        print(f"  {e.name:14} {e.summary}" + "".join(f"  [{m}]" for m in marks))
    print("data sets:")
    for n in data.names():
        e = data.entry(n)
        m = e.meta
        levels = f", {m['levels']} levels" if m.get("levels") else ""
        print(f"  {n:14} {m['kind']}, shape {tuple(m['event_shape'])}{levels}"
              + (f"  {e.summary}" if e.summary else ""))
    return 0


def cmd_keys(args) -> int:
    """Every metric, tag and artifact name nfbench records, with its meaning (from keys.py)."""
    from . import keys

    rows = keys.vocabulary()
    section = None
    if args.markdown:
        print("| key | meaning |\n| --- | --- |")
    for value, meaning, where in rows:
        if args.markdown:
            print(f"| `{value}` | {meaning.replace('|', chr(92) + '|')} |")
            continue
        if where != section:
            section = where
            print(f"{where}:")
        print(f"  {value:34} {meaning}")
    spread = ", ".join(keys.spread_keys(keys.PERF_DENSITY_MS))
    print(f"\nbeside every timed perf/*_ms metric K: K{keys.SUFFIX_MEDIAN}, K{keys.SUFFIX_IQR} "
          f"and K{keys.SUFFIX_BLOCKS} (e.g. {spread}); MLflow's system metrics: "
          f"{keys.SYSTEM_PREFIX}*")
    return 0


def cmd_submit(args) -> int:
    from .submit import submit

    refusals.check_address(args.address, "--address", http=True)
    suite, jobs = load_jobs(args.suite, quiet=True, max_jobs=args.max_jobs)
    if args.tracking_uri is not None:  # the cluster's view: checked, not reached from here
        from .tracking.uri import check_tracking_uri

        check_tracking_uri(args.tracking_uri, "--tracking-uri", probe=False)
    return submit(args, suite, jobs)


# ── parser ──────────────────────────────────────────────────────────────────────────────
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
    r.set_defaults(fn=cmd_run)

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
    pl.set_defaults(fn=cmd_plan)

    rp = sub.add_parser("report", help="write the HTML report of one or more suites")
    rp.add_argument("suites", nargs="+")
    tracking(rp)
    rp.add_argument("--out", default=None, help="output folder (default: reports/SUITE)")
    rp.add_argument("--ui-base", default=None,
                    help="MLflow UI that figure points link to (default: http://127.0.0.1:5000)")
    rp.set_defaults(fn=cmd_report)

    st = sub.add_parser("status", help="where a suite stands: counts, running jobs, failures, "
                                       "time left (reads the tracking store only)")
    st.add_argument("suite")
    tracking(st)
    st.set_defaults(fn=cmd_status)

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
    c.set_defaults(fn=cmd_compare)

    pm = sub.add_parser("promote", help="register each data set's best flow of a suite under "
                                        "the alias best-<data set> (the report's choice)")
    pm.add_argument("suite", help="the suite (its MLflow experiment)")
    pm.add_argument("--name", default=None,
                    help="the registered model's name (default: the suite's name)")
    tracking(pm)
    pm.set_defaults(fn=cmd_promote)

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
    s.set_defaults(fn=cmd_submit)

    ls = sub.add_parser("list", help="list architectures and data sets")
    ls.set_defaults(fn=cmd_list)

    k = sub.add_parser("keys", help="list every metric, tag and artifact name with its meaning")
    k.add_argument("--markdown", action="store_true", help="as a Markdown table")
    k.set_defaults(fn=cmd_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    from .registry import UnknownNameError
    from .report.safety import ReportInputError
    from .schedule.resources import ResourceError
    from .suite import SuiteError
    from .tracking.read import UnknownSuiteError
    from .tracking.system_metrics import SystemMetricsError
    from .tracking.uri import TrackingUriError

    try:
        args = parser().parse_args(argv)
        refusals.data_dir(args)
        return int(args.fn(args) or 0)
    except SuiteError as exc:
        if len(exc.problems) == 1:
            _err(f"error: {exc.problems[0]}")
        else:
            _err(f"error: the suite cannot run ({len(exc.problems)} problems):")
            for line in exc.problems:
                _err(f"  {line}")
        return EXIT_BAD_INPUT
    except (UsageError, ResourceError, UnknownNameError, UnknownSuiteError,
            TrackingUriError, ReportInputError, SystemMetricsError) as exc:
        _err(f"error: {exc}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # `nfbench keys | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        from .schedule import WorkerStartError

        if isinstance(exc, WorkerStartError):
            _err(f"error: {exc}")
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
