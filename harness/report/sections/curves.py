"""The training curves: training and validation bpd / NLL of finished runs against the
optimiser step and the seconds of training, mean ± std over seeds per configuration
(:func:`curve_frame`, :func:`figure_curves`). :data:`CURVES_SHOWN` names the metric histories
the writer loads for them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ... import keys
from ..page import Section
from ..style import arch_colour, base_layout, esc, no_data
from .base import Context, per_dataset

__all__ = ["ANCHOR", "CURVES_SHOWN", "TITLE", "build", "curve_frame", "figure_curves"]

ANCHOR = "curves"
TITLE = "Training curves"
CURVES_SHOWN = (keys.TRAIN_NLL, keys.TRAIN_BPD, keys.VAL_NLL, keys.VAL_BPD)  # what pages draw


def curve_frame(runs: pd.DataFrame, curves: pd.DataFrame, agg: pd.DataFrame,
                max_points: int = 200) -> pd.DataFrame:
    """Training and validation bpd / NLL per configuration and step over finished runs:
    ``mean``, ``std`` (ddof 1), ``n`` seeds, ``wall_s`` (mean seconds of training at that
    step); at most ``max_points`` steps per line (evenly thinned, the last kept)."""
    cols = ["dataset", "config", "arch", "unit", "key", "step", "wall_s", "mean", "std", "n",
            "url"]
    ok = runs.loc[runs["ok"], ["run_id", "dataset", "config", "arch", "unit", "kind"]]
    if ok.empty or curves.empty:
        return pd.DataFrame(columns=cols)
    wanted = {"discrete": (keys.TRAIN_BPD, keys.VAL_BPD),
              "continuous": (keys.TRAIN_NLL, keys.VAL_NLL)}
    pairs = pd.DataFrame([(k, key) for k, ks in wanted.items() for key in ks],
                         columns=["kind", "key"])
    sel = ok.merge(pairs, on="kind").merge(curves, on=["run_id", "key"])
    sel = sel[np.isfinite(sel["value"])]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    g = sel.groupby(["dataset", "config", "key", "step"], sort=True)
    out = g.agg(arch=("arch", "first"), unit=("unit", "first"), wall_s=("wall_s", "mean"),
                mean=("value", "mean"), std=("value", "std"), n=("value", "size"))
    out = out.reset_index()
    position = out.groupby(["dataset", "config", "key"]).cumcount()
    length = out.groupby(["dataset", "config", "key"])["step"].transform("size")
    stride = np.ceil(length / max_points).astype(int)
    out = out[(position % stride == 0) | (position == length - 1)]
    url = agg.set_index(["dataset", "config"])["url"]
    out["url"] = url.reindex(pd.MultiIndex.from_frame(out[["dataset", "config"]])).to_numpy()
    return out[cols].reset_index(drop=True)


def _numbers(values: pd.Series, digits: int = 4) -> np.ndarray:
    """Numbers as short strings, vectorised (``—`` for missing)."""
    arr = values.to_numpy(float)
    out = np.char.mod(f"%.{digits}g", np.nan_to_num(arr))
    return np.where(np.isfinite(arr), out, "—")


def figure_curves(bands: pd.DataFrame, title: str = "Training curves") -> go.Figure:
    """bpd / NLL against step (left) and wall time (right), mean ± std over seeds.

    ``bands``: :func:`curve_frame` rows of one data set (``config arch key step wall_s mean
    std n url``); training keys are solid with a band (± one std),
    validation keys dashed. A line links to its representative run through its ``meta.url``
    (not one URL per point: that would double the page). Traces are built as plain dicts
    without Plotly's per-property validation (a suite of 1,000 runs has hundreds of lines
    here); the tests validate them.
    """
    grid = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                         subplot_titles=("against training step", "against wall time"))
    base_layout(grid, title, height=440)
    if bands.empty:
        return no_data(grid, "no curves recorded")
    traces: list[dict] = []
    for config, part in bands.groupby("config", sort=True):
        colour = arch_colour(str(part["arch"].iloc[0]))
        name = esc(config)
        for key, line in sorted(part.groupby("key"), key=lambda kv: kv[0], reverse=True):
            line = line.sort_values("step")
            train = key.startswith(keys.TRAIN_PREFIX)
            text = np.char.add(np.char.add(_numbers(line["mean"]), " ± "),
                               np.char.add(_numbers(line["std"], 2), np.char.add(
                                   " · seeds: ", line["n"].to_numpy().astype(str))))
            url = str(line["url"].iloc[0])
            for col, x in enumerate(("step", "wall_s"), start=1):
                axes = {"xaxis": "x" if col == 1 else "x2", "yaxis": "y" if col == 1 else "y2"}
                xs = line[x].to_numpy(float)
                if train and line["std"].notna().any():
                    sd = line["std"].fillna(0).to_numpy(float)
                    mean = line["mean"].to_numpy(float)
                    traces.append({
                        "type": "scatter", "x": np.r_[xs, xs[::-1]],
                        "y": np.r_[mean + sd, (mean - sd)[::-1]], "fill": "toself",
                        "fillcolor": colour, "opacity": 0.18, "line": {"width": 0},
                        "hoverinfo": "skip", "showlegend": False, "legendgroup": name, **axes,
                    })
                traces.append({
                    "type": "scatter", "x": xs, "y": line["mean"].to_numpy(float),
                    "mode": "lines", "legendgroup": name,
                    "name": name if train else f"{name} ({esc(key)})",
                    "showlegend": col == 1 and train,
                    "line": {"color": colour, "dash": "solid" if train else "dash",
                             "width": 2 if train else 1.2},
                    "meta": {"url": url}, "text": text,  # one link per line: its run
                    "hovertemplate": f"{name}<br>{esc(key)}<br>"
                    + ("step %{x}" if col == 1 else "%{x:.3g} s") + "<br>%{text}<extra></extra>",
                    **axes,
                })
    fig = go.Figure(data=traces, layout=grid.layout, _validate=False)
    unit = str(bands["unit"].iloc[0]) if "unit" in bands else ""
    fig.layout.yaxis.title.text = esc(unit)
    fig.layout.xaxis.title.text = "step"
    fig.layout.xaxis2.title.text = "seconds of training"
    return fig


def build(ctx: Context) -> Section:
    """One panel per data set with curves."""
    return per_dataset(
        ctx.runs, curve_frame(ctx.runs, pd.DataFrame(ctx.curves), ctx.agg), ANCHOR, TITLE,
        figure_curves,
        "Training (solid, band = ± one standard deviation over seeds) and validation (dashed) "
        "bpd / NLL of finished runs, against the optimiser step and the seconds of training "
        "(mean over seeds at each step).")
