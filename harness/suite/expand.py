"""Matrix expansion: a :class:`Suite` becomes a list of fully specified :class:`Job` s.

Each job carries everything needed to run it and a stable key: the first 16 hex digits of
the SHA-256 of its normalised config (JSON with sorted keys). The key is what makes runs
idempotent: the same config gives the same key on any machine, whatever the suite's order.
Resources and retries are not part of the key (they change where a job runs, not what it
computes), and neither is the data option ``download`` (it changes where the files come from).

Expansion is linear in the number of matrix cells with a small constant: each axis item's
JSON is written once, and a cell's key hashes the pieces joined in the order ``json.dumps``
with sorted keys would write them (the same bytes, so the same keys as hashing each job's
whole config). The cells are counted before anything is expanded (:func:`count_cells`), so
that a suite over the job limit is refused at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .jobconfig import ArchConfig, DataConfig, DequantConfig, JobConfig, RuntimeConfig
from .schema import AxisItem, Rule, RuntimeItem, Suite

__all__ = [
    "KEY_FREE_DATA_OPTIONS",
    "Dropped",
    "Job",
    "count_cells",
    "expand",
    "flatten",
    "job_config",
    "job_key",
]

#: data options that change where a job's files come from, not what it computes
KEY_FREE_DATA_OPTIONS = ("download",)


EAGER_ITEM = RuntimeItem(name="eager")


@dataclass(frozen=True)
class Job:
    """One (architecture, data set, dequantization, runtime, seed) cell, fully specified: the
    axis items as the suite wrote them (for names in tables), and the typed config it runs."""

    suite: str
    key: str
    arch: AxisItem
    dataset: AxisItem
    dequant: AxisItem
    seed: int
    config: JobConfig = field(repr=False, compare=False)
    tags: dict[str, str] = field(default_factory=dict, repr=False, compare=False)  # on its run
    runtime: RuntimeItem = EAGER_ITEM

    @property
    def axes(self) -> dict[str, Any]:
        return {
            "arch": self.arch.display,
            "dataset": self.dataset.display,
            "dequant": self.dequant.display,
            "runtime": self.runtime.display,
            "seed": self.seed,
        }

    def flat_params(self) -> dict[str, str]:
        """The config flattened to dotted keys (MLflow params)."""
        return flatten(self.config.as_dict())


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


def _canonical(tree: Any) -> str:
    return json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)


def key_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a job config its key hashes: all but ``KEY_FREE_DATA_OPTIONS``."""
    data = config.get("data")
    if isinstance(data, dict) and any(k in data for k in KEY_FREE_DATA_OPTIONS):
        data = {k: v for k, v in data.items() if k not in KEY_FREE_DATA_OPTIONS}
        return {**config, "data": data}
    return config


def job_key(config: dict[str, Any]) -> str:
    """The first 16 hex digits of the SHA-256 of the config's canonical JSON (see module)."""
    return hashlib.sha256(_canonical(key_config(config)).encode()).hexdigest()[:16]


def count_cells(suite: Suite) -> int:
    """Matrix cells: architectures × data sets × dequantization schemes × runtimes × seeds
    (an upper bound on the jobs, counted without expanding anything)."""
    m = suite.matrix
    return (len(m.architectures) * len(m.datasets) * len(m.dequantization) * len(m.runtime)
            * len(m.seeds))


def _runtime_config(item: RuntimeItem) -> RuntimeConfig:
    return RuntimeConfig(item.name, item.mode, item.shapes)


def job_config(
    suite: Suite, arch: AxisItem, dataset: AxisItem, dequant: AxisItem, seed: int,
    runtime: RuntimeItem = EAGER_ITEM,
) -> dict[str, Any]:
    """The normalised config of one job (:meth:`JobConfig.as_dict`), written out whole: what
    it computes, nothing about where (the reference for :func:`expand`'s keys). An eager job
    has no ``runtime`` entry."""
    out = {
        "arch": {"name": arch.name, **arch.options},
        "data": {"name": dataset.name, **dataset.options},
        "dequant": {"scheme": dequant.name, **dequant.options},
        "seed": seed,
        "train": suite.train.model_dump(mode="json"),
        "eval": suite.eval.model_dump(mode="json"),
        "timing": suite.timing.model_dump(mode="json"),
    }
    if not runtime.eager:
        out["runtime"] = _runtime_config(runtime).as_dict()
    return out


def expand(
    suite: Suite,
    compatible: Callable[[AxisItem, AxisItem, AxisItem], str | None] = lambda a, d, q: None,
) -> tuple[list[Job], list[Dropped]]:
    """All jobs of ``suite`` in matrix order, and the cells dropped with their reasons.

    ``compatible(arch, dataset, dequant)`` returns None for a sensible combination, or the
    reason to drop it (for example uniform dequantization of continuous data); the caller
    injects it from the registries. It is asked once per (architecture, data set, scheme).
    Jobs share their config's sections (``train``, ``arch``, …), which are frozen.
    """
    jobs: list[Job] = []
    dropped: list[Dropped] = []
    seen: set[str] = set()
    m = suite.matrix
    fixed = {
        "train": suite.train.model_dump(mode="json"),
        "eval": suite.eval.model_dump(mode="json"),
        "timing": suite.timing.model_dump(mode="json"),
    }
    settings = {"train": suite.train, "eval": suite.eval, "timing": suite.timing}
    # the key's JSON, top-level keys sorted: arch, data, dequant, eval, [runtime,] seed,
    # timing, train (an eager job has no runtime entry)
    runtimes = []
    for item in m.runtime:
        rc = _runtime_config(item)
        text = "" if rc.eager else ',"runtime":' + _canonical(rc.as_dict())
        runtimes.append((item, rc, ',"eval":' + _canonical(fixed["eval"]) + text + ',"seed":',
                         {item.name, item.display}))
    tail = ',"timing":' + _canonical(fixed["timing"]) + ',"train":' + _canonical(fixed["train"])
    tail += "}"

    def sections(items: list[AxisItem], section: str, name_key: str, typed
                 ) -> list[tuple[Any, str]]:
        out = []
        for item in items:
            cfg = {name_key: item.name, **item.options}
            out.append((typed(item.name, dict(item.options)),
                        _canonical(key_config({section: cfg})[section])))
        return out

    archs = sections(m.architectures, "arch", "name", ArchConfig)
    datas = sections(m.datasets, "data", "name", DataConfig)
    dequants = sections(m.dequantization, "dequant", "scheme", DequantConfig)
    names = [(a.display, {a.name, a.display}) for a in m.architectures]
    dnames = [(d.display, {d.name, d.display}) for d in m.datasets]
    qnames = [(q.display, {q.name, q.display}) for q in m.dequantization]
    rules_in, rules_out = suite.include, suite.exclude

    def matches(rule: Rule, a: set[str], d: set[str], q: set[str], r: set[str],
                seed: int) -> bool:
        return ((rule.arch is None or rule.arch in a)
                and (rule.dataset is None or rule.dataset in d)
                and (rule.dequant is None or rule.dequant in q)
                and (rule.runtime is None or rule.runtime in r)
                and (rule.seed is None or rule.seed == seed))

    for ai, arch in enumerate(m.architectures):
        a_disp, a_set = names[ai]
        for di, dataset in enumerate(m.datasets):
            d_disp, d_set = dnames[di]
            for qi, dequant in enumerate(m.dequantization):
                q_disp, q_set = qnames[qi]
                reason = compatible(arch, dataset, dequant)
                head = ('{"arch":' + archs[ai][1] + ',"data":' + datas[di][1]
                        + ',"dequant":' + dequants[qi][1])
                for runtime, rc, middle, r_set in runtimes:
                    for seed in m.seeds:
                        if reason:
                            why = reason
                        elif rules_in and not any(
                            matches(r, a_set, d_set, q_set, r_set, seed) for r in rules_in
                        ):
                            why = "matches no include rule"
                        elif any(matches(r, a_set, d_set, q_set, r_set, seed)
                                 for r in rules_out):
                            why = "matches an exclude rule"
                        else:
                            why = ""
                        axes = {"arch": a_disp, "dataset": d_disp, "dequant": q_disp,
                                "runtime": runtime.display, "seed": seed}
                        if why:
                            dropped.append(Dropped(axes, why))
                            continue
                        key = hashlib.sha256(
                            (head + middle + str(seed) + tail).encode()).hexdigest()[:16]
                        if key in seen:
                            dropped.append(Dropped(axes, f"duplicate of job {key}"))
                            continue
                        config = JobConfig(archs[ai][0], datas[di][0], dequants[qi][0], seed,
                                           **settings, runtime=rc)
                        seen.add(key)
                        jobs.append(Job(suite.name, key, arch, dataset, dequant, seed, config,
                                        runtime=runtime))
    return jobs, dropped
