"""Runs left out: every run that did not finish, or finished without a finite test bpd / NLL,
with its status and last error (:func:`status_frame`); the leaderboards, fronts and curves
leave them out.
"""

from __future__ import annotations

import pandas as pd

from ..html import Link, Raw, e, table
from ..page import Panel, Section
from .base import Context, columns

__all__ = ["ANCHOR", "TITLE", "build", "status_frame"]

ANCHOR = "runs"
TITLE = "Runs left out"


def status_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run that is not a finished run with a finite score: status and last error."""
    cols = ["run_id", "run_name", "dataset", "config", "seed", "status", "mlflow_status",
            "error", "url"]
    out = columns(runs[~runs["ok"].astype(bool)], cols)
    return out.sort_values(["status", "dataset", "config", "seed"],
                           kind="stable").reset_index(drop=True)


def build(ctx: Context) -> Section:
    """The runs by status, and a table of those left out (none: a note)."""
    runs = ctx.runs
    sec = Section(ANCHOR, TITLE)
    frame = status_frame(runs)
    counts = runs["status"].value_counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    if frame.empty:
        sec.note = f"Every run finished with a finite score ({summary})."
        return sec
    rows = [[r.status, r.dataset, r.config, "" if pd.isna(r.seed) else int(r.seed),
             Raw(f"<pre>{e(str(r.error)[-600:])}</pre>") if isinstance(r.error, str) else "",
             Link(r.url, "MLflow")] for r in frame.itertuples(index=False)]
    after = table(["status", "data set", "configuration", "seed", "last error", "run"], rows)
    sec.panels.append(Panel("runs-left-out", f"Runs by status: {summary}. The runs below did "
                            "not finish, or finished without a finite test bpd / NLL: they are "
                            "left out of the leaderboards, fronts and curves; diverged runs keep "
                            "their stability diagnostics.", frame, None, Raw(after)))
    return sec
