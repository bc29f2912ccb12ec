"""The options a suite may give a data set or a dequantization scheme, as plain specs.

A data set in a suite (``{name: mnist, n_bits: 5, flatten: true}``) takes two kinds of
options: those every job understands (:data:`JOB_DATA_OPTIONS`: ``flatten``, ``condition``,
``data_dir``, ``seed``, ``download``) and its loader's own keyword-only parameters
(``n_bits`` for the file-based images), whose specs are in :data:`LOADER_OPTIONS`. A scheme
takes its factory's keyword-only parameters (:data:`DEQUANT_OPTIONS`). The suite checks read
these specs (:func:`dataset_options`, :func:`dequant_options`) to refuse an unknown option, a
wrong type or an out-of-range value with the file and line, before anything runs; the
loaders and factories check again when they are called.

Example:
    >>> dataset_options("mnist")["n_bits"].problem(0)
    'must be an int in [1, 8] (got 0)'
    >>> sorted(dequant_options("uniform"))
    ['logit_alpha', 'shift']
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from harness.options import Option

from .dataset import entry
from .dequantize import DEQUANTIZERS, _ensure_loaded

__all__ = [
    "DEQUANT_OPTIONS",
    "JOB_DATA_OPTIONS",
    "LOADER_OPTIONS",
    "dataset_options",
    "dequant_cross_problems",
    "dequant_options",
]

#: options of every data set, read by the job (not by the loader)
JOB_DATA_OPTIONS: dict[str, Option] = {
    "flatten": Option.flag(help="image data as vectors"),
    "condition": Option.choice("label", nullable=True,
                               help="class-conditional flows: the one-hot label is the context "
                                    "(data sets with labels only)"),
    "data_dir": Option.text(4096, help="the data directory of this data set"),
    "seed": Option.integer(0, 2**32 - 1, help="the data seed (default: the job seed)"),
    "download": Option.flag(help="fetch missing files from their original source first"),
}

#: loader keyword-only parameters, by name
LOADER_OPTIONS: dict[str, Option] = {
    "n_bits": Option.integer(1, 8, help="bit depth: 2^n_bits levels (Glow's 5-bit images: 5)"),
}

#: dequantizer factory keyword-only parameters, by name
DEQUANT_OPTIONS: dict[str, Option] = {
    "logit_alpha": Option.number(0, 0.5, low_open=True, high_open=True, nullable=True,
                                 help="logit preprocessing α (1e-6 MNIST, 0.05 CIFAR-10)"),
    "shift": Option.number(-1e3, 1e3, help="a translation of the flow's input (Glow: -0.5)"),
    "flow": Option.text(100, help="the architecture of q(u | x)"),
    "flow_options": Option.mapping(nullable=True, help="its hyper-parameters"),
}

_FRAMEWORK = {"seed", "data_dir", "download"}  # passed by load(), not options


def _keyword_defaults(factory) -> dict[str, object]:
    return {
        p.name: (None if p.default is p.empty else p.default)
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def dataset_options(name: str) -> dict[str, Option]:
    """Spec of every option data set ``name`` takes (UnknownNameError for an unknown name)."""
    out = dict(JOB_DATA_OPTIONS)
    for key, default in _keyword_defaults(entry(name).factory).items():
        if key not in _FRAMEWORK:
            out[key] = LOADER_OPTIONS.get(key) or Option.like(default)
    return out


def dequant_options(scheme: str) -> dict[str, Option]:
    """Spec of every option dequantization scheme ``scheme`` takes (with its default)."""
    _ensure_loaded()
    out = {}
    for key, default in _keyword_defaults(DEQUANTIZERS.get(scheme)).items():
        spec = DEQUANT_OPTIONS.get(key)
        out[key] = (dataclasses.replace(spec, default=default) if spec is not None
                    else Option.like(default))
    return out


def dequant_cross_problems(scheme: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(option, reason)`` for rules that tie two options together: the logit and a shift
    exclude each other (the logit's output is centred already)."""
    alpha, shift = options.get("logit_alpha"), options.get("shift")
    if alpha is not None and shift not in (None, 0, 0.0):
        return [("shift", "choose logit_alpha or shift, not both")]
    return []
