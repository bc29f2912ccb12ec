"""Reports: MLflow runs → tidy tables → Plotly figures → a static HTML site; and ``compare``.

Pipeline: :func:`harness.tracking.read.load_runs` / ``load_curves`` read MLflow in
bulk; :mod:`.table` and :mod:`.derive` make the frame behind each figure; the ``figure_*``
functions are pure (frame in, Plotly figure out); :func:`write_report` is the one writer,
and :mod:`.safety` checks what it publishes (http(s) run links, no formulas in CSV cells).
"""

from __future__ import annotations

from .compare import CompareResult, Tolerance, compare
from .figures import figure_curves, figure_heatmap, figure_leaderboard, figure_pareto
from .figures_cost import figure_asymmetry, figure_dequant, figure_logdet
from .figures_stability import figure_stability, figure_triangle
from .safety import ReportInputError
from .site import write_report

__all__ = [
    "CompareResult",
    "ReportInputError",
    "Tolerance",
    "compare",
    "figure_asymmetry",
    "figure_curves",
    "figure_dequant",
    "figure_heatmap",
    "figure_leaderboard",
    "figure_logdet",
    "figure_pareto",
    "figure_stability",
    "figure_triangle",
    "write_report",
]
