"""Early stopping with patience: the schema's fields, the training loop's rule, its counter
across a checkpoint, and job keys of suites without it unchanged.

The training runs are real (a small RealNVP on moons); the validation scores are scripted by
step (a subclass of the trainer), so that when training must stop is known exactly and does
not depend on float round-off of one machine.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from pydantic import ValidationError

from harness import keys
from harness.app import catalog, load_jobs
from harness.job.components import build, contexts, on_device
from harness.job.tracker import NullTracker
from harness.job.train import Trainer
from harness.suite import expand, parse_suite
from harness.suite.schema import TrainBudget

CPU = torch.device("cpu")
SUITE = ("name: p\nmatrix: {architectures: [{name: realnvp, layers: 2, hidden: 8}], "
         "datasets: [moons], dequantization: [none]}\n"
         "train: {steps: 200, eval_every: 5, checkpoint_every: 1000, batch_size: 50}\n")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared machine
    yield
    torch.set_num_threads(before)


class ScriptedTrainer(Trainer):
    """A real trainer whose validation score is ``script[step]`` (else 10.0)."""

    def __init__(self, *args, script: dict[int, float], **kw):
        super().__init__(*args, **kw)
        self.script = script

    def validate(self) -> float:
        return self.script.get(self.state.step, 10.0)


def _trainer(resume=None, script=None, **train) -> ScriptedTrainer:
    suite, _ = parse_suite(SUITE)
    (job,) = expand(suite, catalog().combination)[0]
    cfg = job.config
    ds, deq, flow = build(cfg, CPU)
    budget = cfg.train.model_copy(update=train)
    return ScriptedTrainer(flow, deq, on_device(ds, contexts(cfg, ds), CPU), budget,
                           NullTracker(), CPU, cfg.seed, resume=resume, script=script or {})


# validations every 5 steps: the best at step 10, then worse at 15, 20, 25, 30, ...
SCRIPT = {5: 3.0, 10: 2.0, 15: 2.5, 20: 2.4, 25: 2.3, 30: 2.2, 35: 2.1}


def test_patience_counts_validations_without_a_new_best():
    out = _trainer(script=SCRIPT, patience=4).run()
    assert out.stopped_by == keys.STOP_PATIENCE
    assert out.steps == 30  # 15, 20, 25, 30: four validations without a new best
    assert (out.best_step, out.best_val) == (10, 2.0)
    assert out.best_state is not None
    # a new best resets the counter: 1.5 at step 25 postpones the stop to 45
    out = _trainer(script={**SCRIPT, 25: 1.5}, patience=4).run()
    assert (out.steps, out.best_step, out.stopped_by) == (45, 25, keys.STOP_PATIENCE)


def test_patience_off_trains_the_whole_budget():
    out = _trainer(script=SCRIPT, steps=60).run()
    assert (out.steps, out.stopped_by, out.best_step) == (60, keys.STOP_STEPS, 10)


def test_patience_in_epochs_is_steps_of_the_training_split():
    t = _trainer(script=SCRIPT, patience_epochs=0.1)
    n_train = len(t.data.train)
    steps = math.ceil(0.1 * n_train / 50)
    assert t.patience_steps() == steps  # 0.1 epoch of n_train rows, 50 a batch
    out = t.run()
    # the first validation at least `steps` after the best (step 10) stops it
    expected = 10 + 5 * math.ceil(steps / 5)
    assert (out.steps, out.stopped_by, out.best_step) == (expected, keys.STOP_PATIENCE, 10)


def test_the_counter_resumes_from_a_checkpoint():
    first = _trainer(script=SCRIPT, patience=4, steps=20)
    out = first.run()  # ends by its step budget with two validations since the best
    assert (out.stopped_by, first.state.stale) == (keys.STOP_STEPS, 2)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed = _trainer(resume=ckpt, script=SCRIPT, patience=4).run()
    assert (resumed.steps, resumed.stopped_by, resumed.best_step) == (30, keys.STOP_PATIENCE, 10)
    # a checkpoint written before the counter existed resumes with it at 0
    old = {k: v for k, v in ckpt.items() if k != "stale"}
    late = _trainer(resume=old, script=SCRIPT, patience=4).run()
    assert (late.steps, late.stopped_by) == (40, keys.STOP_PATIENCE)


def test_schema_fields_and_their_refusals():
    assert TrainBudget(patience=30).patience == 30
    assert TrainBudget(patience_epochs=30).patience_epochs == 30.0
    for bad in ({"patience": 0}, {"patience": True}, {"patience": 2.5},
                {"patience_epochs": -1}, {"patience_epochs": math.inf},
                {"patience": 3, "patience_epochs": 3}):
        with pytest.raises(ValidationError):
            TrainBudget(**bad)
    # off: not written into the normalised config; on: written
    assert "patience" not in TrainBudget().model_dump(mode="json")
    assert "patience_epochs" not in TrainBudget().model_dump(mode="json")
    assert TrainBudget(patience=3).model_dump(mode="json")["patience"] == 3
    back = TrainBudget.model_validate(TrainBudget(patience_epochs=30).model_dump(mode="json"))
    assert back.patience_epochs == 30.0 and back.patience is None


# keys computed from the same suite files before early stopping and batch_norm existed
KNOWN_KEYS = {
    "suites/smoke.yaml": ["c2dced610f865632", "8d2cb7ad23260831", "ea03d443e69fb573",
                          "e499d7af8791cd2f"],
}


def test_existing_suites_keep_their_job_keys():
    for path, known in KNOWN_KEYS.items():
        _, jobs = load_jobs(path, quiet=True)
        eager = [j.key for j in jobs if j.axes.get("runtime", "eager") == "eager"]
        assert eager == known, path  # compiled jobs: keys of their own
    _, jobs = load_jobs("suites/tabular.yaml", quiet=True)
    assert (len(jobs), jobs[0].key, jobs[-1].key) == (75, "4197595030d4006e",
                                                      "bf1d89903700f061")
    # early stopping on is a different computation, so a different key
    suite, _ = parse_suite(SUITE)
    (plain,) = expand(suite, catalog().combination)[0]
    suite, _ = parse_suite(SUITE.replace("batch_size: 50}", "batch_size: 50, patience: 3}"))
    (stopping,) = expand(suite, catalog().combination)[0]
    assert plain.key != stopping.key
