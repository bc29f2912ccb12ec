"""Quality figures: leaderboard, Pareto fronts, architecture × data set heat map, curves.

Each ``figure_*`` is a pure function of the tidy frame built for it in
:mod:`harness.report.derive` (the same frame is published beside the figure as CSV and
Parquet) and returns a Plotly figure. Every point carries its MLflow run's URL as
``customdata``; the page opens it on click.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import keys
from .style import arch_colour, base_layout, esc, fmt, hover, no_data, unique

__all__ = ["figure_curves", "figure_heatmap", "figure_leaderboard", "figure_pareto"]

THROUGHPUT = keys.PERF_SAMPLE_THROUGHPUT
DENSITY_MS = keys.PERF_DENSITY_MS


def _std(df: pd.DataFrame, col: str) -> np.ndarray:
    return df[f"{col} std"].fillna(0).to_numpy(float) if f"{col} std" in df else np.zeros(len(df))


def _error_x(part: pd.DataFrame) -> dict:
    """The 95 % interval over seeds (``ci_lo ci_hi``) where the frame has it, else ± std."""
    if "ci_lo" in part and "ci_hi" in part:
        score = part["score"].astype(float)
        return {"type": "data", "visible": True, "color": "#555",
                "array": (part["ci_hi"].astype(float) - score).fillna(0).clip(lower=0),
                "arrayminus": (score - part["ci_lo"].astype(float)).fillna(0).clip(lower=0)}
    return {"type": "data", "array": _std(part, "score"), "visible": True, "color": "#555"}


def figure_leaderboard(board: pd.DataFrame, title: str = "Leaderboard") -> go.Figure:
    """Score (bpd or NLL) per configuration with its interval over seeds, best at the top.

    ``board``: one data set's rows of :func:`harness.report.derive.leaderboard_frame`
    (``config arch reference score`` ``score std`` ``n_ok unit url``, optionally
    ``published published_model``, and the seed columns ``ci_lo ci_hi vs_best`` of
    :func:`harness.report.panels_stats.leaderboard_with_seeds`: then the bars are the 95 %
    bootstrap interval, else ± std, and stars mark the group tied with the best).
    Reference rows are grey squares; published figures are open diamonds on the same axis.
    """
    fig = go.Figure()
    base_layout(fig, title, height=max(260, 60 + 34 * len(board)))
    rows = board[np.isfinite(board["score"].astype(float))].sort_values("score", ascending=False)
    if rows.empty:
        return no_data(fig, "no finished run on this data set")
    unit = str(rows["unit"].iloc[0])
    for is_ref in (False, True):
        part = rows[rows["reference"].astype(bool) == is_ref]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(
            x=part["score"], y=[esc(c) for c in part["config"]], mode="markers",
            name="reference" if is_ref else "flows",
            marker={"symbol": "square" if is_ref else "circle", "size": 11,
                    "color": [arch_colour(a) for a in part["arch"]]},
            error_x=_error_x(part),
            customdata=part["url"],
            text=[hover(("", c), (f"{unit} mean", s), ("std", sd), ("seeds", n),
                        *((("against the best", v),) if isinstance(v, str) else ()))
                  for c, s, sd, n, v in zip(part["config"], part["score"],
                                            part["score std"], part["n_ok"],
                                            part.get("vs_best", [None] * len(part)))],
            hovertemplate="%{text}<extra></extra>",
        ))
    if "vs_best" in rows and rows["vs_best"].isin(["tied", "worse"]).any():  # tests ran
        tied = rows[rows["vs_best"].isin(["best", "tied"])]
        fig.add_trace(go.Scatter(
            x=tied["score"], y=[esc(c) for c in tied["config"]], mode="markers",
            name="tied with the best", hoverinfo="skip",
            marker={"symbol": "star-open", "size": 20, "color": "#000",
                    "line": {"width": 1.5}},
        ))
    if "published" in rows and rows["published"].notna().any():
        pub = rows[rows["published"].notna()]
        fig.add_trace(go.Scatter(
            x=pub["published"], y=[esc(c) for c in pub["config"]], mode="markers",
            name="published", marker={"symbol": "diamond-open", "size": 12, "color": "#000"},
            customdata=pub["url"],
            text=[hover(("", m), (unit, v)) for m, v in zip(pub["published_model"],
                                                            pub["published"])],
            hovertemplate="published: %{text}<extra></extra>",
        ))
    fig.update_xaxes(title_text=f"test {unit} (lower is better)")
    fig.update_yaxes(type="category", categoryorder="array",
                     categoryarray=[esc(c) for c in rows["config"]])
    return fig


def _front_line(part: pd.DataFrame, x: str) -> tuple[list, list]:
    """The front's points in increasing x (drawn as the staircase bounding what is reached)."""
    pts = part.sort_values(x)
    return list(pts[x]), list(pts["score"])


def figure_pareto(points: pd.DataFrame, title: str = "Pareto fronts") -> go.Figure:
    """Score against sampling throughput (left) and density-evaluation time (right).

    ``points``: :func:`harness.report.derive.pareto_frame` rows of one data set
    (``config arch reference score url perf/sample_throughput perf/density_ms front_sampling
    front_density``). The front (no configuration is both better and faster) is drawn as a
    staircase; references are squares.
    """
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("against sampling throughput",
                                        "against density-evaluation time"))
    base_layout(fig, title, height=440)
    if points.empty:
        return no_data(fig, "no finished run with timings")
    unit = str(points["unit"].iloc[0])
    for col, (x, front, x_high) in enumerate(
        ((THROUGHPUT, "front_sampling", True), (DENSITY_MS, "front_density", False)), start=1
    ):
        part = points[np.isfinite(points[x].astype(float)) & np.isfinite(points["score"])]
        for arch in unique(part["arch"]):
            sub = part[part["arch"] == arch]
            fig.add_trace(go.Scatter(
                x=sub[x], y=sub["score"], mode="markers", name=esc(arch), legendgroup=arch,
                showlegend=col == 1,
                marker={"size": np.where(sub[front], 13, 9), "color": arch_colour(arch),
                        "symbol": ["square" if r else "circle" for r in sub["reference"]],
                        "line": {"width": np.where(sub[front], 2, 0), "color": "#000"}},
                customdata=sub["url"],
                text=[hover(("", c), (unit, s), (x, v), ("on front", bool(f)))
                      for c, s, v, f in zip(sub["config"], sub["score"], sub[x], sub[front])],
                hovertemplate="%{text}<extra></extra>",
            ), row=1, col=col)
        on = part[part[front].astype(bool)]
        if len(on):
            fx, fy = _front_line(on, x)
            fig.add_trace(go.Scatter(  # best score reachable at ≥ x throughput / ≤ x time
                x=fx, y=fy, mode="lines", line={"shape": "vh" if x_high else "hv",
                                                "color": "#444", "dash": "dot"},
                name="Pareto front", showlegend=col == 1, hoverinfo="skip",
            ), row=1, col=col)
        fig.update_xaxes(type="log", row=1, col=col,
                         title_text="samples / s (higher is better)" if x_high
                         else "ms per batch (lower is better)")
    fig.update_yaxes(title_text=f"test {unit}", row=1, col=1)
    return fig


def figure_heatmap(cells: pd.DataFrame, title: str = "Architecture × data set") -> go.Figure:
    """Relative score per architecture (rows) and data set (columns).

    ``cells``: :func:`harness.report.derive.heatmap_frame` (``row column score unit relative
    url``). Colour is ``relative`` = (score − best) / (worst − best) within the column
    (0 = best there); the text is the score itself.
    """
    fig = go.Figure()
    if cells.empty:
        return no_data(base_layout(fig, title), "no finished runs")
    columns = unique(cells["column"])
    rows = sorted(unique(cells["row"]))

    def grid(values: str) -> pd.DataFrame:
        return cells.pivot_table(index="row", columns="column", values=values,
                                 aggfunc="first").reindex(index=rows, columns=columns)

    units = dict(zip(cells["column"], cells["unit"]))
    text = [[fmt(v, 3) for v in row] for row in grid("score").to_numpy()]
    fig.add_trace(go.Heatmap(
        z=grid("relative").to_numpy(float), x=[esc(f"{c} ({units[c]})") for c in columns],
        y=[esc(r) for r in rows], text=text, texttemplate="%{text}",
        customdata=grid("url").fillna("").to_numpy(object), colorscale="RdYlGn_r", zmin=0,
        zmax=1, colorbar={"title": {"text": "0 best<br>1 worst"}},
        hovertemplate="%{y} on %{x}: %{text}<extra></extra>",
    ))
    base_layout(fig, title, height=max(300, 120 + 28 * len(rows)))
    fig.update_yaxes(autorange="reversed")
    return fig


def _numbers(values: pd.Series, digits: int = 4) -> np.ndarray:
    """Numbers as short strings, vectorised (``—`` for missing)."""
    arr = values.to_numpy(float)
    out = np.char.mod(f"%.{digits}g", np.nan_to_num(arr))
    return np.where(np.isfinite(arr), out, "—")


def figure_curves(bands: pd.DataFrame, title: str = "Training curves") -> go.Figure:
    """bpd / NLL against step (left) and wall time (right), mean ± std over seeds.

    ``bands``: :func:`harness.report.derive.curve_frame` rows of one data set (``config arch
    key step wall_s mean std n url``); training keys are solid with a band (± one std),
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
