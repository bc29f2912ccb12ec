"""One job end to end on one device, in two phases (no Ray here).

*Train phase*: build the data, the dequantizer and the flow → train within budget with
checkpoints, keeping the best weights on the validation split → evaluate them on the test
split → diagnose. *Timing phase*: reload the best weights and time the flow's operations;
the scheduler runs it with no other job on the device. Everything is written through a
:class:`~harness.tracking.writer.Tracker`.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from .. import data as datasets
from .. import flows, keys
from ..measure import diagnose, evaluate_likelihood, time_flow
from ..tracking.writer import Tracker
from .environment import environment_tags, seed_all
from .reference import REFERENCE_MODELS, fit_reference, time_reference
from .reshape import Flattened
from .samples import samples_png
from .train import train

__all__ = ["JobResult", "build", "contexts", "run_timing", "run_training"]

PHASE_TAG = keys.TAG_PHASE


@dataclass
class JobResult:
    status: str  # keys.STATUS_FINISHED / DIVERGED (train phase: trained, timing left)
    metrics: dict[str, float]
    seconds: float
    log_seconds: float = 0.0
    # The final batch (params, tags, metrics, step, points) when the caller records it:
    # the scheduler's driver writes it while the worker already runs its next job.
    record: dict[str, Any] | None = None


def _options(section: dict[str, Any], drop: str) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != drop}


def _load_data(config: dict[str, Any]):
    dcfg = _options(config["data"], "name")
    dcfg.pop("flatten", None)
    dcfg.pop("condition", None)
    data_dir = dcfg.pop("data_dir", None)
    # the data seed: the job seed unless the suite pins it (data option ``seed``), so that a
    # generated data set's training draw changes with the seed like everything else
    data_seed = dcfg.pop("seed", int(config.get("seed", 0)))
    return datasets.load(config["data"]["name"], seed=data_seed, data_dir=data_dir, **dcfg)


def contexts(config: dict[str, Any], ds) -> dict[str, torch.Tensor | None]:
    """Per-split contexts of a conditional job (data option ``condition: label``: one-hot
    class labels), or Nones."""
    condition = config["data"].get("condition")
    if not condition:
        return {"train": None, "val": None, "test": None}
    if condition != "label":
        raise ValueError(f"data.condition: unknown condition {condition!r}; use 'label'")
    if not ds.labels or not ds.classes:
        raise ValueError(f"data.condition: data set '{ds.name}' has no class labels; "
                         "remove 'condition' or use a labelled data set (digits)")
    return {k: torch.nn.functional.one_hot(v, ds.classes).float() for k, v in ds.labels.items()}


def build(config: dict[str, Any], device: torch.device):
    """Data set, dequantizer and flow of a job config, on ``device``."""
    as_vectors = bool(config["data"].get("flatten", False))  # image data as vectors
    ds = _load_data(config)
    context_dim = ds.classes if config["data"].get("condition") else None
    deq = datasets.make_dequantizer(config["dequant"]["scheme"], ds,
                                    **_options(config["dequant"], "scheme")).to(device)
    shape = tuple(deq.model_shape)
    name = config["arch"]["name"]
    hparams = _options(config["arch"], "name")
    takes_images = flows.entry(name).meta.get("images", False)
    if len(shape) > 1 and (as_vectors or not takes_images):
        flow = Flattened(flows.build(name, event_shape=math.prod(shape), context_dim=context_dim,
                                     **hparams), shape)
    else:
        flow = flows.build(name, event_shape=shape if len(shape) > 1 else shape[0],
                           context_dim=context_dim, **hparams)
    return ds, deq, flow.to(device)


def _on_device(ds, ctx: dict[str, torch.Tensor | None], device: torch.device) -> SimpleNamespace:
    def put(t):
        return None if t is None else t.to(device)

    return SimpleNamespace(kind=ds.kind, train=ds.train.to(device), val=ds.val.to(device),
                           train_c=put(ctx["train"]), val_c=put(ctx["val"]))


def _rows(t: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
    """The first ``n`` rows of ``t``, repeated when it is shorter (as :func:`_test_inputs`)."""
    return None if t is None else t[torch.arange(n) % len(t)].to(device)


def _fetch_state(tracker: Tracker, artifact: str) -> dict[str, Any] | None:
    """A checkpoint of the run, loaded weights-only: tensors, numbers, strings and containers
    of them, never an arbitrary pickle (the artifact store is shared; a file in it must not
    run code here)."""
    import pickle

    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.fetch(artifact, Path(tmp))
        if path is None:
            return None
        try:
            return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu",
                              weights_only=True)
        except pickle.UnpicklingError as err:
            lines = [ln for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
            why = (lines or ["it holds more than weights"])[0].strip()[:300]
            raise RuntimeError(f"{artifact}: refused to load this checkpoint: {why} (a checkpoint "
                               "may hold only tensors and plain values); delete the artifact "
                               "or re-run the job with --force") from None


def _test_inputs(deq, test: torch.Tensor, n: int, device: torch.device, seed: int) -> torch.Tensor:
    """``n`` flow inputs from the test split (rows repeated when the split is smaller)."""
    idx = torch.arange(n) % len(test)
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        w, _ = deq(test[idx].to(device))
    return w


def _iw_bpd(flow, deq, test: torch.Tensor, ecfg: dict[str, Any], device: torch.device,
            seed: int, context: torch.Tensor | None = None) -> float:
    """``eval/bpd_iw``: the importance-weighted bound with ``eval.iw_samples`` samples."""
    k = int(ecfg["iw_samples"])
    batch = max(1, ecfg["batch_size"] // k)
    total = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 5)
        for i in range(0, len(test), batch):
            x = test[i : i + batch].to(device)
            if context is None:
                fn = flow.log_prob
            else:  # the samples are stacked sample-major: repeat the contexts alike
                c = context[i : i + batch].to(device)
                fn = lambda w, c=c: flow.log_prob(w, context=c.repeat(len(w) // len(c), 1))  # noqa: E731
            total += float(deq.iw_log_likelihood(x, fn, k).double().sum())
    return -total / len(test) / (deq.dims * math.log(2))


def _finish(tracker: Tracker, final: dict[str, Any], status: str, metrics: dict[str, float],
            t0: float, defer_record: bool) -> JobResult:
    if not defer_record:
        tracker.record(**final)
    return JobResult(status, metrics, time.perf_counter() - t0,
                     record=final if defer_record else None)


def _reference_training(config: dict[str, Any], tracker: Tracker, device: torch.device,
                        defer_record: bool, t0: float) -> JobResult:
    """A reference row (``histogram``): closed-form fit, exact evaluation, no curves."""
    ds = _load_data(config)
    metrics, params, _model = fit_reference(ds, config)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / keys.ART_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        (root / keys.ART_DIAGNOSTICS).write_text(json.dumps(metrics, indent=2))
        tracker.log_dir(root)
    tags = {**environment_tags(device), keys.TAG_ARCH: config["arch"]["name"],
            keys.TAG_DATASET: config["data"]["name"],
            keys.TAG_DEQUANT: config["dequant"]["scheme"], keys.TAG_SEED: config["seed"],
            PHASE_TAG: "trained"}
    final = {"params": params, "metrics": metrics, "tags": tags, "step": 0}
    return _finish(tracker, final, keys.STATUS_FINISHED, metrics, t0, defer_record)


def run_training(config: dict[str, Any], tracker: Tracker, device: torch.device,
                 progress=None, defer_record: bool = False) -> JobResult:
    """The train phase; resumes from the run's last checkpoint when there is one.

    With ``defer_record`` the final metrics batch is returned in ``JobResult.record`` for the
    caller to write (artifacts are always written here)."""
    t0 = time.perf_counter()
    seed = int(config["seed"])
    seed_all(seed)
    if config["arch"]["name"] in REFERENCE_MODELS:
        return _reference_training(config, tracker, device, defer_record, t0)
    ds, deq, flow = build(config, device)
    ctx = contexts(config, ds)
    n_params = sum(p.numel() for p in flow.parameters())
    resume = _fetch_state(tracker, keys.ART_CHECKPOINT_LAST)
    # The driver logged the config as params when it opened the run; what only the worker
    # knows travels with the final metrics, in one batch.
    tags = {**environment_tags(device), keys.TAG_ARCH: config["arch"]["name"],
            keys.TAG_DATASET: config["data"]["name"],
            keys.TAG_DEQUANT: config["dequant"]["scheme"], keys.TAG_SEED: seed}
    if resume is not None:  # a retried or resumed job: where its last checkpoint left off
        tags[keys.TAG_RESUMED_STEP] = int(resume["step"])
    params = {
        "data.kind": ds.kind, "data.dims": deq.dims, "data.levels": ds.levels,
        "data.fingerprint": ds.fingerprint, "flow.params": n_params,
        **{f"data.split.{k}": v for k, v in ds.splits_info.items()},
    }
    outcome = train(flow, deq, _on_device(ds, ctx, device), config["train"], tracker, device, seed,
                    resume=resume, progress=progress)
    discrete = ds.kind == "discrete"
    metrics: dict[str, float] = {
        keys.TRAIN_STEPS_DONE: outcome.steps, keys.TRAIN_SECONDS: outcome.seconds,
        keys.STAB_NONFINITE_STEPS: outcome.nonfinite,
        keys.STAB_GRAD_NORM_MAX: outcome.grad_norm_max,
        keys.STAB_GRAD_NORM_MEAN: outcome.grad_norm_mean,
    }
    diag: dict[str, Any] = {"stopped_by": outcome.stopped_by, "best_step": outcome.best_step}
    if outcome.best_state is not None:
        flow.load_state_dict(outcome.best_state["flow"])
        deq.load_state_dict(outcome.best_state["deq"])
        metrics[keys.EVAL_BEST_STEP] = outcome.best_step
        metrics[keys.EVAL_VAL_BPD if discrete else keys.EVAL_VAL_NLL] = outcome.best_val
        flow.eval()
        deq.eval()
        cap = config["eval"]["max_examples"] or len(ds.test)
        test = ds.test[:cap]
        test_c = None if ctx["test"] is None else ctx["test"][:cap]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + 2)
            ev = evaluate_likelihood(flow, deq, test, config["eval"]["batch_size"], device,
                                     discrete, context=test_c)
        inner = getattr(flow, "flow", flow)
        if hasattr(inner, "counters"):  # CNF: function evaluations of one test batch
            inner.reset_counters()
            nb = min(len(test), config["eval"]["batch_size"])
            with torch.no_grad():
                flow.log_prob(deq(test[:nb].to(device))[0], context=_rows(test_c, nb, device))
            metrics[keys.PERF_NFE] = float(inner.counters()["nfe_forward"])
        if config["dequant"]["scheme"] == "variational":
            metrics[keys.EVAL_BPD_IW] = _iw_bpd(flow, deq, test, config["eval"], device, seed,
                                                test_c)
        metrics[keys.EVAL_NLL] = ev["nll"]
        metrics["eval/nll_se"] = ev["nll_se"]
        if "bpd" in ev:
            metrics[keys.EVAL_BPD] = ev["bpd"]
        if getattr(ds, "true_entropy", None) is not None:
            metrics[keys.EVAL_NLL_GAP] = ev["nll"] - float(ds.true_entropy)
        n_diag = min(len(ds.test), 2048)
        w = _test_inputs(deq, ds.test, n_diag, device, seed + 3)
        metrics.update(diagnose(flow, w, context=_rows(ctx["test"], n_diag, device)))
    status = keys.STATUS_DIVERGED if outcome.diverged or not math.isfinite(
        metrics.get(keys.EVAL_NLL, math.nan)) else keys.STATUS_FINISHED
    diag.update(metrics)
    with tempfile.TemporaryDirectory() as tmp:  # every end-of-training artifact in one upload
        root = Path(tmp)
        _curves_frame(outcome.curves).to_parquet(root / keys.ART_CURVES, index=False)
        (root / keys.ART_DIAGNOSTICS).write_text(json.dumps(diag, indent=2, default=str))
        (root / keys.ART_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        if outcome.best_state is not None:
            try:
                png = samples_png(flow, deq, ds.kind, ds.test, device, classes=(
                    ds.classes if ctx["test"] is not None else None))
            except Exception as exc:  # a picture never fails a job
                diag["samples_error"] = repr(exc)
                png = None
            if png:
                (root / keys.ART_SAMPLES).write_bytes(png)
            best = root / keys.ART_CHECKPOINT_BEST
            best.parent.mkdir(parents=True, exist_ok=True)
            torch.save(outcome.best_state, best)
        tracker.log_dir(root)
    finite = {k: v for k, v in metrics.items() if v is not None and not math.isnan(v)}
    final = {"params": params, "metrics": finite, "tags": {**tags, PHASE_TAG: "trained"},
             "step": outcome.steps, "points": outcome.pending}
    if not defer_record:
        tracker.record(**final)
    return JobResult(status, metrics, time.perf_counter() - t0,
                     record=final if defer_record else None)


def run_timing(config: dict[str, Any], tracker: Tracker, device: torch.device,
               defer_record: bool = False) -> JobResult:
    """The timing phase: reload the best weights and time them (nothing else on the device)."""
    t0 = time.perf_counter()
    seed = int(config["seed"])
    seed_all(seed)
    tcfg = config["timing"]
    if device.type == "cpu" and tcfg.get("threads"):
        torch.set_num_threads(int(tcfg["threads"]))
    if config["arch"]["name"] in REFERENCE_MODELS:
        ds = _load_data(config)
        metrics = time_reference(ds, config, device)
        return _finish(tracker, {"tags": {PHASE_TAG: "timed"}, "metrics": metrics},
                       keys.STATUS_FINISHED, metrics, t0, defer_record)
    ds, deq, flow = build(config, device)
    ctx = contexts(config, ds)
    state = _fetch_state(tracker, keys.ART_CHECKPOINT_BEST)
    if state is None:
        raise RuntimeError("no best checkpoint to time (the train phase did not finish)")
    flow.load_state_dict(state["flow"])
    deq.load_state_dict(state["deq"])
    x = _test_inputs(deq, ds.test, tcfg["batch_size"], device, seed + 4)
    timing = time_flow(flow, x, min_run_time=tcfg["min_run_time"],
                       sample_batch=tcfg["sample_batch_size"],
                       context=_rows(ctx["test"], tcfg["batch_size"], device))
    tracker.log_json(timing.detail, keys.ART_TIMING)  # every measurement's blocks and load
    final = {"tags": {**timing.info, PHASE_TAG: "timed"}, "metrics": timing.metrics}
    if not defer_record:
        tracker.record(**final)
    return JobResult(keys.STATUS_FINISHED, timing.metrics, time.perf_counter() - t0,
                     record=final if defer_record else None)


def _curves_frame(curves: list[tuple[int, float, str, float]]):
    import pandas as pd

    return pd.DataFrame(curves, columns=["step", "wall_s", "key", "value"]).astype(
        {"step": "int64", "wall_s": "float64", "key": "string", "value": "float64"})


def error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-4000:]
