"""The files a job leaves in its run: config, curves, diagnostics, samples, best weights.

Every end-of-training artifact is written into one temporary folder and uploaded in one call.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from .. import keys
from .samples import samples_png
from .tracker import Tracker

__all__ = ["curves_frame", "write_reference_artifacts", "write_training_artifacts"]


def curves_frame(curves: list[tuple[int, float, str, float]]):
    """Every curve as one long table: ``step``, ``wall_s``, ``key``, ``value``."""
    import pandas as pd

    return pd.DataFrame(curves, columns=["step", "wall_s", "key", "value"]).astype(
        {"step": "int64", "wall_s": "float64", "key": "string", "value": "float64"})


def write_training_artifacts(tracker: Tracker, config: dict[str, Any], outcome,
                             diagnostics: dict[str, Any], picture) -> None:
    """``curves.parquet``, ``diagnostics.json``, ``config.json``, and, when training kept
    weights, ``samples.png`` (``picture()``: PNG bytes or None; a picture never fails a
    job: its error goes into the diagnostics) and ``checkpoints/best.pt``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        curves_frame(outcome.curves).to_parquet(root / keys.ART_CURVES, index=False)
        (root / keys.ART_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        if outcome.best_state is not None:
            try:
                png = picture()
            except Exception as exc:  # noqa: BLE001 — a picture never fails a job
                diagnostics["samples_error"] = repr(exc)
                png = None
            if png:
                (root / keys.ART_SAMPLES).write_bytes(png)
            best = root / keys.ART_CHECKPOINT_BEST
            best.parent.mkdir(parents=True, exist_ok=True)
            torch.save(outcome.best_state, best)
        (root / keys.ART_DIAGNOSTICS).write_text(json.dumps(diagnostics, indent=2, default=str))
        tracker.log_dir(root)


def write_reference_artifacts(tracker: Tracker, config: dict[str, Any],
                              metrics: dict[str, float]) -> None:
    """A reference row's ``config.json`` and ``diagnostics.json``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / keys.ART_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        (root / keys.ART_DIAGNOSTICS).write_text(json.dumps(metrics, indent=2))
        tracker.log_dir(root)


def picture_of(flow, deq, ds, ctx, device) -> Any:
    """A callable that draws ``samples.png`` for this job (see :mod:`.samples`)."""
    classes = ds.classes if ctx["test"] is not None else None
    return lambda: samples_png(flow, deq, ds.kind, ds.test, device, classes=classes)
