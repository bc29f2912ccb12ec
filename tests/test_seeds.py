"""What a job's seed changes: model initialisation, batch order, dequantization noise and the
training draw of generated data sets; and, end to end, that two seeds give two different
results for every architecture and every conditioning mode.

Fixed splits (digits, the tabular and image files, the toys' validation and test sets) do not
change with the seed, so that test numbers compare across seeds; the ``histogram`` reference
row is a closed-form fit and does not change either.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from harness import flows, keys
from harness.app import catalog
from harness.job import NullTracker, run_training
from harness.job.components import build, contexts, load_data, on_device
from harness.job.environment import seed_all
from harness.job.train import train
from harness.suite import expand, parse_suite
from harness.suite.jobconfig import JobConfig
from harness.suite.schema import TrainBudget

CPU = torch.device("cpu")


def _config(dataset: str, job_seed: int, arch: dict | None = None, dequant: str = "none",
            **data_options) -> JobConfig:
    return JobConfig.from_dict({"arch": arch or {"name": "gaussian"},
                                "data": {"name": dataset, **data_options},
                                "dequant": {"scheme": dequant}, "seed": job_seed,
                                "train": {}, "eval": {}, "timing": {}})


def _load_data(cfg: JobConfig):
    return load_data(cfg)


def test_a_generated_training_split_is_drawn_from_the_job_seed():
    a, b = _load_data(_config("moons", 0)), _load_data(_config("moons", 1))
    assert not torch.equal(a.train, b.train)
    assert torch.equal(a.val, b.val) and torch.equal(a.test, b.test)  # fixed: comparable
    assert a.fingerprint != b.fingerprint
    pinned = [_load_data(_config("moons", s, seed=7)) for s in (0, 1)]
    assert torch.equal(pinned[0].train, pinned[1].train)  # the data option pins the draw


def test_a_fixed_split_does_not_follow_the_seed():
    a, b = _load_data(_config("digits", 0)), _load_data(_config("digits", 1))
    assert a.fingerprint == b.fingerprint


def test_the_seed_reaches_initialisation_and_dequantization_noise():
    config = _config("digits", 0, {"name": "realnvp", "layers": 2, "hidden": 8}, "uniform",
                     flatten=True)
    drawn = []
    for seed in (0, 1):
        seed_all(seed)
        ds, deq, flow = build(config, CPU)
        w, _ = deq(ds.test[:16])
        drawn.append((torch.cat([p.detach().flatten() for p in flow.parameters()]), w))
    assert not torch.equal(drawn[0][0], drawn[1][0])  # initial weights
    assert not torch.equal(drawn[0][1], drawn[1][1])  # dequantization noise


def test_the_seed_reaches_the_batch_order():
    """Same initial weights, same global generator state: only ``train``'s seed differs."""
    config = _config("moons", 0, {"name": "realnvp", "layers": 2, "hidden": 8})
    tcfg = TrainBudget.model_validate(
        {"optimizer": {"name": "adam", "lr": 1e-2, "weight_decay": 0.0, "betas": [0.9, 0.999]},
         "schedule": {"name": "constant", "warmup_steps": 0, "min_lr_ratio": 0.0},
         "steps": 5, "batch_size": 32, "clip": None, "eval_every": 5,
         "checkpoint_every": 1000, "log_every": 1, "max_nonfinite": 5})
    seed_all(0)
    ds, deq, flow = build(config, CPU)
    data = on_device(ds, contexts(config, ds), CPU)
    finals = []
    for seed in (0, 1):
        model = copy.deepcopy(flow)
        seed_all(0)
        out = train(model, deq, data, tcfg, NullTracker(), CPU, seed)
        finals.append((out.curves, torch.cat([p.detach().flatten()
                                              for p in model.parameters()])))
    first_loss = [next(v for _, _, k, v in c if k == keys.TRAIN_LOSS) for c, _ in finals]
    assert first_loss[0] != first_loss[1]  # a different first batch
    assert not torch.equal(finals[0][1], finals[1][1])


def _options(name: str) -> str:
    """Small hyper-parameters: a job trains in a fraction of a second."""
    if name == "gaussian":
        return ""
    if name == "ffjord":
        return ", hidden: 8, depth: 1, solver: rk4, steps: 2, trace: hutchinson"
    return ", layers: 2, hidden: 8, depth: 1"


def _suite() -> str:
    """Every registered architecture, unconditional on moons (a generated data set) and
    class-conditional on digits, by concatenation and, where the architecture has it, FiLM."""
    archs, film = [], []
    for name in flows.names():
        archs.append(f"{{name: {name}{_options(name)}}}")
        if "context_mode" in flows.hparams(name):
            archs.append(f"{{name: {name}, label: {name}-film, context_mode: film"
                         f"{_options(name)}}}")
            film.append(f"{{arch: {name}-film, dataset: moons}}")
    return (
        "name: seeds\n"
        f"matrix:\n  architectures: [{', '.join(archs)}]\n"
        "  datasets: [moons, {name: digits, flatten: true, condition: label}]\n"
        "  dequantization: [none, uniform]\n  seeds: [0, 1]\n"
        f"exclude: [{', '.join(film)}]\n"
        "train: {steps: 6, batch_size: 64, eval_every: 3, checkpoint_every: 1000, "
        "log_every: 3}\n"
        "eval: {batch_size: 500, max_examples: 300}\n"
    )


def _jobs():
    suite, _ = parse_suite(_suite())
    jobs, _ = expand(suite, catalog().combination)
    cells: dict[tuple[str, str], list] = {}
    for job in jobs:
        mode = ("none" if not job.dataset.options.get("condition")
                else job.arch.options.get("context_mode", "concat"))
        cells.setdefault((job.arch.display, mode), []).append(job)
    return cells


CELLS = _jobs()


def test_every_architecture_and_conditioning_mode_is_covered():
    covered = {(label.removesuffix("-film").split("(")[0], mode) for label, mode in CELLS}
    for name in flows.names():
        assert (name, "none") in covered and (name, "concat") in covered
        if "context_mode" in flows.hparams(name):
            assert (name, "film") in covered


@pytest.fixture
def one_thread():
    """One intra-op thread, as a timing job has: several threads on a busy 2-core machine
    make these small networks several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("cell", sorted(CELLS), ids=lambda c: f"{c[0].split('(')[0]}-{c[1]}")
def test_two_seeds_give_two_results(cell, one_thread):
    jobs = sorted(CELLS[cell], key=lambda j: j.seed)
    assert [j.seed for j in jobs] == [0, 1]
    nll = []
    for job in jobs:
        result = run_training(job.config, NullTracker(), CPU)
        assert result.status == keys.STATUS_FINISHED, result.metrics
        nll.append(result.metrics[keys.EVAL_NLL])
    assert all(math.isfinite(v) for v in nll)
    # far above float rounding: the seeds drew different runs
    assert abs(nll[0] - nll[1]) > 1e-6 * max(1.0, abs(nll[0])), nll
