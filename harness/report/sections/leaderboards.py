"""The leaderboards: per data set, each configuration's test score with its interval over
seeds, where it stands against the best, its speed and size, and the published figures.

The frame (:func:`leaderboard_frame`, with the seed columns of :func:`leaderboard_with_seeds`)
is what the figure draws and the page publishes beside it; :func:`figure_leaderboard` draws
one data set's rows; :func:`leaderboard_table` is the table under it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ... import keys
from .. import stats
from ..html import Link, Raw, table
from ..page import Panel, Section, slug
from ..pairwise import seed_frame
from ..published import published_for
from ..style import arch_colour, base_layout, esc, fmt, hover, no_data
from ..table import provenance
from .base import ID, Context, columns

__all__ = ["ANCHOR", "TITLE", "build", "figure_leaderboard", "interval_text",
           "leaderboard_frame", "leaderboard_table", "leaderboard_with_seeds", "vs_best_text"]

ANCHOR = "leaderboards"
TITLE = "Leaderboards"
ALPHA = stats.ALPHA


def leaderboard_frame(agg: pd.DataFrame) -> pd.DataFrame:
    """Per data set, configurations ranked by mean score, with the published figures.

    ``published`` is the first published value for the architecture on that data set and
    ``published_model`` names it; ``published_all`` lists every matching row with its source.
    None where the data set's options change its numbers (``n_bits=5``: not what was published).
    """
    cols = [*ID, "n_runs", "n_ok", "seeds", "score", "score std", keys.EVAL_BPD_IW,
            keys.EVAL_NLL_GAP, keys.PERF_SAMPLE_THROUGHPUT, keys.PERF_DENSITY_MS,
            keys.PERF_TRAIN_STEP_MS, "flow.params", "standard_data", "url", "model_url"]
    board = columns(agg, cols)
    board["model_url"] = board["model_url"].fillna("")
    pub_value, pub_model, pub_all, pub_source = [], [], [], []
    names = board["dataset_name"] if "dataset_name" in board else board["dataset"]
    standard = board["standard_data"] if "standard_data" in board else [True] * len(board)
    for dataset, arch, unit, std in zip(names, board["arch"], board["unit"], standard):
        hit = published_for(str(dataset), str(arch))
        hit = hit[hit["unit"] == unit] if bool(std) else hit.iloc[:0]
        pub_value.append(float(hit["value"].iloc[0]) if len(hit) else np.nan)
        pub_model.append(str(hit["model"].iloc[0]) if len(hit) else "")
        pub_all.append("; ".join(f"{v:.2f} ({m}, {s})" for v, m, s in
                                 zip(hit["value"], hit["model"], hit["source"])))
        pub_source.append("; ".join(dict.fromkeys(hit["source"])))
    board["published"] = pub_value
    board["published_model"] = pub_model
    board["published_all"] = pub_all
    board["published_source"] = pub_source
    board["rank"] = board.groupby("dataset")["score"].rank(method="min")
    board = board.sort_values(["dataset", "score"], na_position="last", kind="stable")
    return board.reset_index(drop=True)


def leaderboard_with_seeds(board: pd.DataFrame, runs: pd.DataFrame,
                           pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """``board`` (:func:`leaderboard_frame`) with the seed interval ``ci_lo ci_hi`` and
    ``vs_best p_best poi_best effect_best`` of :func:`harness.report.pairwise.seed_frame`
    (``pairs``: its :func:`~harness.report.pairwise.pairs_frame`)."""
    seeds = seed_frame(runs, ALPHA, pairs)
    cols = ["ci_lo", "ci_hi", "vs_best", "p_best", "poi_best", "effect_best"]
    if seeds.empty:
        return board.assign(**{c: pd.Series(dtype=float) for c in cols})
    return board.merge(seeds[["dataset", "config", *cols]], on=["dataset", "config"],
                       how="left")


def interval_text(score: float, lo: float, hi: float, n: int) -> str:
    """``mean [lo, hi]``, or ``mean (one seed)``."""
    if not math.isfinite(score):
        return "—"
    if n <= 1 or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(score)} (one seed)"
    return f"{fmt(score)} [{fmt(lo)}, {fmt(hi)}]"


def vs_best_text(verdict: object, p: float, poi: float) -> str:
    if not isinstance(verdict, str):
        return "—"
    if verdict == "best":
        return "best"
    if verdict == "untested":
        return "untested (one seed)"
    detail = f"p = {fmt(p, 2)}" + (f", P(best better) = {poi:.2f}" if math.isfinite(poi)
                                   else "")
    return f"{'tied with best' if verdict == 'tied' else 'worse'} ({detail})"


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

    ``board``: one data set's rows of :func:`leaderboard_frame` (``config arch reference
    score`` ``score std`` ``n_ok unit url``, optionally ``published published_model``, and
    the seed columns ``ci_lo ci_hi vs_best`` of :func:`leaderboard_with_seeds`: then the bars
    are the 95 % bootstrap interval, else ± std, and stars mark the group tied with the best).
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


def leaderboard_table(board: pd.DataFrame) -> str:
    """The table under one data set's figure (trusted HTML; text from runs is escaped)."""
    unit = str(board["unit"].iloc[0]) if len(board) else ""
    extra = [c for c in (keys.EVAL_BPD_IW, keys.EVAL_NLL_GAP) if board[c].notna().any()]
    cols = ["#", "configuration", f"{unit} mean [95 % CI]", "against the best",
            "seeds (finished / runs)", *extra,
            "samples / s", "density ms", "parameters", "published", "run", "model"]
    rows, classes = [], []
    for d in board.to_dict("records"):
        rows.append([
            "" if pd.isna(d["rank"]) else int(d["rank"]), d["config"],
            interval_text(d["score"], d["ci_lo"], d["ci_hi"], d["n_ok"]),
            vs_best_text(d["vs_best"], d["p_best"], d["poi_best"]),
            f"{d['n_ok']} / {d['n_runs']} ({d['seeds'] or '—'})",
            *[fmt(d[c]) for c in extra],
            fmt(d[keys.PERF_SAMPLE_THROUGHPUT]), fmt(d[keys.PERF_DENSITY_MS]),
            fmt(d["flow.params"]), d["published_all"] or "—", Link(d["url"], "MLflow"),
            Link(d["model_url"], "model") if d.get("model_url") else "—",
        ])
        classes.append("ref" if d["reference"] else "")
    numeric = [True, False, True, False, False, *[True] * len(extra), True, True, True, False,
               False, False]
    return table(cols, rows, numeric=numeric, row_classes=classes)


def build(ctx: Context) -> Section:
    """One panel per data set: the figure, the table under it, the frame as its data."""
    runs = ctx.runs
    board = leaderboard_with_seeds(leaderboard_frame(ctx.agg), runs, ctx.pairs)
    sec = Section(ANCHOR, TITLE)
    for dataset in pd.unique(board["dataset"]):
        part = board[board["dataset"] == dataset]
        unit = part["unit"].iloc[0]
        sources = sorted({s for s in part["published_source"] if s})
        what = ("bits per dimension, dequantization and every preprocessing Jacobian "
                "included" if unit == "bpd" else "nats per example")
        published = (f" ({'; '.join(sources)}: their own protocols and budgets)" if sources
                     else " (none published for this data set)")
        caption = (
            f"Test {unit} on {dataset} ({what}) of each configuration's best-validation "
            "checkpoint: mean over finished seeds with its 95 % bootstrap interval (percentile, "
            "10,000 resamples; none with one seed, and with few seeds no wider than their "
            "range); lower is better. Stars mark the configurations statistically tied with "
            "the best (Holm-corrected p ≥ 0.05 against it: paired t-test over shared seeds, "
            "Welch's otherwise; see Pairwise significance). Grey rows are the reference "
            "baselines (Gaussian, "
            f"histogram); diamonds are published figures{published}. Failed and diverged runs "
            f"are not averaged (see Runs). {provenance(runs[runs['dataset'] == dataset])}"
        )
        after = leaderboard_table(part)
        sec.panels.append(Panel(f"leaderboard-{slug(str(dataset))}", caption, part,
                                figure_leaderboard(part, f"{dataset}: test {unit}"), Raw(after)))
    if not sec.panels:
        sec.note = "No runs."
    return sec
