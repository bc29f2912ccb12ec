"""The trained flow as a model of its run: its weights and what rebuilds it, handed to the
tracker (MLflow: a LoggedModel in models-from-code form, :mod:`harness.tracking.models`;
the code that loads it is ``harness/logged_flow.py``).

The folder holds ``weights.pt``, the flow's state dict (tensors only, saved with
``torch.save`` of a plain dict and loaded weights-only), and ``flow.json``: the architecture,
its hyper-parameters, the event shape of the flow's data space (the data after
dequantization and preprocessing), the context size of a conditional flow, the layout, how
the data were turned into that space, and the whole job config.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from .. import keys
from ..suite.jobconfig import JobConfig
from .tracker import Tracker

__all__ = ["flow_spec", "log_flow", "model_name"]


def model_name(cfg: JobConfig) -> str:
    """The model's name: ``arch-dataset-dequant-s<seed>`` (and the runtime when not eager)."""
    parts = [cfg.arch.name, cfg.data.name, cfg.dequant.scheme, f"s{cfg.seed}"]
    if not cfg.runtime.eager:
        parts.append(cfg.runtime.label)
    return "-".join(str(p) for p in parts)


def flow_spec(cfg: JobConfig, flow, deq, ds) -> dict[str, Any]:
    """What ``harness/logged_flow.py`` rebuilds the flow from (see the module docstring)."""
    return {
        "arch": cfg.arch.name, "hparams": dict(cfg.arch.hparams),
        "event_shape": list(deq.model_shape),
        "context_dim": ds.classes if cfg.data.condition else None,
        "layout": cfg.data.layout,
        "space": {"data": ds.name, "kind": ds.kind, "levels": ds.levels,
                  "dequantization": cfg.dequant.scheme, "dims": deq.dims,
                  "logit_alpha": deq.logit_alpha, "shift": deq.shift},
        "config": cfg.as_dict(),
        "params": sum(p.numel() for p in flow.parameters()),
    }


def log_flow(tracker: Tracker, cfg: JobConfig, flow, deq, ds, metrics: dict[str, float],
             step: int, tags: dict[str, Any]) -> str | None:
    """Hand the flow (its current weights) to ``tracker`` as a model of the run, with the
    metrics of :data:`keys.MODEL_LINKED`: those in ``metrics`` are written linked to it, the
    others are linked as the run has them. The model's id, or None (a tracker that keeps
    nothing)."""
    linked = {k: float(v) for k, v in metrics.items() if k in keys.MODEL_LINKED}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state = {k: v.detach().cpu().contiguous() for k, v in flow.state_dict().items()}
        torch.save(state, root / keys.ART_MODEL_WEIGHTS)
        spec = flow_spec(cfg, flow, deq, ds)
        (root / keys.ART_MODEL_SPEC).write_text(json.dumps(spec, indent=2, sort_keys=True))
        return tracker.log_model(root, model_name(cfg), metrics=linked, step=step,
                                 link=keys.MODEL_LINKED, dataset=(ds.name, ds.fingerprint),
                                 tags=tags)
