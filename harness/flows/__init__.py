"""nfbench's normalizing-flow library: the flow contract, the architecture zoo, the registry.

Example:
    >>> import torch
    >>> from harness import flows
    >>> flow = flows.build("realnvp", event_shape=2)
    >>> z, log_det = flow.transform(torch.randn(5, 2))
    >>> z.shape, log_det.shape
    (torch.Size([5, 2]), torch.Size([5]))

Architectures register on import (:func:`register`); third-party ones through the entry-point
group ``nfbench.flows`` (loaded lazily by :func:`names`/:func:`build`, see
:mod:`harness.flows.zoo`).
"""

from __future__ import annotations

# The built-in architectures: each module registers its names on import. A new module that
# registers an architecture is added to this list (issue 5 added harness/flows/ffjord.py).
from harness.flows import ffjord as _ffjord  # noqa: F401  ffjord (issue 5)
from harness.flows import gaussian as _gaussian  # noqa: F401  gaussian
from harness.flows import glow as _glow  # noqa: F401  glow
from harness.flows import maf as _maf  # noqa: F401  maf, iaf
from harness.flows import nice as _nice  # noqa: F401  nice
from harness.flows import nsf as _nsf  # noqa: F401  nsf-coupling, nsf-ar
from harness.flows import realnvp as _realnvp  # noqa: F401  realnvp
from harness.flows.base import Flow, Layer
from harness.flows.check import PreflightResult, preflight
from harness.flows.compiled import CompiledFlow, EagerCheck, compare_with_eager, compiled_view
from harness.flows.flattened import Flattened, build_for_data, model_shape
from harness.flows.zoo import build, entry, hparams, load_plugins, names, register

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
    "hparams",
    "load_plugins",
    "model_shape",
    "names",
    "preflight",
    "register",
]
