"""The ``nfbench`` command: run, plan, report, status, compare, promote, submit, list, keys.

This module parses (:mod:`harness.cli_args`), prints and answers with an exit status; what a
command does is :mod:`harness.app`'s (load, check, pre-flight, plan, run) or a layer's.

Bad input (a malformed suite, an unknown name or option, a suite over the job limit, an
impossible resource request, an unusable tracking URI, a bad flag, a flow that fails its
pre-flight check) is refused before anything exists — no MLflow store, no folder, no Ray —
with exit status 2 and one line that names the place (``FILE:LINE: field`` or the flag) and
the fix. Every line printed for an error is cut to ``MAX_LINE`` characters.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from . import app, keys, refusals
from .cli_args import parser
from .refusals import UsageError
from .registry import UnknownNameError
from .suite import SuiteError

__all__ = ["main", "parser"]

EXIT_BAD_INPUT = 2
MAX_LINE = 500  # characters of one printed error line

# lazy: the imports inside the commands below load MLflow, pandas, torch or Ray, only for
# the commands that need them (``nfbench --help`` and ``nfbench plan`` stay fast)


def _err(msg: str) -> None:
    for line in str(msg).splitlines() or [""]:
        if len(line) > MAX_LINE:
            line = f"{line[: MAX_LINE - 30]}… ({len(line):,} characters)"
        print(line, file=sys.stderr)


# ── commands ────────────────────────────────────────────────────────────────────────────
def cmd_plan(args) -> int:
    cluster = app.forecast_cluster(args)  # the flags first: bad ones are refused before anything
    suite, jobs = app.load_jobs(args.suite, check_flows=not args.no_preflight,
                                max_jobs=args.max_jobs)
    if cluster is not None:
        app.forecast(args, suite, jobs, cluster)
        return 0
    sys.stdout.write("\n".join(app.plan_lines(suite, jobs)) + "\n")
    if args.seeds_for is not None:
        app.seeds_for(args, suite)
    return 0


def cmd_run(args) -> int:
    from .tracking.uri import mask_uri

    run = app.prepare_run(args)
    suite, jobs, studies, uri = run.suite, run.jobs, run.studies, run.uri
    print(f"suite {suite.name}: {len(jobs)} jobs"
          + (f" and {len(studies)} tuning studies (their tuned jobs come after)" if studies
             else "") + f" → MLflow {mask_uri(uri)}")
    summary = app.run_prepared(run, args)
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
    from .report.promote import promote

    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}", args.name):
        raise UsageError(f"--name: {args.name[:200]!r} is not a registered model name nfbench "
                         "makes; use letters, digits, '_', '.' and '-' (default: the suite's "
                         "name)")
    uri = refusals.tracking_uri(args, must_exist=True)
    promote(args.suite, uri, name=args.name)
    return 0


def cmd_list(args) -> int:
    from . import data, flows  # torch

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
    suite, jobs = app.load_jobs(args.suite, quiet=True, max_jobs=args.max_jobs)
    if args.tracking_uri is not None:  # the cluster's view: checked, not reached from here
        from .tracking.uri import check_tracking_uri

        check_tracking_uri(args.tracking_uri, "--tracking-uri", probe=False)
    return submit(args, suite, jobs)


COMMANDS = {"run": cmd_run, "plan": cmd_plan, "report": cmd_report, "status": cmd_status,
            "compare": cmd_compare, "promote": cmd_promote, "submit": cmd_submit,
            "list": cmd_list, "keys": cmd_keys}


def main(argv: list[str] | None = None) -> int:
    from .report.safety import ReportInputError
    from .schedule.resources import ResourceError
    from .tracking.read import UnknownSuiteError
    from .tracking.system_metrics import SystemMetricsError
    from .tracking.uri import TrackingUriError

    try:
        args = parser().parse_args(argv)
        refusals.data_dir(args)
        return int(COMMANDS[args.command](args) or 0)
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
