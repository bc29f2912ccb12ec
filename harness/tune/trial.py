"""One tuning trial, as Ray Tune runs it: the job's own :class:`~harness.job.train.Trainer`.

A trial is built by the code that builds a job (:func:`harness.job.run.prepare` and
:func:`harness.job.run.trainer_for`), from the study's base config with the sampled values in
place (:func:`harness.suite.studies.apply_values`), and runs :meth:`Trainer.run` — the same
training loop as a job, not a copy; this module only reports to Ray Tune. At each validation
(every ``train.eval_every`` steps) it reports, with the whole trainer state as a checkpoint:

* ``objective``: the validation score in the study's objective (bpd, or nats per example:
  for discrete data, nats = bpd · D · ln 2), ``best`` its minimum so far, ``step``;
* ``seconds`` (training and validation, every attempt), ``cpu_hours`` / ``gpu_hours``
  (seconds × the CPUs or GPU share the trial holds), what the study's budget counts;
* ``curve``: the training-curve points logged since the last report;
* ``finished`` and ``stopped_by`` once the trial's own budget ended it.

ASHA may stop a trial at any report; a worker lost mid-trial (killed, out of memory, its node
gone) makes Ray Tune restart it from its last checkpoint, so it loses only the steps since.
Checkpoints load weights-only.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .. import keys
from ..suite.jobconfig import JobConfig
from ..suite.studies import apply_values

__all__ = ["CHECKPOINT_FILE", "plain_values", "run_trial"]

CHECKPOINT_FILE = "trainer.pt"


def plain_values(config: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as plain Python (a searcher may hand NumPy scalars)."""
    out = {}
    for k, v in config.items():
        item = getattr(v, "item", None)
        out[k] = item() if callable(item) and not isinstance(v, (str, bytes)) else v
    return out


def _objective(objective: str | None, discrete: bool, dims: int):
    """Validation score (bpd for discrete data, else nats) → the study's objective."""
    if objective == "nll" and discrete:
        return lambda v: v * dims * math.log(2)
    return lambda v: v


def _resume(checkpoint) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    import torch

    with checkpoint.as_directory() as folder:
        data = (Path(folder) / CHECKPOINT_FILE).read_bytes()
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def run_trial(config: dict[str, Any], *, base: dict[str, Any], objective: str | None,
              cpus: float, gpus: float) -> None:
    """Ray Tune's function trainable (``config``: the sampled values); see the module."""
    import torch
    from ray import tune

    from ..job.environment import pick_device
    from ..job.run import prepare, trainer_for
    from ..job.tracker import NullTracker
    from ..job.train import Trainer

    torch.set_num_threads(max(1, math.floor(cpus)))
    cfg = JobConfig.from_dict(apply_values(base, plain_values(config)))
    # the trial's checkpoints are Ray Tune's, at every validation: none of the job's own
    train = cfg.train.model_copy(update={"checkpoint_every": 10**8})
    device = pick_device()
    parts = prepare(cfg, device)
    ds, deq = parts[0], parts[1]
    resume = _resume(tune.get_checkpoint())
    to_objective = _objective(objective, ds.kind == "discrete", deq.dims)
    sent = {"step": int(resume["step"]) if resume else 0}
    trainer: Trainer | None = None

    def report(step: int, val: float, stopped_by: str | None = None) -> None:
        state = trainer.state
        points = [(s, k, v) for s, _, k, v in state.curves if s > sent["step"]]
        state.pending.clear()  # nothing is sent from here: the points travel in the result
        seconds = trainer.seconds()
        finished = stopped_by is not None or (train.steps is not None and step >= train.steps)
        result = {
            "step": step, "objective": to_objective(val),
            "best": to_objective(state.best_val), "seconds": seconds,
            "cpu_hours": seconds * cpus / 3600, "gpu_hours": seconds * gpus / 3600,
            "curve": points, "finished": int(finished),
            "stopped_by": stopped_by or (keys.STOP_STEPS if finished else ""),
            "pid": os.getpid(),
        }
        buf = io.BytesIO()
        torch.save(trainer.state_dict(), buf)
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / CHECKPOINT_FILE).write_bytes(buf.getvalue())
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        sent["step"] = step

    trainer = trainer_for(cfg, parts, NullTracker(), device, resume=resume, progress=report,
                          budget=train)
    outcome = trainer.run()
    if outcome.stopped_by in (keys.STOP_DIVERGED, keys.STOP_MINUTES, keys.STOP_PATIENCE):
        last = trainer.state.best_val if math.isfinite(trainer.state.best_val) else math.inf
        report(outcome.steps, last, stopped_by=outcome.stopped_by)
