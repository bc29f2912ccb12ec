"""What a job is made of: its data set, contexts, dequantizer and flow, on one device; and
the inputs and checkpoints its phases read."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import data as datasets
from .. import flows
from ..suite.jobconfig import JobConfig
from .tracker import Tracker

__all__ = ["Splits", "build", "contexts", "fetch_state", "load_data", "on_device", "rows",
           "test_inputs"]


def load_data(cfg: JobConfig):
    """The job's data set: its loader options, data directory, data seed and download."""
    d = cfg.data
    return datasets.load(d.name, seed=cfg.data_seed, data_dir=d.data_dir, download=d.download,
                         **d.loader_options)


def contexts(cfg: JobConfig, ds) -> dict[str, torch.Tensor | None]:
    """Per-split contexts of a conditional job (data option ``condition: label``: one-hot
    class labels), or Nones."""
    condition = cfg.data.condition
    if not condition:
        return {"train": None, "val": None, "test": None}
    if condition != "label":
        raise ValueError(f"data.condition: unknown condition {condition!r}; use 'label'")
    if not ds.labels or not ds.classes:
        raise ValueError(f"data.condition: data set '{ds.name}' has no class labels; "
                         "remove 'condition' or use a labelled data set (digits)")
    return {k: torch.nn.functional.one_hot(v, ds.classes).float() for k, v in ds.labels.items()}


def build(cfg: JobConfig, device: torch.device):
    """Data set, dequantizer and flow of a job, on ``device``."""
    ds = load_data(cfg)
    context_dim = ds.classes if cfg.data.condition else None
    deq = datasets.make_dequantizer(cfg.dequant.scheme, ds, **cfg.dequant.options).to(device)
    flow = flows.build_for_data(cfg.arch.name, tuple(deq.model_shape), context_dim,
                                layout=cfg.data.layout, **cfg.arch.hparams)
    return ds, deq, flow.to(device)


@dataclass(frozen=True)
class Splits:
    """The training and validation splits on the device, with their contexts (or None)."""

    kind: str
    train: torch.Tensor
    val: torch.Tensor
    train_c: torch.Tensor | None
    val_c: torch.Tensor | None


def on_device(ds, ctx: dict[str, torch.Tensor | None], device: torch.device) -> Splits:
    def put(t):
        return None if t is None else t.to(device)

    return Splits(ds.kind, ds.train.to(device), ds.val.to(device), put(ctx["train"]),
                  put(ctx["val"]))


def rows(t: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
    """The first ``n`` rows of ``t``, repeated when it is shorter (as :func:`test_inputs`)."""
    return None if t is None else t[torch.arange(n) % len(t)].to(device)


def test_inputs(deq, test: torch.Tensor, n: int, device: torch.device, seed: int) -> torch.Tensor:
    """``n`` flow inputs from the test split (rows repeated when the split is smaller)."""
    idx = torch.arange(n) % len(test)
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        w, _ = deq(test[idx].to(device))
    return w


def fetch_state(tracker: Tracker, artifact: str) -> dict[str, Any] | None:
    """A checkpoint of the run, loaded weights-only: tensors, numbers, strings and containers
    of them, never an arbitrary pickle (the artifact store is shared; a file in it must not
    run code here)."""
    import pickle

    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.fetch(artifact, Path(tmp))
        if path is None:
            return None
        try:
            return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu",
                              weights_only=True)
        except pickle.UnpicklingError as err:
            lines = [ln for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
            why = (lines or ["it holds more than weights"])[0].strip()[:300]
            raise RuntimeError(f"{artifact}: refused to load this checkpoint: {why} (a checkpoint "
                               "may hold only tensors and plain values); delete the artifact "
                               "or re-run the job with --force") from None
