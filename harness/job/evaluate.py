"""The trained model on the test split: likelihood, its bounds, and the stability diagnostics.

Each random draw here (dequantization noise of the test inputs, importance samples, the
diagnostics' inputs) has its own seed derived from the job seed, so that evaluating the same
weights twice gives the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import keys
from ..measure import diagnose, evaluate_likelihood
from ..suite.jobconfig import JobConfig
from .components import rows, test_inputs

__all__ = ["evaluate", "iw_bpd", "training_metrics"]

# offsets of the job seed for the draws of evaluation (validation uses seed + 1)
SEED_TEST, SEED_DIAGNOSE, SEED_IW = 2, 3, 5


def _fork(device: torch.device):
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def iw_bpd(flow, deq, test: torch.Tensor, cfg: JobConfig, device: torch.device,
           context: torch.Tensor | None = None) -> float:
    """``eval/bpd_iw``: the importance-weighted bound with ``eval.iw_samples`` samples,

    .. math:: -\\log \\frac1K\\sum_k \\exp(\\log p(x + u_k) - \\log q(u_k \\mid x)).
    """
    k = int(cfg.eval.iw_samples)
    batch = max(1, cfg.eval.batch_size // k)
    total = 0.0
    with _fork(device):
        torch.manual_seed(cfg.seed + SEED_IW)
        for i in range(0, len(test), batch):
            x = test[i : i + batch].to(device)
            if context is None:
                fn = flow.log_prob
            else:  # the samples are stacked sample-major: repeat the contexts alike
                c = context[i : i + batch].to(device)

                def fn(w, c=c):
                    return flow.log_prob(w, context=c.repeat(len(w) // len(c), 1))
            total += float(deq.iw_log_likelihood(x, fn, k).double().sum())
    return -total / len(test) / (deq.dims * math.log(2))


def evaluate(flow, deq, ds, ctx: dict[str, torch.Tensor | None], cfg: JobConfig,
             device: torch.device) -> dict[str, float]:
    """``eval/*`` and ``stab/*`` metrics of the trained (best) weights on the test split."""
    flow.eval()
    deq.eval()
    discrete = ds.kind == "discrete"
    cap = cfg.eval.max_examples or len(ds.test)
    test = ds.test[:cap]
    test_c = None if ctx["test"] is None else ctx["test"][:cap]
    with _fork(device):
        torch.manual_seed(cfg.seed + SEED_TEST)
        ev = evaluate_likelihood(flow, deq, test, cfg.eval.batch_size, device, discrete,
                                 context=test_c)
    metrics: dict[str, float] = {}
    flow.reset_counters()  # function evaluations of one test batch (continuous flows)
    nb = min(len(test), cfg.eval.batch_size)
    if flow.counters():
        with torch.no_grad():
            flow.log_prob(deq(test[:nb].to(device))[0], context=rows(test_c, nb, device))
        metrics[keys.PERF_NFE] = float(flow.counters()["nfe_forward"])
    if cfg.dequant.scheme == "variational":
        metrics[keys.EVAL_BPD_IW] = iw_bpd(flow, deq, test, cfg, device, test_c)
    metrics[keys.EVAL_NLL] = ev["nll"]
    metrics[keys.EVAL_NLL_SE] = ev["nll_se"]
    if "bpd" in ev:
        metrics[keys.EVAL_BPD] = ev["bpd"]
    if ds.true_entropy is not None:
        metrics[keys.EVAL_NLL_GAP] = ev["nll"] - float(ds.true_entropy)
    n_diag = min(len(ds.test), 2048)
    w = test_inputs(deq, ds.test, n_diag, device, cfg.seed + SEED_DIAGNOSE)
    metrics.update(diagnose(flow, w, context=rows(ctx["test"], n_diag, device)))
    return metrics


def training_metrics(outcome, discrete: bool) -> dict[str, Any]:
    """The training's own numbers (``train/*``, ``stab/*``) from a :class:`TrainOutcome`."""
    out: dict[str, Any] = {
        keys.TRAIN_STEPS_DONE: outcome.steps, keys.TRAIN_SECONDS: outcome.seconds,
        keys.STAB_NONFINITE_STEPS: outcome.nonfinite,
        keys.STAB_GRAD_NORM_MAX: outcome.grad_norm_max,
        keys.STAB_GRAD_NORM_MEAN: outcome.grad_norm_mean,
    }
    if outcome.best_state is not None:
        out[keys.EVAL_BEST_STEP] = outcome.best_step
        out[keys.EVAL_VAL_BPD if discrete else keys.EVAL_VAL_NLL] = outcome.best_val
    return out
