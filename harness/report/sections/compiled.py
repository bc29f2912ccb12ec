"""The compile section: what a compiled runtime gains per architecture and operation, and what
compiling it costs.

Runs are paired: a compiled run (runtime ``compile`` / ``cuda-graphs``) with the eager run of
the same (data set, architecture label, dequantization, seed), both finished. Per pair and
operation the *steady-state ratio* is ``compiled_ms / eager_ms`` (below 1: the compiled view
is faster), from the timing phase's ``perf/*_ms`` (first quartile of the block times; compiling
happened before any block). Per (data set, architecture, runtime, operation):

- ``ratio``: where the runs recorded their blocks (tag ``nfbench.timing.blocks``), the mean
  compiled time over the mean eager time with its 95 % bootstrap interval ``ratio_lo`` –
  ``ratio_hi`` over the pairs' blocks (:mod:`harness.report.ratio`), and ``verdict``: faster,
  slower or *not resolved* (the interval straddles 1 or lies within ±5 % of it); otherwise
  the geometric mean of the pairs' ratios, with no interval;
- ``eager_ms``, ``compiled_ms``: the means over the pairs;
- ``compile_s``: the mean ``perf/compile_s`` (time to the first compiled call of every timed
  operation, the training step's included) of the compiled runs;
- ``break_even``: the batches after which compiling has paid for itself,

  .. math::
      n^* = \\frac{1000 \\cdot \\text{compile\\_s}}
      {\\text{eager\\_ms} - \\text{compiled\\_ms}}

  (None, shown "never", when the compiled view is not faster).

Shown only when a suite has both eager and compiled runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ... import keys
from .. import ratio as ratios
from ..html import Link, Raw, table
from ..page import Panel, Section
from ..style import base_layout, esc, fmt, hover, no_data, unique
from .base import Context

__all__ = ["ANCHOR", "OPERATIONS", "TITLE", "break_even", "build", "compile_frame",
           "figure_compile"]

ANCHOR = "compile"
TITLE = "Compiled against eager"

OPERATIONS = {  # operation → its timed metric
    "density": keys.PERF_DENSITY_MS,
    "sampling": keys.PERF_SAMPLE_MS,
    "inverse": keys.PERF_INVERSE_MS,
    "train step": keys.PERF_TRAIN_STEP_MS,
}
_PAIR = ["dataset", "base_label", "dequant", "seed"]
COLUMNS = ["dataset", "architecture", "runtime", "operation", "pairs", "ratio", "ratio_lo",
           "ratio_hi", "verdict", "eager_ms", "compiled_ms", "compile_s", "break_even",
           "graph_breaks", "recompiles", "url"]
_VERDICT = {"B slower": "compiled slower", "B faster": "compiled faster",
            "not resolved": "not resolved"}


def break_even(compile_s: float, eager_ms: float, compiled_ms: float) -> float | None:
    """Batches until compiling pays: ``1000 · compile_s / (eager_ms − compiled_ms)``; None
    when the compiled view is not faster (it never pays)."""
    saved = eager_ms - compiled_ms
    if not (math.isfinite(saved) and saved > 0 and math.isfinite(compile_s)):
        return None
    return 1000.0 * compile_s / saved


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(np.nan, index=df.index, dtype=float)


def _blocks(part: pd.DataFrame, column: str, key: str) -> list[list[float]]:
    """The runs' recorded block times of ``key`` (one list per run that has them)."""
    if column not in part:
        return []
    return [b for b in (ratios.blocks_of(tag, key) for tag in part[column]) if b]


def compile_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (data set, architecture, runtime, operation) with paired runs (module doc);
    ``runs`` from :func:`harness.report.table.prepare`. Empty without both runtimes."""
    if runs.empty or "runtime" not in runs:
        return pd.DataFrame(columns=COLUMNS)
    ok = runs[runs["ok"]]
    eager = ok[ok["runtime"] == "eager"]
    comp = ok[ok["runtime"] != "eager"]
    if eager.empty or comp.empty:
        return pd.DataFrame(columns=COLUMNS)
    eager = eager.drop_duplicates(_PAIR, keep="last")
    paired = comp.merge(eager, on=_PAIR, suffixes=("", "_eager"))
    rows = []
    for (dataset, label, runtime), part in paired.groupby(
            ["dataset", "base_label", "runtime"], sort=True):
        compile_s = float(_col(part, keys.PERF_COMPILE_S).mean())
        for op, key in OPERATIONS.items():
            if key not in part or f"{key}_eager" not in part:
                continue
            c_ms = part[key].astype(float)
            e_ms = part[f"{key}_eager"].astype(float)
            good = np.isfinite(c_ms) & np.isfinite(e_ms) & (c_ms > 0) & (e_ms > 0)
            if not good.any():
                continue
            ratio = float(np.exp(np.mean(np.log(c_ms[good] / e_ms[good]))))
            boot = ratios.ratio(*(_blocks(part[good], col, key) for col in
                                  (f"{keys.TAG_TIMING_BLOCKS}_eager", keys.TAG_TIMING_BLOCKS)))
            e_mean, c_mean = float(e_ms[good].mean()), float(c_ms[good].mean())
            rows.append({
                "dataset": dataset, "architecture": label, "runtime": runtime,
                "operation": op, "pairs": int(good.sum()),
                "ratio": boot.value if math.isfinite(boot.value) else ratio,
                "ratio_lo": boot.lo, "ratio_hi": boot.hi,
                "verdict": _VERDICT[boot.verdict] if math.isfinite(boot.value) else "",
                "eager_ms": e_mean, "compiled_ms": c_mean, "compile_s": compile_s,
                "break_even": break_even(compile_s, e_mean, c_mean),
                "graph_breaks": float(_col(part, keys.PERF_GRAPH_BREAKS).max()),
                "recompiles": float(_col(part, keys.PERF_RECOMPILES).max()),
                "url": str(part["url"].iloc[0]),
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def figure_compile(frame: pd.DataFrame, title: str = "Compiled ÷ eager") -> go.Figure:
    """Steady-state ratio compiled ÷ eager per architecture (x) and operation (bars), log
    scale, with the line at 1 (below: the compiled view is faster)."""
    fig = go.Figure()
    base_layout(fig, title, height=440)
    if frame.empty:
        return no_data(fig, "no pairs of compiled and eager runs")
    frame = frame.assign(x=[f"{a} · {r} · {d}" for a, r, d in
                            zip(frame["architecture"], frame["runtime"], frame["dataset"])])
    for op in unique(frame["operation"]):
        part = frame[frame["operation"] == op]
        text = [hover(("", x), ("operation", op), ("compiled ÷ eager", r),
                      ("95 % interval", _interval(lo, hi)), ("", v),
                      ("eager ms", e), ("compiled ms", c), ("compile s", s),
                      ("break-even batches", "never" if b is None or pd.isna(b) else b))
                for x, r, lo, hi, v, e, c, s, b in zip(
                    part["x"], part["ratio"], part["ratio_lo"], part["ratio_hi"],
                    part["verdict"], part["eager_ms"], part["compiled_ms"], part["compile_s"],
                    part["break_even"])]
        lo, hi = part["ratio_lo"].astype(float), part["ratio_hi"].astype(float)
        fig.add_trace(go.Bar(x=[esc(x) for x in part["x"]], y=part["ratio"], name=esc(op),
                             customdata=part["url"], text=text, textposition="none",
                             error_y={"type": "data", "visible": True,
                                      "array": (hi - part["ratio"]).fillna(0).clip(lower=0),
                                      "arrayminus": (part["ratio"] - lo).fillna(0)
                                      .clip(lower=0)},
                             hovertemplate="%{text}<extra></extra>"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#555")
    fig.update_layout(barmode="group")
    fig.update_yaxes(type="log", title_text="compiled ms ÷ eager ms (steady state)")
    return fig


def _interval(lo: float, hi: float) -> str:
    return f"{lo:.3f} – {hi:.3f}" if math.isfinite(lo) and math.isfinite(hi) else "—"


def build(ctx: Context) -> Section | None:
    """The compile section (None when the suite lacks either runtime)."""
    frame = compile_frame(ctx.runs)
    if frame.empty:
        return None
    sec = Section(ANCHOR, TITLE)
    rows = [[r.dataset, r.architecture, r.runtime, r.operation, r.pairs, fmt(r.ratio, 3),
             _interval(r.ratio_lo, r.ratio_hi), r.verdict or "—", fmt(r.eager_ms, 4),
             fmt(r.compiled_ms, 4), fmt(r.compile_s, 3),
             "never" if r.break_even is None or pd.isna(r.break_even)
             else f"{r.break_even:,.0f}", fmt(r.graph_breaks, 3), fmt(r.recompiles, 3),
             Link(r.url, "MLflow")] for r in frame.itertuples(index=False)]
    after = table(["data set", "architecture", "runtime", "operation", "pairs",
                   "compiled ÷ eager", "95 % interval", "verdict", "eager ms", "compiled ms",
                   "compile s",
                   "break-even batches", "graph breaks", "recompiles", "run"], rows,
                  numeric=[False, False, False, False, True, True, False, False, True, True,
                           True, True, True, True, False])
    caption = (
        "Each compiled run paired with the eager run of the same data set, architecture, "
        "dequantization and seed (both finished). Compiled ÷ eager: the mean compiled over "
        "the mean eager steady-state time (first quartile of the timing blocks, measured "
        "after compilation), with its 95 % bootstrap interval over the pairs' recorded blocks "
        "(runs, then blocks, resampled); 'not resolved' when the interval straddles 1 or "
        "lies within ±5 % of it (runs without recorded blocks: the geometric mean over the "
        "pairs, no interval). Compile s: time to the first compiled call of every timed operation "
        "(perf/compile_s, the training step's included). Break-even batches = compile s × "
        "1000 ÷ (eager ms − compiled ms): after that many batches of the operation compiling "
        "has paid for itself; never when the compiled view is not faster.")
    sec.panels.append(Panel("compile-ratio", caption, frame.drop(columns=[]),
                            figure_compile(frame), Raw(after)))
    return sec
