"""Tuning studies with the real thing: a local Ray instance running Ray Tune, a real SQLite
MLflow store. A tiny study (2 architectures × 4 trials × a few steps) runs, each trial a
child run of its study with its parameters and curve; a re-run repeats nothing; a study
interrupted mid-way resumes without repeating its finished trials; a trial whose worker is
killed continues from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from harness import keys
from harness.app import load_jobs
from harness.cli import main
from harness.suite.studies import plan_studies
from harness.tune.stages import run_suite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_counts import count_construction  # noqa: E402

pytestmark = pytest.mark.slow

SUITE = """\
name: {name}
matrix:
  architectures: [{{name: realnvp, layers: 2, hidden: 16}}, {{name: maf, layers: 2, hidden: 16}}]
  datasets: [moons]
  dequantization: [none]
  seeds: {seeds}
train: {{steps: {steps}, batch_size: 64, eval_every: 5, checkpoint_every: 10, log_every: 5}}
timing: {{enabled: false}}
resources: {{cpus: 1}}
retries: 2
tune:
  spaces:
    realnvp: {{lr: {{loguniform: [1e-3, 1e-2]}}, hidden: {{choice: [8, 16]}}}}
    {maf}
  budget: {{trials: {trials}}}
  scheduler: {scheduler}
  defaults: {defaults}
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="nfbench-tune",
             log_to_driver=False)
    yield
    ray.shutdown()


def _text(name: str, *, steps: int = 20, trials: int = 4,
          scheduler: str = "{name: asha, grace_period: 5, reduction_factor: 2}",
          maf: bool = True, full: bool = False) -> str:
    """A suite; only ``full`` retrains over two seeds beside the defaults (the other tests
    need one tuned job at most, so they cost less)."""
    maf_space = "maf: {lr: {loguniform: [1e-3, 1e-2]}, layers: {randint: [1, 3]}}" if maf else ""
    return SUITE.format(name=name, steps=steps, trials=trials, scheduler=scheduler,
                        maf=maf_space, seeds="[0, 1]" if full else "[0]",
                        defaults="true" if full else "false")


def _suite(tmp_path: Path, name: str, **kw):
    path = tmp_path / f"{name}.yaml"
    path.write_text(_text(name, **kw))
    suite, jobs = load_jobs(str(path), quiet=True)
    return suite, jobs, plan_studies(suite, jobs)


def _runs(uri: str, suite: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite)
    return client.search_runs([exp.experiment_id], max_results=1000)


def _by_kind(runs: list) -> dict[str, list]:
    out: dict[str, list] = {"study": [], "trial": [], "job": []}
    for r in runs:
        out[r.data.tags.get(keys.TAG_KIND, "job")].append(r)
    return out


def _curve_steps(uri: str, run, key: str = keys.TUNE_OBJECTIVE) -> list[int]:
    return [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, key)]


def test_a_tiny_study_runs_then_a_rerun_repeats_nothing(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    suite, jobs, studies = _suite(tmp_path, "tiny", full=True)
    assert len(studies) == 2
    lines: list[str] = []
    summary = run_suite(suite, jobs, studies, uri=uri, out=lines.append, tty=False)
    assert summary.ok, lines
    runs = _by_kind(_runs(uri, "tiny"))
    assert len(runs["study"]) == 2 and len(runs["trial"]) == 8
    for study in runs["study"]:
        tags = study.data.tags
        assert tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
        assert study.data.metrics[keys.TUNE_TRIALS] == 4
        children = [t for t in runs["trial"]
                    if t.data.tags[keys.TAG_PARENT_RUN] == study.info.run_id]
        assert len(children) == 4  # nested under their study in the MLflow UI
        assert sorted(int(t.data.tags[keys.TAG_TRIAL_NUMBER]) for t in children) == [0, 1, 2, 3]
        best = min(t.data.metrics[keys.TUNE_BEST] for t in children)
        assert study.data.metrics[keys.TUNE_BEST] == pytest.approx(best)
        assert json.loads(tags[keys.TAG_TUNE_BEST]) in [
            json.loads(t.data.tags[keys.TAG_TUNE_VALUES]) for t in children]
    for trial in runs["trial"]:
        tags, params = trial.data.tags, trial.data.params
        assert tags[keys.TAG_STOPPED_BY] in (keys.STOP_STEPS, keys.STOP_ASHA), tags
        values = json.loads(tags[keys.TAG_TUNE_VALUES])
        assert set(values) in ({"lr", "hidden"}, {"lr", "layers"})
        # its parameters: the sampled values, and the whole job config they went into
        assert float(params["tune.lr"]) == pytest.approx(values["lr"])
        assert float(params["train.optimizer.lr"]) == pytest.approx(values["lr"])
        for hp in set(values) - {"lr"}:
            assert int(params[f"arch.{hp}"]) == values[hp]
        # its curve: the objective at every validation until it stopped, each once
        steps = _curve_steps(uri, trial)
        last = int(trial.data.metrics[keys.TUNE_STEPS])
        assert steps == list(range(5, last + 1, 5))
        if tags[keys.TAG_STOPPED_BY] == keys.STOP_STEPS:
            assert last == 20
        assert _curve_steps(uri, trial, keys.VAL_NLL) == steps
        assert len(_curve_steps(uri, trial, keys.TRAIN_NLL)) >= 1
    # the tuned rows: each study's best values over both seeds, tagged with the study
    tuned = [r for r in runs["job"] if keys.TAG_STUDY in r.data.tags]
    assert len(tuned) == 4 and len(runs["job"]) == 8
    for r in tuned:
        assert r.data.tags[keys.TAG_ARCH_LABEL].endswith("tuned (4 trials)")
        assert r.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
        study = next(s for s in runs["study"]
                     if s.data.tags[keys.TAG_STUDY] == r.data.tags[keys.TAG_STUDY])
        best = json.loads(study.data.tags[keys.TAG_TUNE_BEST])
        assert float(r.data.params["train.optimizer.lr"]) == pytest.approx(best["lr"])

    # a re-run: both studies finished, so no trial runs again and no job either
    again: list[str] = []
    summary = run_suite(suite, jobs, studies, uri=uri, out=again.append, tty=False)
    assert sum("finished before; not run again" in line for line in again) == 2
    assert len(summary.skipped) == 8 and not summary.finished
    after = _by_kind(_runs(uri, "tiny"))
    assert sorted(r.info.run_id for r in after["trial"]) == sorted(
        r.info.run_id for r in runs["trial"])


def test_an_interrupted_study_resumes_without_repeating_finished_trials(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    suite, jobs, studies = _suite(tmp_path, "resume", maf=False, steps=30,
                                  scheduler="none")
    lines: list[str] = []

    def interrupt_after_two(line: str) -> None:  # Ctrl-C once two trials have ended
        lines.append(line)
        if sum(" trial " in x and "✓" in x for x in lines) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, jobs, studies, uri=uri, out=interrupt_after_two, tty=False)
    first = _by_kind(_runs(uri, "resume"))
    assert first["study"][0].data.tags[keys.TAG_STATUS] == keys.STATUS_KILLED
    ended = {r.data.tags[keys.TAG_TRIAL]: r for r in first["trial"]
             if r.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED}
    assert len(ended) >= 2 and not first["job"]

    again: list[str] = []
    summary = run_suite(suite, jobs, studies, uri=uri, out=again.append, tty=False)
    assert summary.ok and any("resumed" in line for line in again), again
    second = _by_kind(_runs(uri, "resume"))
    assert second["study"][0].data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
    trials = {r.data.tags[keys.TAG_TRIAL]: r for r in second["trial"]}
    assert len(trials) == len(second["trial"]) == 4  # one run per trial, none repeated
    for trial, run in ended.items():  # the finished trials were not run again
        assert trials[trial].info.end_time == run.info.end_time
        assert f"trial {int(trial.rsplit('_', 1)[1])}:" not in " ".join(again)
    for run in trials.values():
        assert run.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
        assert _curve_steps(uri, run) == list(range(5, 31, 5))  # every step once
    assert len([r for r in second["job"] if keys.TAG_STUDY in r.data.tags]) == 1


def test_a_killed_trial_worker_is_survived(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    suite, jobs, studies = _suite(tmp_path, "kill", maf=False, steps=40, trials=2,
                                  scheduler="none")
    killed: dict[str, int] = {}

    def kill_once(trial: str, result: dict) -> None:
        if not killed and result["step"] == 15:
            killed[trial] = result["pid"]
            os.kill(result["pid"], signal.SIGKILL)

    lines: list[str] = []
    summary = run_suite(suite, jobs, studies, uri=uri, out=lines.append, tty=False,
                        on_result=kill_once)
    assert summary.ok and killed, lines
    assert any("worker lost" in line for line in lines)
    trials = {r.data.tags[keys.TAG_TRIAL]: r for r in _by_kind(_runs(uri, "kill"))["trial"]}
    assert len(trials) == 2
    (victim,) = killed
    run = trials[victim]
    assert run.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
    assert run.data.tags[keys.TAG_STOPPED_BY] == keys.STOP_STEPS
    assert int(run.data.tags[keys.TAG_ATTEMPTS]) == 1
    assert _curve_steps(uri, run) == list(range(5, 41, 5))  # nothing lost, nothing doubled


def test_optuna_search_runs_a_study(local_ray, tmp_path):
    pytest.importorskip("optuna")
    path = tmp_path / "opt.yaml"
    path.write_text(_text("opt", steps=10, trials=3, scheduler="none", maf=False)
                    + "  search: optuna\n")
    suite, jobs = load_jobs(str(path), quiet=True)
    studies = plan_studies(suite, jobs)
    lines: list[str] = []
    summary = run_suite(suite, jobs, studies, uri=f"sqlite:///{tmp_path}/mlflow.db",
                        out=lines.append, tty=False)
    assert summary.ok, lines
    runs = _by_kind(_runs(f"sqlite:///{tmp_path}/mlflow.db", "opt"))
    (study,) = runs["study"]
    assert study.data.params["tune.search"] == "optuna"
    assert study.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
    values = [json.loads(t.data.tags[keys.TAG_TUNE_VALUES]) for t in runs["trial"]]
    assert len(values) == 3 and len({v["lr"] for v in values}) == 3
    assert all(1e-3 <= v["lr"] <= 1e-2 and v["hidden"] in (8, 16) for v in values)


def test_a_study_ends_when_its_compute_budget_does(local_ray, tmp_path):
    path = tmp_path / "hours.yaml"
    text = _text("hours", steps=100, scheduler="none", maf=False)
    path.write_text(text.replace("budget: {trials: 4}", "budget: {cpu_hours: 0.002}"))
    suite, jobs = load_jobs(str(path), quiet=True)
    studies = plan_studies(suite, jobs)
    lines: list[str] = []
    summary = run_suite(suite, jobs, studies, uri=f"sqlite:///{tmp_path}/mlflow.db",
                        out=lines.append, tty=False)
    assert summary.ok, lines
    runs = _by_kind(_runs(f"sqlite:///{tmp_path}/mlflow.db", "hours"))
    (study,) = runs["study"]
    assert study.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
    spent = sum(t.data.metrics.get(keys.TUNE_CPU_HOURS, 0.0) for t in runs["trial"])
    assert study.data.metrics[keys.TUNE_CPU_HOURS] == pytest.approx(spent)
    assert spent >= 0.002  # it ran until the budget was spent …
    reasons = [t.data.tags[keys.TAG_STOPPED_BY] for t in runs["trial"]]
    assert keys.STOP_BUDGET in reasons  # … and the trials running then were stopped
    assert all(t.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED for t in runs["trial"])


def test_nfbench_run_of_a_tuned_suite_builds_its_plan_once(local_ray, tmp_path, monkeypatch):
    """``nfbench run`` of a suite with a tune: section: one capacity, one store, one backend
    that connects once, for the studies and the tuned jobs after them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "once.yaml").write_text(_text("once", steps=10, trials=2, scheduler="none",
                                              maf=False))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    counts: Counter = Counter()
    count_construction(monkeypatch, counts)
    assert main(["run", "once.yaml", "--tracking-uri", uri, "--no-report", "--no-preflight",
                 "--num-cpus", "2"]) == 0
    assert counts == Counter(resources=1, store=1, backend=1, connect=1)
    runs = _by_kind(_runs(uri, "once"))
    # the tuned realnvp, and maf untuned (no space)
    assert len(runs["study"]) == 1 and len(runs["trial"]) == 2 and len(runs["job"]) == 2

