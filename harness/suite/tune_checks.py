"""Checks of a suite's ``tune:`` section against the registries, before anything runs.

Each problem is ``(place, message)`` with the place a field path (``tune.spaces.realnvp.lr``)
that :func:`harness.suite.checks.check_suite` turns into ``FILE:LINE: field``. Checked:

- every space names an architecture of the matrix (its name or its label), one that trains
  (not a closed-form reference row);
- every hyper-parameter of a space is one the architecture takes, or a training one
  (:data:`~harness.suite.studies.TRAIN_HPARAMS`: ``lr``, ``weight_decay``, ``batch_size``);
- every distribution draws values of the hyper-parameter's type, inside its range (both ends
  of a range, every value of a choice), and the rules tying two hyper-parameters together
  hold at the corners of the space;
- the objective fits the data (``bpd`` needs discrete data), ASHA has training steps to
  work over, a GPU-hour budget has GPUs to count, and ``search: optuna`` has Optuna
  installed.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Mapping
from typing import Any

from ..options import Option, clip, shown
from ..registry import nearest
from .studies import TRAIN_HPARAMS, TRAIN_SPECS
from .tune_schema import Distribution

__all__ = ["MAX_CORNERS", "tune_problems"]

MAX_CORNERS = 256  # combinations of extremes checked against the cross rules

Loc = tuple[Any, ...]


def _kind_problem(spec: Option, dist: Distribution) -> str | None:
    """Why ``dist`` cannot draw values of ``spec``'s type, or None."""
    if dist.name == "choice":
        return None  # each value is checked on its own
    if spec.type == "int" and dist.kind != "int":
        return ("draws floats, but the hyper-parameter is an integer; use randint, "
                "qrandint, lograndint or choice")
    if spec.type not in ("int", "float", "any"):
        return f"draws numbers, but the hyper-parameter is {spec.describe()}; use choice"
    return None


def _range_problems(spec: Option, dist: Distribution) -> list[str]:
    out = []
    if dist.name == "randn" and (spec.low is not None or spec.high is not None):
        return [(f"randn is unbounded, but the hyper-parameter must be {spec.describe()}; "
                "use uniform or loguniform over its range")]
    ends = dist.extremes()
    what = ["value"] * len(ends) if dist.name == "choice" else ["low", "high"]
    for end, name in zip(ends, what):
        why = spec.problem(end)
        if why:
            out.append(f"its {name} {shown(end)} is out of the hyper-parameter's range: {why}")
    return out


def _corners(space: Mapping[str, Distribution]) -> list[dict[str, Any]]:
    """Combinations of each distribution's extremes (at most :data:`MAX_CORNERS`)."""
    names = [k for k, d in space.items() if d.extremes()]
    values = [space[k].extremes() for k in names]
    combos = itertools.islice(itertools.product(*values), MAX_CORNERS)
    return [dict(zip(names, c)) for c in combos]


def tune_problems(suite, catalog) -> list[tuple[Loc, str]]:
    """Problems of ``suite.tune`` (see the module docstring); ``catalog`` is the suite
    checks' :class:`~harness.suite.checks.Catalog`."""
    tune = suite.tune
    if tune is None:
        return []
    out: list[tuple[Loc, str]] = []
    archs = suite.matrix.architectures
    names = {a.name for a in archs} | {a.display for a in archs} | \
        {a.label for a in archs if a.label}
    trainable = catalog.flows if catalog.flows is not None else list(catalog.arch_hparams)
    tuned_archs = []
    for space_name, space in tune.spaces.items():
        loc: Loc = ("tune", "spaces", space_name)
        if space_name not in names:
            near = nearest(space_name, sorted(names))
            out.append((loc, f"'{clip(space_name)}' is not an architecture of the matrix"
                        + (f"; did you mean '{near}'?" if near else "")
                        + f" (the matrix has: {', '.join(sorted(names))})"))
            continue
        items = [a for a in archs if space_name in (a.name, a.display, a.label)]
        tuned_archs += items
        arch = items[0].name
        if arch not in catalog.arch_hparams:
            continue  # an unknown architecture: reported with the matrix
        if arch not in trainable:
            out.append((loc, (f"'{arch}' is fitted in closed form: it has nothing to tune; "
                             "leave it out of tune.spaces")))
            continue
        specs = catalog.arch_specs(arch)
        for hp, dist in space.items():
            hp_loc = loc + (hp,)
            spec = specs.get(hp)
            if hp in TRAIN_HPARAMS and spec is not None:
                out.append((hp_loc, (f"'{hp}' names both a training hyper-parameter and one "
                                    f"of '{arch}', so it cannot be tuned unambiguously")))
                continue
            spec = spec or TRAIN_SPECS.get(hp)
            if spec is None:
                valid = sorted(set(specs) | set(TRAIN_SPECS))
                near = nearest(hp, valid)
                out.append((hp_loc, f"'{arch}' has no hyper-parameter '{clip(hp)}'"
                            + (f"; did you mean '{near}'?" if near else "")
                            + f" (valid: {', '.join(valid)})"))
                continue
            why = _kind_problem(spec, dist)
            if why:
                out.append((hp_loc, f"{dist.name} {why}"))
                continue
            for why in _range_problems(spec, dist):
                out.append((hp_loc, f"{dist.name}: {why}"))
        if any(p[0][:3] == loc for p in out):
            continue
        arch_space = {k: d for k, d in space.items() if k not in TRAIN_HPARAMS}
        for item in items:
            for corner in _corners(arch_space):
                problems = catalog.arch_cross(arch, {**item.options, **corner})
                if problems:
                    key, why = problems[0]
                    shown_corner = ", ".join(f"{k}={v}" for k, v in corner.items())
                    out.append((loc + (key,), f"at {shown_corner}: {why}; narrow the space"))
                    break
            else:
                continue
            break
    out += _section_problems(suite, catalog, tuned_archs)
    return out


def _section_problems(suite, catalog, tuned_archs) -> list[tuple[Loc, str]]:
    tune, out = suite.tune, []
    tuned = {id(a) for a in tuned_archs}
    if tune.objective == "bpd" and tuned:
        continuous = sorted(d.display for d in suite.matrix.datasets
                            if catalog.dataset_kind.get(d.name) == "continuous")
        if continuous:
            out.append((("tune", "objective"),
                        ("bpd is for discrete data, but the matrix has continuous data "
                        f"({', '.join(continuous)}); use objective: nll (or leave it out: each "
                        "data set's own score)")))
    if tune.scheduler is not None:
        steps = suite.train.steps
        if steps is None:
            out.append((("tune", "scheduler"), ("ASHA stops trials at rungs of training "
                        "steps, but train.steps is not set; set train.steps, or scheduler: none")))
        elif (tune.scheduler.grace_period or suite.train.eval_every) > steps:
            grace = tune.scheduler.grace_period or suite.train.eval_every
            out.append((("tune", "scheduler", "grace_period"),
                        (f"the first rung ({grace:,} steps) is past train.steps ({steps:,}); "
                        "lower grace_period (null: train.eval_every)")))
    if tune.budget.gpu_hours is not None and suite.resources.gpus == 0:
        out.append((("tune", "budget", "gpu_hours"), ("trials hold no GPU (resources.gpus is "
                    "0), so no GPU-hours are spent; use cpu_hours or trials")))
    if tune.search == "optuna" and importlib.util.find_spec("optuna") is None:
        out.append((("tune", "search"), ("optuna is not installed; pip install optuna "
                    "(or nfbench[tune]), or use search: random")))
    return out
