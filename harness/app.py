"""The application: what every command and benchmark calls to load, check, pre-flight and
plan a suite, and to run one.

:func:`load_jobs` parses, checks and expands a suite file (``check_flows``: and builds each
flow on a tiny batch, :func:`preflight`); :func:`catalog` is the registries as the plain data
the torch-free suite checks read. ``plan`` is :func:`plan_lines` (the job table and the
tuning stage) or, with ``--forecast``, :func:`forecast_cluster` and :func:`forecast`.
``run`` is :func:`prepare_run` — every check, in the order that refuses bad input before
anything exists, then the one :class:`~harness.schedule.plan.RunPlan` (backend, store,
capacity, hooks) — and :func:`run_prepared`, the suite's stages on that plan.

torch, Ray and MLflow are imported inside the functions that need them, so that
``nfbench --help`` and ``nfbench plan`` start fast.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import refusals
from .refusals import UsageError
from .suite import MAX_JOBS, Job, Suite, SuiteError, check_suite, expand, line_of, load_suite
from .suite.studies import Study, plan_studies

if TYPE_CHECKING:  # the plan's types import MLflow
    from .schedule import Capacity, Hooks, RunSummary

__all__ = ["PreparedRun", "arch_place", "catalog", "forecast", "forecast_cluster", "load",
           "load_jobs", "plan_lines", "preflight", "preflight_suite", "prepare_run",
           "run_prepared", "seeds_for"]

DROPPED_SHOWN = 20  # dropped cells listed one per line; the rest are counted by reason


# ── suite loading and checking ──────────────────────────────────────────────────────────
def catalog():
    """The registries as plain data (names, option specs, metadata), for the torch-free suite
    checks."""
    # lazy: the registries import torch
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


def load(path: str, quiet: bool = False, check_flows: bool = False,
         max_jobs: int | None = None) -> tuple[Suite, Any, list[Job]]:
    """``load_jobs``, also returning the YAML node tree (for line numbers)."""
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
        preflight_suite(path, suite, root, jobs)
    return suite, root, jobs


def preflight_suite(path: str, suite: Suite, root, jobs: list[Job]) -> None:
    """Pre-flight every flow of ``jobs``; SuiteError naming each failing architecture item."""
    problems = preflight(jobs, where=arch_place(path, suite, root))
    if problems:
        raise SuiteError(str(path), [
            f"{p}; fix the architecture, or skip this check with --no-preflight"
            for p in problems])


def load_jobs(path: str, quiet: bool = False, check_flows: bool = False, *,
              max_jobs: int | None = None):
    """Parse, check and expand a suite (``check_flows``: and pre-flight its flows); raise
    SuiteError on any problem. ``max_jobs``: the job limit (default ``MAX_JOBS``)."""
    suite, _, jobs = load(path, quiet, check_flows, max_jobs)
    return suite, jobs


def preflight(jobs, out=print, where=None) -> list[str]:
    """Check each (architecture, data shape) pair on a tiny batch; problems as lines
    (``where(arch_item)``: the place of an architecture item, ``FILE:LINE: field``)."""
    from . import data, flows  # lazy: torch

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


def arch_place(path: str, suite: Suite, root):
    """``item → 'FILE:LINE: matrix.architectures[i]'`` for the items of ``suite``."""
    def where(item) -> str:
        for i, a in enumerate(suite.matrix.architectures):
            if a is item:
                line = line_of(root, ("matrix", "architectures", i))
                return f"{path}:{line}: matrix.architectures[{i}]" if line else str(path)
        return str(path)

    return where


# ── plan ────────────────────────────────────────────────────────────────────────────────
def plan_lines(suite: Suite, jobs: list[Job]) -> list[str]:
    """``plan``'s text: the suite's line, the job table, then the tuning stage's studies."""
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
    return out + _plan_studies(suite, jobs)


_FORECAST_FLAGS = ("nodes", "cpus_per_node", "gpus_per_node", "memory_per_node", "cluster",
                   "worker_type", "costs_from", "startup_s")


def forecast_cluster(args):
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
    # lazy: tracking and the forecast import MLflow
    from .schedule.forecast import Cluster, ClusterFileError, cluster_from_yaml
    from .tracking.uri import TrackingUriError, check_tracking_uri

    try:
        check_tracking_uri(args.costs_from, "--costs-from", must_exist=True)
    except TrackingUriError as exc:  # its fix names the flag this command has
        raise UsageError(str(exc).replace("--tracking-uri", "--costs-from")) from None

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


def forecast(args, suite: Suite, jobs: list[Job], cluster) -> None:
    """``plan --forecast``: the suite's makespan on ``cluster``, with costs fitted from the
    finished runs in ``--costs-from`` (read only; nothing is written anywhere)."""
    # lazy: MLflow
    from .schedule.costs import CostModel, NoCostError
    from .schedule.forecast import forecast as simulate
    from .schedule.forecast import format_forecast
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
        f = simulate(suite, jobs, cluster, costs,
                     startup_s=args.startup_s if args.startup_s is not None else 5.0)
    except NoCostError as exc:
        raise UsageError(f"{exc}; run those jobs first (a few seeds are enough: the forecast "
                         "takes the median), or point --costs-from at a store that has "
                         "them") from None
    format_forecast(f)
    if suite.tune is not None:
        print("  (the tuning stage's trials are not in the forecast: only the suite's jobs)")


def _plan_studies(suite: Suite, jobs: list[Job]) -> list[str]:
    """The tuning stage's lines of ``plan``: one per study, before the job table's end."""
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


def seeds_for(args, suite: Suite) -> None:
    """``plan --seeds-for D``: the seeds that detect D, from the suite's runs in the store."""
    from .report.seeds_plan import NoRunsError, seeds_plan  # lazy: MLflow, pandas

    uri = refusals.tracking_uri(args, must_exist=True)
    try:
        print("\n" + seeds_plan(uri, suite.name, args.seeds_for))
    except NoRunsError as exc:
        raise UsageError(f"--seeds-for: {exc}; run it first (nfbench run "
                         f"{str(args.suite)[:200]}), or pass --tracking-uri pointing at its "
                         "store") from None


# ── run ─────────────────────────────────────────────────────────────────────────────────
@dataclass
class PreparedRun:
    """A suite that passed every check of ``run``: its jobs, its tuning studies, the tracking
    URI (resolved), and this machine's capacity when the run is local (None: a cluster's,
    measured when the plan joins it)."""

    suite: Suite
    jobs: list[Job]
    studies: list[Study]
    uri: str
    capacity: Capacity | None = None


def prepare_run(args) -> PreparedRun:
    """Every check of ``nfbench run``, in the order that refuses bad input before anything
    exists (no store, no folder, no Ray): the address, the suite, the tracking URI, the
    system-metrics setting, this machine, the data files, ``--out``, the backend, and the
    flows' pre-flight last (the slowest)."""
    from .tracking.system_metrics import interval_setting  # lazy: MLflow

    refusals.check_address(args.address, "--address", http=False)
    suite, root, jobs = load(args.suite, max_jobs=args.max_jobs)
    uri = refusals.tracking_uri(args, must_exist=False)
    interval_setting()  # $NFBENCH_SYSTEM_METRICS, checked before anything exists
    capacity = None
    if refusals.is_local(args.address):
        capacity = refusals.check_machine(suite, root, args.suite, args.num_cpus)
        missing = refusals.missing_data(suite, root, args.suite)
        if missing:
            raise SuiteError(str(args.suite), missing)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out: {args.out[:200]} is a file; the report needs a folder")
    if suite.tune is not None and args.backend != "ray":
        raise UsageError("--backend inline: this suite has a tune: section, whose trials run "
                         "on Ray Tune; drop --backend inline (or the tune: section)")
    if not args.no_preflight:  # the slowest check last
        preflight_suite(args.suite, suite, root, jobs)
    return PreparedRun(suite, jobs, plan_studies(suite, jobs), uri, capacity)


def run_prepared(run: PreparedRun, args, hooks: Hooks | None = None) -> RunSummary:
    """Build the run's one plan (backend, store, capacity, ``hooks``), then tune the studies
    and run the jobs and the tuned jobs on it; the run's summary."""
    from .schedule.plan import plan_run  # lazy: Ray, MLflow
    from .tune.stages import run_suite

    plan = plan_run(run.suite, uri=run.uri, address=args.address, num_cpus=args.num_cpus,
                    backend=args.backend, force=args.force, hooks=hooks,
                    capacity=run.capacity, tune_storage=args.tune_storage)
    return run_suite(run.suite, run.jobs, run.studies, plan=plan)
