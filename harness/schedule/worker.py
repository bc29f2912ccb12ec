"""The Ray actor that runs job phases: one actor per resource slot, reused across jobs.

An actor imports torch once (2–5 s, FIELD-NOTES.md) and then takes job after job. It writes
checkpoints and artifacts itself and returns the final metrics batch, which the driver writes
while the actor already runs its next job (the driver is the one writer of run records). A phase's
exception comes back as a result with its traceback (the driver records the job failed);
a dead actor (killed, out of memory, a lost node) comes back as ``RayActorError`` and the
driver retries the job on the restarted actor, which resumes from the last checkpoint.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray

__all__ = ["JobWorker"]


@ray.remote(max_restarts=0, max_task_retries=0)  # the driver replaces dead actors itself
class JobWorker:
    """Runs the train or timing phase of a job on this actor's device."""

    def __init__(self, threads: int, device: str | None = None):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(threads))))
        from ..job import pick_device

        self.device = pick_device(device)
        self.threads = threads

    def where(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {"pid": os.getpid(), "node": ctx.get_node_id(), "device": str(self.device),
                "resources": ctx.get_assigned_resources()}

    def run(self, phase: str, config: dict[str, Any], uri: str, run_id: str,
            artifact_uri: str | None = None) -> dict[str, Any]:
        """Run one phase ("train" or "time") of a job into MLflow run ``run_id``."""
        from ..job import error_text, run_timing, run_training
        from ..tracking import MlflowTracker

        t0 = time.perf_counter()
        tracker = MlflowTracker(uri, run_id, artifact_uri=artifact_uri)
        try:
            if phase == "train":
                result = run_training(config, tracker, self.device, defer_record=True)
            elif phase == "time":
                result = run_timing(config, tracker, self.device, defer_record=True)
            else:
                raise ValueError(f"unknown phase {phase!r}")
        except Exception as exc:  # recorded by the driver; the actor lives on
            try:
                from ..job import environment_tags

                tracker.record(tags=environment_tags(self.device))
            except Exception:
                pass
            return {"ok": False, "error": error_text(exc), "seconds": time.perf_counter() - t0,
                    "log_seconds": tracker.seconds, "pid": os.getpid()}
        return {"ok": True, "status": result.status, "metrics": result.metrics,
                "record": result.record, "seconds": time.perf_counter() - t0,
                "log_seconds": tracker.seconds, "pid": os.getpid()}
