"""nfbench's normalizing-flow library: the flow contract, the architecture zoo, the registry.

Example:
    >>> import torch
    >>> from harness import flows
    >>> flow = flows.build("realnvp", event_shape=2)
    >>> z, log_det = flow.transform(torch.randn(5, 2))
    >>> z.shape, log_det.shape
    (torch.Size([5, 2]), torch.Size([5]))

The package's parts, from the bottom up (imports point down only): the flow contract
(:mod:`~harness.flows.base`) and the error a factory raises (:mod:`~harness.flows.errors`); the
conditioner networks (:mod:`harness.flows.nets`, MADE's step plan in
:mod:`~harness.flows.made_plan`), the building blocks (:mod:`harness.flows.layers`) and the
continuous-time parts (:mod:`harness.flows.continuous`); the table of what each
hyper-parameter accepts (:mod:`~harness.flows.hparam_specs`); the registry
(:mod:`~harness.flows.zoo`), which checks every hyper-parameter against that table; the
pre-flight check (:mod:`~harness.flows.check`) and flattening (:mod:`~harness.flows.flattened`),
which build through the registry; compiled views of a built flow
(:mod:`~harness.flows.compiled`); and one module per architecture family
(:mod:`harness.flows.families`), each registering itself with the registry. The registry
imports the families itself, on first use (:func:`names`/:func:`build`/:func:`entry`);
third-party architectures arrive through the entry-point group ``nfbench.flows``.
"""

from __future__ import annotations

from harness.flows.base import Flow, Layer
from harness.flows.check import PreflightResult, preflight
from harness.flows.compiled import CompiledFlow, EagerCheck, compare_with_eager, compiled_view
from harness.flows.flattened import Flattened, build_for_data, model_shape
from harness.flows.zoo import build, entry, fit, hparams, load_plugins, names, register

__all__ = [
    "CompiledFlow",
    "EagerCheck",
    "Flattened",
    "Flow",
    "Layer",
    "PreflightResult",
    "build",
    "build_for_data",
    "compare_with_eager",
    "compiled_view",
    "entry",
    "fit",
    "hparams",
    "load_plugins",
    "model_shape",
    "names",
    "preflight",
    "register",
]
