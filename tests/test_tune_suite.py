"""The ``tune:`` section without Ray: bad search spaces refused with exit 2 before anything
exists (one line naming FILE:LINE and the field), study keys, tuned jobs, the hooks that Ray
Tune saves with its state."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from harness import keys
from harness.app import load_jobs
from harness.cli import main
from harness.suite.studies import apply_values, plan_studies, tuned_jobs

GOOD = """\
name: tuned
matrix:
  architectures: [realnvp, {name: maf, hidden: 32}, {name: nsf-coupling, label: nsf}]
  datasets: [{name: digits, flatten: true}]
  dequantization: [uniform]
  seeds: [0, 1]
train: {steps: 100, eval_every: 10}
tune:
  spaces:
    realnvp: {lr: {loguniform: [1e-4, 1e-2]}, hidden: {choice: [32, 64]}}
    maf: {layers: {randint: [2, 6]}}
    nsf: {bins: {qrandint: [4, 16, 4]}, tail_bound: {uniform: [2.0, 5.0]}}
  budget: {trials: 6}
"""
#  line 10: realnvp's space, 11: maf's, 12: nsf's, 13: budget


def sub(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


REALNVP = "{lr: {loguniform: [1e-4, 1e-2]}, hidden: {choice: [32, 64]}}"
CASES = [
    ("unknown-distribution", sub(REALNVP, "{lr: {logunifrom: [1e-4, 1e-2]}}"),
     ["s.yaml:10: tune.spaces.realnvp.lr", "unknown distribution 'logunifrom'",
      "did you mean 'loguniform'"]),
    ("unknown-hparam", sub(REALNVP, "{hiden: {choice: [32, 64]}}"),
     ["s.yaml:10: tune.spaces.realnvp.hiden", "'realnvp' has no hyper-parameter 'hiden'",
      "did you mean 'hidden'"]),
    ("hparam-below-range", sub(REALNVP, "{hidden: {randint: [0, 64]}}"),
     ["s.yaml:10: tune.spaces.realnvp.hidden", "low 0 is out of the hyper-parameter's range",
      "[1, 65,536]"]),
    ("hparam-above-range", sub(REALNVP, "{hidden: {choice: [32, 100000]}}"),
     ["s.yaml:10: tune.spaces.realnvp.hidden", "value 100000 is out"]),
    ("lr-above-range", sub(REALNVP, "{lr: {loguniform: [1e-4, 20.0]}}"),
     ["tune.spaces.realnvp.lr", "high 20.0 is out", "(0, 10]"]),
    ("float-for-int", sub(REALNVP, "{hidden: {uniform: [16, 64]}}"),
     ["s.yaml:10: tune.spaces.realnvp.hidden", "draws floats", "is an integer"]),
    ("numbers-for-choice-hparam", sub(REALNVP, "{activation: {uniform: [0.0, 1.0]}}"),
     ["tune.spaces.realnvp.activation", "use choice"]),
    ("bad-choice-value", sub(REALNVP, "{activation: {choice: [relu, tanhh]}}"),
     ["tune.spaces.realnvp.activation", "value 'tanhh' is out"]),
    ("randn-on-bounded", sub(REALNVP, "{lr: {randn: [0.001, 0.1]}}"),
     ["tune.spaces.realnvp.lr", "randn is unbounded"]),
    ("low-over-high", sub(REALNVP, "{lr: {uniform: [0.1, 0.01]}}"),
     ["s.yaml:10: tune.spaces.realnvp.lr", "low must be below its high"]),
    ("log-from-zero", sub(REALNVP, "{lr: {loguniform: [0.0, 0.01]}}"),
     ["tune.spaces.realnvp.lr", "must be > 0 (a log scale"]),
    ("wrong-arity", sub(REALNVP, "{lr: {uniform: [0.1]}}"),
     ["tune.spaces.realnvp.lr", "uniform takes 2 arguments"]),
    ("empty-randint", sub(REALNVP, "{hidden: {randint: [4, 4]}}"),
     ["tune.spaces.realnvp.hidden", "low must be below its high"]),
    ("grid-search", sub(REALNVP, "{hidden: {grid_search: [32, 64]}}"),
     ["tune.spaces.realnvp.hidden", "grid_search is not a distribution here"]),
    ("fixed-value", sub(REALNVP, "{hidden: 64}"),
     ["tune.spaces.realnvp.hidden", "a fixed value belongs in the architecture's"]),
    ("boolean-bound", sub(REALNVP, "{lr: {uniform: [true, 0.1]}}"),
     ["tune.spaces.realnvp.lr", "not a boolean"]),
    ("duplicate-choice", sub(REALNVP, "{hidden: {choice: [32, 32]}}"),
     ["tune.spaces.realnvp.hidden", "must be distinct"]),
    ("arch-not-in-matrix", sub("    maf: {layers", "    glow: {layers"),
     ["s.yaml:11: tune.spaces.glow", "not an architecture of the matrix"]),
    ("cross-rule-at-a-corner",
     sub("{bins: {qrandint: [4, 16, 4]}", "{bins: {qrandint: [4, 512, 4]}, "
         "min_bin_width: {uniform: [0.001, 0.01]}"),
     ["s.yaml:12: tune.spaces.nsf.min_bin_width", "min_bin_width · bins must be < 1",
      "narrow the space"]),
    ("trials-zero", sub("budget: {trials: 6}", "budget: {trials: 0}"),
     ["s.yaml:13: tune.budget.trials", "greater than 0"]),
    ("hours-negative", sub("budget: {trials: 6}", "budget: {cpu_hours: -1.0}"),
     ["s.yaml:13: tune.budget.cpu_hours", "greater than 0"]),
    ("no-budget", sub("budget: {trials: 6}", "budget: {}"),
     ["s.yaml:13: tune.budget", "give budget.trials"]),
    ("gpu-hours-without-gpus", sub("budget: {trials: 6}", "budget: {gpu_hours: 1.0}"),
     ["tune.budget.gpu_hours", "trials hold no GPU"]),
    ("unknown-objective", GOOD + "  objective: elbo\n",
     ["s.yaml:14: tune.objective", "'bpd' or 'nll'"]),
    ("unknown-search", GOOD + "  search: bayes\n",
     ["s.yaml:14: tune.search", "'random' or 'optuna'"]),
    ("asha-without-steps", sub("train: {steps: 100, eval_every: 10}",
                               "train: {steps: null, minutes: 1.0}"),
     ["tune.scheduler", "train.steps is not set"]),
    ("grace-past-steps", GOOD + "  scheduler: {name: asha, grace_period: 500}\n",
     ["s.yaml:14: tune.scheduler.grace_period", "past train.steps"]),
    ("reduction-one", GOOD + "  scheduler: {name: asha, reduction_factor: 1}\n",
     ["tune.scheduler.reduction_factor", "greater than 1"]),
    ("unknown-tune-field", GOOD + "  trials: 4\n", ["s.yaml:14: tune.trials", "unknown field"]),
    ("empty-space", sub(REALNVP, "{}"), ["tune.spaces", "the space of 'realnvp' is empty"]),
]


@pytest.mark.parametrize(("name", "text", "fragments"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_bad_tune_section_is_refused_before_anything_exists(name, text, fragments, command,
                                                              tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "s.yaml").write_text(text)
    code = main([command, "s.yaml", "--no-preflight"])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # nothing was made
    import ray

    assert not ray.is_initialized()


def test_bpd_objective_needs_discrete_data(tmp_path, capsys):
    text = GOOD.replace("[{name: digits, flatten: true}]", "[moons]").replace(
        "[uniform]", "[none]") + "  objective: bpd\n"
    (tmp_path / "s.yaml").write_text(text)
    assert main(["plan", str(tmp_path / "s.yaml"), "--no-preflight"]) == 2
    assert "tune.objective: bpd is for discrete data" in capsys.readouterr().err


def test_inline_backend_is_refused_for_a_tuned_suite(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(GOOD)
    assert main(["run", "s.yaml", "--backend", "inline", "--no-preflight"]) == 2
    assert "drop --backend inline" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def _load(tmp_path: Path, text: str = GOOD):
    (tmp_path / "s.yaml").write_text(text)
    suite, jobs = load_jobs(str(tmp_path / "s.yaml"), quiet=True)
    return suite, jobs, plan_studies(suite, jobs)


def test_one_study_per_tuned_cell_and_keys_that_follow_space_and_budget(tmp_path):
    _, _, studies = _load(tmp_path)
    assert [s.arch.display for s in studies] == ["realnvp", "maf(hidden=32)", "nsf"]
    assert all(s.seeds == (0, 1) for s in studies)
    assert all(s.config.seed == 0 for s in studies)  # the tuning seed
    assert len({s.key for s in studies}) == 3
    same = _load(tmp_path)[2]
    assert [s.key for s in same] == [s.key for s in studies]
    more = _load(tmp_path, GOOD.replace("{trials: 6}", "{trials: 7}"))[2]
    assert all(a.key != b.key for a, b in zip(more, studies))
    wider = _load(tmp_path, GOOD.replace("choice: [32, 64]", "choice: [32, 64, 128]"))[2]
    assert wider[0].key != studies[0].key and wider[1].key == studies[1].key
    seeds = _load(tmp_path, GOOD.replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))[2]
    assert [s.key for s in seeds] == [s.key for s in studies]  # where its best is retrained


def test_tuned_jobs_carry_the_values_and_stay_apart_from_the_defaults(tmp_path):
    _, jobs, studies = _load(tmp_path)
    realnvp = studies[0]
    tuned = tuned_jobs(realnvp, {"lr": 0.003, "hidden": 64}, trials=6)
    assert [j.seed for j in tuned] == [0, 1]
    for job in tuned:
        cfg = job.config
        assert cfg.arch.hparams == {"hidden": 64} and cfg.train.optimizer.lr == 0.003
        assert job.arch.display == "realnvp tuned (6 trials)"
        assert job.tags == {keys.TAG_STUDY: realnvp.key, keys.TAG_TUNED_TRIALS: "6"}
    # the defaults' values, tuned: still its own row and key
    same = tuned_jobs(realnvp, {"lr": 0.001}, trials=6)
    default_keys = {j.key for j in jobs}
    assert not default_keys & {j.key for j in same}
    maf = tuned_jobs(studies[1], {"layers": 3}, trials=6)[0]
    assert maf.config.arch.hparams == {"hidden": 32, "layers": 3}
    assert maf.arch.display == "maf(hidden=32) tuned (6 trials)"
    assert apply_values(maf.config.as_dict(), {"batch_size": 64.0})["train"]["batch_size"] == 64


def test_distributions_become_ray_tune_domains_of_the_right_type(tmp_path):
    import numpy as np

    from harness.tune.tuner import tune_domain

    _, _, studies = _load(tmp_path)
    space = {k: tune_domain(d) for k, d in studies[2].space.items()}
    rng = np.random.default_rng(0)
    for _ in range(50):
        bins = space["bins"].sample(random_state=rng)
        bound = space["tail_bound"].sample(random_state=rng)
        assert bins in range(4, 17, 4)
        assert 2.0 <= bound <= 5.0


def test_the_hooks_ray_tune_saves_pickle_without_a_client(sqlite_uri):
    from harness.tracking import Store
    from harness.tracking.studies import StudyRuns, TrialRuns
    from harness.tune.callbacks import ComputeBudget, RecordTrials

    store = Store(sqlite_uri, "hooks")
    run_id, before = StudyRuns(store).open("k" * 16, "tune · x", {}, {"a": 1})
    assert before is None
    runs = TrialRuns(store.uri, store.experiment_id, run_id, {keys.TAG_SUITE: "hooks"})
    rid = runs.ensure("abc_00000", 0, {"p": 1})
    runs.log("abc_00000", 5, {keys.TUNE_STEPS: 5, keys.TUNE_CPU_HOURS: 0.5, keys.TUNE_BEST: 2.0})
    budget = ComputeBudget(runs, cpu_hours=1.0, gpu_hours=None)
    recorder = RecordTrials("k" * 16, runs, budget, {}, "x")
    assert not budget.exhausted()
    back = pickle.loads(pickle.dumps([recorder, budget]))
    assert back[0].runs is back[1].runs and back[1].runs._client is None
    assert back[1].runs.known["abc_00000"]["run_id"] == rid  # read again from the store
    assert back[1].spent() == (0.5, 0.0)
    back[1]("abc_00001", {"cpu_hours": 0.6})
    assert back[1].exhausted()
    assert not back[1].runs.log("abc_00000", 5, {keys.TUNE_BEST: 1.0})  # written already


def test_optuna_search_without_optuna_is_refused(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna" else real(name, *a))
    (tmp_path / "s.yaml").write_text(GOOD + "  search: optuna\n")
    assert main(["plan", str(tmp_path / "s.yaml"), "--no-preflight"]) == 2
    err = capsys.readouterr().err
    assert "s.yaml:14: tune.search: optuna is not installed" in err
    (tmp_path / "s.yaml").write_text(GOOD + "  search: random\n")
    assert main(["plan", str(tmp_path / "s.yaml"), "--no-preflight"]) == 0  # needs nothing
