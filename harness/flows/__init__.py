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
# registers an architecture (e.g. issue 5's harness/flows/ffjord.py) is added to this list.
from harness.flows import ffjord as _ffjord  # noqa: F401  ffjord
from harness.flows import maf as _maf  # noqa: F401
from harness.flows import realnvp as _realnvp  # noqa: F401
from harness.flows.base import Flow, Layer
from harness.flows.check import PreflightResult, preflight
from harness.flows.zoo import build, entry, hparams, load_plugins, names, register

__all__ = [
    "Flow",
    "Layer",
    "PreflightResult",
    "build",
    "entry",
    "hparams",
    "load_plugins",
    "names",
    "preflight",
    "register",
]
