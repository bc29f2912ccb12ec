"""nfbench's normalizing-flow library: the flow contract, the architecture zoo, the registry.

Example:
    >>> import torch
    >>> from harness import flows
    >>> flow = flows.build("realnvp", event_shape=2)
    >>> z, log_det = flow.transform(torch.randn(5, 2))
    >>> z.shape, log_det.shape
    (torch.Size([5, 2]), torch.Size([5]))

The package's parts: the flow contract (:mod:`~harness.flows.base`), the registry
(:mod:`~harness.flows.zoo`), the pre-flight check (:mod:`~harness.flows.check`), flattening
(:mod:`~harness.flows.flattened`), compiled views (:mod:`~harness.flows.compiled`) and the
hyper-parameter schema (:mod:`~harness.flows.hparam_specs`) at the top; the building blocks in
:mod:`harness.flows.layers`, the conditioner networks in :mod:`harness.flows.nets`, the
continuous-time parts in :mod:`harness.flows.continuous`, and one module per architecture family
in :mod:`harness.flows.families`. The registry imports the families itself, on first use
(:func:`names`/:func:`build`/:func:`entry`); third-party architectures arrive through the
entry-point group ``nfbench.flows``.
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
