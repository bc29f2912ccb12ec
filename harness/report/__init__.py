"""Reports: MLflow runs → tidy tables → Plotly figures → a static HTML site; and ``compare``.

Pipeline: :func:`harness.tracking.read.load_runs` / ``load_curves`` read MLflow in
bulk; :mod:`.table` makes the results table; each section of a page is one module of
:mod:`.sections` (listed once, in page order, in :data:`.sections.SECTIONS`) that derives
its frame from that table and draws it with pure ``figure_*`` functions (frame in, Plotly
figure out); :func:`write_report` is the one writer, and :mod:`.safety` checks what it
publishes (http(s) run links, no formulas in CSV cells).
"""

from __future__ import annotations

from .compare import CompareResult, Tolerance, compare
from .safety import ReportInputError
from .sections.asymmetry import figure_asymmetry
from .sections.curves import figure_curves
from .sections.dequant import figure_dequant
from .sections.heatmap import figure_heatmap
from .sections.leaderboards import figure_leaderboard
from .sections.logdet import figure_logdet
from .sections.pareto import figure_pareto
from .sections.stability import figure_stability
from .sections.triangle import figure_triangle
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
