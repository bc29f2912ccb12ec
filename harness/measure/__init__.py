"""Measurements as functions of a flow and a batch: likelihood, timing, stability."""

from __future__ import annotations

from .likelihood import batched_log_likelihood, bpd_from_nll, evaluate_likelihood
from .stability import diagnose, ks_statistic_normal
from .timing import ESTIMATOR, Measured, Timing, measure_ms, median_ms, time_flow

__all__ = [
    "ESTIMATOR",
    "Measured",
    "Timing",
    "batched_log_likelihood",
    "bpd_from_nll",
    "diagnose",
    "evaluate_likelihood",
    "ks_statistic_normal",
    "measure_ms",
    "median_ms",
    "time_flow",
]
