"""The tuning stage: each study of a suite on Ray Tune, before the job matrix.

For each study (one architecture × data set × scheme with a search space), in turn:

1. its key is claimed in the suite's ledger (a second driver of the suite waits for a study
   another live driver runs, and takes it over when that driver is gone);
2. its MLflow run is found by key: a *finished* study is never run again (its best values
   are read back); an unfinished one is resumed with ``Tuner.restore`` from its Ray Tune
   state (trials that ended stay ended, the others continue from their last checkpoints);
   otherwise a new ``Tuner`` starts;
3. Ray Tune runs the trials (:func:`~harness.tune.trial.run_trial`) with the suite's
   resources per trial, the search algorithm (random: Ray Tune's random search; optuna:
   ``OptunaSearch``), ASHA over training steps, ``retries`` restarts of a trial whose worker
   died, and the compute budget (:class:`~harness.tune.callbacks.ComputeBudget`);
   :class:`~harness.tune.callbacks.RecordTrials` writes every trial into MLflow;
4. the study's run records its best trial (lowest validation objective over all reports),
   the trials run and the compute spent.

Ray Tune keeps each study's state and trial checkpoints under the tuning storage
(``<storage>/<suite>/<study key>``): by default a ``tune/`` folder beside an SQLite store;
on a cluster of several nodes it must be a path every node reaches (NFS, or ``s3://…``).
Ctrl-C (or SIGTERM) lets Ray Tune save its state, marks the study and its running trials
killed, and stops the suite; the next run resumes them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import keys
from ..schedule.plan import RunPlan
from ..suite import Suite
from ..suite.expand import flatten
from ..suite.studies import Study
from ..suite.tune_schema import Distribution
from ..tracking.claims import hold_or_wait
from ..tracking.studies import StudyRuns, TrialRuns, best_values

__all__ = ["StudyOutcome", "default_storage", "run_studies", "tune_domain"]

MARKER = "nfbench-study.json"  # beside Ray Tune's state: the study run it belongs to


@dataclass
class StudyOutcome:
    """How a study ended: its best values (None when no trial gave a finite score)."""

    study: Study
    run_id: str
    status: str
    values: dict[str, Any] | None = None
    best: float | None = None
    trials: int = 0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    skipped: bool = False  # finished before this run
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


def default_storage(uri: str) -> str:
    """Where Ray Tune keeps studies' state: ``$NFBENCH_TUNE_STORAGE``, else a ``tune/``
    folder beside an SQLite store (or inside a file store), else ``~/.nfbench/tune``."""
    if os.environ.get("NFBENCH_TUNE_STORAGE"):
        return os.environ["NFBENCH_TUNE_STORAGE"]
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).resolve().parent / "tune")
    if uri.startswith("file://"):
        return str(Path(uri.removeprefix("file://")) / "tune")
    return str(Path.home() / ".nfbench" / "tune")


def _quiet_ray_tune() -> None:
    """Ray Tune's own tables and logger warnings would drown the suite's progress lines."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _tags(study: Study) -> dict[str, str]:
    return {keys.TAG_ARCH: study.arch.name, keys.TAG_ARCH_LABEL: study.arch.display,
            keys.TAG_DATASET: study.dataset.name, keys.TAG_DEQUANT: study.dequant.name,
            keys.TAG_STUDY: study.key, keys.TAG_SUITE: study.suite}


def _params(study: Study) -> dict[str, Any]:
    t = study.settings
    base = study.config.as_dict()
    out = flatten(base)
    out.update({f"tune.space.{k}": json.dumps(v) for k, v in study.plain_space().items()})
    out.update(flatten({"tune": {"budget": t.budget.model_dump(mode="json")}}))
    out.update({"tune.objective": t.objective or "native", "tune.search": t.search,
                "tune.scheduler": json.dumps(None if t.scheduler is None
                                             else t.scheduler.model_dump(mode="json")),
                "tune.seed": t.seed, "tune.cpus": study.cpus, "tune.gpus": study.gpus})
    return out


def tune_domain(dist: Distribution):
    """A suite's distribution as Ray Tune's domain (``tune.loguniform(low, high)`` …)."""
    from ray import tune

    if dist.name == "choice":
        return tune.choice(list(dist.args))
    return getattr(tune, dist.name)(*dist.args)


def _tuner(study: Study, path: Path, runs: TrialRuns, resume: bool, suite: Suite):
    """A new or restored ``Tuner`` for ``study`` (Ray Tune imported here)."""
    from ray import tune

    from .callbacks import ComputeBudget, RecordTrials
    from .trial import run_trial

    t = study.settings
    res = suite.resources
    resources: dict[str, float] = {"cpu": res.cpus, "gpu": res.gpus}
    if res.memory_gb:
        resources["memory"] = res.memory_gb * 2**30
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=study.config.as_dict(), objective=t.objective,
                             cpus=res.cpus, gpus=res.gpus), resources)
    if resume:
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True,
                                  resume_errored=True)
    if t.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search = OptunaSearch(seed=t.seed)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search = BasicVariantGenerator(random_state=t.seed)
    scheduler = None
    if t.scheduler is not None:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="step", max_t=suite.train.steps,
                                  grace_period=t.scheduler.grace_period or suite.train.eval_every,
                                  reduction_factor=t.scheduler.reduction_factor)
    budget = ComputeBudget(runs, t.budget.cpu_hours, t.budget.gpu_hours)
    recorder = RecordTrials(study.key, runs, budget, study.config.as_dict(), study.describe())
    return tune.Tuner(
        trainable,
        param_space={k: tune_domain(d) for k, d in sorted(study.space.items())},
        tune_config=tune.TuneConfig(
            metric="objective", mode="min", search_alg=search, scheduler=scheduler,
            num_samples=t.budget.trials or -1, max_concurrent_trials=t.max_concurrent,
            reuse_actors=True),
        run_config=tune.RunConfig(
            name=path.name, storage_path=str(path.parent), verbose=0, stop=budget,
            callbacks=[recorder],
            failure_config=tune.FailureConfig(max_failures=suite.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def _claim(ledger, study_runs: StudyRuns, study: Study, out: Callable[[str], None]) -> None:
    """Hold the study's claim through the ledger's one claim helper: wait while another live
    driver runs it, take it over when that driver is gone (or return at once when it
    finished the study meanwhile)."""

    def settled() -> bool:
        run = study_runs.find(study.key)
        return run is not None and run.data.tags.get(keys.TAG_STATUS) in keys.DONE_STATUSES

    hold_or_wait(ledger, f"study-{study.key}", settled,
                 lambda: out(f"  ⋯ study {study.describe()}: run by another driver; "
                             "waiting for it"))


def _read_outcome(study: Study, run, study_runs: StudyRuns, skipped: bool) -> StudyOutcome:
    tags, metrics = run.data.tags, run.data.metrics
    trials = study_runs.children(run.info.run_id)
    reasons: dict[str, int] = {}
    for t in trials:
        r = t.data.tags.get(keys.TAG_STOPPED_BY, "")
        reasons[r] = reasons.get(r, 0) + 1
    return StudyOutcome(study, run.info.run_id, tags.get(keys.TAG_STATUS, keys.STATUS_RUNNING),
                        best_values(tags.get(keys.TAG_TUNE_BEST)), metrics.get(keys.TUNE_BEST),
                        int(metrics.get(keys.TUNE_TRIALS, len(trials))),
                        metrics.get(keys.TUNE_CPU_HOURS, 0.0),
                        metrics.get(keys.TUNE_GPU_HOURS, 0.0), skipped, reasons=reasons)


def _settle(study: Study, run_id: str, study_runs: StudyRuns) -> tuple[bool, dict, dict]:
    """Whether the study's budget is used up, its metrics and tags, from its trials' runs."""
    trials = study_runs.children(run_id)
    ended = [t for t in trials if t.data.tags.get(keys.TAG_STATUS) in
             (*keys.DONE_STATUSES, keys.STATUS_FAILED)]
    cpu = sum(t.data.metrics.get(keys.TUNE_CPU_HOURS, 0.0) for t in trials)
    gpu = sum(t.data.metrics.get(keys.TUNE_GPU_HOURS, 0.0) for t in trials)
    b = study.settings.budget
    done = ((b.trials is not None and len(ended) >= b.trials)
            or (b.cpu_hours is not None and cpu >= b.cpu_hours)
            or (b.gpu_hours is not None and gpu >= b.gpu_hours))
    done = done and len(ended) == len(trials)
    scored = [(t.data.metrics.get(keys.TUNE_BEST, math.inf), int(t.data.tags.get(
        keys.TAG_TRIAL_NUMBER, 0)), t) for t in ended]
    scored = [s for s in scored if math.isfinite(s[0])]
    metrics = {keys.TUNE_TRIALS: len(trials), keys.TUNE_CPU_HOURS: cpu,
               keys.TUNE_GPU_HOURS: gpu}
    tags: dict[str, Any] = {}
    if scored:
        best, _, run = min(scored, key=lambda s: (s[0], s[1]))
        metrics[keys.TUNE_BEST] = best
        tags[keys.TAG_TUNE_BEST] = run.data.tags.get(keys.TAG_TUNE_VALUES, "{}")
        tags[keys.TAG_TUNE_BEST_RUN] = run.info.run_id
    return done, metrics, tags


def _run_one(study: Study, suite: Suite, plan: RunPlan, ledger, storage: str) -> StudyOutcome:
    from ray import tune

    from .callbacks import LIVE

    t0 = time.monotonic()
    store, force, out = plan.store, plan.force, plan.hooks.out
    study_runs = StudyRuns(store)
    _claim(ledger, study_runs, study, out)
    run_id, before = study_runs.open(study.key, f"tune · {study.describe()}", _tags(study),
                                     _params(study), force=force)
    if before in keys.DONE_STATUSES:
        out(f"  · study {study.describe()}: finished before; not run again (--force re-runs it)")
        return _read_outcome(study, study_runs.find(study.key), study_runs, skipped=True)
    path = Path(storage) / suite.name / study.key
    marker = path / MARKER
    mine = marker.is_file() and json.loads(marker.read_text()).get("run_id") == run_id
    resume = not force and mine and tune.Tuner.can_restore(str(path))
    if not resume:
        if path.exists():
            shutil.rmtree(path)
        if before is not None:
            gone = study_runs.discard_trials(run_id)
            if gone:
                out(f"  ! study {study.describe()}: its Ray Tune state is gone; its {gone} "
                    "earlier trial runs are deleted and the study starts again")
        path.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"run_id": run_id, "study": study.key}))
    runs = TrialRuns(store.uri, store.experiment_id, run_id, _tags(study))
    b = study.settings.budget
    budget = ", ".join(x for x in (f"{b.trials} trials" if b.trials else "",
                                   f"{b.cpu_hours:g} CPU-h" if b.cpu_hours else "",
                                   f"{b.gpu_hours:g} GPU-h" if b.gpu_hours else "") if x)
    out(f"study {study.describe()}: {'resumed' if resume else 'started'} ({budget}, "
        f"{study.settings.search} search, "
        f"{'ASHA' if study.settings.scheduler else 'no early stopping'}) → {path}")
    LIVE[study.key] = {"out": out, "on_result": plan.hooks.on_result}
    try:
        _tuner(study, path, runs, resume, suite).fit()
    except KeyboardInterrupt:
        _stop(study_runs, run_id, runs, "stopped by the user before it finished")
        raise
    finally:
        LIVE.pop(study.key, None)
    b = study.settings.budget
    cpu, gpu = runs.spent()
    if ((b.cpu_hours is not None and cpu >= b.cpu_hours)
            or (b.gpu_hours is not None and gpu >= b.gpu_hours)):
        # Ray Tune ends the trials it stops for the budget (stop_all) without a callback
        runs.close_open(keys.STATUS_FINISHED, keys.STOP_BUDGET)
    done, metrics, tags = _settle(study, run_id, study_runs)
    if not done:  # Ray Tune caught Ctrl-C, saved its state and returned
        _stop(study_runs, run_id, runs, "stopped by the user before it finished")
        raise KeyboardInterrupt
    status = keys.STATUS_FINISHED if keys.TUNE_BEST in metrics else keys.STATUS_FAILED
    study_runs.close(run_id, status, metrics, tags,
                     error=None if status == keys.STATUS_FINISHED else
                     "no trial reached a finite validation score")
    outcome = _read_outcome(study, study_runs.find(study.key), study_runs, skipped=False)
    outcome.seconds = time.monotonic() - t0
    best = f"best {outcome.best:.4f}" if outcome.best is not None else "no finite score"
    out(f"study {study.describe()}: {status}, {outcome.trials} trials, {best} "
        f"({outcome.seconds:.0f} s; {', '.join(f'{n} {r}' for r, n in outcome.reasons.items())})")
    return outcome


def _stop(study_runs: StudyRuns, run_id: str, runs: TrialRuns, reason: str) -> None:
    try:
        runs.close_open(keys.STATUS_KILLED, "interrupted")
        study_runs.close(run_id, keys.STATUS_KILLED, error=reason)
    except Exception:  # noqa: BLE001, S110 — an unreachable store: the runs resume later
        pass


def run_studies(suite: Suite, studies: list[Study], plan: RunPlan) -> list[StudyOutcome]:
    """Run (or resume, or read back) every study of ``suite`` in turn on ``plan`` (connected:
    Ray must be up). ``plan.hooks.on_result(trial id, result)`` is called after each trial
    result is recorded."""
    if not studies:
        return []
    _quiet_ray_tune()
    storage = plan.tune_storage or default_storage(plan.store.uri)
    ledger = plan.store.ledger(jobs=len(studies))
    ledger.start()
    try:
        return [_run_one(s, suite, plan, ledger, storage) for s in studies]
    finally:
        ledger.stop()
