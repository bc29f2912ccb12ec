"""Matrix expansion: a :class:`Suite` becomes a list of fully specified :class:`Job` s.

Each job carries everything needed to run it and a stable key: the first 16 hex digits of
the SHA-256 of its normalised config (JSON with sorted keys). The key is what makes runs
idempotent: the same config gives the same key on any machine, whatever the suite's order.
Resources and retries are not part of the key (they change where a job runs, not what it
computes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .schema import AxisItem, Rule, Suite

__all__ = ["Dropped", "Job", "expand", "job_key"]


@dataclass(frozen=True)
class Job:
    """One (architecture, data set, dequantization, seed) cell, fully specified."""

    suite: str
    key: str
    arch: AxisItem
    dataset: AxisItem
    dequant: AxisItem
    seed: int
    config: dict[str, Any] = field(repr=False, compare=False)  # normalised, JSON-able

    @property
    def axes(self) -> dict[str, Any]:
        return {
            "arch": self.arch.display,
            "dataset": self.dataset.display,
            "dequant": self.dequant.display,
            "seed": self.seed,
        }

    def flat_params(self) -> dict[str, str]:
        """The config flattened to dotted keys (MLflow params)."""
        return flatten(self.config)


@dataclass(frozen=True)
class Dropped:
    """A matrix cell left out, and why (printed as one line by ``plan`` and ``run``)."""

    axes: dict[str, Any]
    reason: str


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, name + "."))
        else:
            out[name] = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return out


def job_key(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _matches(rule: Rule, arch: AxisItem, dataset: AxisItem, dequant: AxisItem, seed: int) -> bool:
    checks = (
        (rule.arch, {arch.name, arch.display}),
        (rule.dataset, {dataset.name, dataset.display}),
        (rule.dequant, {dequant.name, dequant.display}),
    )
    if any(want is not None and want not in have for want, have in checks):
        return False
    return rule.seed is None or rule.seed == seed


def job_config(
    suite: Suite, arch: AxisItem, dataset: AxisItem, dequant: AxisItem, seed: int
) -> dict[str, Any]:
    """The normalised config of one job: what it computes, nothing about where."""
    return {
        "arch": {"name": arch.name, **arch.options},
        "data": {"name": dataset.name, **dataset.options},
        "dequant": {"scheme": dequant.name, **dequant.options},
        "seed": seed,
        "train": suite.train.model_dump(mode="json"),
        "eval": suite.eval.model_dump(mode="json"),
        "timing": suite.timing.model_dump(mode="json"),
    }


def expand(
    suite: Suite,
    compatible: Callable[[AxisItem, AxisItem, AxisItem], str | None] = lambda a, d, q: None,
) -> tuple[list[Job], list[Dropped]]:
    """All jobs of ``suite`` in matrix order, and the cells dropped with their reasons.

    ``compatible(arch, dataset, dequant)`` returns None for a sensible combination, or the
    reason to drop it (for example uniform dequantization of continuous data); the caller
    injects it from the registries.
    """
    jobs: list[Job] = []
    dropped: list[Dropped] = []
    seen: dict[str, Job] = {}
    m = suite.matrix
    for arch in m.architectures:
        for dataset in m.datasets:
            for dequant in m.dequantization:
                for seed in m.seeds:
                    axes = {
                        "arch": arch.display,
                        "dataset": dataset.display,
                        "dequant": dequant.display,
                        "seed": seed,
                    }
                    reason = compatible(arch, dataset, dequant)
                    if reason:
                        dropped.append(Dropped(axes, reason))
                        continue
                    if suite.include and not any(
                        _matches(r, arch, dataset, dequant, seed) for r in suite.include
                    ):
                        dropped.append(Dropped(axes, "matches no include rule"))
                        continue
                    if any(_matches(r, arch, dataset, dequant, seed) for r in suite.exclude):
                        dropped.append(Dropped(axes, "matches an exclude rule"))
                        continue
                    config = job_config(suite, arch, dataset, dequant, seed)
                    key = job_key(config)
                    if key in seen:
                        dropped.append(Dropped(axes, f"duplicate of job {key}"))
                        continue
                    job = Job(suite.name, key, arch, dataset, dequant, seed, config)
                    seen[key] = job
                    jobs.append(job)
    return jobs, dropped
