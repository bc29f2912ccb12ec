"""The suite schema: a YAML file parsed once, at the edge, into validated objects.

A suite is a matrix of architectures × dequantization schemes × data sets × runtimes × seeds,
with one training budget, evaluation and timing settings and resources per job. Every field is
checked here (types, ranges, unknown keys); names are checked against the registries by
:mod:`harness.suite.checks`, which gets the catalogue injected (this layer imports no torch).

Numbers are finite and bounded (the ``MAX_*`` constants below, and ``MAX_STEPS`` and
``MAX_SEED``, which the ``tune:`` section shares, in :mod:`harness.suite.base`; all listed in
``docs/suites.md``, "Bad input"), and a boolean is never a number: YAML reads ``yes``, ``no``,
``on``, ``off``, ``true`` and ``false`` as booleans, and ``steps: yes`` must not quietly become
one step. Every section is a :class:`~harness.suite.base.StrictModel`; the ``tune:`` section
is defined in :mod:`harness.suite.tune_schema`, on the same bases.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from ..options import shown
from ..registry import nearest
from .base import MAX_SEED, MAX_STEPS, NamedModel, StrictModel
from .tune_schema import TuneSection

__all__ = [
    "MAX_BATCH",
    "MAX_IW_SAMPLES",
    "MAX_MEMORY_GB",
    "MAX_MINUTES",
    "MAX_NAME",
    "MAX_SEED",
    "MAX_STEPS",
    "AxisItem",
    "EvalSettings",
    "Matrix",
    "Optimizer",
    "Resources",
    "Rule",
    "RuntimeItem",
    "Schedule",
    "Suite",
    "SystemMetricsSettings",
    "TimingSettings",
    "TrainBudget",
    "runtime_label",
]

MAX_PATIENCE_EPOCHS = 1e6  # train.patience_epochs
MAX_MINUTES = 10_080.0  # one week of wall clock per job
MAX_BATCH = 2**20  # any batch size
MAX_EXAMPLES = 10**9  # eval.max_examples
MAX_IW_SAMPLES = 2**16  # eval.iw_samples (Flow++ evaluates with 4,096)
MAX_MEMORY_GB = 4096.0  # resources.memory_gb
MAX_CPUS = 1024.0  # resources.cpus
MAX_THREADS = 1024  # timing.threads
MAX_NAME = 100  # characters of a name or label
MAX_TEXT = 10_000  # characters of a description
MIN_SYSTEM_METRICS_S = 0.5  # system_metrics.interval (each sample costs an MLflow call)
MAX_SYSTEM_METRICS_S = 3600.0


class AxisItem(StrictModel):
    """One value of a matrix axis: a registry name with options.

    In YAML either a bare name (``realnvp``) or a mapping with ``name`` and options
    (``{name: maf, hidden: 128}``); an optional ``label`` names the variant in tables.
    """

    name: str = Field(min_length=1, max_length=MAX_NAME)
    label: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "options" not in value:
            rest = {k: v for k, v in value.items() if k not in ("name", "label")}
            out = {k: value[k] for k in ("name", "label") if k in value}
            out["options"] = rest
            return out
        return value

    @property
    def display(self) -> str:
        """``label`` if given, else ``name(k=v, …)`` with the options sorted."""
        if self.label:
            return self.label
        if not self.options:
            return self.name
        inner = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}({inner})"


# The runtimes a job's flow runs under, as plain names (this layer imports no torch; a test
# checks they equal harness.flows.compiled.RUNTIMES, COMPILE_MODES and SHAPE_POLICIES).
RUNTIMES = ("eager", "compile", "cuda-graphs")
RUNTIME_MODES = ("default", "max-autotune")
RUNTIME_SHAPES = ("dynamic", "static", "pad")


def runtime_label(name: str, mode: str, shapes: str) -> str:
    """A runtime as tables and tags show it: ``compile``, or
    ``compile(mode=max-autotune, shapes=static)`` where it is off the defaults."""
    opts = [f"{k}={v}" for k, v, d in (("mode", mode, RUNTIME_MODES[0]),
                                       ("shapes", shapes, RUNTIME_SHAPES[0])) if v != d]
    return f"{name}({', '.join(opts)})" if opts else name


def _one_of(what: str, value: Any, valid: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be one of {', '.join(valid)} (got {shown(value)})")  # noqa: TRY004
    if value not in valid:
        near = nearest(value, list(valid))
        raise ValueError(f"unknown {what} (got {shown(value)})"
                         + (f"; did you mean '{near}'?" if near else "")
                         + f" Valid: {', '.join(valid)}")
    return value


class RuntimeItem(StrictModel):
    """One value of the ``runtime`` axis: how the flow's operations run, in training and
    timing.

    In YAML a bare name (``eager``, ``compile``, ``cuda-graphs``) or a mapping
    ``{name: compile, mode: default | max-autotune, shapes: dynamic | static | pad}``.
    ``mode`` is ``torch.compile``'s search depth (``max-autotune`` autotunes matmul kernels:
    more compile time); ``shapes`` the batch-size policy (``dynamic``: one graph for every
    batch size, so evaluation batches of another size do not recompile; ``static``: a graph
    per batch size; ``pad``: batches padded to the next power of two). ``cuda-graphs`` runs
    on a GPU only. ``eager`` takes neither option.
    """

    name: str
    mode: str = "default"
    shapes: str = "dynamic"

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, dict):
            raise ValueError(f"a runtime is a name ({', '.join(RUNTIMES)}) or a mapping "  # noqa: TRY004
                             f"{{name: compile, mode: …, shapes: …}} (got {shown(value)})")
        return value

    @field_validator("name", mode="before")
    @classmethod
    def _known_name(cls, value: Any) -> Any:
        return _one_of("runtime", value, RUNTIMES)

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, value: Any) -> Any:
        return _one_of("compile mode", value, RUNTIME_MODES)

    @field_validator("shapes", mode="before")
    @classmethod
    def _known_shapes(cls, value: Any) -> Any:
        return _one_of("shape policy", value, RUNTIME_SHAPES)

    @model_validator(mode="after")
    def _eager_plain(self) -> RuntimeItem:
        given = sorted(self.model_fields_set & {"mode", "shapes"})
        if self.name == "eager" and given:
            raise ValueError(f"runtime eager takes no {' or '.join(given)}; remove it, or use "
                             "runtime compile")
        return self

    @property
    def eager(self) -> bool:
        return self.name == "eager"

    @property
    def display(self) -> str:
        """``compile``, or ``compile(mode=max-autotune, shapes=static)`` off the defaults
        (:func:`runtime_label`)."""
        return runtime_label(self.name, self.mode, self.shapes)


class Matrix(StrictModel):
    """The axes whose product is the set of jobs."""

    architectures: list[AxisItem] = Field(min_length=1)
    datasets: list[AxisItem] = Field(min_length=1)
    dequantization: list[AxisItem] = Field(
        default_factory=lambda: [AxisItem(name="none"), AxisItem(name="uniform")]
    )
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    runtime: list[RuntimeItem] = Field(
        default_factory=lambda: [RuntimeItem(name="eager")], min_length=1,
        description="eager, compile, cuda-graphs (or {name: compile, mode:, shapes:})")

    @field_validator("seeds")
    @classmethod
    def _seeds_distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct (got {shown(seeds)})")
        if any(s < 0 or s > MAX_SEED for s in seeds):
            bad = next(s for s in seeds if s < 0 or s > MAX_SEED)
            raise ValueError(f"seeds must be ≥ 0 and ≤ {MAX_SEED:,} (got {shown(bad)})")
        return seeds


class Rule(StrictModel):
    """A partial job description for include / exclude (any subset of the axes).

    Values are names (an architecture's ``label`` also matches; a runtime matches by name,
    ``compile``, or as displayed, ``compile(mode=max-autotune)``); a seed is an integer.
    """

    arch: str | None = Field(None, max_length=MAX_NAME)
    dataset: str | None = Field(None, max_length=MAX_NAME)
    dequant: str | None = Field(None, max_length=MAX_NAME)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    runtime: str | None = Field(None, max_length=MAX_NAME)

    @model_validator(mode="after")
    def _not_empty(self) -> Rule:
        if all(v is None for v in (self.arch, self.dataset, self.dequant, self.seed,
                                   self.runtime)):
            raise ValueError("a rule needs at least one of arch, dataset, dequant, seed, "
                             "runtime")
        return self


class Optimizer(NamedModel):
    name: Literal["adam", "adamw", "adamax", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0, le=1)
    betas: tuple[float, float] = (0.9, 0.999)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"each beta must be in [0, 1) (got {shown(betas)})")
        return betas


class Schedule(NamedModel):
    """Learning-rate schedule: constant or cosine annealing, with linear warm-up."""

    name: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)


#: TrainBudget fields left out of its dump when null (added after job keys were in use)
_OPTIONAL_TRAIN_FIELDS = ("patience", "patience_epochs")


class TrainBudget(StrictModel):
    """How long a job trains: ``steps`` and/or wall-clock ``minutes`` (whichever ends first),
    and optionally until the validation score stops improving: ``patience`` validations in
    a row (every ``eval_every`` steps) without a new best, or ``patience_epochs`` epochs of
    the training split without one (``⌈patience_epochs · n_train / batch_size⌉`` steps since
    the best, checked at each validation)."""

    steps: int | None = Field(1000, gt=0, le=MAX_STEPS)
    minutes: float | None = Field(None, gt=0, le=MAX_MINUTES)
    batch_size: int = Field(256, gt=0, le=MAX_BATCH)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    schedule: Schedule = Field(default_factory=Schedule)
    clip: float | None = Field(5.0, gt=0, le=1e6, description="gradient-norm clipping; null: none")
    eval_every: int = Field(100, gt=0, le=MAX_STEPS, description="validation every N steps")
    checkpoint_every: int = Field(
        200, gt=0, le=MAX_STEPS, description="checkpoint + flush curves every N")
    log_every: int = Field(
        10, gt=0, le=MAX_STEPS, description="training-curve point every N steps")
    max_nonfinite: int = Field(
        50, ge=0, le=MAX_STEPS,
        description="non-finite losses skipped before the run counts as diverged",
    )
    patience: int | None = Field(
        None, gt=0, le=MAX_STEPS,
        description="early stopping: validations in a row without a new best; null: off")
    patience_epochs: float | None = Field(
        None, gt=0, le=MAX_PATIENCE_EPOCHS,
        description="early stopping: epochs of the training split without a new best (the "
        "MAF paper's unit, turned into steps per data set); null: off")

    @model_validator(mode="after")
    def _some_budget(self) -> TrainBudget:
        if self.steps is None and self.minutes is None:
            raise ValueError("give train.steps or train.minutes (or both)")
        if self.patience is not None and self.patience_epochs is not None:
            raise ValueError("give train.patience (validations) or train.patience_epochs "
                             "(epochs), not both")
        return self

    @model_serializer(mode="wrap")
    def _leave_out_unset_early_stopping(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        """Early stopping that is off is not written: the normalised config (and so every
        job key) of a suite without it is what it was before these fields existed."""
        out = handler(self)
        for name in _OPTIONAL_TRAIN_FIELDS:
            if out.get(name, 0) is None:
                del out[name]
        return out


class EvalSettings(StrictModel):
    batch_size: int = Field(1000, gt=0, le=MAX_BATCH)
    max_examples: int | None = Field(
        None, gt=0, le=MAX_EXAMPLES, description="cap on test examples; null: all")
    iw_samples: int = Field(
        16, gt=0, le=MAX_IW_SAMPLES, description="K for eval/bpd_iw (variational)")


class TimingSettings(StrictModel):
    """Timing phase: each measurement is ``torch.utils.benchmark`` with warm-up,
    run for at least ``min_run_time`` seconds, median reported."""

    enabled: bool = True
    batch_size: int = Field(512, gt=0, le=MAX_BATCH)
    min_run_time: float = Field(0.2, gt=0, le=60)
    sample_batch_size: int | None = Field(
        None, gt=0, le=MAX_BATCH, description="null: batch_size")
    threads: int | None = Field(
        1, gt=0, le=MAX_THREADS,
        description="CPU threads while timing (null: every CPU of the node); one "
        "thread is the reproducible default: on a busy machine, idle-spinning OpenMP threads "
        "inflate small operations by 10–600× (measured here)")


class SystemMetricsSettings(StrictModel):
    """MLflow's system metrics (CPU, memory, disk, network; GPU through NVML) while a job
    trains, one point every ``interval`` seconds and one when training ends. Not part of any
    job key; ``$NFBENCH_SYSTEM_METRICS`` (``off``, or an interval in seconds) overrides."""

    enabled: bool = True
    interval: float = Field(10.0, ge=MIN_SYSTEM_METRICS_S, le=MAX_SYSTEM_METRICS_S,
                            description="seconds between samples")


class Resources(StrictModel):
    """Resources of one job. ``gpus`` is a fraction of one GPU in [0, 1] (0: CPU only)."""

    cpus: float = Field(1.0, gt=0, le=MAX_CPUS)
    gpus: float = Field(0.0, ge=0)
    memory_gb: float | None = Field(None, gt=0, le=MAX_MEMORY_GB)

    @field_validator("gpus")
    @classmethod
    def _fraction(cls, gpus: float) -> float:
        if gpus > 1:
            raise ValueError(
                f"a job takes at most one GPU (got {gpus}); use a fraction in (0, 1] "
                "to pack several jobs on one GPU"
            )
        return gpus


class Suite(StrictModel):
    """A benchmark suite, as written in ``suites/*.yaml``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = Field("", max_length=MAX_TEXT)
    matrix: Matrix
    include: list[Rule] = Field(default_factory=list)
    exclude: list[Rule] = Field(default_factory=list)
    train: TrainBudget = Field(default_factory=TrainBudget)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    timing: TimingSettings = Field(default_factory=TimingSettings)
    resources: Resources = Field(default_factory=Resources)
    retries: int = Field(2, ge=0, le=10, description="re-tries of a job whose worker died")
    system_metrics: SystemMetricsSettings = Field(default_factory=SystemMetricsSettings)
    tune: TuneSection | None = Field(None, description="studies before the matrix (tune_schema)")
