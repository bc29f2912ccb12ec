"""Reference rows that are not flows: the ``histogram`` model on discrete data.

Every image leaderboard shows it beside ``gaussian``: independent per-pixel categoricals
fitted in closed form (:class:`harness.data.histogram.Histogram`), whose bits per dimension
are exact, ``−log₂ P(x) / D``, with no dequantization bound. A flow that does not beat it has
learnt no dependence between pixels.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .. import keys
from ..data.histogram import Histogram
from ..measure import median_ms
from ..suite.jobconfig import JobConfig

__all__ = ["REFERENCE_MODELS", "fit_reference", "time_reference"]

# name → (hyper-parameters with defaults, one-line summary)
REFERENCE_MODELS: dict[str, tuple[dict[str, Any], str]] = {
    "histogram": ({"laplace": 1.0},
                  "independent per-dimension categoricals, closed form: exact bpd (discrete data)"),
}


def _fit(ds, cfg: JobConfig) -> Histogram:
    laplace = float(cfg.arch.hparams.get("laplace", 1.0))
    return Histogram.fit(ds.train, levels=int(ds.levels), laplace=laplace)


def fit_reference(ds, cfg: JobConfig) -> tuple[dict[str, float], dict[str, Any], Histogram]:
    """Fit on the training split; exact test and validation scores; the fitted state."""
    if ds.kind != "discrete":
        raise ValueError(f"histogram: data set '{ds.name}' is {ds.kind}; the histogram "
                         "reference row is for discrete data")
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
    """Density and sampling time of the fitted histogram (its fit is closed form and cheap)."""
    model = _fit(ds, cfg).to(device)
    t = cfg.timing
    n = t.batch_size
    x = ds.test[torch.arange(n) % len(ds.test)].to(device)
    density = median_ms(lambda: model.log_prob_discrete(x), t.min_run_time)
    m = t.sample_batch_size or n
    sample = median_ms(lambda: model.sample(m), t.min_run_time)
    return {keys.PERF_DENSITY_MS: density, keys.PERF_SAMPLE_MS: sample,
            keys.PERF_SAMPLE_THROUGHPUT: m / (sample / 1e3), keys.PERF_BATCH: float(n)}
