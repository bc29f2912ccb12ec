"""The tuning section of a suite's page: best so far, sensitivity, gain, and their table.

:func:`tuning_sections` is pure: the suite's study and trial runs (with ``url``, from
:func:`harness.report.tuning.with_urls`) and its prepared job runs in, sections out (none
for a suite without studies).
"""

from __future__ import annotations

import pandas as pd

from .figures_tuning import figure_best_so_far, figure_gain, figure_sensitivity
from .html import Link, Raw, table
from .sections import Panel, Section
from .style import fmt
from .tuning import NEAR, gain_frame, sensitivity_frame, study_frame, trials_frame

__all__ = ["tuning_sections"]


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


def tuning_sections(tuning: pd.DataFrame | None, runs: pd.DataFrame) -> list[Section]:
    """The tuning section (see the module docstring)."""
    if tuning is None or tuning.empty:
        return []
    studies = study_frame(tuning)
    if studies.empty:
        return []
    trials = trials_frame(tuning)
    sens = sensitivity_frame(trials, studies)
    gain = gain_frame(studies, runs)
    units = ", ".join(sorted(set(studies["unit"])))
    sec = Section("tuning", "Tuning: what it cost and what it bought")
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
    return [sec]
