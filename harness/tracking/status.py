"""Where a suite stands, read from the tracking store alone (``nfbench status SUITE``): it works
from any machine that reaches the store, while the suite runs or after.

What the store holds, and so what this reports:

* the count of runs by nfbench status (``finished``, ``diverged``, ``failed``, ``killed``,
  ``running``: a worker runs it now), and of jobs *waiting*: runs open with no worker on
  them yet (tag ``nfbench.live.phase`` = ``queued``), and jobs with no run yet (the suite's
  job count is the experiment's tag ``nfbench.jobs``, written by the driver when it starts);
* for each running job, the phase its worker runs (tag ``nfbench.live.phase``), the steps done
  at its last validation (``nfbench.live.step``, sent at most every 10 s) of its budget
  (param ``train.steps``), and how long that phase has run (``nfbench.live.started``);
* for each failed job, its error's telling line: the exception line at the end of a
  traceback, else the error's first line;
* an estimate of the time left, ``(Σ_running r_i + waiting × d) / max(1, running)``, where a
  training job's remainder is ``r_i = min(t_i / s_i × S, 60 M) − t_i`` (t_i seconds for s_i
  of its S steps, M its ``train.minutes`` budget if any; a job with neither counts as ``d``)
  and ``d`` is the mean duration of
  the finished runs (end − start), or else the mean projected duration of the running ones.
  With no finished run and no step reported yet, there is no estimate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pandas as pd

from .. import keys
from .read import load_runs

__all__ = ["JobNow", "SuiteStatus", "error_line", "format_status", "suite_status"]

ORDER = (keys.STATUS_FINISHED, keys.STATUS_DIVERGED, keys.STATUS_FAILED, keys.STATUS_KILLED,
         keys.STATUS_RUNNING)
QUEUED = "queued"  # of the open runs: no worker on it yet


@dataclass
class JobNow:
    """A job running now."""

    name: str
    phase: str  # "train", "time", or "" before its worker said
    step: int | None
    steps: int | None
    seconds: float | None  # how long its current phase has run
    left: float | None = None  # estimated seconds left


@dataclass
class SuiteStatus:
    suite: str
    counts: dict[str, int]
    jobs: int | None  # the suite's job count, when a driver recorded it
    queued: int = 0  # runs open, no worker on them yet
    running: list[JobNow] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job, error line)
    mean_job_s: float | None = None
    left_s: float | None = None

    @property
    def not_started(self) -> int:
        """Jobs with no run yet (unknown job count: 0)."""
        return max(0, (self.jobs or 0) - sum(self.counts.values()) - self.queued)

    @property
    def waiting(self) -> int:
        """Jobs no worker runs yet: queued runs and jobs with no run."""
        return self.queued + self.not_started


def error_line(error: object) -> str:
    """The telling line of an error: a traceback's last line (the exception), else the first."""
    text = str(error or "").strip()
    if not text or text == "nan":
        return "(no error recorded)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if "Traceback (most recent call last)" in text else lines[0]


def _int(value: object) -> int | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(v) if math.isfinite(v) else None


def _float(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _job_name(row: pd.Series) -> str:
    parts = [row.get(keys.TAG_ARCH_LABEL) or row.get(keys.TAG_ARCH), row.get(keys.TAG_DATASET),
             row.get(keys.TAG_DEQUANT)]
    runtime = row.get(keys.TAG_RUNTIME)
    if isinstance(runtime, str) and runtime != "eager":
        parts.append(runtime)
    seed = _int(row.get(keys.TAG_SEED))
    shown = " · ".join(str(p) for p in parts if isinstance(p, str) and p)
    return f"{shown} · seed {seed}" if seed is not None else shown or str(row["run_id"])


def suite_status(uri: str, suite: str, now: float | None = None) -> SuiteStatus:
    """The state of ``suite`` in the store at ``uri`` (see the module docstring).

    Raises:
        UnknownSuiteError: the store has no experiment for ``suite``.
    """
    from mlflow.tracking import MlflowClient

    now = time.time() if now is None else now
    runs = load_runs(uri, [suite])
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name(suite)
    jobs = _int(exp.tags.get(keys.TAG_JOBS)) if exp is not None else None
    col = runs.get(keys.TAG_STATUS, pd.Series(dtype=object))
    status = col.fillna(keys.STATUS_RUNNING) if len(runs) else col
    live = runs.get(keys.TAG_LIVE_PHASE, pd.Series(dtype=object, index=runs.index))
    queued = (status == keys.STATUS_RUNNING) & ~live.isin(["train", "time"])
    counts = {s: int((status == s).sum()) for s in ORDER}
    counts[keys.STATUS_RUNNING] -= int(queued.sum())
    out = SuiteStatus(suite, counts, jobs, queued=int(queued.sum()))
    done = runs[status.isin(keys.DONE_STATUSES)] if len(runs) else runs
    durations = ((done["end_time"] - done["start_time"]).dt.total_seconds().dropna()
                 if len(done) else pd.Series(dtype=float))
    mean_done = float(durations.mean()) if len(durations) else None
    for _, row in runs[status == keys.STATUS_FAILED].iterrows():
        out.failures.append((_job_name(row), error_line(row.get(keys.TAG_ERROR))))
    projected = []
    for _, row in runs[(status == keys.STATUS_RUNNING) & ~queued].iterrows():
        started = _int(row.get(keys.TAG_LIVE_STARTED))
        phase = row.get(keys.TAG_LIVE_PHASE)
        job = JobNow(_job_name(row), phase if isinstance(phase, str) else "",
                     _int(row.get(keys.TAG_LIVE_STEP)), _int(row.get("train.steps")),
                     max(0.0, now - started) if started is not None else None)
        budget = _float(row.get("train.minutes"))
        if job.phase == "train" and job.seconds:
            totals = [budget * 60] if budget else []
            if job.step and job.steps:
                totals.append(job.seconds / job.step * job.steps)
            if totals:
                job.left = max(0.0, min(totals) - job.seconds)
                projected.append(min(totals))
        out.running.append(job)
    out.mean_job_s = mean_done if mean_done is not None else (
        sum(projected) / len(projected) if projected else None)
    waiting = out.waiting
    known = [j.left for j in out.running if j.left is not None]
    unknown = len(out.running) - len(known)
    if out.mean_job_s is not None:
        work = sum(known) + (unknown + waiting) * out.mean_job_s
        out.left_s = work / max(1, len(out.running))
    elif not out.running and not waiting:
        out.left_s = 0.0
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_status(st: SuiteStatus, where: str = "") -> str:
    """The status as lines of text, for a terminal."""
    total = sum(st.counts.values()) + st.queued
    of = f" of {st.jobs} jobs" if st.jobs is not None else ""
    lines = [f"suite {st.suite}{f' in {where}' if where else ''}: {total} runs{of}"]
    parts = [f"{s} {st.counts[s]}" for s in ORDER] + [f"queued {st.queued}"]
    if st.jobs is not None:
        parts.append(f"not started {st.not_started}")
    lines.append("  " + " · ".join(parts))
    if st.running:
        lines.append("running now:")
        for j in st.running:
            if j.phase == "train":
                what = (f"training, step {j.step:,}" if j.step is not None else "training")
                what += f" of {j.steps:,}" if j.steps and j.step is not None else ""
            elif j.phase == "time":
                what = "timing"
            else:
                what = "starting"
            left = f", about {_duration(j.left)} left" if j.left is not None else ""
            lines.append(f"  {j.name}: {what}, for {_duration(j.seconds)}{left}")
    if st.failures:
        lines.append("failed:")
        lines += [f"  {name}: {err}" for name, err in st.failures]
    if st.left_s is None:
        lines.append("time left: no estimate yet (no job has finished or reported a step)")
    elif st.left_s == 0 and not st.running and not st.waiting:
        lines.append("time left: none (nothing is running or waiting)")
    else:
        lines.append(f"time left: about {_duration(st.left_s)} ({len(st.running)} running, "
                     f"{st.waiting} waiting; a job takes about {_duration(st.mean_job_s)})")
    return "\n".join(lines)
