"""Checks of the command line, the tracking URI and this machine, before anything exists.

``nfbench run`` calls them after the suite's own checks and before it creates a store, a
folder or a Ray instance; ``plan``, ``report``, ``compare`` and ``submit`` the ones that
apply. Each refusal is an exception the CLI prints as one line and answers with exit status 2:
:class:`UsageError` (a flag), ``TrackingUriError`` (the tracking URI), ``ResourceError`` (a
job this machine cannot hold) or ``SuiteError`` (data files missing for a suite's data set).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

__all__ = [
    "MAX_JOBS_CEILING",
    "UsageError",
    "check_address",
    "check_machine",
    "data_dir",
    "is_local",
    "job_limit",
    "missing_data",
    "positive_number",
    "tolerance",
    "tracking_uri",
]

MAX_JOBS_CEILING = 10_000_000  # the most --max-jobs accepts


class UsageError(Exception):
    """A bad command line (argparse's complaint, or a flag's value), printed as one line."""


def _parsed(text: str, cast, ok, not_a_number: str, out_of_range: str):
    """``cast(text)`` if it parses and ``ok(value)``; else argparse's error with the message
    that says what the flag takes (``not_a_number`` / ``out_of_range``)."""
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {not_a_number}, got {text[:40]!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {out_of_range}, got {text[:40]!r}")
    return value


def positive_number(text: str) -> float:
    """argparse type of ``--num-cpus``: a finite number > 0."""
    return _parsed(text, float, lambda v: math.isfinite(v) and v > 0, "a number > 0",
                   "a finite number > 0")


def tolerance(text: str) -> float:
    """argparse type of ``--quality-tol`` / ``--speed-tol``: a finite number ≥ 0."""
    return _parsed(text, float, lambda v: math.isfinite(v) and v >= 0, "a number ≥ 0",
                   "a finite number ≥ 0")


def significance(text: str) -> float:
    """argparse type of ``--alpha``: a significance level in (0, 0.5]."""
    return _parsed(text, float, lambda v: 0 < v <= 0.5, "a number in (0, 0.5]",
                   "a significance level in (0, 0.5] (e.g. 0.05)")


def positive_difference(text: str) -> float:
    """argparse type of ``--seeds-for``: a finite difference > 0 (bpd or nats)."""
    return _parsed(text, float, lambda v: math.isfinite(v) and v > 0, "a number > 0",
                   "a finite difference > 0 in bpd or nats (e.g. 0.01)")


def job_limit(text: str) -> int:
    """argparse type of ``--max-jobs``: a whole number in [1, ``MAX_JOBS_CEILING``]."""
    return _parsed(text, int, lambda v: 1 <= v <= MAX_JOBS_CEILING, "a whole number",
                   f"between 1 and {MAX_JOBS_CEILING:,}")


def tracking_uri(args, *, must_exist: bool, probe: bool = True) -> str:
    """The tracking URI of this command, checked (``TrackingUriError``), then resolved."""
    from harness.tracking.uri import check_tracking_uri

    given = getattr(args, "tracking_uri", None)
    if given is not None:
        uri, origin = given, "--tracking-uri"
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        uri, origin = os.environ["MLFLOW_TRACKING_URI"], "$MLFLOW_TRACKING_URI"
    else:
        uri, origin = "sqlite:///mlflow.db", "the default tracking URI sqlite:///mlflow.db"
    check_tracking_uri(uri, origin, must_exist=must_exist, probe=probe)
    from harness.tracking import resolve_uri

    return resolve_uri(uri)


def is_local(address: str | None) -> bool:
    """Whether ``--address`` means a local Ray instance started by this command."""
    return address in (None, "local")


def check_address(address: str | None, flag: str, *, http: bool) -> None:
    """A Ray address: ``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT`` for ``run``;
    the Jobs API's ``http(s)://HOST[:PORT]`` for ``submit``."""
    import urllib.parse

    if address is None or (not http and address in ("auto", "local")):
        return
    shown = address if len(address) <= 80 else address[:60] + "…"
    want = ("http://HOST:8265 (the Ray dashboard's Jobs API)" if http
            else "auto, HOST:PORT or ray://HOST:PORT")
    text = address if "://" in address else f"ray://{address}"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise UsageError(f"{flag}: '{shown}' is not an address; give {want}") from None
    schemes = ("http", "https") if http else ("ray",)
    if parts.scheme not in schemes or not parts.hostname or (not http and port is None):
        raise UsageError(f"{flag}: '{shown}' is not an address; give {want}")


def check_machine(suite, root, path: str, num_cpus: float | None):
    """Resources of one job against this machine (a local Ray instance), before Ray starts;
    this machine's :class:`~harness.schedule.plan.Capacity`, which the run's plan keeps."""
    from harness.schedule.plan import measure
    from harness.schedule.resources import ResourceError, local_shape
    from harness.suite import line_of

    line = line_of(root, ("resources",))
    place = f"{path}:{line}" if line else str(path)
    capacity = measure(local_shape(num_cpus), suite, source=place)
    res = suite.resources
    if res.memory_gb:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        except (ValueError, OSError, AttributeError):
            return capacity
        if res.memory_gb > total:
            raise ResourceError(f"{place}: resources.memory_gb: a job asks for "
                                f"{res.memory_gb:g} GB, but this machine has {total:.1f} GB; "
                                "lower resources.memory_gb")
    return capacity


def missing_data(suite, root, path: str) -> list[str]:
    """File-based data sets whose files are not in the data directory (unless the suite
    asks to download them), as problems naming the item and the fix."""
    from harness.data import images, resolve_data_dir, tabular
    from harness.suite import line_of

    sources = {**getattr(images, "SOURCES", {}), **getattr(tabular, "SOURCES", {})}
    problems = []
    for i, item in enumerate(suite.matrix.datasets):
        source = sources.get(item.name)
        if source is None or item.options.get("download"):
            continue
        data_dir = resolve_data_dir(item.options.get("data_dir"))
        missing = [f for f in source.files if not (data_dir / f).is_file()]
        if missing:
            line = line_of(root, ("matrix", "datasets", i))
            problems.append(
                f"{path}:{line}: matrix.datasets[{i}]: data set '{item.name}' needs "
                f"{len(missing)} file(s) missing from the data directory {data_dir} (from "
                f"--data-dir, $NFBENCH_DATA or ~/.nfbench/data), e.g. {missing[0]}; get them "
                f"from {source.where}, or let nfbench fetch them: "
                f"{{name: {item.name}, download: true}}")
    return problems


def data_dir(args) -> None:
    """``--data-dir`` must name an existing folder; it becomes ``$NFBENCH_DATA`` (the workers
    inherit it)."""
    given = getattr(args, "data_dir", None)
    if given is None:
        return
    path = Path(given).expanduser()
    if not path.is_dir():
        raise UsageError(f"--data-dir: {given[:200]}: no such folder; create it, or fix the "
                         "path (nfbench creates no data folder)")
    os.environ["NFBENCH_DATA"] = str(path.resolve())
