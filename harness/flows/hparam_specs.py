"""What each hyper-parameter accepts: one table of types, ranges and meanings, and its checks.

The table (:data:`HPARAM_SPECS`) gives every hyper-parameter name its spec (an
:class:`~harness.options.Option`: type, range or choices, one line of meaning); a name means
the same thing in every architecture that has it (``layers``, ``hidden``, ``bins``, …), and
the few architectures that narrow a spec say so in ``_OVERRIDES``. An architecture's defaults
are its factory's keyword defaults (:func:`harness.flows.zoo.hparams`); :func:`specs_for`
joins the two. Upper bounds keep a typo (``hidden: 64000000``) from allocating a flow no
machine holds. :func:`cross_rule_problems` adds the few rules that tie two hyper-parameters
together. A plugin's hyper-parameters without a spec here get one from their default's type
(:meth:`Option.like`).

Everything that checks a hyper-parameter reads this table: the registry's
:func:`~harness.flows.zoo.build` (and :func:`~harness.flows.zoo.fit`) refuses a value with
:func:`hparam_problems` before any factory runs, and the suite checks, which import no torch,
get the same specs as plain data (:func:`harness.flows.zoo.hparam_specs`), so a bad suite is
refused before anything is built, with the same reasons.

Example:
    >>> from harness import flows
    >>> specs = specs_for("realnvp", flows.hparams("realnvp"))
    >>> specs["hidden"].problem(0)
    'must be an int in [1, 65,536] (got 0)'
    >>> specs["hidden"].default
    64
    >>> cross_rule_problems({"bins": 512, "min_bin_width": 0.01})
    [('min_bin_width', 'min_bin_width · bins must be < 1 (got 0.01 · 512)')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from harness.flows.continuous.nets import CNF_ACTIVATIONS
from harness.flows.continuous.ode_layer import SOLVERS, TRACES
from harness.flows.continuous.trace import NOISES
from harness.flows.layers.elementwise import SCALE_CLAMPS
from harness.flows.layers.stacks import MASKS, PERMUTATIONS
from harness.flows.nets import ACTIVATIONS, CONTEXT_MODES
from harness.options import Option, shown

__all__ = ["HPARAM_SPECS", "cross_rule_problems", "hparam_problems", "specs_for"]

_UNIT = {"low": 0.0, "high": 1.0, "high_open": True}  # [0, 1)

#: hyper-parameter name → spec, shared by every architecture that has the name
HPARAM_SPECS: dict[str, Option] = {
    "layers": Option.integer(1, 1000, help="flow steps"),
    "hidden": Option.integer(1, 65_536, help="conditioner width"),
    "depth": Option.integer(1, 100, help="conditioner hidden layers"),
    "blocks": Option.integer(1, 100, help="CNF blocks per level"),
    "levels": Option.integer(1, 10, help="multi-scale levels"),
    "bins": Option.integer(1, 1024, help="spline bins"),
    "tail_bound": Option.number(0, 1e4, low_open=True, help="spline interval [-B, B]"),
    "min_bin_width": Option.number(**_UNIT, help="smallest spline bin width (× 2B)"),
    "min_bin_height": Option.number(**_UNIT, help="smallest spline bin height (× 2B)"),
    "min_derivative": Option.number(**_UNIT, help="smallest spline derivative"),
    "scale_bound": Option.number(0, 100, low_open=True, help="bound on log-scales"),
    "scale_clamp": Option.choice(*SCALE_CLAMPS, help="soft clamp of the log-scales"),
    "activation": Option.choice(*sorted(ACTIVATIONS), help="conditioner non-linearity"),
    "context_mode": Option.choice(*CONTEXT_MODES, help="how a context enters the nets"),
    "order": Option.choice("reverse", "random", help="autoregressive order between layers"),
    "mask": Option.choice(*MASKS, help="which entries a coupling transforms"),
    "permute": Option.choice(*PERMUTATIONS, help="permutation between couplings"),
    "parameterization": Option.choice("cholesky", "lu", help="the Gaussian's linear map"),
    "solver": Option.choice(*SOLVERS, help="ODE solver"),
    "trace": Option.choice(*TRACES, help="trace of the Jacobian in training"),
    "noise": Option.choice(*NOISES, help="Hutchinson probe"),
    "rtol": Option.number(0, 1, low_open=True, help="adaptive solver's relative tolerance"),
    "atol": Option.number(0, 1, low_open=True, help="adaptive solver's absolute tolerance"),
    "steps": Option.integer(1, 100_000, help="fixed-step solver steps"),
    "max_steps": Option.integer(1, 10_000_000, help="adaptive steps before a solve fails"),
    "T": Option.number(0, 1e4, low_open=True, help="integration time"),
    "adjoint": Option.flag(help="back-propagate by the adjoint method"),
    "exact_max_dim": Option.integer(0, 1_000_000, help="exact trace up to this many dims"),
    "kinetic": Option.number(0, 1e6, help="RNODE kinetic-energy weight"),
    "jacobian": Option.number(0, 1e6, help="RNODE Jacobian-norm weight"),
    "laplace": Option.number(0, 1e6, help="histogram smoothing"),
    "batch_norm": Option.flag(help="invertible batch normalisation after each step (vectors)"),
}

#: (architecture, name) → spec where one architecture narrows the shared one
_OVERRIDES: dict[tuple[str, str], Option] = {
    ("glow", "permute"): Option.choice(*PERMUTATIONS[1:], help="permutation in each step"),
    ("ffjord", "activation"): Option.choice(*sorted(CNF_ACTIVATIONS), help="smooth dynamics"),
}


def specs_for(name: str, defaults: Mapping[str, Any]) -> dict[str, Option]:
    """Spec of every hyper-parameter of architecture ``name``, whose hyper-parameters with
    their defaults are ``defaults`` (each spec carries its default)."""
    out: dict[str, Option] = {}
    for key, default in defaults.items():
        spec = _OVERRIDES.get((name, key)) or HPARAM_SPECS.get(key)
        like = Option.like(default)
        # a shared spec applies only where the default has its type (a plugin may reuse a name)
        if spec is None or (default is not None and like.type not in (spec.type, "any")
                            and not (spec.type == "float" and like.type == "int")):
            spec = like if default is not None else Option("any")
        # a default of None is a value the architecture takes
        out[key] = dataclasses.replace(spec, default=default,
                                       nullable=spec.nullable or default is None)
    return out


def _problem(spec: Option, value: Any) -> str | None:
    """What ``spec`` refuses in ``value``; a default of a type no spec describes (a tuple, a
    class) takes values of its own type."""
    default = spec.default
    if spec.type == "any" and default is not None and not isinstance(value, type(default)):
        return f"must be a {type(default).__name__} (got {shown(value)})"
    return spec.problem(value)


def hparam_problems(
    name: str, defaults: Mapping[str, Any], given: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """``(hyper-parameter, reason)`` for each value of ``given`` its spec refuses; when every
    one passes, those of the rules that tie two together (:func:`cross_rule_problems`, the
    defaults filling what is not given). Names not in ``defaults`` are the caller's to refuse.
    """
    specs = specs_for(name, defaults)
    out = [(key, why) for key, value in given.items() if key in specs
           and (why := _problem(specs[key], value)) is not None]
    return out or cross_rule_problems({**defaults, **given})


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cross_rule_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(hyper-parameter, reason)`` for the rules that tie two hyper-parameters together,
    over an architecture's ``values`` (each already within its own spec):

    * a spline's ``bins`` minimal bins must fit its interval: ``min_bin_width · bins < 1``
      (and so ``min_bin_height``);
    * the adaptive ``dopri5`` solver cannot reach an ``rtol`` below float64's resolution.
    """
    out: list[tuple[str, str]] = []
    bins = values.get("bins")
    if isinstance(bins, int) and not isinstance(bins, bool):
        for key in ("min_bin_width", "min_bin_height"):
            v = values.get(key)
            if _number(v) and v * bins >= 1.0:
                out.append((key, f"{key} · bins must be < 1 (got {v} · {bins})"))
    rtol = values.get("rtol")
    if values.get("solver") == "dopri5" and _number(rtol) and 0 < rtol < 1e-13:
        out.append(("rtol", f"must be ≥ 1e-13 with dopri5 (float64 resolution; got {rtol!r})"))
    return out
