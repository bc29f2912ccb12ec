"""Timing noise: per data set, the spread of every timing (the interquartile range of its
blocks over their median, the largest over seeds), noisy and contended ones flagged
(:func:`timing_noise_frame`, :func:`figure_timing_noise`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ... import keys
from ..html import Raw, table
from ..page import Panel, Section, slug
from ..style import base_layout, esc, fmt, no_data
from ..table import scored
from .base import Context

__all__ = ["ANCHOR", "ESTIMATOR_TEXT", "NOISY", "TITLE", "build", "figure_timing_noise",
           "timing_noise_frame"]

ANCHOR = "timing-noise"
TITLE = "Timing noise"
NOISY = 0.10  # a timing whose IQR is above this share of its median is flagged

ESTIMATOR_TEXT = ("Each timing is the first quartile of its blocks that ran at speed "
                  "(interference from other work only adds time, so a low quantile is the "
                  "robust estimate; a canary kernel between blocks reads the machine's speed); "
                  "the median and the IQR are recorded beside it (perf/*_ms_median, "
                  "perf/*_ms_iqr).")


def timing_noise_frame(runs: pd.DataFrame, threshold: float = NOISY) -> pd.DataFrame:
    """Per (dataset, config) and timed metric: the median over seeds of the estimator, the
    largest relative IQR (IQR / median of the blocks; the log-det's IQR over its block pairs /
    the median of the forward pass without it) over seeds, ``noisy`` (it is above
    ``threshold``), the mean blocks, how many of its runs were timed under contention, the
    most CPUs other processes kept busy and the largest slowdown the canary read."""
    cols = ["dataset", "config", "metric", "value", "rel_iqr", "noisy", "blocks",
            "contended_runs", "runs", "others_cpus", "slowdown", "url"]
    ok = scored(runs)
    parts = []
    forward_median = keys.spread_keys(keys.PERF_FORWARD_NOLOGDET_MS)[0]
    contended = (ok[keys.PERF_CONTENDED] > 0 if keys.PERF_CONTENDED in ok
                 else pd.Series(False, index=ok.index))
    others = ok.get(keys.PERF_OTHERS_CPUS, np.nan)
    slowdown = ok.get(keys.PERF_SLOWDOWN, np.nan)  # runs timed before the canary: none
    for key in keys.TIMED_MS:
        median, iqr, blocks = keys.spread_keys(key)
        # the log-det is a difference of two passes: its spread is read against the pass
        scale = forward_median if key == keys.PERF_LOGDET_MS else median
        if iqr not in ok or scale not in ok:
            continue
        frame = pd.DataFrame({
            "dataset": ok["dataset"], "config": ok["config"], "value": ok[key],
            "rel_iqr": (ok[iqr].astype(float) / ok[scale].astype(float).abs())
            .replace([np.inf, -np.inf], np.nan),
            "blocks": ok.get(blocks, np.nan), "contended": contended,
            "others": others, "slowdown": slowdown, "url": ok["url"]})
        frame = frame[ok[iqr].notna() & ok[scale].notna()]
        g = frame.groupby(["dataset", "config"], sort=True)
        out = g.agg(value=("value", "median"), rel_iqr=("rel_iqr", "max"),
                    blocks=("blocks", "mean"), contended_runs=("contended", "sum"),
                    runs=("value", "size"), others_cpus=("others", "max"),
                    slowdown=("slowdown", "max"), url=("url", "first")).reset_index()
        out.insert(2, "metric", key)
        parts.append(out)
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["noisy"] = out["rel_iqr"] > threshold
    out["contended_runs"] = out["contended_runs"].astype(int)
    return out[cols]


def figure_timing_noise(noise: pd.DataFrame, threshold: float = 0.10,
                        title: str = "Timing noise") -> go.Figure:
    """The largest relative IQR over seeds of each timing (configuration × metric) of one
    data set; cells above ``threshold`` are marked ``!`` and contended runs counted in the
    hover. ``noise``: :func:`timing_noise_frame` rows."""
    fig = go.Figure()
    if noise.empty:
        return no_data(base_layout(fig, title), "no timing spread recorded")
    configs = sorted(noise["config"].unique())
    metrics = list(dict.fromkeys(noise["metric"]))
    grid = noise.pivot_table(index="config", columns="metric", values="rel_iqr",
                             aggfunc="max").reindex(index=configs, columns=metrics)
    cont = noise.pivot_table(index="config", columns="metric", values="contended_runs",
                             aggfunc="max").reindex(index=configs, columns=metrics)
    text = [[("—" if not math.isfinite(v) else f"{v:.1%}" + (" !" if v > threshold else ""))
             for v in row] for row in grid.to_numpy(float)]
    hovers = [[f"{esc(c)} · {esc(m)}: IQR {t}, contended runs {fmt(k)}"
               for m, t, k in zip(metrics, trow, krow)]
              for c, trow, krow in zip(configs, text, cont.to_numpy(float))]
    fig.add_trace(go.Heatmap(
        z=grid.to_numpy(float), x=[esc(m.removeprefix(keys.PERF_PREFIX)) for m in metrics],
        y=[esc(c) for c in configs], text=text, texttemplate="%{text}", zmin=0,
        zmax=max(0.3, threshold * 2), colorscale="YlOrRd",
        colorbar={"title": {"text": "IQR /<br>median"}}, hovertext=hovers,
        hovertemplate="%{hovertext}<extra></extra>"))
    base_layout(fig, title, height=max(260, 120 + 28 * len(configs)))
    fig.update_yaxes(autorange="reversed")
    return fig


def build(ctx: Context) -> Section:
    """Per data set, the relative IQR of every timing; noisy and contended ones flagged."""
    sec = Section(ANCHOR, TITLE)
    noise = timing_noise_frame(ctx.runs)
    for dataset in pd.unique(noise["dataset"]) if len(noise) else []:
        part = noise[noise["dataset"] == dataset].reset_index(drop=True)
        flagged = part[part["noisy"] | (part["contended_runs"] > 0)]
        rows = [[r.config, r.metric, fmt(r.value, 4), f"{r.rel_iqr:.1%}",
                 "noisy" if r.noisy else "", f"{r.contended_runs} / {r.runs}",
                 fmt(r.others_cpus, 2), fmt(r.slowdown, 2)]
                for r in flagged.itertuples(index=False)]
        after = (table(["configuration", "timing", "ms", "IQR / median", "", "contended runs",
                        "other processes' CPUs", "slowdown (canary)"], rows,
                       numeric=[False, False, True, True, False, True, True, True]) if rows else
                 '<p class="caption">No timing on this data set is noisy or contended.</p>')
        caption = (
            f"Spread of each timing on {dataset}: the interquartile range of its "
            f"torch.utils.benchmark blocks over their median (the largest over seeds; the "
            f"log-det's over the forward pass). Cells above {NOISY:.0%} are "
            f"marked ! and listed below, with runs timed while other processes kept the free "
            f"CPUs busy or while the machine itself ran slow (contended; the slowdown is the "
            f"canary kernel's time between blocks over its fastest). {ESTIMATOR_TEXT}")
        sec.panels.append(Panel(f"timing-noise-{slug(str(dataset))}", caption, part,
                                figure_timing_noise(part, NOISY,
                                                    f"Timing noise: {dataset}"), Raw(after)))
    if not sec.panels:
        sec.note = ("No run recorded the spread of its timings (runs timed before nfbench "
                    "recorded it, or runs without a timing phase).")
    return sec
