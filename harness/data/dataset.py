"""The :class:`DataSet` value object, the data-set registry and :func:`load`.

A data set is three fixed splits (train / validation / test) of ``float32`` tensors of shape
``(N, *event_shape)``, its kind (``"continuous"`` or ``"discrete"`` with ``levels`` integer
values ``0 … K−1``), a fingerprint (sha256 of every split's bytes, logged with each run), and
how its splits were made (``splits_info``, recorded as run params).

Example:
    >>> from harness import data
    >>> ds = data.load("digits")
    >>> ds.kind, ds.event_shape, ds.levels, len(ds.test)
    ('discrete', (1, 8, 8), 17, 360)
    >>> data.entry("moons").meta["kind"]
    'continuous'
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from harness.registry import Entry, Registry

from .errors import DataError

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "LOADER_MODULES",
    "DataSet",
    "entry",
    "fingerprint_arrays",
    "load",
    "names",
    "register",
    "resolve_data_dir",
]

Kind = Literal["continuous", "discrete"]
DATA_ENV = "NFBENCH_DATA"  # environment variable naming the data directory
DEFAULT_DATA_DIR = Path("~/.nfbench/data")

#: factories: ``factory(seed=..., data_dir=..., download=..., **options) -> DataSet``
DATASETS: Registry[Callable[..., DataSet]] = Registry("data set")


@dataclass(eq=False)
class DataSet:
    """Fixed splits of one data set plus everything a run records about them.

    Attributes:
        name: the registry name.
        kind: ``"continuous"`` or ``"discrete"``.
        event_shape: one example's shape: ``(D,)`` for vectors, ``(C, H, W)`` for images.
        levels: ``K`` for discrete data (values in ``[0, K)``), None for continuous data.
        train, val, test: ``float32`` tensors ``(N, *event_shape)``.
        splits_info: sizes and how the split was made (flat, JSON-able; logged as params).
        true_log_prob: the generating log-density ``x → (B,)`` in nats, where known.
        true_entropy: its differential entropy in nats, where known (for ``eval/nll_gap``).
        source: provenance in words (paper, URL, file).
        options: the loader options this instance was made with (e.g. ``n_bits``).
        labels: class labels per split (``{"train": int64 (N,), …}``) where the data set has
            them, for class-conditional flows; ``classes`` is their number.
    """

    name: str
    kind: Kind
    event_shape: tuple[int, ...]
    levels: int | None
    train: Tensor
    val: Tensor
    test: Tensor
    splits_info: dict[str, Any] = field(default_factory=dict)
    true_log_prob: Callable[[Tensor], Tensor] | None = None
    true_entropy: float | None = None
    source: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    labels: dict[str, Tensor] | None = None
    classes: int | None = None

    def __post_init__(self) -> None:
        self.event_shape = tuple(int(s) for s in self.event_shape)
        if self.kind not in ("continuous", "discrete"):
            raise DataError(f"data set '{self.name}': kind must be continuous or discrete")
        if (self.kind == "discrete") != (self.levels is not None):
            raise DataError(f"data set '{self.name}': levels is set iff the data are discrete")
        for split in ("train", "val", "test"):
            t = torch.as_tensor(getattr(self, split), dtype=torch.float32).contiguous()
            if tuple(t.shape[1:]) != self.event_shape:
                raise DataError(
                    f"data set '{self.name}': {split} has shape {tuple(t.shape)}, "
                    f"expected (N, {', '.join(map(str, self.event_shape))})"
                )
            if not torch.isfinite(t).all():
                raise DataError(f"data set '{self.name}': {split} holds non-finite values")
            if (
                self.levels is not None
                and len(t)
                and ((t != t.round()).any() or t.min() < 0 or t.max() >= self.levels)
            ):
                raise DataError(
                    f"data set '{self.name}': {split} must hold integers in [0, {self.levels})"
                )
            setattr(self, split, t)
        self.fingerprint = fingerprint_arrays(
            {"train": self.train, "val": self.val, "test": self.test}
        )
        sizes = {"n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test)}
        self.splits_info = {**sizes, **self.splits_info}

    @property
    def dims(self) -> int:
        """``D``: the number of dimensions of one example."""
        return int(np.prod(self.event_shape))

    def params(self) -> dict[str, Any]:
        """Flat params to record with a run: name, kind, shape, levels, fingerprint, splits."""
        out: dict[str, Any] = {
            "data.name": self.name,
            "data.kind": self.kind,
            "data.event_shape": "x".join(map(str, self.event_shape)),
            "data.levels": self.levels,
            "data.fingerprint": self.fingerprint,
        }
        out.update({f"data.{k}": v for k, v in self.options.items()})
        out.update({f"data.split.{k}": v for k, v in self.splits_info.items()})
        return out

    def __repr__(self) -> str:
        return (
            f"DataSet({self.name!r}, kind={self.kind}, event_shape={self.event_shape}, "
            f"levels={self.levels}, train/val/test={len(self.train)}/{len(self.val)}/"
            f"{len(self.test)}, fingerprint={self.fingerprint[:12]})"
        )


def fingerprint_arrays(arrays: dict[str, Tensor | np.ndarray]) -> str:
    """sha256 over each array's name, shape, dtype and little-endian bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = arrays[key]
        a = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        h.update(f"{key}:{a.shape}:{a.dtype.str}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def register(
    name: str,
    *,
    kind: Kind,
    event_shape: tuple[int, ...],
    levels: int | None,
    source: str,
    classes: int | None = None,
) -> Callable[[Callable[..., DataSet]], Callable[..., DataSet]]:
    """Decorator registering a loader with the metadata known without loading (``classes``:
    the number of class labels the loader returns, for ``condition: label``; None: none)."""
    return DATASETS.register(
        name,
        summary=source,
        kind=kind,
        event_shape=tuple(event_shape),
        levels=levels,
        source=source,
        classes=classes,
    )


def names() -> list[str]:
    """Every registered data set, sorted."""
    _ensure_loaded()
    return DATASETS.names()


def entry(name: str) -> Entry[Callable[..., DataSet]]:
    """The registry entry: ``entry(name).meta`` has kind, event_shape, levels, source, classes."""
    _ensure_loaded()
    return DATASETS.entry(name)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The data directory: the argument, else ``$NFBENCH_DATA``, else ``~/.nfbench/data``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def load(
    name: str,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    **options: Any,
) -> DataSet:
    """Load data set ``name`` with its fixed splits.

    Arguments:
        name: a registered name (:func:`names`); unknown names raise ``UnknownNameError``.
        seed: the job seed. Generated (toy) data draw their training split from it; every
            published or fixed split (digits, tabular, images, toy test sets) ignores it.
        data_dir: where file-based data sets live; falls back to ``$NFBENCH_DATA``, then
            ``~/.nfbench/data``.
        download: fetch missing files from their original source (stdlib ``urllib``).
        options: loader options, e.g. ``n_bits=5`` for images; unknown ones are refused.

    Returns:
        The :class:`DataSet`.
    """
    factory = entry(name).factory
    accepted = {
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    } - {"seed", "data_dir", "download"}
    bad = sorted(set(options) - accepted)
    if bad:
        raise DataError(
            f"data set '{name}': unknown option(s) {', '.join(bad)}; "
            f"valid options: {', '.join(sorted(accepted)) or 'none'}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"data set '{name}': seed must be an int, got {seed!r}")
    return factory(seed=seed, data_dir=resolve_data_dir(data_dir), download=download, **options)


#: The modules holding the built-in loaders; each registers its data sets when imported. The
#: registry imports them itself on first use (:func:`names`, :func:`entry`, :func:`load`), so
#: that nothing imports them for their side effect and no module imports this one back.
LOADER_MODULES = ("harness.data.images", "harness.data.tabular", "harness.data.toy")


def _ensure_loaded() -> None:
    """Import the loader modules once (they register themselves)."""
    for module in LOADER_MODULES:
        importlib.import_module(module)
