"""What tuning cost and what it bought: the frames behind a suite page's tuning section.

Pure functions of DataFrames. Inputs: the study and trial runs of a suite
(:func:`harness.tracking.read.load_runs` with ``kinds=("study", "trial")``) and the suite's
prepared job runs (:func:`harness.report.table.prepare`). Every score is the study's
objective on the *validation* split (lower is better); the gain is on the *test* split.

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

from .. import keys
from .table import run_url

__all__ = ["NEAR", "TUNING_KINDS", "gain_frame", "sensitivity_frame", "study_frame",
           "trials_frame", "with_urls"]

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
