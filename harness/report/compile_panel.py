"""The compile panel: what a compiled runtime gains per architecture and operation, and what
compiling it costs.

Runs are paired: a compiled run (runtime ``compile`` / ``cuda-graphs``) with the eager run of
the same (data set, architecture label, dequantization, seed), both finished. Per pair and
operation the *steady-state ratio* is ``compiled_ms / eager_ms`` (below 1: the compiled view
is faster), from the timing phase's ``perf/*_ms`` (first quartile of the block times; compiling
happened before any block). Per (data set, architecture, runtime, operation):

- ``ratio``: the geometric mean of the pairs' ratios;
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

from .. import keys
from .html import Link, Raw, table
from .sections import Panel, Section
from .style import base_layout, esc, fmt, hover, no_data, unique

__all__ = ["OPERATIONS", "compile_frame", "compile_section", "figure_compile"]

OPERATIONS = {  # operation → its timed metric
    "density": keys.PERF_DENSITY_MS,
    "sampling": keys.PERF_SAMPLE_MS,
    "inverse": keys.PERF_INVERSE_MS,
    "train step": keys.PERF_TRAIN_STEP_MS,
}
_PAIR = ["dataset", "base_label", "dequant", "seed"]
COLUMNS = ["dataset", "architecture", "runtime", "operation", "pairs", "ratio", "eager_ms",
           "compiled_ms", "compile_s", "break_even", "graph_breaks", "recompiles", "url"]


def break_even(compile_s: float, eager_ms: float, compiled_ms: float) -> float | None:
    """Batches until compiling pays: ``1000 · compile_s / (eager_ms − compiled_ms)``; None
    when the compiled view is not faster (it never pays)."""
    saved = eager_ms - compiled_ms
    if not (math.isfinite(saved) and saved > 0 and math.isfinite(compile_s)):
        return None
    return 1000.0 * compile_s / saved


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(np.nan, index=df.index, dtype=float)


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
            e_mean, c_mean = float(e_ms[good].mean()), float(c_ms[good].mean())
            rows.append({
                "dataset": dataset, "architecture": label, "runtime": runtime,
                "operation": op, "pairs": int(good.sum()), "ratio": ratio,
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
                      ("eager ms", e), ("compiled ms", c), ("compile s", s),
                      ("break-even batches", "never" if b is None or pd.isna(b) else b))
                for x, r, e, c, s, b in zip(part["x"], part["ratio"], part["eager_ms"],
                                            part["compiled_ms"], part["compile_s"],
                                            part["break_even"])]
        fig.add_trace(go.Bar(x=[esc(x) for x in part["x"]], y=part["ratio"], name=esc(op),
                             customdata=part["url"], text=text, textposition="none",
                             hovertemplate="%{text}<extra></extra>"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#555")
    fig.update_layout(barmode="group")
    fig.update_yaxes(type="log", title_text="compiled ms ÷ eager ms (steady state)")
    return fig


def compile_section(runs: pd.DataFrame):
    """The compile section (None when the suite lacks either runtime)."""
    frame = compile_frame(runs)
    if frame.empty:
        return None
    sec = Section("compile", "Compiled against eager")
    rows = [[r.dataset, r.architecture, r.runtime, r.operation, r.pairs, fmt(r.ratio, 3),
             fmt(r.eager_ms, 4), fmt(r.compiled_ms, 4), fmt(r.compile_s, 3),
             "never" if r.break_even is None or pd.isna(r.break_even)
             else f"{r.break_even:,.0f}", fmt(r.graph_breaks, 3), fmt(r.recompiles, 3),
             Link(r.url, "MLflow")] for r in frame.itertuples(index=False)]
    after = table(["data set", "architecture", "runtime", "operation", "pairs",
                   "compiled ÷ eager", "eager ms", "compiled ms", "compile s",
                   "break-even batches", "graph breaks", "recompiles", "run"], rows,
                  numeric=[False, False, False, False, True, True, True, True, True, True,
                           True, True, False])
    caption = (
        "Each compiled run paired with the eager run of the same data set, architecture, "
        "dequantization and seed (both finished). Compiled ÷ eager: geometric mean over the "
        "pairs of the steady-state times (first quartile of the timing blocks, measured after "
        "compilation). Compile s: time to the first compiled call of every timed operation "
        "(perf/compile_s, the training step's included). Break-even batches = compile s × "
        "1000 ÷ (eager ms − compiled ms): after that many batches of the operation compiling "
        "has paid for itself; never when the compiled view is not faster.")
    sec.panels.append(Panel("compile-ratio", caption, frame.drop(columns=[]),
                            figure_compile(frame), Raw(after)))
    return sec
