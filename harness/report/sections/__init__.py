"""The sections of a suite's page, one module each, listed once in page order (:data:`SECTIONS`).

Each module owns its section: the frame it derives from the results table (the data
published beside its figures as CSV and Parquet), its figures and its panels; it exposes
``ANCHOR``, ``TITLE`` and ``build(ctx) -> Section | None`` (:mod:`.base`). No section imports
another: what two of them share lives in :mod:`.base` or in a module of
:mod:`harness.report` (the results table, the statistics, ratios, the style). Adding a
section is one module here and its line in :data:`SECTIONS`.
"""

from __future__ import annotations

from types import ModuleType

from ..page import Section
from . import (
    across,
    asymmetry,
    compiled,
    curves,
    dequant,
    heatmap,
    leaderboards,
    logdet,
    pareto,
    runs_left_out,
    samples,
    seeds,
    significance,
    stability,
    timing_noise,
    triangle,
    tuning,
)
from .base import Context

__all__ = ["SECTIONS", "Context", "suite_sections"]

SECTIONS: tuple[ModuleType, ...] = (
    leaderboards,
    tuning,
    across,
    significance,
    seeds,
    pareto,
    triangle,
    heatmap,
    curves,
    logdet,
    asymmetry,
    compiled,
    timing_noise,
    dequant,
    stability,
    samples,
    runs_left_out,
)


def suite_sections(ctx: Context) -> list[Section]:
    """The sections of one suite's page in :data:`SECTIONS`' order (those with no place on
    this page, a ``build`` that returns None, left out)."""
    built = (module.build(ctx) for module in SECTIONS)
    return [sec for sec in built if sec is not None]
