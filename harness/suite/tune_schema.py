"""The ``tune:`` section of a suite: search spaces, one budget, the objective, the search.

Every architecture named under ``spaces`` gets a study per (data set, scheme) of the matrix,
all with the same ``budget``; the best configuration of each study is then retrained over the
suite's seeds as ordinary jobs (rows labelled ``tuned (N trials)``). A search space maps a
hyper-parameter to one of Ray Tune's distributions, written as a one-key mapping::

    tune:
      spaces:
        realnvp:
          lr: {loguniform: [1.0e-4, 1.0e-2]}    # train.optimizer.lr
          hidden: {choice: [32, 64, 128]}
          layers: {randint: [4, 11]}            # 4 … 10: the upper bound is excluded
      budget: {trials: 12}                      # and/or cpu_hours, gpu_hours
      objective: bpd                            # validation bpd, or nll (nats)
      search: random                            # or optuna (pip install optuna)
      scheduler: {name: asha, grace_period: 100, reduction_factor: 3}   # or none

The distributions and their arguments are Ray Tune's (``tune.uniform(low, high)`` …):

================  ==================  ====================================================
name              arguments           values
================  ==================  ====================================================
``uniform``       [low, high]         floats in [low, high)
``quniform``      [low, high, q]      floats in [low, high], multiples of q
``loguniform``    [low, high]         floats in [low, high), uniform in log (low > 0)
``qloguniform``   [low, high, q]      … rounded to multiples of q
``randint``       [low, high]         integers low … high − 1
``qrandint``      [low, high, q]      integers low … high (inclusive), multiples of q
``lograndint``    [low, high]         integers low … high − 1, uniform in log (low ≥ 1)
``qlograndint``   [low, high, q]      integers low … high (inclusive), multiples of q
``randn``         [mean, sd]          normal floats (only for unbounded hyper-parameters)
``choice``        [v1, v2, …]         one of the values (any type)
================  ==================  ====================================================

The shapes are checked here; :mod:`harness.suite.tune_checks` checks each space against the
architecture's hyper-parameters (names, types, ranges) with the file and line.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..options import shown
from .base import MAX_SEED, MAX_STEPS, NamedModel, StrictModel

__all__ = ["DISTRIBUTIONS", "MAX_CHOICES", "MAX_HOURS", "MAX_TRIALS", "Asha", "Distribution",
           "TuneBudget", "TuneSection"]

MAX_TRIALS = 10_000  # trials of one study
MAX_HOURS = 1e6  # CPU- or GPU-hours of one study
MAX_CHOICES = 1_000  # values of one choice
MAX_PARAMS = 50  # hyper-parameters in one space

#: name → (number of arguments, "float" | "int" | "any")
DISTRIBUTIONS: dict[str, tuple[int | None, str]] = {
    "uniform": (2, "float"),
    "quniform": (3, "float"),
    "loguniform": (2, "float"),
    "qloguniform": (3, "float"),
    "randint": (2, "int"),
    "qrandint": (3, "int"),
    "lograndint": (2, "int"),
    "qlograndint": (3, "int"),
    "randn": (2, "float"),
    "choice": (None, "any"),
}
_EXCLUSIVE_HIGH = ("randint", "lograndint")  # integers low … high − 1
_LOG = ("loguniform", "qloguniform", "lograndint", "qlograndint")
# YAML 1.1 reads 1e-4 (no dot) as text; a bound written so is a number here
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+$")


def _number(value: Any, kind: str, what: str) -> float | int:
    if isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 (pydantic reports ValueErrors)
            f"{what} must be a number, not a boolean (got {shown(value)})")
    if isinstance(value, str) and kind == "float" and _FLOAT_TEXT.match(value.strip()):
        value = float(value)
    if kind == "int" and not isinstance(value, int):
        raise ValueError(f"{what} must be an integer (got {shown(value)})")
    if not isinstance(value, (int, float)):
        raise ValueError(  # noqa: TRY004 (pydantic reports ValueErrors)
            f"{what} must be a number (got {shown(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be finite (got {shown(value)})")
    return value


class Distribution(StrictModel):
    """One of Ray Tune's distributions (see the module docstring): ``name`` and ``args``.

    In YAML a one-key mapping, ``{loguniform: [1.0e-4, 1.0e-2]}``."""

    name: str
    args: tuple[Any, ...]

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, Distribution):
            return value
        if not isinstance(value, dict):
            raise ValueError(  # noqa: TRY004 (pydantic reports ValueErrors)
                "a search space entry is a distribution, a one-key mapping such "
                "as {loguniform: [1.0e-4, 1.0e-2]}; a fixed value belongs in the "
                f"architecture's matrix entry (got {shown(value)})")
        if set(value) == {"name", "args"}:
            name, args = value["name"], value["args"]
        elif len(value) != 1:
            raise ValueError(
                "a search space entry is one distribution, a one-key mapping such as "
                "{loguniform: [1.0e-4, 1.0e-2]} or {choice: [32, 64]} (got "
                f"{len(value)} keys)")
        else:
            (name, args), = value.items()
        if name == "grid_search":
            raise ValueError(
                "grid_search is not a distribution here: it would multiply the trials "
                "beyond the budget, unequally between architectures; use choice (the "
                "budget sets the trials)")
        if not isinstance(name, str) or name not in DISTRIBUTIONS:
            from ..registry import nearest

            near = nearest(str(name), list(DISTRIBUTIONS))
            raise ValueError(f"unknown distribution {shown(name)}"
                             + (f"; did you mean '{near}'?" if near else "")
                             + f" (valid: {', '.join(DISTRIBUTIONS)})")
        if not isinstance(args, (list, tuple)):
            raise ValueError(  # noqa: TRY004 (pydantic reports ValueErrors)
                f"{name} takes a list of arguments, e.g. {{{name}: "
                f"{_EXAMPLE[name]}}} (got {shown(args)})")
        arity, kind = DISTRIBUTIONS[name]
        if arity is not None:
            if len(args) != arity:
                raise ValueError(f"{name} takes {arity} arguments, e.g. {{{name}: "
                                 f"{_EXAMPLE[name]}}} (got {len(args)})")
            names = ("mean", "sd") if name == "randn" else ("low", "high", "q")
            args = [_number(v, kind, f"{name}'s {n}") for v, n in zip(args, names)]
        return {"name": name, "args": tuple(args)}

    @model_validator(mode="after")
    def _arguments(self) -> Distribution:
        arity, _ = DISTRIBUTIONS[self.name]
        args = self.args
        if arity is None:  # choice
            if not 1 <= len(args) <= MAX_CHOICES:
                raise ValueError(f"choice takes 1 to {MAX_CHOICES:,} values (got {len(args):,})")
            for v in args:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"choice values must be finite (got {shown(v)})")
            seen = [repr(v) for v in args]
            if len(set(seen)) != len(seen):
                raise ValueError(f"choice values must be distinct (got {shown(list(args))})")
            return self
        values = args
        if self.name == "randn":
            if values[1] <= 0:
                raise ValueError(f"randn's sd must be > 0 (got {shown(values[1])})")
            return self
        low, high = values[0], values[1]
        if not low < high:
            raise ValueError(f"{self.name}'s low must be below its high (got {shown(low)} "
                             f"and {shown(high)})")
        if self.name in _LOG and low <= 0:
            raise ValueError(f"{self.name}'s low must be > 0 (a log scale; got {shown(low)})")
        if self.name in _EXCLUSIVE_HIGH and high - low < 1:
            raise ValueError(f"{self.name} excludes its high: [{low}, {high}] holds no integer")
        if arity == 3:
            q = values[2]
            if q <= 0 or q > high - low:
                raise ValueError(f"{self.name}'s q must be in (0, high − low] (got {shown(q)})")
        return self

    # ── what it draws ──────────────────────────────────────────────────────────────────
    @property
    def kind(self) -> str:
        """``"float"``, ``"int"`` or ``"any"`` (choice)."""
        return DISTRIBUTIONS[self.name][1]

    def extremes(self) -> list[Any]:
        """The smallest and largest value it can draw (every value of a choice); ``[]`` for
        randn, which is unbounded."""
        if self.name == "choice":
            return list(self.args)
        if self.name == "randn":
            return []
        low, high = self.args[0], self.args[1]
        return [low, high - 1 if self.name in _EXCLUSIVE_HIGH else high]

    def as_plain(self) -> dict[str, list[Any]]:
        """The YAML form, ``{name: [args]}`` (what a study's key hashes)."""
        return {self.name: list(self.args)}


_EXAMPLE = {
    "uniform": "[0.0, 1.0]", "quniform": "[0.0, 1.0, 0.1]", "loguniform": "[1.0e-4, 1.0e-2]",
    "qloguniform": "[1.0e-4, 1.0e-2, 1.0e-4]", "randint": "[4, 11]", "qrandint": "[32, 256, 32]",
    "lograndint": "[16, 513]", "qlograndint": "[16, 512, 16]", "randn": "[0.0, 1.0]",
    "choice": "[32, 64, 128]",
}


class TuneBudget(StrictModel):
    """The budget of each study (the same for every architecture): ``trials`` and/or
    ``cpu_hours`` / ``gpu_hours`` (trial seconds × CPUs or GPU share held); whichever ends
    first ends the study."""

    trials: int | None = Field(None, gt=0, le=MAX_TRIALS)
    cpu_hours: float | None = Field(None, gt=0, le=MAX_HOURS)
    gpu_hours: float | None = Field(None, gt=0, le=MAX_HOURS)

    @model_validator(mode="after")
    def _some_budget(self) -> TuneBudget:
        if self.trials is None and self.cpu_hours is None and self.gpu_hours is None:
            raise ValueError("give budget.trials, budget.cpu_hours or budget.gpu_hours "
                             "(any of them; whichever ends first ends a study)")
        return self


class Asha(NamedModel):
    """Asynchronous successive halving over training steps: a trial continues past a rung
    (``grace_period`` × ``reduction_factor``^k steps) only when its validation score is in
    the best 1 / ``reduction_factor`` of the trials that reached that rung."""

    name: Literal["asha"] = "asha"
    grace_period: int | None = Field(None, gt=0, le=MAX_STEPS,
                                     description="steps before the first rung; null: eval_every")
    reduction_factor: float = Field(3.0, gt=1, le=100)


class TuneSection(StrictModel):
    """A suite's ``tune:`` section (see the module docstring)."""

    spaces: dict[str, dict[str, Distribution]] = Field(min_length=1)
    budget: TuneBudget
    objective: Literal["bpd", "nll"] | None = Field(
        None, description="validation bpd (discrete data) or nll; null: the data's own")
    search: Literal["random", "optuna"] = "random"
    scheduler: Asha | None = Field(default_factory=Asha)
    seed: int = Field(0, ge=0, le=MAX_SEED, description="the searcher's and the trials' seed")
    max_concurrent: int | None = Field(None, gt=0, le=MAX_TRIALS)
    defaults: bool = Field(True, description="keep the untuned rows beside the tuned ones")

    @field_validator("scheduler", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return None if value == "none" else value

    @field_validator("spaces")
    @classmethod
    def _not_empty(cls, spaces: dict[str, dict[str, Distribution]]
                   ) -> dict[str, dict[str, Distribution]]:
        for arch, space in spaces.items():
            if not space:
                raise ValueError(f"the space of '{arch}' is empty; give at least one "
                                 "hyper-parameter, or leave the architecture out")
            if len(space) > MAX_PARAMS:
                raise ValueError(f"the space of '{arch}' has {len(space)} hyper-parameters; "
                                 f"at most {MAX_PARAMS}")
        return spaces
