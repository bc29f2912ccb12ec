"""One job end to end on one device, in two phases (no Ray here).

*Train phase*: build the data, the dequantizer and the flow → train within budget with
checkpoints, keeping the best weights on the validation split → evaluate them on the test
split → diagnose → write the artifacts. *Timing phase*: reload the best weights and time the
flow's operations; the scheduler runs it with no other job on the device.

A job whose runtime is not eager trains and is timed through a compiled view of its flow
(:func:`harness.flows.compiled_view`, sharing the flow's parameters: the optimizer and the
checkpoints hold the flow's own state); the test-split evaluation and the diagnostics run the
same weights eagerly. The timing phase compiles before it times (``perf/compile_s``) and checks
the view against eager on the timing batch first; a mismatch fails the job. The job's last
phase (timing; training when timing is off) then hands the best weights to the tracker as a
model of the run (:mod:`.export`; MLflow: a LoggedModel), with ``keys.MODEL_LINKED`` linked to
it. Everything is written through a :class:`~harness.job.tracker.Tracker`.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch

from .. import flows, keys
from ..flows import compiled_view
from ..measure import time_flow
from ..suite.jobconfig import JobConfig, TrainBudget
from .artifacts import picture_of, write_reference_artifacts, write_training_artifacts
from .components import build, contexts, fetch_state, load_data, on_device, rows, test_inputs
from .environment import environment_tags, seed_all
from .evaluate import evaluate, training_metrics
from .export import log_flow
from .reference import closed_form, fit_reference, time_reference
from .tracker import Tracker
from .train import Trainer

__all__ = ["JobResult", "compiler_for", "error_text", "prepare", "run_timing", "run_training",
           "trainer_for"]

PHASE_TAG = keys.TAG_PHASE
SEED_TIMING = 4  # offset of the job seed for the timing inputs' dequantization noise


@dataclass
class JobResult:
    status: str  # keys.STATUS_FINISHED / DIVERGED (train phase: trained, timing left)
    metrics: dict[str, float]
    seconds: float
    log_seconds: float = 0.0
    # The final batch (params, tags, metrics, step, points) when the caller records it:
    # the scheduler's driver writes it while the worker already runs its next job.
    record: dict[str, Any] | None = None


def _as_config(config: JobConfig | dict[str, Any]) -> JobConfig:
    return config if isinstance(config, JobConfig) else JobConfig.from_dict(config)


def _finish(tracker: Tracker, final: dict[str, Any], status: str, metrics: dict[str, float],
            t0: float, defer_record: bool) -> JobResult:
    """Write the final batch (or hand it to the caller) and say how the phase ended."""
    if not defer_record:
        tracker.record(**final)
    return JobResult(status, metrics, time.perf_counter() - t0,
                     record=final if defer_record else None)


def _job_tags(cfg: JobConfig, device: torch.device) -> dict[str, Any]:
    tags = {**environment_tags(device), keys.TAG_ARCH: cfg.arch.name,
            keys.TAG_DATASET: cfg.data.name, keys.TAG_DEQUANT: cfg.dequant.scheme,
            keys.TAG_SEED: cfg.seed, keys.TAG_RUNTIME: cfg.runtime.label}
    if flows.entry(cfg.arch.name).meta.get("reference"):  # a baseline row, for the report
        tags[keys.TAG_REFERENCE] = keys.REFERENCE_YES
    return tags


def _log_model(tracker: Tracker, cfg: JobConfig, flow, deq, ds, final: dict[str, Any]) -> None:
    """The job's last phase: its flow (the best weights, loaded) as a model of the run; the
    metrics linked to the model are written with it, so they leave the final batch."""
    tags = {keys.TAG_ARCH: cfg.arch.name, keys.TAG_DATASET: cfg.data.name,
            keys.TAG_DEQUANT: cfg.dequant.scheme, keys.TAG_SEED: cfg.seed,
            keys.TAG_RUNTIME: cfg.runtime.label}
    if log_flow(tracker, cfg, flow, deq, ds, final["metrics"], final.get("step", 0), tags):
        final["metrics"] = {k: v for k, v in final["metrics"].items()
                            if k not in keys.MODEL_LINKED}


def compiler_for(cfg: JobConfig):
    """None for an eager job; else a function flow → its compiled view in the job's runtime
    (``compile`` / ``cuda-graphs``, mode, batch-size policy)."""
    rt = cfg.runtime
    if rt.eager:
        return None
    return lambda flow: compiled_view(flow, rt.name, mode=rt.mode, shapes=rt.shapes)


def prepare(cfg: JobConfig, device: torch.device):
    """Seed, then build the job's data set, dequantizer and flow on ``device`` and their
    contexts: ``(ds, deq, flow, ctx)``. A job's train phase and a tuning trial
    (:mod:`harness.tune.trial`) both start here."""
    seed_all(cfg.seed)
    ds, deq, flow = build(cfg, device)
    return ds, deq, flow, contexts(cfg, ds)


def trainer_for(cfg: JobConfig, parts, tracker: Tracker, device: torch.device, *,
                resume: dict[str, Any] | None = None, progress=None,
                budget: TrainBudget | None = None) -> Trainer:
    """The :class:`Trainer` of a job built by :func:`prepare` (``parts``), in the job's
    runtime (a compiled view of the flow unless eager); ``budget``: the training budget in
    place of ``cfg.train`` (a trial's, whose checkpoints are Ray Tune's)."""
    ds, deq, flow, ctx = parts
    compiler = compiler_for(cfg)
    return Trainer(flow, deq, on_device(ds, ctx, device), budget or cfg.train, tracker, device,
                   cfg.seed, resume=resume, progress=progress,
                   view=None if compiler is None else compiler(flow))


def _reference_training(cfg: JobConfig, tracker: Tracker, device: torch.device,
                        defer_record: bool, t0: float) -> JobResult:
    """A model fitted in closed form: exact evaluation, no curves."""
    ds = load_data(cfg)
    tracker.log_dataset(ds.name, ds.fingerprint, cfg.data.as_dict(), ds.splits_info)
    metrics, params, _model = fit_reference(ds, cfg)
    write_reference_artifacts(tracker, cfg.as_dict(), metrics)
    final = {"params": params, "metrics": metrics, "step": 0,
             "tags": {**_job_tags(cfg, device), PHASE_TAG: "trained"}}
    return _finish(tracker, final, keys.STATUS_FINISHED, metrics, t0, defer_record)


def run_training(config: JobConfig | dict[str, Any], tracker: Tracker, device: torch.device,
                 progress=None, defer_record: bool = False) -> JobResult:
    """The train phase; resumes from the run's last checkpoint when there is one.

    With ``defer_record`` the final metrics batch is returned in ``JobResult.record`` for the
    caller to write (artifacts are always written here)."""
    t0 = time.perf_counter()
    cfg = _as_config(config)
    if closed_form(cfg):
        seed_all(cfg.seed)
        return _reference_training(cfg, tracker, device, defer_record, t0)
    parts = prepare(cfg, device)
    ds, deq, flow, ctx = parts
    tracker.log_dataset(ds.name, ds.fingerprint, cfg.data.as_dict(), ds.splits_info)
    resume = fetch_state(tracker, keys.ART_CHECKPOINT_LAST)
    # The driver logged the config as params when it opened the run; what only the worker
    # knows travels with the final metrics, in one batch.
    tags = _job_tags(cfg, device)
    if resume is not None:  # a retried or resumed job: where its last checkpoint left off
        tags[keys.TAG_RESUMED_STEP] = int(resume["step"])
    params = {
        "data.kind": ds.kind, "data.dims": deq.dims, "data.levels": ds.levels,
        "data.fingerprint": ds.fingerprint,
        "flow.params": sum(p.numel() for p in flow.parameters()),
        **{f"data.split.{k}": v for k, v in ds.splits_info.items()},
    }
    outcome = trainer_for(cfg, parts, tracker, device, resume=resume, progress=progress).run()
    discrete = ds.kind == "discrete"
    metrics = training_metrics(outcome, discrete)
    if outcome.best_state is not None:
        flow.load_state_dict(outcome.best_state["flow"])
        deq.load_state_dict(outcome.best_state["deq"])
        metrics.update(evaluate(flow, deq, ds, ctx, cfg, device))
    status = keys.STATUS_DIVERGED if outcome.diverged or not math.isfinite(
        metrics.get(keys.EVAL_NLL, math.nan)) else keys.STATUS_FINISHED
    diagnostics = {"stopped_by": outcome.stopped_by, "best_step": outcome.best_step, **metrics}
    write_training_artifacts(tracker, cfg.as_dict(), outcome, diagnostics,
                             picture_of(flow, deq, ds, ctx, device))
    finite = {k: v for k, v in metrics.items() if v is not None and not math.isnan(v)}
    tags[keys.TAG_STOPPED_BY] = outcome.stopped_by
    final = {"params": params, "metrics": finite, "tags": {**tags, PHASE_TAG: "trained"},
             "step": outcome.steps, "points": outcome.pending}
    if status == keys.STATUS_FINISHED and not cfg.timing.enabled:  # the job ends here
        _log_model(tracker, cfg, flow, deq, ds, final)
    return _finish(tracker, final, status, metrics, t0, defer_record)


def run_timing(config: JobConfig | dict[str, Any], tracker: Tracker, device: torch.device,
               defer_record: bool = False) -> JobResult:
    """The timing phase: reload the best weights and time them (nothing else on the device)."""
    t0 = time.perf_counter()
    cfg = _as_config(config)
    seed_all(cfg.seed)
    t = cfg.timing
    if device.type == "cpu" and t.threads:
        torch.set_num_threads(int(t.threads))
    if closed_form(cfg):
        metrics = time_reference(load_data(cfg), cfg, device)
        return _finish(tracker, {"tags": {PHASE_TAG: "timed"}, "metrics": metrics},
                       keys.STATUS_FINISHED, metrics, t0, defer_record)
    ds, deq, flow = build(cfg, device)
    ctx = contexts(cfg, ds)
    state = fetch_state(tracker, keys.ART_CHECKPOINT_BEST)
    if state is None:
        raise RuntimeError("no best checkpoint to time (the train phase did not finish)")
    flow.load_state_dict(state["flow"])
    deq.load_state_dict(state["deq"])
    x = test_inputs(deq, ds.test, t.batch_size, device, cfg.seed + SEED_TIMING)
    timing = time_flow(flow, x, min_run_time=t.min_run_time, sample_batch=t.sample_batch_size,
                       context=rows(ctx["test"], t.batch_size, device),
                       compiled=compiler_for(cfg))
    tracker.log_json(timing.detail, keys.ART_TIMING)  # every measurement's blocks and load
    final = {"tags": {**timing.info, PHASE_TAG: "timed"}, "metrics": dict(timing.metrics)}
    _log_model(tracker, cfg, flow, deq, ds, final)
    return _finish(tracker, final, keys.STATUS_FINISHED, timing.metrics, t0, defer_record)


def error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-4000:]
