"""What a worker does with one job phase, whatever runs the worker (a Ray actor, or the
driver's own process with ``--backend inline``).

A worker writes checkpoints and artifacts itself and returns the final metrics batch, which
the driver writes while the worker already runs its next job (the driver is the one writer of
run records). A phase's exception comes back as a result with its traceback (the driver
records the job failed); a dead worker never returns, and its backend reports it lost.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from .. import keys
from ..suite.jobconfig import JobConfig

__all__ = ["Payload", "PhaseRunner"]

STEP_TAG_EVERY_S = 10.0  # how often a training job's step reaches the store, at most


class _StepTags:
    """The training loop's progress callback: the steps done go to the run's tag
    ``nfbench.live.step`` (for ``nfbench status``), at most every ``STEP_TAG_EVERY_S``
    (the driver marks the phase's start when it hands the job to the worker)."""

    def __init__(self, tracker):
        self.tracker = tracker
        self.last = time.monotonic()  # a job shorter than that sends no step at all

    def __call__(self, step: int, _val: float) -> None:
        now = time.monotonic()
        if now - self.last >= STEP_TAG_EVERY_S:
            self.last = now
            try:
                self.tracker.record(tags={keys.TAG_LIVE_STEP: int(step)})
            except Exception:  # noqa: BLE001, S110 (progress is news, never a reason to fail)
                pass


@dataclass(frozen=True)
class Payload:
    """One job phase to run: ``phase`` is "train" or "time"."""

    phase: str
    config: JobConfig
    uri: str
    run_id: str
    artifact_uri: str | None = None
    system_metrics: float | None = None  # seconds between system-metric samples (None: off)
    resumed: bool = False  # the run had an earlier attempt (its system points go on from it)


class PhaseRunner:
    """Runs the train or timing phase of a job on this worker's device."""

    def __init__(self, threads: int, device: str | None = None):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(threads))))
        from ..job import pick_device

        self.device = pick_device(device)
        self.threads = threads

    def run(self, p: Payload) -> dict[str, Any]:
        """Run one phase into MLflow run ``p.run_id``; a dict the driver settles."""
        from ..job import error_text, run_timing, run_training
        from ..tracking import MlflowTracker
        from ..tracking.system_metrics import SystemMetrics

        t0 = time.perf_counter()
        tracker = MlflowTracker(p.uri, p.run_id, artifact_uri=p.artifact_uri)
        monitor = SystemMetrics(p.uri, p.run_id, p.system_metrics if p.phase == "train"
                                else None, resume=p.resumed, defer_last=True)
        tracker.defer_inputs = True  # the data set travels with the final batch
        try:
            if p.phase == "train":
                with monitor:  # MLflow's system metrics while the job trains
                    result = run_training(p.config, tracker, self.device, defer_record=True,
                                          progress=_StepTags(tracker))
                if result.record is not None:  # trained: waiting for a timing worker, if any
                    rec = result.record
                    rec.setdefault("tags", {}).update(
                        {**monitor.tags(), keys.TAG_LIVE_PHASE: keys.LIVE_QUEUED})
                    rec["points"] = [*(rec.get("points") or []), *monitor.pending]
                    rec["inputs"] = tracker.deferred_inputs
            elif p.phase == "time":
                result = run_timing(p.config, tracker, self.device, defer_record=True)
            else:
                raise ValueError(f"unknown phase {p.phase!r}")
        except Exception as exc:  # recorded by the driver; the worker lives on
            try:
                from ..job import environment_tags

                tracker.record(tags=environment_tags(self.device))
                tracker.defer_inputs = False
                for spec in tracker.deferred_inputs:  # what it trained on, if it got so far
                    tracker.log_dataset(**spec)
            except Exception:
                pass
            return {"ok": False, "error": error_text(exc), "seconds": time.perf_counter() - t0,
                    "log_seconds": tracker.seconds + monitor.seconds, "pid": os.getpid()}
        seconds = time.perf_counter() - t0
        if result.record is not None:  # what the phase cost, for forecasts (plan --forecast)
            key = keys.TRAIN_PHASE_S if p.phase == "train" else keys.PERF_PHASE_S
            result.record.setdefault("metrics", {})[key] = seconds
        return {"ok": True, "status": result.status, "metrics": result.metrics,
                "record": result.record, "seconds": seconds,
                "log_seconds": tracker.seconds + monitor.seconds,
                "system_metrics_seconds": monitor.seconds,
                "system_metrics_points": monitor.points, "pid": os.getpid()}
