"""One job end to end without Ray: train, evaluate, diagnose, time, into a real SQLite store."""

from __future__ import annotations

import math

import pytest
import torch

from harness import data, keys
from harness.app import catalog
from harness.flows.families.histogram import Histogram
from harness.job import run_timing, run_training
from harness.job.components import build, contexts
from harness.measure import evaluate_likelihood
from harness.suite import expand, parse_suite
from harness.tracking import MlflowTracker, Store

CPU = torch.device("cpu")


def _jobs(text: str):
    suite, _ = parse_suite(text)
    return expand(suite, catalog().combination)[0]


def _run(tmp_path, job, timing=True):
    store = Store(f"sqlite:///{tmp_path}/m.db", job.suite)
    jr = store.open_run(job, {}, None, False, params=job.flat_params())
    tracker = MlflowTracker(store.uri, jr.run_id, artifact_uri=jr.artifact_uri)
    result = run_training(job.config, tracker, CPU)
    if timing and result.status == keys.STATUS_FINISHED:
        run_timing(job.config, tracker, CPU)
    return store, jr.run_id, result


def test_known_density_reports_the_gap_to_the_true_entropy(tmp_path):
    (job,) = _jobs("name: g\nmatrix: {architectures: [{name: realnvp, layers: 4}], "
                   "datasets: [8gaussians], dequantization: [none]}\n"
                   "train: {steps: 150, eval_every: 50, batch_size: 256}\n"
                   "timing: {batch_size: 128, min_run_time: 0.01}\n")
    store, run_id, result = _run(tmp_path, job)
    m = store.client.get_run(run_id).data.metrics
    ds = data.load("8gaussians")
    assert m[keys.EVAL_NLL_GAP] == pytest.approx(m[keys.EVAL_NLL] - ds.true_entropy)
    assert m[keys.EVAL_NLL_GAP] > -0.05  # a model cannot beat the true density (up to noise)
    for k in (keys.PERF_DENSITY_MS, keys.PERF_INVERSE_MS, keys.PERF_TRAIN_STEP_MS,
              keys.STAB_LATENT_KS, keys.STAB_LOGDET_STD):
        assert math.isfinite(m[k])
    arts = {a.path for a in store.client.list_artifacts(run_id)}
    assert keys.ART_SAMPLES in arts and keys.ART_CURVES in arts


def test_histogram_row_is_exact(tmp_path):
    (job,) = _jobs("name: h\nmatrix: {architectures: [histogram], datasets: [digits], "
                   "dequantization: [uniform]}\ntiming: {min_run_time: 0.01}\n")
    store, run_id, result = _run(tmp_path, job)
    ds = data.load("digits")
    exact = Histogram.fit(ds.train, levels=17, laplace=1.0).bits_per_dim(ds.test).mean()
    m = store.client.get_run(run_id).data.metrics
    assert m[keys.EVAL_BPD] == pytest.approx(float(exact), rel=1e-6)
    assert m[keys.PERF_SAMPLE_THROUGHPUT] > 0


def test_class_conditional_flow_uses_its_labels(tmp_path):
    (job,) = _jobs("name: c\nmatrix: {architectures: [{name: realnvp, layers: 4}], "
                   "datasets: [{name: digits, condition: label, flatten: true}], "
                   "dequantization: [{name: uniform, logit_alpha: 0.05}]}\n"
                   "train: {steps: 400, eval_every: 100, batch_size: 128}\n"
                   "timing: {batch_size: 64, min_run_time: 0.01}\n")
    store, run_id, result = _run(tmp_path, job)
    assert result.status == keys.STATUS_FINISHED
    ds, deq, flow = build(job.config, CPU)
    ctx = contexts(job.config, ds)
    assert ctx["test"].shape == (len(ds.test), 10)
    path = MlflowTracker(store.uri, run_id).fetch(keys.ART_CHECKPOINT_BEST, tmp_path / "dl")
    state = torch.load(path, weights_only=True)
    flow.load_state_dict(state["flow"])
    flow.eval()
    torch.manual_seed(0)
    right = evaluate_likelihood(flow, deq, ds.test, 500, CPU, True, context=ctx["test"])
    torch.manual_seed(0)
    wrong = evaluate_likelihood(flow, deq, ds.test, 500, CPU, True,
                                context=ctx["test"].roll(1, dims=1))  # every label shifted
    assert right["bpd"] == pytest.approx(store.client.get_run(run_id).data.metrics[keys.EVAL_BPD],
                                         abs=0.02)
    assert right["bpd"] < wrong["bpd"] - 0.02


def test_divergence_is_recorded_with_diagnostics(tmp_path):
    (job,) = _jobs("name: d\nmatrix: {architectures: [{name: realnvp, scale_bound: 50}], "
                   "datasets: [moons], dequantization: [none]}\n"
                   "train: {steps: 60, eval_every: 20, batch_size: 64, clip: null, "
                   "max_nonfinite: 2, optimizer: {name: sgd, lr: 10.0}}\n")
    store, run_id, result = _run(tmp_path, job, timing=False)
    assert result.status == keys.STATUS_DIVERGED
    m = store.client.get_run(run_id).data.metrics
    assert m[keys.STAB_NONFINITE_STEPS] >= 1 or not math.isfinite(m.get(keys.EVAL_NLL, math.nan))


def test_compiled_job_trains_and_times_through_its_view(tmp_path):
    """runtime compile: the same job as eager, trained and timed through a compiled view;
    compile time, graph breaks and the check against eager recorded; the checkpoint holds the
    flow's own state (loadable into an eager flow)."""
    jobs = _jobs("name: c\nmatrix: {architectures: [{name: realnvp, layers: 2, hidden: 16}], "
                 "datasets: [moons], dequantization: [none], runtime: [eager, compile]}\n"
                 "train: {steps: 20, eval_every: 10, batch_size: 64}\n"
                 "eval: {max_examples: 300}\n"
                 "timing: {batch_size: 64, min_run_time: 0.01}\n")
    eager, comp = jobs
    assert "runtime" not in eager.config.as_dict() and comp.key != eager.key
    store, run_id, result = _run(tmp_path, comp)
    assert result.status == keys.STATUS_FINISHED
    run = store.client.get_run(run_id)
    m = run.data.metrics
    assert run.data.tags[keys.TAG_RUNTIME] == "compile"
    assert m[keys.PERF_COMPILE_S] > 0 and m[keys.PERF_GRAPH_BREAKS] == 0
    assert m[keys.PERF_RECOMPILES] >= 0
    assert m[keys.PERF_EAGER_LOGPROB_ERR] <= 3.5e-4 * 10  # within the check's tolerance
    assert math.isfinite(m[keys.PERF_DENSITY_MS]) and math.isfinite(m[keys.PERF_TRAIN_STEP_MS])
    assert math.isfinite(m[keys.EVAL_NLL])
    path = MlflowTracker(store.uri, run_id).fetch(keys.ART_CHECKPOINT_BEST, tmp_path / "dl")
    state = torch.load(path, weights_only=True)
    _, _, flow = build(comp.config, CPU)
    flow.load_state_dict(state["flow"])  # the flow's own keys: no view prefix
