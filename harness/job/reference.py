"""Rows fitted in closed form rather than trained (registry entries with ``closed_form``).

Such a model (the histogram of discrete data, :mod:`harness.flows.families.histogram`) is
fitted on the training split by :func:`harness.flows.fit`; its likelihood is exact, so its
scores need no dequantization bound and it has no training curves.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .. import flows, keys
from ..measure import median_ms
from ..suite.jobconfig import JobConfig

__all__ = ["closed_form", "fit_reference", "time_reference"]


def closed_form(cfg: JobConfig) -> bool:
    """Whether the job's model is fitted in closed form (its registry entry says so)."""
    return bool(flows.entry(cfg.arch.name).meta.get("closed_form"))


def _fit(ds, cfg: JobConfig):
    return flows.fit(cfg.arch.name, ds.train, ds.levels, ds.kind, **cfg.arch.hparams)


def fit_reference(ds, cfg: JobConfig) -> tuple[dict[str, float], dict[str, Any], Any]:
    """Fit on the training split; exact test and validation scores; the fitted state."""
    t0 = time.perf_counter()
    model = _fit(ds, cfg)
    seconds = time.perf_counter() - t0
    dims = model.dims
    test_ll = model.log_prob_discrete(ds.test).double()
    val_ll = model.log_prob_discrete(ds.val).double()
    nll = float(-test_ll.mean())
    metrics = {
        keys.EVAL_NLL: nll,
        keys.EVAL_NLL_SE: float(test_ll.std() / math.sqrt(len(test_ll))),
        keys.EVAL_BPD: nll / (dims * math.log(2)),
        keys.EVAL_VAL_BPD: float(-val_ll.mean()) / (dims * math.log(2)),
        keys.TRAIN_STEPS_DONE: 0.0,
        keys.TRAIN_SECONDS: seconds,
        keys.STAB_NONFINITE_STEPS: 0.0,
    }
    params = {"data.kind": ds.kind, "data.dims": dims, "data.levels": ds.levels,
              "data.fingerprint": ds.fingerprint, "flow.params": dims * int(ds.levels)}
    return metrics, params, model


def time_reference(ds, cfg: JobConfig, device: torch.device) -> dict[str, float]:
    """Density and sampling time of the fitted model (its fit is closed form and cheap)."""
    model = _fit(ds, cfg).to(device)
    t = cfg.timing
    n = t.batch_size
    x = ds.test[torch.arange(n) % len(ds.test)].to(device)
    density = median_ms(lambda: model.log_prob_discrete(x), t.min_run_time)
    m = t.sample_batch_size or n
    sample = median_ms(lambda: model.sample(m), t.min_run_time)
    return {keys.PERF_DENSITY_MS: density, keys.PERF_SAMPLE_MS: sample,
            keys.PERF_SAMPLE_THROUGHPUT: m / (sample / 1e3), keys.PERF_BATCH: float(n)}
