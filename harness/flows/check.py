"""Pre-flight check: is an (architecture, shape) pair an exact bijection with a true log-det?

Before a suite is scheduled, each architecture is built for each data shape in float64 with
randomised weights (every parameter perturbed by :func:`randomize` with
``scale=PREFLIGHT_SCALE``, so zero-initialised output layers are not identities, yet a deep
multi-scale flow on a large image stays numerically well conditioned), and on a tiny batch:

- inverse error ``max |f⁻¹(f(x)) − x|`` on the suite's own shape;
- log-det error ``max_i |ld_i − log|det J_i|| / max(1, |log|det J_i||)`` against the Jacobian
  ``J_i`` computed by ``torch.autograd.functional.jacobian`` (the full ``D × D`` matrix), on at
  most two samples, on the suite's shape when it has at most ``JACOBIAN_MAX_DIM`` entries, else
  on a smaller one of the same kind (``(64,)`` for vectors, ``(C, 4, 4)``/``(C, 8, 8)``/
  ``(C, 16, 16)`` for images: the first that the architecture accepts).

An architecture whose registry entry carries ``meta["check_hparams"]`` (hyper-parameters
under which an approximate flow, such as an ODE flow, is exact to round-off: tight solver
tolerances) is checked with those laid over the suite's hyper-parameters: the check is of
the architecture's mathematics, not of the suite's speed/accuracy trade-off.

Thresholds: both ≤ 1e-6 (float64 round-off is ~1e-12 for a sound flow; a wrong log-det or
a non-invertible layer is off by far more). The error is absolute for the inverse (inputs are
standard normal, so of order 1) and relative to ``max(1, |log det|)`` for the log-det, which
keeps the test meaningful for large images whose log-dets reach the thousands.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from harness.flows.base import Flow, _as_shape
from harness.flows.zoo import build, entry
from harness.registry import UnknownNameError

__all__ = [
    "INV_TOL",
    "JACOBIAN_MAX_DIM",
    "LOGDET_TOL",
    "PREFLIGHT_SCALE",
    "PreflightResult",
    "autograd_log_det",
    "preflight",
    "randomize",
]

INV_TOL = 1e-6
LOGDET_TOL = 1e-6
JACOBIAN_MAX_DIM = 256
PREFLIGHT_SCALE = 0.1  # weight perturbation (see randomize): deep image flows stay conditioned


@dataclass(frozen=True)
class PreflightResult:
    """The outcome of :func:`preflight`; ``message`` names the architecture and the errors."""

    name: str
    event_shape: tuple[int, ...]
    ok: bool
    inv_err: float
    logdet_err: float
    message: str
    seconds: float = 0.0
    jacobian_shape: tuple[int, ...] = field(default=())


def randomize(flow: Flow, scale: float = 0.3, seed: int | None = None) -> Flow:
    """Perturb every parameter in place so that no layer is an identity; returns ``flow``.

    A weight matrix (or kernel) gets ``N(0, scale² / fan_in)`` noise, so that a zero-initialised
    output layer fed unit-size activations produces outputs of size about ``scale``; a vector
    (bias, log-scale) gets ``N(0, scale²)``. Data-dependent initialisations (ActNorm) are marked
    as done, so the perturbed values are used as they are. A module with a ``perturb_(scale,
    generator)`` method perturbs its own parameters instead (:class:`~harness.flows.layers.linear.
    LULinear` keeps its triangular factors well conditioned at any size).
    """
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    custom = [m for m in flow.modules() if callable(getattr(m, "perturb_", None))]
    done = {id(p) for m in custom for p in m.parameters(recurse=False)}
    with torch.no_grad():
        for m in custom:  # layers that know how to stay well conditioned (LU factors)
            m.perturb_(scale, gen)
        for p in flow.parameters():
            if id(p) in done:
                continue
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            std = scale / math.sqrt(p[0].numel()) if p.dim() >= 2 else scale
            p.add_(std * noise.to(device=p.device, dtype=p.dtype))
    for m in flow.modules():
        mark = getattr(m, "mark_initialized", None)
        if callable(mark):
            mark()
    return flow


def autograd_log_det(flow: Flow, x: Tensor, context: Tensor | None = None) -> Tensor:
    """log|det ∂z/∂x| per sample from the full autograd Jacobian (independent truth), ``(B,)``."""
    out = []
    for i in range(x.shape[0]):
        c = None if context is None else context[i : i + 1]

        def f(v: Tensor, c: Tensor | None = c) -> Tensor:
            return flow.transform(v[None], c, with_log_det=False)[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(f, x[i], vectorize=True)
        out.append(torch.linalg.slogdet(jac.reshape(jac.shape[0], -1))[1])
    return torch.stack(out)


def _small_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    if math.prod(shape) <= JACOBIAN_MAX_DIM:
        return [shape]
    if len(shape) == 1:
        return [(64,)]
    c = shape[0]
    return [(c, s, s) for s in (4, 8, 16) if c * s * s <= 4 * JACOBIAN_MAX_DIM]


def _errors(
    flow: Flow, shape: tuple[int, ...], batch: int, context_dim: int | None, jac: bool
) -> tuple[float, float]:
    x = torch.randn(batch, *shape, dtype=torch.float64)
    c = None if context_dim is None else torch.randn(batch, context_dim, dtype=torch.float64)
    with torch.no_grad():
        z, _ = flow.transform(x, c)
        inv = float((flow.inverse(z, c) - x).abs().max())
    if not jac:
        return inv, math.nan
    n = min(batch, 2)
    with torch.no_grad():
        _, ld = flow.transform(x[:n], None if c is None else c[:n])
    assert ld is not None
    truth = autograd_log_det(flow, x[:n], None if c is None else c[:n])
    err = ((ld - truth).abs() / truth.abs().clamp_min(1.0)).max()
    return inv, float(err)


def preflight(
    name: str,
    event_shape: int | Sequence[int],
    hparams: Mapping[str, Any] | None = None,
    context_dim: int | None = None,
    batch: int = 8,
    *,
    seed: int = 0,
) -> PreflightResult:
    """Check ``name`` with ``hparams`` on ``event_shape`` (see the module doc); never raises
    for a broken architecture: the failure is in the result's ``message``."""
    t0 = time.perf_counter()
    shape = _as_shape(event_shape)
    hp = dict(hparams or {})
    try:  # an approximate (e.g. ODE) flow is checked under its exact settings
        hp.update(entry(name).meta.get("check_hparams", {}))
    except UnknownNameError:
        pass  # reported below, by build
    label = f"{name} {shape}" + (f" context_dim={context_dim}" if context_dim else "")
    inv_err = logdet_err = math.nan
    jac_shape: tuple[int, ...] = ()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            flow = build(name, shape, context_dim, **hp).double()
            flow = randomize(flow, PREFLIGHT_SCALE, seed=seed).eval()
            small = _small_shapes(shape)
            inv_err, logdet_err = _errors(flow, shape, batch, context_dim, small == [shape])
            jac_shape = shape
            if small != [shape]:
                for s in small:
                    try:
                        sub = build(name, s, context_dim, **hp).double()
                    except ValueError:
                        continue
                    randomize(sub, PREFLIGHT_SCALE, seed=seed).eval()
                    inv_small, logdet_err = _errors(sub, s, 2, context_dim, True)
                    inv_err, jac_shape = max(inv_err, inv_small), s
                    break
                else:
                    raise ValueError(f"no shape among {small} to check the Jacobian on")
    except Exception as exc:  # noqa: BLE001 — report, never raise: a broken plugin must be refused politely
        return PreflightResult(
            name,
            shape,
            False,
            inv_err,
            logdet_err,
            f"preflight {label}: FAILED with {type(exc).__name__}: {exc}",
            time.perf_counter() - t0,
            jac_shape,
        )
    ok = inv_err <= INV_TOL and logdet_err <= LOGDET_TOL  # NaN compares False: not ok
    verdict = "ok" if ok else "FAILED"
    message = (
        f"preflight {label}: {verdict}: inverse error {inv_err:.2e} (≤ {INV_TOL:.0e}), "
        f"log-det error {logdet_err:.2e} (≤ {LOGDET_TOL:.0e}, relative, Jacobian on "
        f"{jac_shape}) in float64 with randomised weights"
    )
    return PreflightResult(
        name, shape, ok, inv_err, logdet_err, message, time.perf_counter() - t0, jac_shape
    )
