"""One job end to end on one device, in two phases (no Ray here).

*Train phase*: build the data, the dequantizer and the flow → train within budget with
checkpoints, keeping the best weights on the validation split → evaluate them on the test
split → diagnose. *Timing phase*: reload the best weights and time the flow's operations;
the scheduler runs it with no other job on the device. Everything is written through a
:class:`~harness.tracking.writer.Tracker`.
"""

from __future__ import annotations

import io
import math
import tempfile
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
from .reshape import Flattened
from .train import train

__all__ = ["JobResult", "build", "run_timing", "run_training"]

PHASE_TAG = "nfbench.phase"


@dataclass
class JobResult:
    status: str  # keys.STATUS_FINISHED / DIVERGED (train phase: trained, timing left)
    metrics: dict[str, float]
    seconds: float
    log_seconds: float = 0.0


def _options(section: dict[str, Any], drop: str) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != drop}


def build(config: dict[str, Any], device: torch.device):
    """Data set, dequantizer and flow of a job config, on ``device``."""
    dcfg = _options(config["data"], "name")
    data_dir = dcfg.pop("data_dir", None)
    data_seed = dcfg.pop("seed", 0)
    ds = datasets.load(config["data"]["name"], seed=data_seed, data_dir=data_dir, **dcfg)
    deq = datasets.make_dequantizer(config["dequant"]["scheme"], ds,
                                    **_options(config["dequant"], "scheme")).to(device)
    shape = tuple(deq.model_shape)
    name = config["arch"]["name"]
    hparams = _options(config["arch"], "name")
    takes_images = flows.entry(name).meta.get("images", False)
    if len(shape) > 1 and not takes_images:
        flow = Flattened(flows.build(name, event_shape=math.prod(shape), **hparams), shape)
    else:
        flow = flows.build(name, event_shape=shape if len(shape) > 1 else shape[0], **hparams)
    return ds, deq, flow.to(device)


def _on_device(ds, device: torch.device) -> SimpleNamespace:
    return SimpleNamespace(kind=ds.kind, train=ds.train.to(device), val=ds.val.to(device))


def _fetch_state(tracker: Tracker, artifact: str) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.fetch(artifact, Path(tmp))
        if path is None:
            return None
        return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False)


def _upload(tracker: Tracker, obj: Any, artifact: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact).name
        torch.save(obj, path)
        parent = str(Path(artifact).parent)
        tracker.log_file(path, None if parent == "." else parent)


def _test_inputs(deq, test: torch.Tensor, n: int, device: torch.device, seed: int) -> torch.Tensor:
    """``n`` flow inputs from the test split (rows repeated when the split is smaller)."""
    idx = torch.arange(n) % len(test)
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        w, _ = deq(test[idx].to(device))
    return w


def run_training(config: dict[str, Any], tracker: Tracker, device: torch.device,
                 progress=None) -> JobResult:
    """The train phase; resumes from the run's last checkpoint when there is one."""
    import time

    t0 = time.perf_counter()
    seed = int(config["seed"])
    seed_all(seed)
    ds, deq, flow = build(config, device)
    n_params = sum(p.numel() for p in flow.parameters())
    resume = _fetch_state(tracker, keys.ART_CHECKPOINT_LAST)
    if resume is None:
        from ..suite.expand import flatten

        params = flatten(config)
        params.update({
            "data.kind": ds.kind, "data.dims": deq.dims, "data.levels": ds.levels,
            "data.fingerprint": ds.fingerprint, "flow.params": n_params,
            **{f"data.split.{k}": v for k, v in ds.splits_info.items()},
        })
        tracker.log_params(params)
        tracker.log_json(config, keys.ART_CONFIG)
    tracker.set_tags({**environment_tags(device), keys.TAG_ARCH: config["arch"]["name"],
                      keys.TAG_DATASET: config["data"]["name"],
                      keys.TAG_DEQUANT: config["dequant"]["scheme"], keys.TAG_SEED: seed})
    outcome = train(flow, deq, _on_device(ds, device), config["train"], tracker, device, seed,
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
        test = ds.test if not config["eval"]["max_examples"] else ds.test[: config["eval"]["max_examples"]]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + 2)
            ev = evaluate_likelihood(flow, deq, test, config["eval"]["batch_size"], device, discrete)
        metrics[keys.EVAL_NLL] = ev["nll"]
        metrics["eval/nll_se"] = ev["nll_se"]
        if "bpd" in ev:
            metrics[keys.EVAL_BPD] = ev["bpd"]
        if getattr(ds, "true_entropy", None) is not None:
            metrics[keys.EVAL_NLL_GAP] = ev["nll"] - float(ds.true_entropy)
        w = _test_inputs(deq, ds.test, min(len(ds.test), 2048), device, seed + 3)
        metrics.update(diagnose(flow, w))
        _upload(tracker, outcome.best_state, keys.ART_CHECKPOINT_BEST)
    status = keys.STATUS_DIVERGED if outcome.diverged or not math.isfinite(
        metrics.get(keys.EVAL_NLL, math.nan)) else keys.STATUS_FINISHED
    diag.update(metrics)
    _write_curves(tracker, outcome.curves)
    tracker.log_json(diag, keys.ART_DIAGNOSTICS)
    finite = {k: v for k, v in metrics.items() if v is not None and not math.isnan(v)}
    tracker.log_metrics(finite, step=outcome.steps)
    tracker.flush()
    tracker.set_tags({PHASE_TAG: "trained"})
    return JobResult(status, metrics, time.perf_counter() - t0)


def run_timing(config: dict[str, Any], tracker: Tracker, device: torch.device) -> JobResult:
    """The timing phase: reload the best weights and time them (nothing else on the device)."""
    import time

    t0 = time.perf_counter()
    seed = int(config["seed"])
    seed_all(seed)
    ds, deq, flow = build(config, device)
    state = _fetch_state(tracker, keys.ART_CHECKPOINT_BEST)
    if state is None:
        raise RuntimeError("no best checkpoint to time (the train phase did not finish)")
    flow.load_state_dict(state["flow"])
    deq.load_state_dict(state["deq"])
    tcfg = config["timing"]
    x = _test_inputs(deq, ds.test, tcfg["batch_size"], device, seed + 4)
    timing = time_flow(flow, x, min_run_time=tcfg["min_run_time"],
                       sample_batch=tcfg["sample_batch_size"])
    tracker.log_params(timing.info)
    tracker.log_metrics(timing.metrics, step=0)
    tracker.flush()
    tracker.set_tags({PHASE_TAG: "timed"})
    return JobResult(keys.STATUS_FINISHED, timing.metrics, time.perf_counter() - t0)


def _write_curves(tracker: Tracker, curves: list[tuple[int, float, str, float]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(curves, columns=["step", "wall_s", "key", "value"]).astype(
        {"step": "int64", "wall_s": "float64", "key": "string", "value": "float64"})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / keys.ART_CURVES
        frame.to_parquet(path, index=False)
        tracker.log_file(path)


def error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-4000:]
