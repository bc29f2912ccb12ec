"""One job end to end on one device (train phase, timing phase), through a tracker."""

from __future__ import annotations

from .components import build, contexts
from .environment import code_revision, environment_tags, pick_device
from .run import PHASE_TAG, JobResult, error_text, prepare, run_timing, run_training, trainer_for
from .tracker import NullTracker, Tracker

__all__ = [
    "PHASE_TAG",
    "JobResult",
    "NullTracker",
    "Tracker",
    "build",
    "code_revision",
    "contexts",
    "environment_tags",
    "error_text",
    "pick_device",
    "prepare",
    "run_timing",
    "run_training",
    "trainer_for",
]
