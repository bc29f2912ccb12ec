"""Measurements as functions of a flow and a batch: likelihood, timing, stability."""

from __future__ import annotations

from .likelihood import batched_log_likelihood, bpd_from_nll, evaluate_likelihood
from .stability import diagnose, ks_statistic_normal
from .timing import Timing, median_ms, time_flow

__all__ = [
    "Timing",
    "batched_log_likelihood",
    "bpd_from_nll",
    "diagnose",
    "evaluate_likelihood",
    "ks_statistic_normal",
    "median_ms",
    "time_flow",
]
