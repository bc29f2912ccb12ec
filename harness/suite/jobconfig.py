"""A job's config, typed: what one job computes, from matrix expansion to the worker.

:class:`JobConfig` is frozen. Its plain-data form (:meth:`JobConfig.as_dict`) is the job's
*normalised config*: the JSON that the job key hashes, that is written to the run as
``config.json`` and flattened into the run's parameters; :meth:`JobConfig.from_dict` reads it
back. The two forms carry the same information, so a job key never depends on which one was
built first.

A data set's options are of two kinds, kept apart here (and only here):

* the *loader's* options, passed to the data set's loader (``n_bits`` for the image sets);
* the *job's* options, which every data set takes: ``flatten`` (image data as vectors),
  ``condition`` (``label``: class-conditional flows), ``data_dir``, ``seed`` (the data seed),
  ``download`` (fetch missing files first).

The ``runtime`` (:class:`RuntimeConfig`) says how the flow runs in training and timing; an
eager job's normalised config has no ``runtime`` entry, so that the keys of eager jobs are
those they had before the runtime axis existed.

What the seeds change:

* the **job seed** (``seed``) seeds the model's initialisation (every random draw of a
  flow's constructor: weights, permutations, orders), the order of the training batches, the
  dequantization noise, and the noise of the evaluation passes;
* the **data seed** (:attr:`JobConfig.data_seed`: the data option ``seed``, by default the
  job seed) seeds the *draw* of a generated data set's training split (the 2-D toys), so that
  a generated data set's sample changes with the seed like everything else, unless a suite pins
  it; the validation and test splits stay fixed, so that seeds are compared on the same data;
  published and fixed splits (digits, tabular, images) ignore it.

Example:
    >>> cfg = JobConfig.from_dict({"arch": {"name": "maf", "hidden": 64},
    ...     "data": {"name": "digits", "flatten": True}, "dequant": {"scheme": "uniform"},
    ...     "seed": 1, "train": {}, "eval": {}, "timing": {}})
    >>> cfg.data.layout, cfg.data.loader_options, cfg.arch.hparams, cfg.train.steps
    ('vectors', {}, {'hidden': 64}, 1000)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..keys import DATA_JOB_OPTIONS
from .schema import EvalSettings, TimingSettings, TrainBudget, runtime_label

__all__ = ["EAGER", "ArchConfig", "DataConfig", "DequantConfig", "JobConfig", "RuntimeConfig"]


@dataclass(frozen=True)
class ArchConfig:
    """The architecture: its registry name and the hyper-parameters the suite gave."""

    name: str
    hparams: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.hparams}


@dataclass(frozen=True)
class DataConfig:
    """The data set: its name and its options as the suite gave them."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def loader_options(self) -> dict[str, Any]:
        """The options for the data set's loader (not the job's own)."""
        return {k: v for k, v in self.options.items() if k not in DATA_JOB_OPTIONS}

    @property
    def layout(self) -> str:
        """``"vectors"`` (image data flattened, ``flatten: true``) or ``"native"``."""
        return "vectors" if self.options.get("flatten") else "native"

    @property
    def condition(self) -> str | None:
        """What a conditional flow is conditioned on (``"label"``), or None."""
        return self.options.get("condition") or None

    @property
    def data_dir(self) -> str | None:
        return self.options.get("data_dir")

    @property
    def pinned_seed(self) -> int | None:
        """The data option ``seed``, when the suite pins the data draw; else None."""
        seed = self.options.get("seed")
        return None if seed is None else int(seed)

    @property
    def download(self) -> bool:
        return bool(self.options.get("download", False))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}


@dataclass(frozen=True)
class DequantConfig:
    """The dequantization scheme and its options."""

    scheme: str
    options: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, **self.options}


@dataclass(frozen=True)
class RuntimeConfig:
    """How the flow's operations run (the suite's ``runtime`` axis): ``eager``, ``compile``
    or ``cuda-graphs``, with ``torch.compile``'s ``mode`` and the batch-size policy
    ``shapes`` (see :class:`~harness.suite.schema.RuntimeItem`)."""

    name: str = "eager"
    mode: str = "default"
    shapes: str = "dynamic"

    @property
    def eager(self) -> bool:
        return self.name == "eager"

    @property
    def label(self) -> str:
        """``compile``, or ``compile(mode=max-autotune, shapes=static)`` off the defaults
        (the suite's :attr:`~harness.suite.schema.RuntimeItem.display`)."""
        return runtime_label(self.name, self.mode, self.shapes)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "shapes": self.shapes}


EAGER = RuntimeConfig()


@dataclass(frozen=True)
class JobConfig:
    """Everything one job computes (see the module docstring); nothing about where it runs."""

    arch: ArchConfig
    data: DataConfig
    dequant: DequantConfig
    seed: int
    train: TrainBudget
    eval: EvalSettings
    timing: TimingSettings
    runtime: RuntimeConfig = EAGER

    @property
    def data_seed(self) -> int:
        """The draw of a generated data set: the data option ``seed``, else the job seed."""
        pinned = self.data.pinned_seed
        return self.seed if pinned is None else pinned

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> JobConfig:
        """From the normalised config (a job's ``config.json``)."""
        arch = dict(config["arch"])
        data = dict(config["data"])
        deq = dict(config["dequant"])
        return cls(
            arch=ArchConfig(arch.pop("name"), arch),
            data=DataConfig(data.pop("name"), data),
            dequant=DequantConfig(deq.pop("scheme"), deq),
            seed=int(config["seed"]),
            train=TrainBudget.model_validate(config["train"]),
            eval=EvalSettings.model_validate(config["eval"]),
            timing=TimingSettings.model_validate(config["timing"]),
            runtime=RuntimeConfig(**config["runtime"]) if "runtime" in config else EAGER,
        )

    def as_dict(self) -> dict[str, Any]:
        """The normalised config: plain JSON-able data, the source of the job key. An eager
        job's has no ``runtime`` (as before the runtime axis: its key did not change)."""
        out = {
            "arch": self.arch.as_dict(),
            "data": self.data.as_dict(),
            "dequant": self.dequant.as_dict(),
            "seed": self.seed,
            "train": self.train.model_dump(mode="json"),
            "eval": self.eval.model_dump(mode="json"),
            "timing": self.timing.model_dump(mode="json"),
        }
        if not self.runtime.eager:
            out["runtime"] = self.runtime.as_dict()
        return out
