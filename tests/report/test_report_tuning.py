"""The tuning section: its frames against independent truth, the page that holds it (jobs'
tables without the studies' runs), and the section in headless Chromium (offline, no
console error). The store is real (SQLite); studies and trials are written by the same
classes the tuning stage uses."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from harness import keys
from harness.report import write_report
from harness.report.sections.tuning import (
    NEAR,
    TUNING_KINDS,
    gain_frame,
    sensitivity_frame,
    study_frame,
    trials_frame,
    with_urls,
)
from harness.report.table import prepare
from harness.tracking import Store
from harness.tracking.read import load_runs
from harness.tracking.studies import StudyRuns, TrialRuns

SUITE = "tuned-synth"
# per architecture: trial bests in trial order, (cpu hours, stopped by) per trial,
# default and tuned test bpd over seeds 0, 1, 2
TRUTH = {
    "realnvp": {"trials": [2.31, 2.12, 2.40, 2.10, 2.15, 2.30],
                "stop": ["steps", "steps", "asha", "steps", "steps", "asha"],
                "default": [2.26, 2.25, 2.27], "tuned": [2.11, 2.13, 2.12]},
    "maf": {"trials": [2.50, 2.28, 2.27, 2.60, 2.29, 2.45],
            "stop": ["steps", "steps", "steps", "asha", "steps", "asha"],
            "default": [2.28, 2.27, 2.29], "tuned": [2.30, 2.26, 2.27]},
}


def _job(client, exp: str, arch: str, label: str, seed: int, bpd: float,
         study: str | None) -> None:
    tags = {keys.TAG_SUITE: SUITE, keys.TAG_KEY: f"{label}-{seed}", keys.TAG_ARCH: arch,
            keys.TAG_ARCH_LABEL: label, keys.TAG_DATASET: "digits",
            keys.TAG_DEQUANT: "uniform", keys.TAG_SEED: str(seed),
            keys.TAG_STATUS: keys.STATUS_FINISHED, keys.TAG_DEVICE: "cpu (1 threads)"}
    if study:
        tags[keys.TAG_STUDY] = study
    run = client.create_run(exp, tags=tags)
    client.log_param(run.info.run_id, "data.kind", "discrete")
    client.log_metric(run.info.run_id, keys.EVAL_BPD, bpd)
    client.set_terminated(run.info.run_id)


@pytest.fixture(scope="module")
def tuned_store(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tuned")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    store = Store(uri, SUITE)
    client = MlflowClient(uri)
    studies = StudyRuns(store)
    for arch, truth in TRUTH.items():
        key = f"{arch:x<16}"[:16]
        tags = {keys.TAG_ARCH: arch, keys.TAG_ARCH_LABEL: arch, keys.TAG_DATASET: "digits",
                keys.TAG_DEQUANT: "uniform", keys.TAG_STUDY: key, keys.TAG_SUITE: SUITE}
        run_id, _ = studies.open(key, f"tune · {arch}", tags, {"tune.objective": "bpd"})
        trials = TrialRuns(uri, store.experiment_id, run_id, tags)
        for i, (best, stop) in enumerate(zip(truth["trials"], truth["stop"])):
            trial = f"t{arch}_{i:05d}"
            trials.ensure(trial, i, {"tune.lr": 0.001 * (i + 1)},
                          tags={keys.TAG_TUNE_VALUES: json.dumps({"lr": 0.001 * (i + 1)})})
            steps = 300 if stop == "asha" else 900
            for step in range(100, steps + 1, 100):
                value = best + 0.01 * (steps - step) / 100
                trials.log(trial, step, {keys.TUNE_OBJECTIVE: value, keys.TUNE_BEST: value,
                                         keys.TUNE_STEPS: step, keys.VAL_BPD: value,
                                         keys.TUNE_CPU_HOURS: step / 9000,
                                         keys.TUNE_GPU_HOURS: 0.0})
            trials.close(trial, keys.STATUS_FINISHED, stop)
        studies.close(run_id, keys.STATUS_FINISHED, {keys.TUNE_BEST: min(truth["trials"]),
                                                     keys.TUNE_TRIALS: 6})
        for seed, bpd in enumerate(truth["default"]):
            _job(client, store.experiment_id, arch, arch, seed, bpd, None)
        for seed, bpd in enumerate(truth["tuned"]):
            _job(client, store.experiment_id, arch, f"{arch} tuned (6 trials)", seed, bpd, key)
    return uri


def _frames(uri: str):
    tuning = with_urls(load_runs(uri, [SUITE], kinds=TUNING_KINDS), "http://127.0.0.1:5000")
    runs = prepare(load_runs(uri, [SUITE]))
    studies = study_frame(tuning)
    trials = trials_frame(tuning)
    return runs, studies, trials, sensitivity_frame(trials, studies), gain_frame(studies, runs)


def test_the_job_table_leaves_studies_and_trials_out(tuned_store):
    runs = load_runs(tuned_store, [SUITE])
    assert len(runs) == 12 and runs[keys.TAG_ARCH_LABEL].str.contains("tuned").sum() == 6
    assert not any(c.startswith("tune") for c in runs.columns)  # the trials' own columns
    tuning = load_runs(tuned_store, [SUITE], kinds=TUNING_KINDS)
    assert sorted(tuning[keys.TAG_KIND].value_counts().items()) == [("study", 2), ("trial", 12)]


def test_best_so_far_sensitivity_and_gain_against_truth(tuned_store):
    from scipy import stats

    _, studies, trials, sens, gain = _frames(tuned_store)
    assert list(studies["unit"]) == ["bpd", "bpd"]
    for arch, truth in TRUTH.items():
        part = trials[trials["arch_label"] == arch].sort_values("n")
        assert list(part["best"]) == pytest.approx(truth["trials"])
        assert list(part["best_by_trial"]) == pytest.approx(
            [min(truth["trials"][: i + 1]) for i in range(6)])
        # in the order the trials ended (here their own order), against the compute spent
        spent = np.cumsum([(300 if s == "asha" else 900) / 9000 for s in truth["stop"]])
        by_end = part.sort_values("end_rank")
        assert list(by_end["compute_cum"]) == pytest.approx(list(spent))
        assert list(by_end["best_by_compute"]) == pytest.approx(list(part["best_by_trial"]))
        row = sens[sens["arch_label"] == arch].iloc[0]
        best = min(truth["trials"])
        near = sum(v <= best + NEAR for v in truth["trials"])
        assert (row["near_best"], row["trials"], row["asha_stopped"]) == (
            near, 6, truth["stop"].count("asha"))
        assert row["std"] == pytest.approx(np.std(truth["trials"], ddof=1))
        g = gain[gain["arch_label"] == arch].iloc[0]
        d, t = np.array(truth["default"]), np.array(truth["tuned"])
        assert g["gain"] == pytest.approx(d.mean() - t.mean())
        ci = stats.ttest_ind(d, t, equal_var=False).confidence_interval(0.95)
        assert g["gain_ci"] == pytest.approx((ci.high - ci.low) / 2, rel=1e-9)
        assert (g["default_n"], g["tuned_n"]) == (3, 3)
        assert g["tuned_label"] == f"{arch} tuned (6 trials)"
    assert gain["gain"].notna().all()


def test_the_page_has_the_tuning_section_and_its_data(tuned_store, tmp_path):
    index = write_report([SUITE], tuned_store, tmp_path / "site")
    text = index.read_text()
    assert '<section id="tuning">' in text
    for panel in ("tuning-best-so-far", "tuning-sensitivity", "tuning-gain"):
        assert f'id="fig-{panel}"' in text
        assert (tmp_path / "site" / "data" / f"{panel}.csv").is_file()
    assert "trial 000" not in text  # trials are not leaderboard rows
    assert text.index('id="leaderboards"') < text.index('id="tuning"')


ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.mark.slow
def test_the_tuning_section_renders_offline_without_console_errors(tuned_store, tmp_path,
                                                                     chromium):
    from playwright.sync_api import sync_playwright

    index = write_report([SUITE], tuned_store, tmp_path / "site")
    errors, network = [], []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium,
                                                    headless=True, args=ARGS, offline=True)
        page = ctx.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
                else network.append(r.url))
        page.goto(Path(index).resolve().as_uri(), wait_until="load")
        page.wait_for_function(
            "() => [...document.querySelectorAll('div.nf-figure')]"
            ".every(d => d.hasAttribute('data-rendered'))", timeout=60_000)
        drawn = page.evaluate(
            "() => [...document.querySelectorAll('#tuning div.nf-figure')]"
            ".filter(d => d.getAttribute('data-rendered') === '1' && d.querySelector('.main-svg')"
            " && d.querySelectorAll('.scatterlayer .point').length > 0).map(d => d.id)")
        table = page.inner_text("#tuning table")
        ctx.close()
    assert drawn == ["fig-tuning-best-so-far", "fig-tuning-sensitivity", "fig-tuning-gain"]
    assert errors == [] and network == []
    assert "realnvp" in table and "maf" in table and "within 0.05 of best" in table
