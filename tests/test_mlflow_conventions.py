"""nfbench's runs in MLflow's own terms, through a real SQLite store and a real job: the
experiment opens on its runs table, each run has MLflow's source tags, a description, its
data set as a dataset input, and system metrics while it trained."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from harness.app import load_jobs
from harness.cli import main
from harness.job.environment import code_revision
from harness.schedule import run_jobs
from harness.tracking import MlflowTracker, Store
from harness.tracking import conventions as mc
from harness.tracking.system_metrics import (
    TAG_INTERVAL,
    SystemMetrics,
    SystemMetricsError,
    interval_setting,
)

SUITE = """\
name: conv
matrix:
  architectures: [{{name: realnvp, layers: 2, hidden: 8}}]
  datasets: [{{name: moons, seed: 3}}]
  dequantization: [none]
  seeds: [0]
train: {{steps: {steps}, batch_size: 64, eval_every: 20, checkpoint_every: 20, log_every: 10}}
timing: {{enabled: false}}
system_metrics: {{enabled: {enabled}, interval: 0.5}}
"""


def _suite(tmp_path, steps=300, enabled="true"):
    path = tmp_path / "conv.yaml"
    path.write_text(SUITE.format(steps=steps, enabled=enabled))
    return load_jobs(str(path), quiet=True)


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("NFBENCH_SYSTEM_METRICS", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
        monkeypatch.delenv(var, raising=False)


def test_a_run_follows_mlflows_conventions(tmp_path, sqlite_uri, clean_env):
    suite, jobs = _suite(tmp_path)
    summary = run_jobs(suite, jobs, uri=sqlite_uri, backend="inline", out=lambda s: None)
    assert summary.finished == [jobs[0].key]
    client = MlflowClient(sqlite_uri)
    exp = client.get_experiment_by_name("conv")
    assert exp.tags[mc.EXPERIMENT_KIND] == "custom_model_development"
    (run,) = client.search_runs([exp.experiment_id])
    tags = run.data.tags
    # source: the code revision, as MLflow's runs table shows it
    revision = code_revision()
    assert tags[mc.SOURCE_NAME] == "nfbench run conv" and tags[mc.SOURCE_TYPE] == "LOCAL"
    if not revision.startswith("v"):
        assert tags[mc.SOURCE_COMMIT] == revision.removesuffix("+dirty")
    # the description: one line naming the job
    note = tags[mc.NOTE]
    assert "\n" not in note
    for part in ("realnvp", "moons", "dequantization none", "seed 0", "300 steps",
                 "batch 64", "suite conv", jobs[0].key):
        assert part in note, (part, note)
    # the data set as a dataset input: name, digest, options, split sizes
    (ds_input,) = client.get_run(run.info.run_id).inputs.dataset_inputs
    ds = ds_input.dataset
    fingerprint = run.data.params["data.fingerprint"]
    assert (ds.name, ds.digest) == ("moons", fingerprint[: mc.DIGEST_LEN])
    assert ds.source_type == "nfbench"
    assert json.loads(ds.source) == jobs[0].config.data.as_dict() == {"name": "moons",
                                                                        "seed": 3}
    profile = json.loads(ds.profile)
    assert profile["n_train"] == int(run.data.params["data.split.n_train"]) > 0
    assert {t.key: t.value for t in ds_input.tags} == {"mlflow.data.context": "train"}
    # system metrics while it trained, with the interval recorded
    assert tags[TAG_INTERVAL] == "0.5"
    cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    mem = client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
    assert len(cpu) >= 1 and len(mem) == len(cpu)
    assert sorted(m.step for m in cpu) == list(range(len(cpu)))
    assert all(0 <= m.value <= 100 for m in cpu) and all(m.value > 0 for m in mem)
    assert summary.system_metrics_points == len(cpu)
    assert 0 < summary.system_metrics_seconds <= summary.log_seconds


def test_system_metrics_off_in_the_suite_or_by_the_environment(tmp_path, sqlite_uri,
                                                               clean_env, monkeypatch):
    suite, jobs = _suite(tmp_path, steps=20, enabled="false")
    run_jobs(suite, jobs, uri=sqlite_uri, backend="inline", out=lambda s: None)
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("conv").experiment_id])
    assert not [k for k in run.data.metrics if k.startswith("system/")]
    assert TAG_INTERVAL not in run.data.tags
    assert interval_setting(False, 10.0, env={}) is None
    assert interval_setting(True, 10.0, env={}) == 10.0
    assert interval_setting(True, 10.0, env={"NFBENCH_SYSTEM_METRICS": "off"}) is None
    assert interval_setting(False, 10.0, env={"NFBENCH_SYSTEM_METRICS": "2.5"}) == 2.5
    for bad in ("fast", "0.1", "nan", "1e9"):
        with pytest.raises(SystemMetricsError, match="NFBENCH_SYSTEM_METRICS"):
            interval_setting(env={"NFBENCH_SYSTEM_METRICS": bad})
    # the CLI refuses a bad value before anything exists
    monkeypatch.setenv("NFBENCH_SYSTEM_METRICS", "sometimes")
    db = tmp_path / "never.db"
    assert main(["run", str(tmp_path / "conv.yaml"), "--tracking-uri", f"sqlite:///{db}",
                 "--backend", "inline", "--no-preflight"]) == 2
    assert not db.exists()


def test_a_resumed_run_keeps_one_dataset_input_and_continues_system_steps(tmp_path, sqlite_uri,
                                                                          clean_env):
    _, jobs = _suite(tmp_path)
    store = Store(sqlite_uri, "conv")
    jr = store.open_run(jobs[0], {}, None, False)
    tracker = MlflowTracker(sqlite_uri, jr.run_id)
    for _ in range(2):
        tracker.log_dataset("moons", "ab" * 32, {"name": "moons"}, {"n_train": 10})
        with SystemMetrics(sqlite_uri, jr.run_id, 30.0) as sm:
            pass
        assert sm.points == 1 and sm.tags() == {TAG_INTERVAL: "30"}
    client = MlflowClient(sqlite_uri)
    assert len(client.get_run(jr.run_id).inputs.dataset_inputs) == 1
    steps = [m.step for m in client.get_metric_history(jr.run_id,
                                                       "system/cpu_utilization_percentage")]
    assert sorted(steps) == [0, 1]  # the second attempt went on after the first's points


def test_an_experiment_made_before_is_marked_model_development(sqlite_uri):
    client = MlflowClient(sqlite_uri)
    old = client.create_experiment("old")
    other = client.create_experiment("mine", tags={mc.EXPERIMENT_KIND: "finetuning"})
    Store(sqlite_uri, "old")
    Store(sqlite_uri, "mine")
    assert client.get_experiment(old).tags[mc.EXPERIMENT_KIND] == mc.MODEL_DEVELOPMENT
    assert client.get_experiment(other).tags[mc.EXPERIMENT_KIND] == "finetuning"  # a choice


def test_nested_runs_fold_under_their_parent(sqlite_uri):
    client = MlflowClient(sqlite_uri)
    exp = client.create_experiment("study")
    parent = client.create_run(exp).info.run_id
    child = client.create_run(exp, tags=mc.nested_under(parent)).info.run_id
    found = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert [r.info.run_id for r in found] == [child]
    with pytest.raises(ValueError, match="parent"):
        mc.nested_under("")


def test_source_tags_and_note_from_plain_values():
    assert mc.source_tags("abc123def456+dirty", "s") == {
        mc.SOURCE_NAME: "nfbench run s", mc.SOURCE_TYPE: "LOCAL",
        mc.SOURCE_COMMIT: "abc123def456"}
    assert mc.SOURCE_COMMIT not in mc.source_tags("v0.1.0", "s")  # a version is no commit
    axes = {"arch": "maf", "dataset": "digits", "dequant": "uniform", "seed": 2}
    note = mc.job_note(axes, {"minutes": 5, "batch_size": 32}, "s", "k" * 16)
    assert note == ("maf on digits, dequantization uniform, seed 2: 5 min of batch 32 "
                    "(nfbench suite s, job kkkkkkkkkkkkkkkk)")
    long = mc.job_note({**axes, "arch": "x" * 5000}, {}, "s", "k")
    assert len(long) == mc.NOTE_MAX and long.endswith("…")
    with pytest.raises(ValueError, match="fingerprint"):
        mc.dataset_input("moons", "", {}, {})
