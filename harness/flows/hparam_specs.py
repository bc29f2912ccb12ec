"""What each architecture's hyper-parameters accept, as plain specs checked before any build.

:func:`build` checks a hyper-parameter's type against its default and each factory checks its
ranges, but only when the flow is built. These specs let a suite be checked without building
anything (no torch work, no memory): the type and range of every hyper-parameter, with the
same names across architectures meaning the same thing (``layers``, ``hidden``, ``bins``, …),
and upper bounds that keep a typo (``hidden: 64000000``) from allocating a flow no machine
holds. :func:`cross_problems` adds the few rules that tie two hyper-parameters together.
A plugin's hyper-parameters without a spec here get one from their default's type
(:meth:`Option.like`).

Example:
    >>> from harness import flows
    >>> specs = hparam_specs("realnvp")
    >>> specs["hidden"].problem(0)
    'must be an int in [1, 65,536] (got 0)'
    >>> cross_problems("nsf-coupling", {"bins": 512, "min_bin_width": 0.01})
    [('min_bin_width', 'min_bin_width · bins must be < 1 (got 0.01 · 512)')]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.flows.continuous.nets import CNF_ACTIVATIONS
from harness.flows.continuous.ode_layer import SOLVERS, TRACES
from harness.flows.continuous.trace import NOISES
from harness.flows.layers.elementwise import SCALE_CLAMPS
from harness.flows.layers.stacks import PERMUTATIONS
from harness.flows.nets import ACTIVATIONS, CONTEXT_MODES
from harness.flows.zoo import hparams
from harness.options import Option

__all__ = ["HPARAM_SPECS", "cross_problems", "hparam_specs"]

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
    "min_bin_width": Option.number(**_UNIT),
    "min_bin_height": Option.number(**_UNIT),
    "min_derivative": Option.number(**_UNIT),
    "scale_bound": Option.number(0, 100, low_open=True, help="bound on log-scales"),
    "scale_clamp": Option.choice(*SCALE_CLAMPS),
    "activation": Option.choice(*sorted(ACTIVATIONS)),
    "context_mode": Option.choice(*CONTEXT_MODES),
    "order": Option.choice("reverse", "random"),
    "mask": Option.choice("halves", "parity"),
    "permute": Option.choice(*PERMUTATIONS),
    "parameterization": Option.choice("cholesky", "lu"),
    "solver": Option.choice(*SOLVERS),
    "trace": Option.choice(*TRACES),
    "noise": Option.choice(*NOISES),
    "rtol": Option.number(0, 1, low_open=True),
    "atol": Option.number(0, 1, low_open=True),
    "steps": Option.integer(1, 100_000, help="fixed-step solver steps"),
    "max_steps": Option.integer(1, 10_000_000),
    "T": Option.number(0, 1e4, low_open=True, help="integration time"),
    "adjoint": Option.flag(),
    "exact_max_dim": Option.integer(0, 1_000_000),
    "kinetic": Option.number(0, 1e6),
    "jacobian": Option.number(0, 1e6),
    "laplace": Option.number(0, 1e6, help="histogram smoothing"),
    "batch_norm": Option.flag(help="invertible batch normalisation after each step (vectors)"),
}

#: (architecture, name) → spec where one architecture narrows the shared one
_OVERRIDES: dict[tuple[str, str], Option] = {
    ("glow", "permute"): Option.choice(*PERMUTATIONS[1:]),
    ("ffjord", "activation"): Option.choice(*sorted(CNF_ACTIVATIONS)),
}


def hparam_specs(name: str, defaults: Mapping[str, Any] | None = None) -> dict[str, Option]:
    """Spec of every hyper-parameter of architecture ``name`` (``defaults``: its
    hyper-parameters with defaults, for architectures outside the flow registry)."""
    defaults = hparams(name) if defaults is None else defaults
    out: dict[str, Option] = {}
    for key, default in defaults.items():
        spec = _OVERRIDES.get((name, key)) or HPARAM_SPECS.get(key)
        like = Option.like(default)
        # a shared spec applies only where the default has its type (a plugin may reuse a name)
        if spec is None or (default is not None and like.type not in (spec.type, "any")
                            and not (spec.type == "float" and like.type == "int")):
            spec = like if default is not None else Option("any")
        out[key] = spec
    return out


def cross_problems(name: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(hyper-parameter, reason)`` for the rules that tie two hyper-parameters together
    (checked after each one's own spec passed); the defaults fill what is not given."""
    try:
        values = {**hparams(name), **options}
    except Exception:  # noqa: BLE001 — an unknown name is reported elsewhere
        return []
    out: list[tuple[str, str]] = []
    bins = values.get("bins")
    if isinstance(bins, int) and not isinstance(bins, bool):
        for key in ("min_bin_width", "min_bin_height"):
            v = values.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v * bins >= 1.0:
                out.append((key, f"{key} · bins must be < 1 (got {v} · {bins})"))
    rtol = values.get("rtol")
    if (values.get("solver") == "dopri5" and isinstance(rtol, (int, float))
            and not isinstance(rtol, bool) and 0 < rtol < 1e-13):
        out.append(("rtol", f"must be ≥ 1e-13 with dopri5 (float64 resolution; got {rtol!r})"))
    return out
