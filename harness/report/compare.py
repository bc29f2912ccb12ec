"""``nfbench compare A B``: two suites, or two revisions of one suite, side by side.

A side is ``SUITE`` or ``SUITE@REV`` (runs whose ``nfbench.revision`` tag starts with REV).
Configurations (data set × architecture label × dequantization) are matched by name and their
finished seeds compared. B is *worse* on a row only when the change is both **significant**
and **larger than a stated effect**:

* quality (bpd / NLL, and the importance-weighted bpd): a t-test over seeds, paired when both
  sides ran the same seeds (the same seed: the same initialisation, batches and noise),
  Welch's otherwise; worse when its p < ``alpha`` and B's mean is higher by more than
  ``quality`` (each row on its own: the effect threshold, not a correction for the number
  of rows, keeps seed noise from being flagged). With one seed on a side
  nothing can be tested: the row is *untested* (never worse; run more seeds);
* speed (sampling throughput, density time, training-step time): compared by the ratio of B's
  time over A's (throughput: of the sampling time) with its 95 % bootstrap interval over the
  runs' recorded blocks (:mod:`harness.report.ratio`). An interval that straddles 1 or lies
  within ±5 % of it is *not resolved*: neither side is ranked; so is a row with a side timed
  under contention (``perf/contended``: its blocks are not at speed, and one run's blocks do
  not show how far another moment's would be). B is worse when the interval lies above 1
  (resolved) and the ratio exceeds 1 + ``speed``. Runs recorded before their
  blocks were (no ``nfbench.timing.blocks`` tag) fall back on: worse when B is slower by
  more than ``speed`` (relative), by more than the timings' own noise,
  √(IQR_A² + IQR_B²) (the interquartile ranges of their blocks, mean over seeds), and, with two
  seeds or more on each side, significantly (the same tests);
* stability: the max invertibility error grew more than ``invertibility``-fold (and above
  ``inv_floor``), non-finite steps rose by more than ``nonfinite``, or a smaller share of
  the configuration's runs finished.

Every quality and speed row carries the 95 % interval of B − A from its test, the p-value,
Cohen's d and rliable's probability that A is better than B (see
:mod:`harness.report.stats`). The CLI exits 1 when :attr:`CompareResult.worse`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import keys
from ..tracking.read import load_runs
from ..tracking.store import resolve_uri
from . import ratio, stats
from .style import fmt
from .table import GROUP, aggregate, prepare

__all__ = ["CompareResult", "Tolerance", "compare", "compare_runs", "parse_side"]


@dataclass(frozen=True)
class Tolerance:
    """When a change counts as worse (see module docstring)."""

    quality: float = 0.01  # the effect: bpd or nats, absolute
    alpha: float = stats.ALPHA  # significance level (Holm-corrected p-values)
    speed: float = 0.10  # relative change of throughput / times
    invertibility: float = 10.0  # factor on stab/inv_err_max
    inv_floor: float = 1e-6  # invertibility errors below this never count
    nonfinite: float = 5.0  # extra non-finite training steps (mean over seeds) allowed
    missing_is_worse: bool = False  # a configuration of A absent from B counts as worse


@dataclass
class CompareResult:
    """``table``: one row per (dataset, config, metric) with ``a b delta change lo hi p
    effect poi test noise worse verdict kind note`` and, on speed rows whose runs recorded
    their blocks, ``ratio ratio_lo ratio_hi`` (B's time over A's, 95 % bootstrap interval) and
    ``contended`` (a side was timed under contention: the row is not ranked)
    (the quality metric is named ``eval/bpd`` or ``eval/nll``; a configuration on one side
    only has metric ``presence``); ``worse``: any row worse; ``text``: what to print."""

    a: str
    b: str
    table: pd.DataFrame
    worse: bool
    text: str


# metric, kind, direction (+1: higher is better)
TESTED = (
    ("score", "quality", -1),
    (keys.EVAL_BPD_IW, "quality", -1),
    (keys.PERF_SAMPLE_THROUGHPUT, "speed", +1),
    (keys.PERF_DENSITY_MS, "speed", -1),
    (keys.PERF_TRAIN_STEP_MS, "speed", -1),
)
STABILITY = (
    (keys.STAB_INV_ERR_MAX, -1),
    (keys.STAB_NONFINITE_STEPS, -1),
    ("finished_share", +1),
)
_COLS = ["dataset", "config", "metric", "kind", "a", "b", "delta", "change", "lo", "hi",
         "p", "effect", "poi", "test", "noise", "n_a", "n_b", "worse", "verdict",
         "note", "ratio", "ratio_lo", "ratio_hi", "contended"]
_NO_RATIO = [math.nan] * 3 + [False]


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


def _per_seed(runs: pd.DataFrame, metric: str) -> dict[int, float]:
    """Finished runs' values of ``metric`` by seed (the last run of a seed wins)."""
    if metric not in runs:
        return {}
    ok = runs[runs["ok"]]
    values = ok[metric].astype(float).replace([np.inf, -np.inf], np.nan)
    seeds = ok["seed"].fillna(-1).astype(int)
    return {int(s): float(v) for s, v in zip(seeds, values) if math.isfinite(v)}


def _iqr(runs: pd.DataFrame, metric: str) -> float:
    """The mean over finished seeds of a timing's IQR (throughput: sampling's relative IQR
    times the throughput); NaN where no spread was recorded."""
    ok = runs[runs["ok"]]
    if metric == keys.PERF_SAMPLE_THROUGHPUT:
        _, iqr, _ = keys.spread_keys(keys.PERF_SAMPLE_MS)
        if iqr not in ok or keys.PERF_SAMPLE_MS not in ok or metric not in ok:
            return math.nan
        rel = ok[iqr].astype(float) / ok[keys.PERF_SAMPLE_MS].astype(float)
        return float((rel * ok[metric].astype(float)).mean())
    _, iqr, _ = keys.spread_keys(metric)
    return float(ok[iqr].astype(float).mean()) if iqr in ok else math.nan


def _blocks(runs: pd.DataFrame, metric: str) -> list[list[float]]:
    """Finished runs' recorded block times of a timing (throughput: of sampling), one list
    per run that has them."""
    if keys.TAG_TIMING_BLOCKS not in runs:
        return []
    timed = keys.PERF_SAMPLE_MS if metric == keys.PERF_SAMPLE_THROUGHPUT else metric
    out = [ratio.blocks_of(tag, timed) for tag in runs.loc[runs["ok"], keys.TAG_TIMING_BLOCKS]]
    return [b for b in out if b]


def time_ratio(ra: pd.DataFrame, rb: pd.DataFrame, metric: str) -> ratio.Ratio:
    """B's time over A's for a speed metric, bootstrapped over both sides' runs' blocks (NaN
    where a side recorded none)."""
    return ratio.ratio(_blocks(ra, metric), _blocks(rb, metric))


def _contended(runs: pd.DataFrame) -> bool:
    return keys.PERF_CONTENDED in runs and bool((runs[keys.PERF_CONTENDED] > 0).any())


def _tested_row(key, metric, kind, sign, ra: pd.DataFrame, rb: pd.DataFrame,
                score_name: str) -> list | None:
    xa, xb = _per_seed(ra, metric), _per_seed(rb, metric)
    if not xa and not xb:
        return None
    name = score_name if metric == "score" else metric
    mean_a = float(np.mean(list(xa.values()))) if xa else math.nan
    mean_b = float(np.mean(list(xb.values()))) if xb else math.nan
    change = mean_b / mean_a - 1 if xa and mean_a != 0 else math.nan
    if not xb:
        return [*key, name, kind, mean_a, math.nan, math.nan, math.nan, math.nan, math.nan,
                math.nan, math.nan, math.nan, "none", math.nan, len(xa), 0,
                kind == "quality", "missing in B", "missing in B", *_NO_RATIO]
    same = sorted(xa) == sorted(xb) and len(xa) >= 2
    seeds = sorted(xa) if same else None
    t = stats.pair_test([xa[s] for s in seeds] if same else list(xa.values()),
                        [xb[s] for s in seeds] if same else list(xb.values()),
                        paired=same, lower_is_better=sign < 0)
    noise = math.nan
    notes = []
    r = ratio.Ratio(math.nan, math.nan, math.nan)
    if kind == "speed":
        r = time_ratio(ra, rb, metric)
        noise = math.sqrt(np.nansum([_iqr(ra, metric) ** 2, _iqr(rb, metric) ** 2])) \
            if not (math.isnan(_iqr(ra, metric)) and math.isnan(_iqr(rb, metric))) else math.nan
        if _contended(rb) or _contended(ra):
            notes.append("timed under contention (" + "/".join(
                s for s, r in (("A", ra), ("B", rb)) if _contended(r)) + ")")
    if t.test == "none" and not math.isfinite(r.value):
        notes.append("one seed on a side: no test")
    return [*key, name, kind, t.mean_x, t.mean_y, t.delta, change, t.lo, t.hi, t.p,
            t.effect, t.poi, t.test, noise, t.n_x, t.n_y, False, "", "; ".join(notes),
            r.value, r.lo, r.hi, kind == "speed" and (_contended(ra) or _contended(rb))]


def _judge(table: pd.DataFrame, tol: Tolerance) -> pd.DataFrame:
    """Each quality and speed row's verdict (module docstring)."""
    t = table.copy()
    sign = {m: s for m, _, s in TESTED}
    sign[keys.EVAL_BPD] = sign[keys.EVAL_NLL] = -1
    for i in t.index[t["kind"].isin(["quality", "speed"])]:
        r = t.loc[i]
        if r["verdict"] == "missing in B":
            continue
        a, b, p = float(r["a"]), float(r["b"]), float(r["p"])
        significant = p < tol.alpha if math.isfinite(p) else None
        if r["kind"] == "quality":
            big = (b - a) > tol.quality
            worse = bool(significant) and big
            verdict = ("untested" if significant is None else
                       "worse" if worse else
                       "better" if significant and b < a - tol.quality else "same")
        elif math.isfinite(r["ratio"]):  # B's time over A's, with its interval
            rt = ratio.Ratio(float(r["ratio"]), float(r["ratio_lo"]), float(r["ratio_hi"]))
            ranked = rt.resolved and not bool(r["contended"])
            worse = ranked and rt.lo > 1 and rt.value > 1 + tol.speed
            verdict = ("not resolved" if not ranked else
                       "worse" if worse else
                       "slower, within tolerance" if rt.lo > 1 else
                       "better" if rt.value < 1 - tol.speed else "faster, within tolerance")
        else:
            s = sign[r["metric"]]
            slower = (b < a * (1 - tol.speed)) if s > 0 else (b > a * (1 + tol.speed))
            noise = float(r["noise"]) if math.isfinite(r["noise"]) else 0.0
            beyond = abs(b - a) > noise
            worse = a > 0 and slower and beyond and significant is not False
            faster = (b > a * (1 + tol.speed)) if s > 0 else (b < a * (1 - tol.speed))
            verdict = ("worse" if worse else
                       "within noise" if slower and not beyond else
                       "not significant" if slower else
                       "better" if faster and abs(b - a) > noise and significant is not False
                       else "same")
        t.loc[i, "worse"] = worse
        t.loc[i, "verdict"] = verdict
    return t


def _stability_rows(key, ra_agg: pd.Series, rb_agg: pd.Series, tol: Tolerance) -> list[list]:
    rows = []
    for metric, _sign in STABILITY:
        if metric not in ra_agg or metric not in rb_agg:
            continue
        a, b = float(ra_agg[metric]), float(rb_agg[metric])
        if math.isnan(a) and math.isnan(b):
            continue
        if not (math.isfinite(a) and math.isfinite(b)):
            worse = False
        elif metric == keys.STAB_INV_ERR_MAX:
            worse = b > tol.inv_floor and b > a * tol.invertibility
        elif metric == keys.STAB_NONFINITE_STEPS:
            worse = b > a + tol.nonfinite
        else:
            worse = b < a - 1e-12  # finished share
        note = ""
        if math.isnan(b) and not math.isnan(a):
            note = "missing in B"
        change = b / a - 1 if a != 0 and math.isfinite(a) else math.nan
        rows.append([*key, metric, "stability", a, b, b - a, change, math.nan, math.nan,
                     math.nan, math.nan, math.nan, "none", math.nan, math.nan,
                     math.nan, bool(worse), "worse" if worse else "same", note, *_NO_RATIO])
    return rows


def compare_runs(runs_a: pd.DataFrame, runs_b: pd.DataFrame, tol: Tolerance) -> pd.DataFrame:
    """The comparison table of two sides' prepared runs (see module docstring)."""
    metrics = [m for m, _ in STABILITY if m != "finished_share"] + ["score"]
    agg_a, agg_b = aggregate(runs_a, metrics), aggregate(runs_b, metrics)
    for agg in (agg_a, agg_b):
        agg["finished_share"] = agg["n_ok"] / agg["n_runs"].where(agg["n_runs"] > 0)
    a_idx, b_idx = agg_a.set_index(GROUP), agg_b.set_index(GROUP)
    groups_a = dict(tuple(runs_a.groupby(GROUP, sort=False)))
    groups_b = dict(tuple(runs_b.groupby(GROUP, sort=False)))
    rows = []
    for key in sorted(set(a_idx.index) | set(b_idx.index), key=str):
        if key not in b_idx.index or key not in a_idx.index:
            only = "A" if key not in b_idx.index else "B"
            worse = only == "A" and tol.missing_is_worse
            rows.append([*key, "presence", "presence", float(only == "A"), float(only == "B"),
                         *[math.nan] * 7, "none", math.nan, math.nan, math.nan, worse,
                         "worse" if worse else f"only in {only}", f"only in {only}",
                         *_NO_RATIO])
            continue
        ra, rb = groups_a[key], groups_b[key]
        unit = a_idx.loc[key].get("unit")
        score_name = keys.EVAL_BPD if unit == "bpd" else keys.EVAL_NLL
        for metric, kind, sign in TESTED:
            row = _tested_row(key, metric, kind, sign, ra, rb, score_name)
            if row is not None:
                rows.append(row)
        rows += _stability_rows(key, a_idx.loc[key], b_idx.loc[key], tol)
    table = pd.DataFrame(rows, columns=_COLS)
    return _judge(table, tol) if len(table) else table


def _interval(r) -> str:
    if r.kind == "speed" and math.isfinite(r.ratio):
        return ratio.Ratio(r.ratio, r.ratio_lo, r.ratio_hi).text()
    if not (math.isfinite(r.lo) and math.isfinite(r.hi)):
        return "—"
    return f"[{r.lo:+.3g}, {r.hi:+.3g}]"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return "<1e-4" if value < 1e-4 else f"{value:.3g}"


def _text(spec_a: str, spec_b: str, runs_a: pd.DataFrame, runs_b: pd.DataFrame,
          table: pd.DataFrame, tol: Tolerance) -> str:
    lines = [(f"nfbench compare: A = {spec_a} ({len(runs_a)} runs)  vs  B = {spec_b} "
              f"({len(runs_b)} runs)"),
             (f"B is worse on a row when the change is significant (p < {tol.alpha:g}; paired "
              f"t-test over matching seeds, Welch's otherwise) and "
              f"larger than the effect: quality +{tol.quality:g}; speed {tol.speed:.0%} "
              f"(B's time over A's, ×ratio [95 % bootstrap interval over the blocks]: 'not "
              f"resolved' when it straddles 1 or lies within ±{ratio.RESOLUTION:.0%}); "
              f"invertibility ×{tol.invertibility:g}; non-finite steps +{tol.nonfinite:g}")]
    dev_a = sorted(map(str, runs_a["device"].dropna().unique()))
    dev_b = sorted(map(str, runs_b["device"].dropna().unique()))
    if dev_a != dev_b:
        lines.append(f"note: devices differ (A: {', '.join(dev_a)}; B: {', '.join(dev_b)}), "
                     "so speed rows compare machines as well as code")
    shown = table[table["kind"].isin(["quality", "speed"])]
    header = (f"{'':2}{'data set':<14}{'configuration':<28}{'metric':<24}{'A':>11}{'B':>11}"
              f"{'Δ':>10}  {'95 % CI of Δ; ×ratio':<22}{'p':>9}{'d':>8}  verdict")
    lines += ["", header]
    for r in shown.itertuples(index=False):
        mark = "✗" if r.worse else " "
        verdict = r.verdict + (f" ({r.note})" if r.note else "")
        effect = "—" if not math.isfinite(r.effect) else (
            "∞" if math.isinf(r.effect) else f"{r.effect:+.2g}")
        lines.append(f"{mark:<2}{str(r.dataset)[:13]:<14}{str(r.config)[:27]:<28}"
                     f"{str(r.metric)[:23]:<24}{fmt(r.a, 5):>11}{fmt(r.b, 5):>11}"
                     f"{fmt(r.delta, 3):>10}  {_interval(r):<22}{_p(r.p):>9}"
                     f"{effect:>8}  {verdict}")
    worse = table[table["worse"].astype(bool)]
    if len(worse):
        lines += ["", f"WORSE ({len(worse)} rows):"]
        for r in worse.itertuples(index=False):
            what = r.note if r.verdict == "missing in B" else f"{fmt(r.a)} → {fmt(r.b)}"
            if r.kind == "speed" and math.isfinite(r.ratio):
                what += f" (B's time over A's {_interval(r)})"
            elif r.kind in ("quality", "speed") and math.isfinite(r.p):
                what += f" (Δ {fmt(r.delta, 3)} {_interval(r)}, p {_p(r.p)})"
            lines.append(f"  ✗ {r.dataset} · {r.config} · {r.kind} {r.metric}: {what}")
    counts = worse["kind"].value_counts()
    untested = int((table["verdict"] == "untested").sum())
    only_a = int(((table["metric"] == "presence") & (table["note"] == "only in A")).sum())
    only_b = int(((table["metric"] == "presence") & (table["note"] == "only in B")).sum())
    if untested:
        lines += ["", (f"note: {untested} quality rows untested (one seed on a side): "
                       "run two seeds or more to compare them")]
    lines += ["", (f"{'WORSE' if len(worse) else 'OK'}: {len(worse)} rows worse (quality "
                   f"{counts.get('quality', 0)}, speed {counts.get('speed', 0)}, stability "
                   f"{counts.get('stability', 0)}); untested {untested}; configurations only "
                   f"in A: {only_a}, only in B: {only_b}")]
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
    table = compare_runs(runs_a, runs_b, tol)
    worse = bool(table["worse"].astype(bool).any()) if len(table) else False
    return CompareResult(a, b, table, worse, _text(a, b, runs_a, runs_b, table, tol))
