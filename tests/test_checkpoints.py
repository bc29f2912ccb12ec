"""Checkpoints load weights-only: a real checkpoint restores training exactly, and a
checkpoint file that holds a pickled program is refused without running it."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness import keys
from harness.app import catalog
from harness.job import run_timing, run_training
from harness.job.components import fetch_state as _fetch_state
from harness.suite import expand, parse_suite
from harness.tracking import MlflowTracker, Store

CPU = torch.device("cpu")

# a variational dequantizer (a flow of its own in the checkpoint) and a CNF
SUITES = {
    "variational": "name: ck\nmatrix: {architectures: [{name: realnvp, layers: 2, hidden: 16}], "
                   "datasets: [{name: digits, flatten: true}], dequantization: [variational]}\n",
    "ffjord": "name: ck\nmatrix: {architectures: [{name: ffjord, hidden: 8, depth: 1, "
              "solver: rk4, steps: 2}], "
              "datasets: [moons], dequantization: [none]}\n",
}
BUDGET = ("train: {steps: 4, eval_every: 2, checkpoint_every: 2, batch_size: 32, "
          "optimizer: {name: adamw, lr: 0.003}}\n"
          "eval: {batch_size: 200, max_examples: 100, iw_samples: 2}\n"
          "timing: {batch_size: 32, min_run_time: 0.01}\n")


def _job(text: str):
    suite, _ = parse_suite(text)
    (job,) = expand(suite, catalog().combination)[0]
    return job


def _tracker(store: Store, job) -> MlflowTracker:
    run = store.open_run(job, {}, None, False, params=job.flat_params())
    return MlflowTracker(store.uri, run.run_id, artifact_uri=run.artifact_uri)


def _tensors(state) -> dict[str, torch.Tensor]:
    return {f"{part}.{k}": v for part in ("flow", "deq") for k, v in state[part].items()}


@pytest.mark.parametrize("kind", sorted(SUITES))
def test_a_real_checkpoint_loads_weights_only_and_resumes_exactly(tmp_path, kind):
    job = _job(SUITES[kind] + BUDGET)
    store = Store(f"sqlite:///{tmp_path}/m.db", job.suite)
    first = _tracker(store, job)
    run_training(job.config, first, CPU)
    last = _fetch_state(first, keys.ART_CHECKPOINT_LAST)  # weights_only=True inside
    assert last["step"] == 2 and last["curves"] and last["opt"]["state"]
    best = _fetch_state(first, keys.ART_CHECKPOINT_BEST)
    # a second run that starts from the first one's step-2 checkpoint ends where it ended:
    # optimizer, schedule, random generators and curves all came back from the file
    second = _tracker(store, job)
    path = first.fetch(keys.ART_CHECKPOINT_LAST, tmp_path / "dl")
    second.log_file(path, str(Path(keys.ART_CHECKPOINT_LAST).parent))
    run_training(job.config, second, CPU)
    # it did resume: the curve points up to step 2 came from the file, wall times and all
    curves = [pd.read_parquet(t.fetch(keys.ART_CURVES, tmp_path / name))
              for t, name in ((first, "c1"), (second, "c2"))]
    early = [c[c["step"] <= 2].reset_index(drop=True) for c in curves]
    assert len(early[0]) and early[0].equals(early[1])
    resumed = _fetch_state(second, keys.ART_CHECKPOINT_BEST)
    a, b = _tensors(best), _tensors(resumed)
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-6), k
    assert run_timing(job.config, second, CPU).metrics[keys.PERF_DENSITY_MS] > 0


class _WritesMarker:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_a_pickled_program_is_refused(tmp_path):
    job = _job(SUITES["variational"] + BUDGET)
    store = Store(f"sqlite:///{tmp_path}/m.db", job.suite)
    tracker = _tracker(store, job)
    marker = tmp_path / "marker"
    buf = io.BytesIO()
    torch.save({"flow": _WritesMarker(marker), "step": 2}, buf)
    for artifact in (keys.ART_CHECKPOINT_LAST, keys.ART_CHECKPOINT_BEST):
        local = tmp_path / "planted" / Path(artifact).name
        local.parent.mkdir(exist_ok=True)
        local.write_bytes(buf.getvalue())
        tracker.log_file(local, str(Path(artifact).parent))
    with pytest.raises(RuntimeError, match="checkpoints/last.pt: refused to load this "
                       "checkpoint: .*posix.system"):
        run_training(job.config, tracker, CPU)  # resumes from last.pt
    with pytest.raises(RuntimeError, match="checkpoints/best.pt: refused to load"):
        run_timing(job.config, tracker, CPU)  # times best.pt
    assert not marker.exists()
    torch.load(io.BytesIO(buf.getvalue()), weights_only=False)  # the payload is live
    assert marker.exists()
