"""Suites: the YAML schema, checks against the registries, matrix expansion, job keys.

This package imports no torch (the layer rule of ``docs/architecture.md``): the registries
reach it as a :class:`Catalog` of plain data (names, option specs).
"""

from __future__ import annotations

from .checks import MAX_JOBS, Catalog, check_suite
from .expand import Dropped, Job, count_cells, expand, flatten, job_key
from .load import SuiteError, line_of, load_suite, parse_suite
from .schema import AxisItem, Resources, Suite

__all__ = [
    "MAX_JOBS",
    "AxisItem",
    "Catalog",
    "Dropped",
    "Job",
    "Resources",
    "Suite",
    "SuiteError",
    "check_suite",
    "count_cells",
    "expand",
    "flatten",
    "job_key",
    "line_of",
    "load_suite",
    "parse_suite",
]
