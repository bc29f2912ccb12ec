"""Studies: the tuning a suite's ``tune:`` section asks for, and the jobs that retrain its best.

A :class:`Study` is one (architecture, data set, scheme) cell of the matrix whose architecture
has a search space. Its trials train the cell's job config with sampled values in place of
the defaults (:func:`apply_values`), all with the suite's tuning seed; its budget, objective,
search and scheduler are the suite's, the same for every architecture.

A study's key is the first 16 hex digits of the SHA-256 of its base config (the job config at
the tuning seed), its search space, budget, objective, search algorithm, scheduler, tuning
seed and its trials' resources, so that changing any of them makes a new study, while
re-running the same suite finds the same one (resumed when unfinished, never repeated when
finished).

:func:`tuned_jobs` turns a finished study's best values into ordinary jobs over the cell's
seeds: the architecture's hyper-parameters are the tuned ones, the label says
``tuned (N trials)``, and the key hashes the study's key too (a tuned row stays its own row
even where the best values happen to be the defaults).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .. import keys
from ..options import Option
from .expand import Job, job_key
from .jobconfig import JobConfig
from .schema import MAX_BATCH, MAX_NAME, AxisItem, Suite
from .tune_schema import Distribution, TuneSection

__all__ = ["TRAIN_HPARAMS", "TRAIN_SPECS", "Study", "apply_values", "plan_studies",
           "space_for", "tuned_jobs", "tuned_label"]

#: hyper-parameters of training a space may tune: name → path in the job config's ``train``
TRAIN_HPARAMS: dict[str, tuple[str, ...]] = {
    "lr": ("optimizer", "lr"),
    "weight_decay": ("optimizer", "weight_decay"),
    "batch_size": ("batch_size",),
}
TRAIN_SPECS: dict[str, Option] = {
    "lr": Option.number(0, 10, low_open=True, help="train.optimizer.lr"),
    "weight_decay": Option.number(0, 1, help="train.optimizer.weight_decay"),
    "batch_size": Option.integer(1, MAX_BATCH, help="train.batch_size"),
}


def _canonical(tree: Any) -> str:
    return json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)


def space_for(tune: TuneSection, arch: AxisItem) -> tuple[str, dict[str, Distribution]] | None:
    """``(space name, space)`` of a matrix architecture: its label's space, else its name's."""
    for name in (arch.label, arch.display, arch.name):
        if name and name in tune.spaces:
            return name, tune.spaces[name]
    return None


def apply_values(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A job config (:meth:`JobConfig.as_dict`) with sampled ``values`` in place: training
    hyper-parameters (:data:`TRAIN_HPARAMS`) in ``train``, the rest in ``arch``."""
    out = json.loads(json.dumps(config))  # a deep copy of plain data
    for name, value in values.items():
        if isinstance(value, float) and value.is_integer() and name == "batch_size":
            value = int(value)
        path = TRAIN_HPARAMS.get(name)
        if path is None:
            out["arch"][name] = value
            continue
        node = out["train"]
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


@dataclass(frozen=True)
class Study:
    """One architecture × data set × scheme cell to tune (see the module docstring)."""

    suite: str
    key: str
    arch: AxisItem
    dataset: AxisItem
    dequant: AxisItem
    space_name: str
    space: dict[str, Distribution]
    settings: TuneSection
    config: JobConfig = field(repr=False, compare=False)  # base config, at the tuning seed
    seeds: tuple[int, ...] = ()  # the seeds its best values are retrained over
    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def axes(self) -> dict[str, Any]:
        return {"arch": self.arch.display, "dataset": self.dataset.display,
                "dequant": self.dequant.display}

    def describe(self) -> str:
        a = self.axes
        return f"{a['arch']} · {a['dataset']} · {a['dequant']}"

    def plain_space(self) -> dict[str, dict[str, list[Any]]]:
        return {k: d.as_plain() for k, d in sorted(self.space.items())}

    def identity(self) -> dict[str, Any]:
        """Everything the study's key hashes."""
        t = self.settings
        return {
            "config": self.config.as_dict(),
            "space": self.plain_space(),
            "budget": t.budget.model_dump(mode="json"),
            "objective": t.objective,
            "search": t.search,
            "scheduler": None if t.scheduler is None else t.scheduler.model_dump(mode="json"),
            "tune_seed": t.seed,
            "resources": {"cpus": self.cpus, "gpus": self.gpus},
        }


def _study_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({"study": identity}).encode()).hexdigest()[:16]


def plan_studies(suite: Suite, jobs: list[Job]) -> list[Study]:
    """The studies of ``suite``: one per (architecture, data set, scheme) of ``jobs`` whose
    architecture has a search space, in job order, with the seeds its jobs have."""
    tune = suite.tune
    if tune is None:
        return []
    cells: dict[tuple[str, str, str], list[Job]] = {}
    for job in jobs:
        cfg = job.config.as_dict()
        cell = _canonical({k: cfg[k] for k in ("arch", "data", "dequant")})
        cells.setdefault((cell, job.arch.display, job.dataset.display), []).append(job)
    studies = []
    for group in cells.values():
        first = group[0]
        found = space_for(tune, first.arch)
        if found is None:
            continue
        name, space = found
        base = JobConfig(first.config.arch, first.config.data, first.config.dequant, tune.seed,
                         first.config.train, first.config.eval, first.config.timing)
        study = Study(suite.name, "", first.arch, first.dataset, first.dequant, name, space, tune,
                      base, tuple(j.seed for j in group), suite.resources.cpus,
                      suite.resources.gpus)
        studies.append(dataclasses.replace(study, key=_study_key(study.identity())))
    return studies


def tuned_label(arch: AxisItem, space: dict[str, Distribution], trials: int) -> str:
    """``realnvp(layers=2) tuned (12 trials)``: the architecture's label, or its name with
    the options the space left fixed (cut to the label limit)."""
    tail = f" tuned ({trials} trial{'s' if trials != 1 else ''})"
    fixed = {k: v for k, v in arch.options.items() if k not in space}
    head = arch.label or AxisItem(name=arch.name, options=fixed).display
    return head[: MAX_NAME - len(tail)] + tail


def tuned_jobs(study: Study, values: dict[str, Any], trials: int) -> list[Job]:
    """The jobs that retrain a study's best ``values`` over its seeds (see the module
    docstring); their tags name the study and its trials."""
    arch_values = {k: v for k, v in values.items() if k not in TRAIN_HPARAMS}
    arch = AxisItem(name=study.arch.name, label=tuned_label(study.arch, study.space, trials),
                    options={**study.arch.options, **arch_values})
    jobs = []
    for seed in study.seeds:
        base = study.config.as_dict()
        base["seed"] = seed
        config = JobConfig.from_dict(apply_values(base, values))
        key = job_key({**config.as_dict(), "tuned_by": study.key})
        jobs.append(Job(study.suite, key, arch, study.dataset, study.dequant, seed, config,
                        tags={keys.TAG_STUDY: study.key,
                              keys.TAG_TUNED_TRIALS: str(trials)}))
    return jobs
