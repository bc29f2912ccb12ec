"""Suites: the YAML schema, checks against the registries, matrix expansion, job keys.

This package imports no torch (DESIGN.md): the registries reach it as a :class:`Catalog`.
"""

from __future__ import annotations

from .checks import Catalog, check_suite
from .expand import Dropped, Job, expand, flatten, job_key
from .load import SuiteError, load_suite, parse_suite
from .schema import AxisItem, Resources, Suite

__all__ = [
    "AxisItem",
    "Catalog",
    "Dropped",
    "Job",
    "Resources",
    "Suite",
    "SuiteError",
    "check_suite",
    "expand",
    "flatten",
    "job_key",
    "load_suite",
    "parse_suite",
]
