"""The tuning section: what tuning cost and what it bought (best so far, sensitivity, gain,
and their table); none for a suite without studies.

The frames are pure functions of DataFrames; each ``figure_*`` draws one of them, every
point carrying its MLflow run's URL (a trial's, or a study's). Inputs: the study and trial
runs of a suite (:func:`harness.tracking.read.load_runs` with ``kinds=("study", "trial")``)
and the suite's prepared job runs (:func:`harness.report.table.prepare`). Every score is the
study's objective on the *validation* split (lower is better); the gain is on the *test* split.

* :func:`trials_frame`: one row per trial: its study, number, best validation objective,
  compute, why it stopped, and the best so far of its study in two orders: the trials' own
  order (``best_by_trial`` after ``n`` trials) and the order they ended in, against the
  compute spent until then (``best_by_compute`` after ``compute_cum`` CPU- or GPU-hours);
* :func:`sensitivity_frame`: one row per study: the spread of its trials' best scores
  (standard deviation, interquartile range, range) and the share of trials within
  :data:`NEAR` of its best (in the objective's unit: bpd, or nats);
* :func:`gain_frame`: one row per study: the test score of the untuned rows and of the tuned
  rows (mean over seeds) and the gain ``default − tuned`` (> 0: tuning helped), with a
  Welch 95 % confidence interval over the seeds (t distribution with Welch–Satterthwaite
  degrees of freedom; none with fewer than two seeds on either side):

  .. math:: \\Delta \\pm t_{0.975,\\nu}\\sqrt{s_d^2/n_d + s_t^2/n_t},\\qquad
     \\nu = \\frac{(s_d^2/n_d + s_t^2/n_t)^2}{\\frac{(s_d^2/n_d)^2}{n_d - 1}
     + \\frac{(s_t^2/n_t)^2}{n_t - 1}}.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ... import keys
from ..html import Link, Raw, table
from ..page import Panel, Section
from ..style import arch_colour, base_layout, esc, fmt, hover, no_data
from ..table import run_url
from .base import Context

__all__ = ["ANCHOR", "NEAR", "TITLE", "TUNING_KINDS", "build", "figure_best_so_far",
           "figure_gain", "figure_sensitivity", "gain_frame", "sensitivity_frame",
           "study_frame", "trials_frame", "with_urls"]

ANCHOR = "tuning"
TITLE = "Tuning: what it cost and what it bought"
TUNING_KINDS = (keys.KIND_STUDY, keys.KIND_TRIAL)

NEAR = 0.05  # "within 0.05 of the best": bpd for a bpd objective, else nats

STUDY_COLUMNS = ["study", "run_id", "arch", "arch_label", "dataset", "dequant", "objective",
                 "status", "trials", "best", "cpu_hours", "gpu_hours", "unit", "url"]


def _col(df: pd.DataFrame, name: str, default=np.nan) -> pd.Series:
    return df[name] if name in df else pd.Series(default, index=df.index)


def _unit(objective: object) -> str:
    if objective == "bpd":
        return "bpd"
    if objective == "nll":
        return "nats"
    return "bpd / nats"


def with_urls(tuning: pd.DataFrame, ui_base: str) -> pd.DataFrame:
    """The study and trial runs with the MLflow UI page of each (column ``url``)."""
    out = tuning.copy()
    out["url"] = [run_url(ui_base, str(e), r)
                  for e, r in zip(_col(out, "experiment_id"), out["run_id"])]
    return out


def study_frame(tuning: pd.DataFrame) -> pd.DataFrame:
    """One row per study run (see :data:`STUDY_COLUMNS`); ``tuning`` from :func:`with_urls`."""
    st = tuning[_col(tuning, keys.TAG_KIND) == keys.KIND_STUDY]
    if st.empty:
        return pd.DataFrame(columns=STUDY_COLUMNS)
    out = pd.DataFrame({
        "study": _col(st, keys.TAG_STUDY).astype(str),
        "run_id": st["run_id"],
        "arch": _col(st, keys.TAG_ARCH).astype(str),
        "arch_label": _col(st, keys.TAG_ARCH_LABEL).astype(str),
        "dataset": _col(st, keys.TAG_DATASET).astype(str),
        "dequant": _col(st, keys.TAG_DEQUANT).fillna("none").astype(str),
        "objective": _col(st, "tune.objective").fillna("native").astype(str),
        "status": _col(st, keys.TAG_STATUS).fillna(keys.STATUS_RUNNING).astype(str),
        "trials": _col(st, keys.TUNE_TRIALS).astype(float),
        "best": _col(st, keys.TUNE_BEST).astype(float),
        "cpu_hours": _col(st, keys.TUNE_CPU_HOURS).astype(float),
        "gpu_hours": _col(st, keys.TUNE_GPU_HOURS).astype(float),
    })
    # the native objective: bpd where the study's trials logged a validation bpd
    trials = tuning[_col(tuning, keys.TAG_KIND) == keys.KIND_TRIAL]
    bpd = _col(trials, keys.VAL_BPD).notna().groupby(_col(trials, keys.TAG_STUDY)).any()
    out["unit"] = [_unit(o) if o != "native" else ("bpd" if bpd.get(k, False) else "nats")
                   for o, k in zip(out["objective"], out["study"])]
    out["url"] = _col(st, "url", "").astype(str)
    return out.reset_index(drop=True)


def trials_frame(tuning: pd.DataFrame) -> pd.DataFrame:
    """One row per trial, with its study's best-so-far curves (see the module docstring)."""
    cols = ["study", "arch_label", "dataset", "dequant", "number", "n", "best", "stopped_by",
            "status", "steps", "compute", "compute_unit", "end_time", "best_by_trial",
            "end_rank", "compute_cum", "best_by_compute", "url"]
    studies = study_frame(tuning)
    tr = tuning[_col(tuning, keys.TAG_KIND) == keys.KIND_TRIAL]
    if tr.empty or studies.empty:
        return pd.DataFrame(columns=cols)
    # a trial names its study's key (its parent run id is MLflow's tag, not read here)
    parent = _col(tr, keys.TAG_STUDY).astype(str)
    by_run = studies.drop_duplicates("study").set_index("study")
    tr = tr[parent.isin(by_run.index)]
    parent = parent[tr.index]
    if tr.empty:
        return pd.DataFrame(columns=cols)
    gpu = _col(tr, keys.TUNE_GPU_HOURS).fillna(0).astype(float)
    cpu = _col(tr, keys.TUNE_CPU_HOURS).fillna(0).astype(float)
    frame = pd.DataFrame({
        "study": parent.to_numpy(),
        "arch_label": by_run.loc[parent, "arch_label"].to_numpy(),
        "dataset": by_run.loc[parent, "dataset"].to_numpy(),
        "dequant": by_run.loc[parent, "dequant"].to_numpy(),
        "number": pd.to_numeric(_col(tr, keys.TAG_TRIAL_NUMBER), errors="coerce").fillna(-1)
        .astype(int).to_numpy(),
        "best": _col(tr, keys.TUNE_BEST).astype(float).to_numpy(),
        "stopped_by": _col(tr, keys.TAG_STOPPED_BY).fillna("").astype(str).to_numpy(),
        "status": _col(tr, keys.TAG_STATUS).fillna(keys.STATUS_RUNNING).astype(str).to_numpy(),
        "steps": _col(tr, keys.TUNE_STEPS).astype(float).to_numpy(),
        "compute": np.where(gpu > 0, gpu, cpu),
        "compute_unit": np.where(gpu > 0, "GPU-hours", "CPU-hours"),
        "end_time": _col(tr, "end_time").to_numpy(),
        "url": _col(tr, "url", "").astype(str).to_numpy(),
    })
    frame["best"] = frame["best"].where(np.isfinite(frame["best"]), np.nan)
    parts = []
    for _, part in frame.groupby("study", sort=False):
        part = part.sort_values("number", kind="stable").copy()
        part["n"] = np.arange(1, len(part) + 1)
        part["best_by_trial"] = part["best"].cummin()
        ended = part.sort_values(["end_time", "number"], kind="stable", na_position="last")
        ended = ended.assign(end_rank=np.arange(1, len(ended) + 1),
                             compute_cum=ended["compute"].cumsum(),
                             best_by_compute=ended["best"].cummin())
        parts.append(part.join(ended[["end_rank", "compute_cum", "best_by_compute"]]))
    return pd.concat(parts)[cols].reset_index(drop=True)


def sensitivity_frame(trials: pd.DataFrame, studies: pd.DataFrame) -> pd.DataFrame:
    """One row per study: spread of its trials' best validation scores (see the module)."""
    cols = ["study", "arch_label", "dataset", "dequant", "unit", "trials", "scored", "best",
            "median", "std", "iqr", "worst", "near_best", "near_share", "asha_stopped",
            "cpu_hours", "gpu_hours"]
    rows = []
    for s in studies.itertuples(index=False):
        part = trials[trials["study"] == s.study]
        scores = part["best"].dropna().to_numpy(float)
        best = float(scores.min()) if len(scores) else math.nan
        near = int((scores <= best + NEAR).sum()) if len(scores) else 0
        q1, q3 = (np.percentile(scores, [25, 75]) if len(scores) else (math.nan, math.nan))
        rows.append([s.study, s.arch_label, s.dataset, s.dequant, s.unit, len(part),
                     len(scores), best, float(np.median(scores)) if len(scores) else math.nan,
                     float(scores.std(ddof=1)) if len(scores) > 1 else math.nan, q3 - q1,
                     float(scores.max()) if len(scores) else math.nan, near,
                     near / len(part) if len(part) else math.nan,
                     int((part["stopped_by"] == keys.STOP_ASHA).sum()), s.cpu_hours,
                     s.gpu_hours])
    return pd.DataFrame(rows, columns=cols)


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Half-width of the 95 % interval of mean(a) − mean(b), and its degrees of freedom."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    from scipy import stats

    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    if se2 == 0:
        return 0.0, math.inf
    dof = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(stats.t.ppf(0.975, dof) * math.sqrt(se2)), float(dof)


def gain_frame(studies: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Test score of the untuned and the tuned rows of each study, and the gain."""
    cols = ["study", "arch_label", "tuned_label", "dataset", "dequant", "unit", "default",
            "default_n", "tuned", "tuned_n", "gain", "gain_ci", "dof", "url"]
    if studies.empty or runs.empty:
        return pd.DataFrame(columns=cols)
    ok = runs[runs["ok"]]
    tag = _col(ok, keys.TAG_STUDY)
    rows = []
    for s in studies.itertuples(index=False):
        same = ok[(ok["dataset_name"] == s.dataset) & (ok["dequant"] == s.dequant)]
        tuned = same[tag.loc[same.index] == s.study]
        default = same[(same["arch_label"] == s.arch_label) & tag.loc[same.index].isna()]
        d, t = default["score"].to_numpy(float), tuned["score"].to_numpy(float)
        half, dof = _welch(d, t)
        gain = float(d.mean() - t.mean()) if len(d) and len(t) else math.nan
        rows.append([s.study, s.arch_label,
                     str(tuned["arch_label"].iloc[0]) if len(tuned) else "",
                     s.dataset, s.dequant,
                     str(same["unit"].iloc[0]) if len(same) else "",
                     float(d.mean()) if len(d) else math.nan, len(d),
                     float(t.mean()) if len(t) else math.nan, len(t), gain, half, dof, s.url])
    return pd.DataFrame(rows, columns=cols)


_REASON_SYMBOL = {"steps": "circle", "asha": "x", "budget": "square", "minutes": "square",
                  "diverged": "triangle-up", "error": "triangle-up"}


def _name(row) -> str:
    return f"{row['arch_label']} · {row['dataset']}"


def figure_best_so_far(trials: pd.DataFrame, title: str = "Best so far") -> go.Figure:
    """Left: each study's best validation objective after n trials (in the trials' order);
    right: the same against the compute its ended trials had spent."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09,
                        subplot_titles=("against trials", "against compute"))
    base_layout(fig, title, height=420)
    if trials.empty or trials["best"].notna().sum() == 0:
        return no_data(fig, "no trial reached a finite validation score")
    for study, part in trials.groupby("study", sort=False):
        first = part.iloc[0]
        name, colour = esc(_name(first)), arch_colour(str(first["arch_label"]).split("(")[0])
        by_n = part.sort_values("n")
        by_c = part.sort_values("end_rank")
        common = {"mode": "lines+markers", "legendgroup": str(study), "line": {"shape": "hv"},
                  "marker": {"color": colour, "size": 7},
                  "hovertemplate": "%{text}<extra></extra>"}
        fig.add_trace(go.Scatter(
            x=by_n["n"], y=by_n["best_by_trial"], name=name, customdata=by_n["url"],
            text=[hover(("", _name(r)), ("trials", r["n"]), ("best so far", r["best_by_trial"]),
                        ("this trial", r["best"]), ("stopped by", r["stopped_by"]))
                  for _, r in by_n.iterrows()], **common), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=by_c["compute_cum"], y=by_c["best_by_compute"], name=name, showlegend=False,
            customdata=by_c["url"],
            text=[hover(("", _name(r)), (r["compute_unit"], r["compute_cum"]),
                        ("best so far", r["best_by_compute"])) for _, r in by_c.iterrows()],
            **common), row=1, col=2)
    unit = str(trials["compute_unit"].iloc[0])
    fig.update_xaxes(title_text="trials", row=1, col=1)
    fig.update_xaxes(title_text=esc(unit), row=1, col=2)
    fig.update_yaxes(title_text="best validation objective (lower is better)", row=1, col=1)
    return fig


def figure_sensitivity(trials: pd.DataFrame, title: str = "Sensitivity") -> go.Figure:
    """Each trial's best validation objective, one row per study (marker: why it stopped;
    a trial stopped early by ASHA trained fewer steps)."""
    fig = go.Figure()
    scored = trials[trials["best"].notna()] if not trials.empty else trials
    base_layout(fig, title, height=max(280, 90 + 44 * max(1, trials["study"].nunique()
                                                          if not trials.empty else 1)))
    if scored.empty:
        return no_data(fig, "no trial reached a finite validation score")
    for reason, part in scored.groupby("stopped_by", sort=True):
        fig.add_trace(go.Scatter(
            x=part["best"], y=[esc(_name(r)) for _, r in part.iterrows()], mode="markers",
            name=esc(f"stopped by {reason or '?'}"),
            marker={"symbol": _REASON_SYMBOL.get(str(reason), "circle"), "size": 10,
                    "color": [arch_colour(str(a).split("(")[0]) for a in part["arch_label"]],
                    "line": {"width": 1, "color": "#333"}},
            customdata=part["url"],
            text=[hover(("", _name(r)), ("trial", r["number"]), ("best", r["best"]),
                        ("steps", r["steps"]), ("stopped by", r["stopped_by"]))
                  for _, r in part.iterrows()],
            hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(title_text="a trial's best validation objective (lower is better)")
    fig.update_yaxes(type="category")
    return fig


def figure_gain(gain: pd.DataFrame, title: str = "Tuned over default") -> go.Figure:
    """Gain = default − tuned test score (> 0: tuning helped), with its 95 % interval."""
    fig = go.Figure()
    rows = gain[np.isfinite(gain["gain"].astype(float))] if not gain.empty else gain
    base_layout(fig, title, height=max(260, 80 + 40 * len(rows)))
    if rows.empty:
        return no_data(fig, "no study with both untuned and tuned finished rows")
    ci = rows["gain_ci"].astype(float).fillna(0).to_numpy()
    fig.add_trace(go.Scatter(
        x=rows["gain"], y=[esc(f"{a} · {d}") for a, d in zip(rows["arch_label"],
                                                              rows["dataset"])],
        mode="markers", name="gain",
        marker={"size": 12, "color": [arch_colour(str(a).split("(")[0])
                                      for a in rows["arch_label"]]},
        error_x={"type": "data", "array": ci, "visible": True, "color": "#555"},
        customdata=rows["url"],
        text=[hover(("", r["arch_label"]), ("default", r["default"]), ("tuned", r["tuned"]),
                    ("gain", r["gain"]), ("± (95 %)", r["gain_ci"]))
              for _, r in rows.iterrows()],
        hovertemplate="%{text}<extra></extra>"))
    fig.add_vline(x=0, line={"color": "#999", "dash": "dot"})
    unit = str(rows["unit"].iloc[0])
    fig.update_xaxes(title_text=esc(f"default − tuned, test {unit} (> 0: tuning helped)"))
    fig.update_yaxes(type="category")
    return fig


def _summary_table(sens: pd.DataFrame, gain: pd.DataFrame, studies: pd.DataFrame) -> str:
    cols = ["architecture", "data set", "trials (stopped by ASHA)", "best val.", "median",
            "std", "IQR", f"within {NEAR} of best", "compute", "default test",
            "tuned test", "gain ± 95 %", "study"]
    rows = []
    for s in sens.itertuples(index=False):
        g = gain[gain["study"] == s.study]
        g = g.iloc[0] if len(g) else None
        st = studies[studies["study"] == s.study].iloc[0]
        compute = (f"{fmt(s.gpu_hours, 3)} GPU-h" if s.gpu_hours and s.gpu_hours > 0
                   else f"{fmt(s.cpu_hours, 3)} CPU-h")
        gain_text = "—"
        if g is not None and pd.notna(g["gain"]):
            gain_text = fmt(g["gain"], 3) + (f" ± {fmt(g['gain_ci'], 2)}"
                                             if pd.notna(g["gain_ci"]) else " (one seed)")
        rows.append([s.arch_label, s.dataset, f"{s.trials} ({s.asha_stopped})", fmt(s.best),
                     fmt(s.median), fmt(s.std, 3), fmt(s.iqr, 3),
                     f"{s.near_best} / {s.trials} ({fmt(100 * s.near_share, 3)} %)",
                     compute,
                     "—" if g is None else f"{fmt(g['default'])} (n={g['default_n']})",
                     "—" if g is None else f"{fmt(g['tuned'])} (n={g['tuned_n']})",
                     gain_text, Link(st["url"], "MLflow")])
    numeric = [False, False, True, True, True, True, True, True, True, True, True, True, False]
    return table(cols, rows, numeric=numeric)


def build(ctx: Context) -> Section | None:
    """The tuning section (see the module docstring); None without studies."""
    tuning, runs = ctx.tuning, ctx.runs
    if tuning is None or tuning.empty:
        return None
    studies = study_frame(tuning)
    if studies.empty:
        return None
    trials = trials_frame(tuning)
    sens = sensitivity_frame(trials, studies)
    gain = gain_frame(studies, runs)
    units = ", ".join(sorted(set(studies["unit"])))
    sec = Section(ANCHOR, TITLE)
    budgets = ", ".join(sorted({f"{int(t)} trials" for t in studies["trials"].dropna()}))
    sec.panels.append(Panel(
        "tuning-best-so-far",
        "Best validation objective (" + units + ", lower is better) of each study after n "
        "trials in the order Ray Tune created them (left), and after the compute its ended "
        "trials had spent, in the order they ended (right: trial seconds × the CPUs or GPU "
        f"share a trial holds). Every architecture had the same budget ({budgets}); a trial "
        "stopped early by ASHA counts with the score it reached.", trials,
        figure_best_so_far(trials, "Best so far")))
    sec.panels.append(Panel(
        "tuning-sensitivity",
        "Sensitivity: each trial's best validation objective, one row per study; the "
        "marker says why it stopped (circle: its whole training budget, cross: ASHA at a "
        f"rung, with fewer steps). The table gives the spread and the share of trials within "
        f"{NEAR} ({units}) of the study's best: an architecture whose trials crowd near its "
        "best is easy to tune.", sens, figure_sensitivity(trials, "Sensitivity"),
        Raw(_summary_table(sens, gain, studies))))
    sec.panels.append(Panel(
        "tuning-gain",
        "Gain of tuning on the test split: mean test score of the untuned rows minus that "
        "of the tuned rows (retrained with the study's best values over the same seeds); "
        "> 0 means tuning helped. The interval is a Welch t 95 % interval over seeds "
        "(none with one seed on either side).", gain, figure_gain(gain, "Tuned over default")))
    return sec
