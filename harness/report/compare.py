"""``nfbench compare A B``: two suites, or two revisions of one suite, side by side.

A side is ``SUITE`` or ``SUITE@REV`` (runs whose ``nfbench.revision`` tag starts with REV).
Configurations (data set × architecture label × dequantization) are matched by name and their
seed means compared; B is *worse* on a row when, beyond the :class:`Tolerance`:

* quality: bpd / NLL (and the importance-weighted bpd) rose by more than ``quality`` and by
  more than ``sigmas`` × the pooled standard deviation over seeds, √(s_A² + s_B²) (when known);
* speed: sampling throughput fell, or density / training-step time rose, by more than
  ``speed`` (relative);
* stability: the max invertibility error grew more than ``invertibility``-fold (and above
  ``inv_floor``), non-finite steps rose by more than ``nonfinite``, or a smaller share of
  the configuration's runs finished.

The CLI exits 1 when :attr:`CompareResult.worse`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import keys
from ..tracking.read import load_runs
from ..tracking.store import resolve_uri
from .style import fmt
from .table import aggregate, prepare

__all__ = ["CompareResult", "Tolerance", "compare", "parse_side"]


@dataclass(frozen=True)
class Tolerance:
    """How much worse B may be before a row counts as worse (see module docstring)."""

    quality: float = 0.02  # bpd or nats, absolute
    sigmas: float = 2.0  # and this many pooled standard deviations over seeds
    speed: float = 0.10  # relative change of throughput / times
    invertibility: float = 10.0  # factor on stab/inv_err_max
    inv_floor: float = 1e-6  # invertibility errors below this never count
    nonfinite: float = 5.0  # extra non-finite training steps (mean over seeds) allowed
    missing_is_worse: bool = False  # a configuration of A absent from B counts as worse


@dataclass
class CompareResult:
    """``table``: one row per (dataset, config, metric) with ``a b delta change worse kind
    note`` (the quality metric is named ``eval/bpd`` or ``eval/nll``; a configuration on one
    side only has metric ``presence``); ``worse``: any row worse; ``text``: what to print."""

    a: str
    b: str
    table: pd.DataFrame
    worse: bool
    text: str


# metric, kind, direction (+1: higher is better)
CHECKS = (
    ("score", "quality", -1),
    (keys.EVAL_BPD_IW, "quality", -1),
    (keys.PERF_SAMPLE_THROUGHPUT, "speed", +1),
    (keys.PERF_DENSITY_MS, "speed", -1),
    (keys.PERF_TRAIN_STEP_MS, "speed", -1),
    (keys.STAB_INV_ERR_MAX, "stability", -1),
    (keys.STAB_NONFINITE_STEPS, "stability", -1),
    ("finished_share", "stability", +1),
)
_COLS = ["dataset", "config", "metric", "kind", "a", "b", "delta", "change", "worse", "note"]


def parse_side(spec: str, uri: str) -> tuple[str, str | None]:
    """``SUITE`` or ``SUITE@REV`` → (suite, revision prefix or None). A suite whose name
    itself contains '@' is taken whole when the store has it."""
    if "@" not in spec:
        return spec, None
    from mlflow.tracking import MlflowClient

    if MlflowClient(tracking_uri=uri).get_experiment_by_name(spec) is None:
        suite, rev = spec.rsplit("@", 1)
        return suite, rev or None
    return spec, None


def _side(runs: pd.DataFrame, suite: str, rev: str | None, spec: str) -> pd.DataFrame:
    sel = runs[runs["experiment"] == suite]
    if rev is not None:
        revs = sel["revision"].astype(str)
        sel = sel[revs.str.startswith(rev)]
        if sel.empty:
            known = ", ".join(sorted(runs.loc[runs["experiment"] == suite, "revision"]
                                     .dropna().astype(str).unique())) or "none recorded"
            raise ValueError(f"compare {spec!r}: suite {suite!r} has no runs at a revision "
                             f"starting with {rev!r} (revisions: {known})")
    return sel


def _row_worse(metric: str, kind: str, sign: int, a: float, b: float, sa: float, sb: float,
               tol: Tolerance) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    if kind == "quality":
        noise = tol.sigmas * math.sqrt(np.nansum([sa**2, sb**2])) if tol.sigmas else 0.0
        return (b - a) > max(tol.quality, noise)
    if kind == "speed":
        if a <= 0:
            return False
        return (b < a * (1 - tol.speed)) if sign > 0 else (b > a * (1 + tol.speed))
    if metric == keys.STAB_INV_ERR_MAX:
        return b > tol.inv_floor and b > a * tol.invertibility
    if metric == keys.STAB_NONFINITE_STEPS:
        return b > a + tol.nonfinite
    return b < a - 1e-12  # finished share


def _compare_table(agg_a: pd.DataFrame, agg_b: pd.DataFrame, tol: Tolerance) -> pd.DataFrame:
    for agg in (agg_a, agg_b):
        agg["finished_share"] = agg["n_ok"] / agg["n_runs"].where(agg["n_runs"] > 0)
        agg["finished_share std"] = np.nan
    a = agg_a.set_index(["dataset", "config"])
    b = agg_b.set_index(["dataset", "config"])
    rows = []
    for key in sorted(set(a.index) | set(b.index), key=str):
        if key not in b.index or key not in a.index:
            only = "A" if key not in b.index else "B"
            rows.append([*key, "presence", "presence", float(only == "A"), float(only == "B"),
                         np.nan, np.nan, only == "A" and tol.missing_is_worse, f"only in {only}"])
            continue
        ra, rb = a.loc[key], b.loc[key]
        for metric, kind, sign in CHECKS:
            if metric not in ra or metric not in rb:
                continue
            va, vb = float(ra[metric]), float(rb[metric])
            if math.isnan(va) and math.isnan(vb):
                continue
            sa, sb = float(ra.get(f"{metric} std", np.nan)), float(rb.get(f"{metric} std", np.nan))
            worse = _row_worse(metric, kind, sign, va, vb, sa, sb, tol)
            note = ""
            if math.isnan(vb) and not math.isnan(va):
                note, worse = "missing in B", kind == "quality" or worse
            change = vb / va - 1 if va not in (0.0,) and math.isfinite(va) else np.nan
            name = metric if metric != "score" else (
                keys.EVAL_BPD if ra.get("unit") == "bpd" else keys.EVAL_NLL)
            rows.append([*key, name, kind, va, vb, vb - va, change, bool(worse), note])
    return pd.DataFrame(rows, columns=_COLS)


def _text(spec_a: str, spec_b: str, runs_a: pd.DataFrame, runs_b: pd.DataFrame,
          table: pd.DataFrame, tol: Tolerance) -> str:
    lines = [(f"nfbench compare: A = {spec_a} ({len(runs_a)} runs)  vs  B = {spec_b} "
              f"({len(runs_b)} runs)"),
             (f"tolerance: quality +{tol.quality:g} and {tol.sigmas:g}σ; speed "
              f"{tol.speed:.0%}; invertibility ×{tol.invertibility:g}; non-finite steps "
              f"+{tol.nonfinite:g}")]
    dev_a = sorted(map(str, runs_a["device"].dropna().unique()))
    dev_b = sorted(map(str, runs_b["device"].dropna().unique()))
    if dev_a != dev_b:
        lines.append(f"note: devices differ (A: {', '.join(dev_a)}; B: {', '.join(dev_b)}), "
                     "so speed rows compare machines as well as code")
    score = table[table["metric"].isin([keys.EVAL_BPD, keys.EVAL_NLL])]
    speed = table[table["metric"] == keys.PERF_SAMPLE_THROUGHPUT].set_index(["dataset", "config"])
    bad = table[table["worse"]].groupby(["dataset", "config"]).size()
    header = f"{'':2}{'data set':<14}{'configuration':<34}{'A score':>10}{'B score':>10}" \
             f"{'Δ':>9}{'A samp/s':>11}{'B samp/s':>11}{'Δ%':>8}"
    lines += ["", header]
    for r in score.itertuples(index=False):
        k = (r.dataset, r.config)
        sp = speed.loc[k] if k in speed.index else None
        mark = "✗" if k in bad.index else " "
        sa, sb, sc = ((fmt(sp["a"], 4), fmt(sp["b"], 4),
                       fmt(100 * sp["change"], 3)) if sp is not None else ("—", "—", "—"))
        lines.append(f"{mark:<2}{str(r.dataset)[:13]:<14}{str(r.config)[:33]:<34}"
                     f"{fmt(r.a, 4):>10}{fmt(r.b, 4):>10}{fmt(r.delta, 3):>9}"
                     f"{sa:>11}{sb:>11}{sc:>8}")
    worse = table[table["worse"]]
    if len(worse):
        lines += ["", f"WORSE ({len(worse)} rows):"]
        for r in worse.itertuples(index=False):
            what = r.note or f"{fmt(r.a)} → {fmt(r.b)}"
            lines.append(f"  ✗ {r.dataset} · {r.config} · {r.kind} {r.metric}: {what}")
    counts = worse["kind"].value_counts()
    only_a = int(((table["metric"] == "presence") & (table["note"] == "only in A")).sum())
    only_b = int(((table["metric"] == "presence") & (table["note"] == "only in B")).sum())
    lines += ["", (f"{'WORSE' if len(worse) else 'OK'}: {len(worse)} rows worse (quality "
                   f"{counts.get('quality', 0)}, speed {counts.get('speed', 0)}, stability "
                   f"{counts.get('stability', 0)}); configurations only in A: {only_a}, only "
                   f"in B: {only_b}")]
    return "\n".join(lines)


def compare(a: str, b: str, tracking_uri: str | None, *, tolerance: Tolerance | None = None
            ) -> CompareResult:
    """Compare suite (or suite@revision) ``a`` with ``b``; see the module docstring.

    Raises:
        UnknownSuiteError: a suite the store does not hold.
        ValueError: a revision with no runs (the message lists the revisions there are).
    """
    tol = tolerance or Tolerance()
    uri = resolve_uri(tracking_uri)
    (suite_a, rev_a), (suite_b, rev_b) = parse_side(a, uri), parse_side(b, uri)
    runs = prepare(load_runs(uri, [suite_a, suite_b]))
    runs_a, runs_b = _side(runs, suite_a, rev_a, a), _side(runs, suite_b, rev_b, b)
    metrics = [m for m, _, _ in CHECKS if m != "finished_share"]
    table = _compare_table(aggregate(runs_a, metrics), aggregate(runs_b, metrics), tol)
    return CompareResult(a, b, table, bool(table["worse"].any()),
                         _text(a, b, runs_a, runs_b, table, tol))
