"""What each job phase costs, in seconds on its worker: the simulated backend's cost model.

A cost is ``(train_s, time_s)``: the train phase's seconds (data, training, evaluation,
artifacts) at the suite's resources, and the timing phase's (compiling included) on a whole
device. A :class:`CostModel` is a list of rows, each saying what one kind of job costs:

* **declared** (:meth:`CostModel.declared`): rows written by hand, each naming an
  architecture and a data set (a name, or a name with options), optionally a runtime and a
  size (training steps). A row matches a job whose config has every option the row names;
* **fitted** (:meth:`CostModel.from_store`): one row per group of *finished* runs in an MLflow
  store with the same architecture (name and every hyper-parameter), data set (name and loader
  options), runtime and size; its cost is the group's median of ``train/phase_s`` (older runs:
  ``train/wall_s``) and ``perf/phase_s`` (older runs: the run's end less the timing phase's
  start, ``nfbench.live.started``).

A job's cost is its best-matching row's (the most options matched; then the same size). A
row of another size costs ``train_s × steps / row steps`` (training is linear in steps; the
timing phase does not depend on them), and says so (:attr:`Cost.scaled`). A job that no row
matches raises :class:`NoCostError`, naming the job.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import keys
from ..suite.expand import flatten
from ..suite.jobconfig import JobConfig

__all__ = ["Cost", "CostModel", "CostRow", "NoCostError", "job_signature"]

# data options that change neither the data a job trains on nor what it costs
_FREE_DATA = ("seed", "data_dir", "download")
# params the worker writes under data.* (what it found), not options of the config
_WORKER_DATA = ("kind", "dims", "levels", "fingerprint", "split")


class NoCostError(LookupError):
    """No row of the cost model matches a job (the message names the jobs)."""


@dataclass(frozen=True)
class Cost:
    """Seconds of a job's two phases; ``scaled``: from a row of another size."""

    train_s: float
    time_s: float = 0.0
    scaled: bool = False

    def phase(self, name: str) -> float:
        return self.train_s if name == "train" else self.time_s


def _value(v: Any) -> str:
    """A param's value in one spelling ("64", 64 and 64.0 are the same; "1e-3" is 0.001)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return repr(f) if math.isfinite(f) else str(v)


def _pick(flat: dict[str, Any], prefix: str, skip: tuple[str, ...] = ()) -> frozenset:
    out = set()
    for k, v in flat.items():
        if not k.startswith(prefix) or v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if k[len(prefix):].split(".")[0] in skip:
            continue
        out.add((k, _value(v)))
    return frozenset(out)


def job_signature(flat: dict[str, Any]) -> tuple[frozenset, frozenset, frozenset]:
    """(architecture, data set, runtime) of a flattened job config or a run's params: the
    ``arch.*``, ``data.*`` (loader options only) and ``runtime.*`` items."""
    return (_pick(flat, "arch."), _pick(flat, "data.", _FREE_DATA + _WORKER_DATA),
            _pick(flat, "runtime."))


def _steps(flat: dict[str, Any]) -> int | None:
    v = flat.get("train.steps")
    try:
        return int(float(v)) if v is not None and math.isfinite(float(v)) else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class CostRow:
    """What the jobs of one kind cost. ``exact``: the row matches a job only when their
    architecture, data set and runtime are the same (a fitted row); otherwise a job matches
    when its config has every item the row names (a declared row)."""

    arch: frozenset
    data: frozenset
    runtime: frozenset
    steps: int | None
    train_s: float
    time_s: float
    exact: bool = True
    runs: int = 0  # the finished runs it was fitted from

    def matches(self, sig: tuple[frozenset, frozenset, frozenset]) -> int | None:
        """How many items of a job's signature it matched; None: it does not match."""
        arch, data, runtime = sig
        if self.exact:
            return (len(arch) + len(data) + len(runtime)
                    if (self.arch, self.data, self.runtime) == sig else None)
        if self.arch <= arch and self.data <= data and self.runtime <= runtime:
            return len(self.arch) + len(self.data) + len(self.runtime)
        return None


class CostModel:
    """Job config → :class:`Cost` (see the module docstring)."""

    def __init__(self, rows: Iterable[CostRow], source: str = "declared"):
        self.rows = list(rows)
        self.source = source  # where the rows came from, for messages
        self._cache: dict[str, Cost | None] = {}

    # ── building one ───────────────────────────────────────────────────────────────────
    @classmethod
    def constant(cls, train_s: float, time_s: float = 0.0) -> CostModel:
        """Every job costs the same."""
        return cls([CostRow(frozenset(), frozenset(), frozenset(), None, float(train_s),
                            float(time_s), exact=False)], source="a constant cost")

    @classmethod
    def declared(cls, table: Iterable[dict[str, Any]]) -> CostModel:
        """Rows by hand: ``{"arch": "maf" | {"name": "maf", "hidden": 64}, "dataset": "moons" |
        {"name": …, options…}, "runtime": "compile" (optional), "steps": 1000 (optional),
        "train_s": 120, "time_s": 10, "compile_s": 30 (optional, added to the timing
        phase)}``."""
        rows = []
        for i, row in enumerate(table):
            missing = [k for k in ("arch", "dataset", "train_s") if k not in row]
            if missing:
                raise ValueError(f"cost row {i}: missing {', '.join(missing)} (a row names "
                                 "arch, dataset and train_s; time_s, compile_s, steps and "
                                 "runtime are optional)")
            arch = row["arch"] if isinstance(row["arch"], dict) else {"name": row["arch"]}
            data = row["dataset"] if isinstance(row["dataset"], dict) else \
                {"name": row["dataset"]}
            runtime = {"name": row["runtime"]} if row.get("runtime") else {}
            flat = {**flatten({"arch": arch, "data": data}),
                    **(flatten({"runtime": runtime}) if runtime else {})}
            if "steps" in row:
                flat["train.steps"] = row["steps"]
            a, d, r = job_signature(flat)
            rows.append(CostRow(a, d, r, _steps(flat), float(row["train_s"]),
                                float(row.get("time_s", 0.0)) + float(row.get("compile_s", 0.0)),
                                exact=False))
        return cls(rows)

    @classmethod
    def from_runs(cls, runs: Iterable[dict[str, Any]], source: str = "runs") -> CostModel:
        """Rows fitted from finished runs, each a mapping of the runs table's columns
        (:func:`harness.tracking.read.load_runs`): params, ``nfbench.*`` tags, final metrics,
        ``end_time``."""
        groups: dict[tuple, list[tuple[float, float]]] = {}
        for run in runs:
            if run.get(keys.TAG_STATUS) != keys.STATUS_FINISHED:
                continue
            train = _seconds(run, keys.TRAIN_PHASE_S, keys.TRAIN_WALL_S)
            if train is None:
                continue
            key = (*job_signature(run), _steps(run))
            groups.setdefault(key, []).append((train, _timing_seconds(run)))
        rows = [CostRow(a, d, r, steps, statistics.median(t for t, _ in v),
                        statistics.median(s for _, s in v), exact=True, runs=len(v))
                for (a, d, r, steps), v in groups.items()]
        return cls(rows, source)

    @classmethod
    def from_store(cls, uri: str) -> CostModel:
        """Rows fitted from every suite's finished runs in the store at ``uri`` (read only)."""
        from mlflow.tracking import MlflowClient

        from ..tracking.read import load_runs

        client = MlflowClient(tracking_uri=uri)
        names = [e.name for e in client.search_experiments()
                 if e.name not in (keys.LEDGER_EXPERIMENT, "Default")]
        if not names:
            return cls([], uri)
        df = load_runs(uri, names)
        return cls.from_runs(df.to_dict("records"), uri)

    # ── asking it ──────────────────────────────────────────────────────────────────────
    def cost(self, config: JobConfig) -> Cost:
        """What the job of ``config`` costs (:class:`NoCostError` when no row matches)."""
        flat = flatten(config.as_dict())
        key = repr(sorted(flat.items()))
        if key not in self._cache:
            self._cache[key] = self._lookup(flat)
        got = self._cache[key]
        if got is None:
            raise NoCostError(f"no cost for {config.arch.name} on {config.data.name} "
                              f"({_steps(flat)} steps) in {self.source}")
        return got

    def _lookup(self, flat: dict[str, Any]) -> Cost | None:
        sig, steps = job_signature(flat), _steps(flat)
        scored = [(m, row) for row in self.rows if (m := row.matches(sig)) is not None]
        if not scored:
            return None
        best = max(m for m, _ in scored)
        rows = [row for m, row in scored if m == best]
        same = [row for row in rows if row.steps is None or row.steps == steps]
        if same:
            row = max(same, key=lambda r: (r.steps is not None, r.runs))
            return Cost(row.train_s, row.time_s)
        row = min(rows, key=lambda r: abs(math.log((r.steps or 1) / max(steps or 1, 1))))
        return Cost(row.train_s * (steps or 0) / row.steps, row.time_s, scaled=True)

    def missing(self, configs: Iterable[JobConfig]) -> list[JobConfig]:
        """The configs no row matches."""
        out = []
        for cfg in configs:
            try:
                self.cost(cfg)
            except NoCostError:
                out.append(cfg)
        return out


def _seconds(run: dict[str, Any], *names: str) -> float | None:
    for name in names:
        v = run.get(name)
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0:
            return float(v)
    return None


def _timing_seconds(run: dict[str, Any]) -> float:
    """The timing phase's seconds: ``perf/phase_s``, else the run's end less the start of its
    last live phase when that was the timing phase (0: the run was not timed)."""
    got = _seconds(run, keys.PERF_PHASE_S)
    if got is not None:
        return got
    if run.get(keys.TAG_PHASE) != "timed":
        return 0.0
    try:
        started = float(run.get(keys.TAG_LIVE_STARTED))
        end = run.get("end_time")
        end_s = end.timestamp() if hasattr(end, "timestamp") else float(end) / 1000
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, end_s - started) if math.isfinite(end_s) else 0.0
