"""Every finished run's flow as an MLflow LoggedModel, through a real SQLite store and real
jobs: linked to its run, data set and metrics; loaded back with one call, giving the run's own
evaluation; ranked by ``search_logged_models`` as ``nfbench promote`` and the report rank
configurations; the promoted alias loaded in a fresh process; pickles refused unrun."""

from __future__ import annotations

import json
import math
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from harness import keys
from harness.app import load_jobs
from harness.cli import main
from harness.job.components import build
from harness.measure import evaluate_likelihood
from harness.report.pairwise import seed_frame
from harness.report.promote import alias_for
from harness.report.sections.leaderboards import (
    leaderboard_frame,
    leaderboard_table,
    leaderboard_with_seeds,
)
from harness.report.table import aggregate, prepare
from harness.schedule import run_jobs
from harness.tracking.models import ModelRefused, download, load_flow
from harness.tracking.read import load_runs

CPU = torch.device("cpu")
# two configurations far apart (a 2-layer RealNVP against a 1-layer MAF), two seeds each
SUITE = """\
name: lm
matrix:
  architectures: [{name: realnvp, layers: 2, hidden: 16}, {name: maf, layers: 1, hidden: 4}]
  datasets: [{name: moons, seed: 3}]
  dequantization: [none]
  seeds: [0, 1]
train: {steps: 60, batch_size: 64, eval_every: 20, checkpoint_every: 60, log_every: 20}
eval: {max_examples: 400}
timing: {min_run_time: 0.01, batch_size: 64, sample_batch_size: 64}
system_metrics: {enabled: false}
"""


def _run(tmp: Path, text: str, uri: str):
    (tmp / "suite.yaml").write_text(text)
    suite, jobs = load_jobs(str(tmp / "suite.yaml"), quiet=True)
    summary = run_jobs(suite, jobs, uri=uri, backend="inline", out=lambda s: None)
    assert sorted(summary.finished) == sorted(j.key for j in jobs)
    return jobs


@pytest.fixture(scope="module")
def lm(tmp_path_factory, _empty_store):
    """The suite above, run inline into a fresh SQLite store: (uri, jobs, runs by job key)."""
    tmp = tmp_path_factory.mktemp("lm")
    shutil.copyfile(_empty_store, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp}/mlflow.db"
    jobs = _run(tmp, SUITE, uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lm")
    runs = {r.data.tags[keys.TAG_KEY]: r for r in client.search_runs([exp.experiment_id])}
    return uri, exp.experiment_id, jobs, runs


def test_every_finished_run_is_a_logged_model_with_its_metrics(lm):
    uri, exp_id, jobs, runs = lm
    client = MlflowClient(uri)
    models = client.search_logged_models([exp_id])
    assert len(models) == len(runs) == 4
    for job in jobs:
        run = runs[job.key]
        (out,) = run.outputs.model_outputs  # the runs table's Models column
        model = client.get_logged_model(out.model_id)
        assert run.data.tags[keys.TAG_MODEL] == model.model_id
        assert model.source_run_id == run.info.run_id
        assert model.status == LoggedModelStatus.READY
        assert model.tags[keys.TAG_ARCH] == job.config.arch.name
        linked = {m.key: m for m in model.metrics}
        assert set(linked) == {keys.EVAL_NLL, keys.PERF_SAMPLE_THROUGHPUT}  # no bpd: continuous
        (ds,) = run.inputs.dataset_inputs
        for key, m in linked.items():
            assert m.value == run.data.metrics[key]
            assert (m.dataset_name, m.dataset_digest) == (ds.dataset.name, ds.dataset.digest)
            # the run's own history gains no second point
            assert len(client.get_metric_history(run.info.run_id, key)) == 1


def test_a_loaded_flow_gives_the_runs_evaluation(lm):
    """Continuous data, no dequantization: −mean log_prob over the evaluated test rows is the
    run's eval/nll; predict returns the same log-probs; samples have the event shape."""
    uri, _, jobs, runs = lm
    job = jobs[0]
    run = runs[job.key]
    mlflow.set_tracking_uri(uri)
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{run.data.tags[keys.TAG_MODEL]}")
    finally:
        mlflow.set_tracking_uri(None)
    flow = pyfunc.unwrap_python_model()
    ds, _, _ = build(job.config, CPU)
    test = ds.test[: job.config.eval.max_examples]
    lp = flow.log_prob(test).double()
    assert -float(lp.mean()) == pytest.approx(run.data.metrics[keys.EVAL_NLL], rel=1e-5)
    assert torch.allclose(torch.as_tensor(pyfunc.predict(test[:50].numpy())),
                          lp[:50].float(), rtol=1e-5, atol=1e-5)
    x = flow.sample(9)
    assert x.shape == (9, 2) and torch.isfinite(flow.log_prob(x)).all()
    safe = load_flow(f"models:/{run.data.tags[keys.TAG_MODEL]}", tracking_uri=uri)
    assert torch.allclose(safe.log_prob(test[:50]), lp[:50].float(), rtol=1e-6, atol=1e-6)


def test_search_logged_models_promote_and_the_report_agree(lm, capsys, tmp_path):
    """The best model by eval/nll is of the configuration the report ranks best and promote
    registers; the alias loads in a fresh process that imports no nfbench driver."""
    uri, exp_id, _, runs = lm
    mlflow.set_tracking_uri(uri)
    try:
        best = mlflow.search_logged_models(
            experiment_ids=[exp_id], max_results=1, output_format="list",
            order_by=[{"field_name": f"metrics.{keys.EVAL_NLL}", "ascending": True}])[0]
    finally:
        mlflow.set_tracking_uri(None)
    table = prepare(load_runs(uri, ["lm"]))
    seeds = seed_frame(table)
    report_best = seeds[seeds["vs_best"] == "best"]["config"].item()
    best_config = table[table["run_id"] == best.source_run_id]["config"].item()
    assert best_config == report_best
    capsys.readouterr()
    assert main(["promote", "lm", "--tracking-uri", uri]) == 0
    printed = capsys.readouterr().out
    dataset = table["dataset"].iloc[0]
    alias = alias_for(dataset)
    assert printed.startswith(f"{dataset}: {report_best} (mean ")
    assert "tied with the best: " in printed and f"models:/lm@{alias} (version 1)" in printed
    version = MlflowClient(uri).get_model_version_by_alias("lm", alias)
    assert version.run_id in {r.info.run_id for r in runs.values()}
    assert table[table["run_id"] == version.run_id]["config"].item() == report_best
    assert main(["promote", "lm", "--tracking-uri", uri]) == 0  # again: the same version
    assert MlflowClient(uri).get_model_version_by_alias("lm", alias).version == version.version
    assert main(["promote", "lm", "--tracking-uri", uri, "--name", "it's"]) == 2
    assert "--name: \"it's\" is not a registered model name" in capsys.readouterr().err
    code = textwrap.dedent(f"""
        import json, sys, mlflow
        flow = mlflow.pyfunc.load_model("models:/lm@{alias}").unwrap_python_model()
        x = flow.sample(5)
        lp = flow.log_prob(x)
        drivers = [m for m in sys.modules if m.startswith(("harness.schedule", "harness.cli",
                                                           "harness.app", "harness.job",
                                                           "harness.tracking"))]
        print(json.dumps({{"shape": list(x.shape), "finite": bool(lp.isfinite().all()),
                          "n": len(lp), "drivers": drivers}}))
        """)
    env = {**_env(), "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {"shape": [5, 2], "finite": True, "n": 5, "drivers": []}


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")])
    return env


class _Payload:
    """A pickle that, if ever unpickled, leaves a file behind (the proof that code ran)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _local_copy(uri: str, model_id: str, dst: Path) -> Path:
    return download(f"models:/{model_id}", dst, uri)


def test_pickles_in_a_model_are_refused_and_never_run(lm, tmp_path):
    uri, _, _, runs = lm
    model_id = next(iter(runs.values())).data.tags[keys.TAG_MODEL]
    marker = tmp_path / "ran"
    # 1. a pickled program in place of the weights: refused by the weights-only load
    root = _local_copy(uri, model_id, tmp_path / "a")
    (weights,) = root.rglob(keys.ART_MODEL_WEIGHTS)
    weights.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(RuntimeError, match=r"refused to load these weights.*re-log"):
        mlflow.pyfunc.load_model(str(root))
    with pytest.raises(RuntimeError, match="refused to load these weights"):
        load_flow(str(root))
    # 2. a python_model.pkl with the MLmodel pointing at it (MLflow would unpickle it)
    root = _local_copy(uri, model_id, tmp_path / "b")
    (root / "python_model.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    meta = yaml.safe_load((root / "MLmodel").read_text())
    pyfunc = meta["flavors"]["python_function"]
    pyfunc.pop("model_code_path", None)
    pyfunc["python_model"] = "python_model.pkl"
    (root / "MLmodel").write_text(yaml.safe_dump(meta))
    with pytest.raises(ModelRefused, match=r"pickled objects \(python_model.pkl\)"):
        load_flow(str(root))
    # 3. code that is not nfbench's own
    root = _local_copy(uri, model_id, tmp_path / "c")
    code = root / Path(yaml.safe_load((root / "MLmodel").read_text())["flavors"][
        "python_function"]["model_code_path"]).name
    code.write_text(code.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ModelRefused, match="not this nfbench's logged_flow.py"):
        load_flow(str(root))
    assert not marker.exists()


def test_a_discrete_flow_is_logged_when_training_ends(tmp_path, sqlite_uri):
    """Timing off: the model is logged at the end of training. Its log_prob on the data space,
    with the dequantizer's log-weight and the evaluation's own noise, gives the run's eval/bpd;
    and it is the flow rebuilt from the run's best checkpoint."""
    text = SUITE.replace("name: lm", "name: dq").replace(
        "[{name: moons, seed: 3}]", "[{name: digits, flatten: true}]").replace(
        "[none]", "[uniform]").replace("seeds: [0, 1]", "seeds: [0]").replace(
        ", {name: maf, layers: 1, hidden: 4}", "").replace(
        "timing: {min_run_time: 0.01, batch_size: 64, sample_batch_size: 64}",
        "timing: {enabled: false}")
    (job,) = _run(tmp_path, text, sqlite_uri)
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("dq").experiment_id])
    model = client.get_logged_model(run.data.tags[keys.TAG_MODEL])
    assert {m.key for m in model.metrics} == {keys.EVAL_BPD, keys.EVAL_NLL}
    flow = load_flow(f"models:/{model.model_id}", tracking_uri=sqlite_uri)
    cfg = job.config
    ds, deq, rebuilt = build(cfg, CPU)
    torch.manual_seed(cfg.seed + 2)  # the test split's noise, as harness.job.evaluate draws it
    ev = evaluate_likelihood(flow, deq, ds.test[: cfg.eval.max_examples], cfg.eval.batch_size,
                             CPU, True)
    assert ev["bpd"] == pytest.approx(run.data.metrics[keys.EVAL_BPD], rel=1e-5)
    best = MlflowClient(sqlite_uri).download_artifacts(run.info.run_id, keys.ART_CHECKPOINT_BEST,
                                                       str(tmp_path))
    rebuilt.load_state_dict(torch.load(best, weights_only=True)["flow"])
    rebuilt.eval()
    w, _ = deq(ds.test[:100])
    with torch.no_grad():
        assert torch.allclose(flow.log_prob(w), rebuilt.log_prob(w), rtol=1e-5, atol=1e-4)
    assert flow.sample(3).shape == (3, *deq.model_shape)
    assert math.isfinite(float(flow.log_prob(w).mean()))


def test_the_leaderboard_links_each_configuration_to_its_model(lm):
    """A run's model page in the UI; a configuration's row links to its best run's model
    (the one promote registers)."""
    uri, exp_id, _, runs = lm
    ui = "http://127.0.0.1:5000"
    table = prepare(load_runs(uri, ["lm"]), ui)
    for run in runs.values():
        url = table[table["run_id"] == run.info.run_id]["model_url"].item()
        assert url == f"{ui}/#/experiments/{exp_id}/models/{run.data.tags[keys.TAG_MODEL]}"
    agg = aggregate(table, [keys.EVAL_NLL])
    for config, part in table.groupby("config"):
        best = part.sort_values("score").iloc[0]
        assert agg[agg["config"] == config]["model_url"].item() == best["model_url"]
    html = leaderboard_table(leaderboard_with_seeds(leaderboard_frame(agg), table))
    assert html.count(f'href="{ui}/#/experiments/{exp_id}/models/m-') == 2
