"""What the driver hooks into Ray Tune: a recorder of trials in MLflow, and the budget.

* :class:`RecordTrials` (a Ray Tune callback, in the driver): each trial gets a child run of
  its study when it starts (its parameters: the trial's whole job config and the sampled
  values), its curve at every report (the validation objective, the training curves), and
  the reason it stopped when it ends: ``steps`` (its whole budget), ``asha`` (stopped at a
  rung), ``budget`` (the study's compute budget ran out), ``minutes``, ``diverged``, or
  ``error`` (it raised, or its worker died more often than ``retries``).
* :class:`ComputeBudget` (a Ray Tune stopper): ends the study once its trials have spent the
  CPU- or GPU-hours of ``tune.budget``, counting trials of earlier drivers (from the store).

Ray Tune saves both with its experiment state and loads them again on restore; neither
holds anything but plain data and the store's address. What must not be saved (where the
driver prints) is looked up in :data:`LIVE` by study key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from ray import tune

from .. import keys
from ..suite.expand import flatten
from ..suite.studies import apply_values
from ..tracking.studies import TrialRuns
from .trial import plain_values

__all__ = ["LIVE", "ComputeBudget", "RecordTrials", "trial_number"]

#: study key → {"out": prints a progress line, "on_result": called with (trial id, result)
#: after each result is recorded (a hook for tests and monitors)}; this process only
LIVE: dict[str, dict[str, Callable[..., None] | None]] = {}


def trial_number(trial_id: str) -> int:
    """Ray Tune's trial ids end in a counter (``5f2c1_00003`` → 3)."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class ComputeBudget(tune.Stopper):
    """Stops every trial once ``cpu_hours`` or ``gpu_hours`` are spent (None: no limit)."""

    def __init__(self, runs: TrialRuns, cpu_hours: float | None, gpu_hours: float | None):
        self.runs, self.cpu_hours, self.gpu_hours = runs, cpu_hours, gpu_hours
        self.live: dict[str, tuple[float, float]] = {}  # trial → its latest (cpu, gpu) hours

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "live": {}}

    def spent(self) -> tuple[float, float]:
        cpu, gpu = 0.0, 0.0
        trials = set(self.runs.known) | set(self.live)
        for t in trials:
            known = self.runs.known.get(t, {})
            c, g = self.live.get(t, (0.0, 0.0))
            cpu += max(c, known.get("cpu_hours", 0.0))
            gpu += max(g, known.get("gpu_hours", 0.0))
        return cpu, gpu

    def exhausted(self) -> bool:
        if self.cpu_hours is None and self.gpu_hours is None:
            return False
        cpu, gpu = self.spent()
        return ((self.cpu_hours is not None and cpu >= self.cpu_hours)
                or (self.gpu_hours is not None and gpu >= self.gpu_hours))

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.live[trial_id] = (float(result.get("cpu_hours", 0.0)),
                               float(result.get("gpu_hours", 0.0)))
        return False

    def stop_all(self) -> bool:
        return self.exhausted()


class RecordTrials(tune.Callback):
    """Writes each trial into its child run (see the module docstring)."""

    def __init__(self, study_key: str, runs: TrialRuns, budget: ComputeBudget,
                 base: dict[str, Any], label: str):
        self.study_key, self.runs, self.budget = study_key, runs, budget
        self.base, self.label = base, label

    def _say(self, line: str) -> None:
        out = LIVE.get(self.study_key, {}).get("out")
        if out is not None:
            out(line)

    def _ensure(self, trial) -> str:
        """The trial's run (created on first sight with its parameters and values)."""
        if trial.trial_id in self.runs.known:
            return self.runs.ensure(trial.trial_id, 0, {})
        values = plain_values(trial.config)
        params = {**flatten(apply_values(self.base, values)),
                  **{f"tune.{k}": v for k, v in values.items()}}
        return self.runs.ensure(trial.trial_id, trial_number(trial.trial_id), params,
                                tags={keys.TAG_TUNE_VALUES: json.dumps(values, sort_keys=True)})

    # ── Ray Tune's hooks ──────────────────────────────────────────────────────────────────
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._ensure(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._ensure(trial)
        step = int(result.get("step", 0))
        metrics = {keys.TUNE_OBJECTIVE: result["objective"], keys.TUNE_BEST: result["best"],
                   keys.TUNE_STEPS: step, keys.TUNE_SECONDS: result["seconds"],
                   keys.TUNE_CPU_HOURS: result["cpu_hours"],
                   keys.TUNE_GPU_HOURS: result["gpu_hours"]}
        metrics = {k: float(v) for k, v in metrics.items() if v is not None}
        points = [(int(s), str(k), float(v)) for s, k, v in result.get("curve") or ()]
        self.runs.log(trial.trial_id, step, metrics, points)
        hook = LIVE.get(self.study_key, {}).get("on_result")
        if hook is not None:
            hook(trial.trial_id, result)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._say(f"  ↻ {self.label} · trial {trial_number(trial.trial_id)}: worker lost; "
                  "restarting from its last checkpoint")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ensure(trial)
        result = trial.last_result or {}
        if result.get("finished"):
            reason = result.get("stopped_by") or keys.STOP_STEPS
        elif self.budget.exhausted():
            reason = keys.STOP_BUDGET
        else:
            reason = keys.STOP_ASHA
        status = keys.STATUS_DIVERGED if reason == keys.STOP_DIVERGED else keys.STATUS_FINISHED
        self.runs.close(trial.trial_id, status, reason, attempts=trial.num_failures)
        best = result.get("best", math.inf)
        score = f"best {best:.4f}" if isinstance(best, float) and math.isfinite(best) else ""
        self._say(f"  ✓ {self.label} · trial {trial_number(trial.trial_id)}: {reason} at "
                  f"step {result.get('step', 0)} {score}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ensure(trial)
        error = None
        try:
            err = trial.get_error()
            error = str(err) if err is not None else None
        except Exception:  # noqa: BLE001, S110 — an unreadable error file: the status says enough
            pass
        self.runs.close(trial.trial_id, keys.STATUS_FAILED, keys.STOP_ERROR, error=error,
                        attempts=trial.num_failures)
        last = (error or "").strip().splitlines()[-1:] or ["?"]
        self._say(f"  ✗ {self.label} · trial {trial_number(trial.trial_id)}: {last[0][:200]}")
