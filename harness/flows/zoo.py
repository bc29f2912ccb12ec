"""The architecture registry: ``register``, ``build``, ``names``, ``entry``, ``hparams``, plugins.

An architecture is a factory ``factory(event_shape, context_dim, *, hp1=default1, ...) -> Flow``
whose keyword-only parameters are its hyper-parameters (their defaults are what
:func:`hparams` reports). :func:`build` checks names, shapes and hyper-parameters before it
calls the factory, so a bad suite is refused with a message that names the architecture, the
bad key and the valid keys with their defaults. What each hyper-parameter accepts (type,
range, choices) is one table, :mod:`harness.flows.hparam_specs`; :func:`hparam_specs` and
:func:`cross_problems` give it per architecture, as plain data, to the suite checks. A factory
raises :class:`~harness.flows.errors.HyperParameterError` for what only building can tell
(an event shape it cannot take); :func:`build` adds the architecture and the valid keys.

The built-in architectures are the modules of :mod:`harness.flows.families` (one file per
family; modules whose name starts with ``_`` hold shared parts and are skipped). The registry
imports them itself, lazily, on the first :func:`names`, :func:`entry`, :func:`build` or
:func:`hparams`, so that a new architecture is one new file there and nothing imports the
families for their side effects.

Metadata an entry may carry (keyword arguments of :func:`register`): ``images``/``vectors``
(the event shapes it takes); ``reference=True`` for a baseline row that every leaderboard shows
beside the flows (the job tags its run ``nfbench.reference``); ``data_kinds`` (the kinds of data
it accepts, ``("discrete",)``; absent: any); ``dequant_columns`` (the dequantization columns it
runs in, for a model whose likelihood needs none; absent: any); ``closed_form=True`` for a
model fitted in closed form rather than trained, whose factory is the fit
``fit(train, levels, *, hp=default…)`` (see :func:`fit`) instead of a flow factory. The suite
checks and the job read this metadata; nothing elsewhere names a model.

Third-party architectures arrive through the entry-point group ``nfbench.flows``: an entry
point may name a module that registers on import, or a factory, which is registered under the
entry point's name (its ``summary``/``images``/``vectors`` attributes, if any, become the
entry's summary and metadata). Plugins load lazily, on the first :func:`names`, :func:`entry`,
:func:`build` or :func:`hparams`; a plugin that fails to load is skipped with a warning and
recorded in :func:`plugin_errors`.

Example:
    >>> from harness import flows
    >>> flows.build("realnvp", event_shape=2, layers=2).event_shape
    (2,)
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

from harness.flows.base import Flow, _as_shape
from harness.flows.errors import HyperParameterError
from harness.flows.hparam_specs import cross_rule_problems, hparam_problems, specs_for
from harness.options import Option
from harness.registry import Entry, Registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "build",
    "cross_problems",
    "entry",
    "fit",
    "hparam_specs",
    "hparams",
    "load_builtins",
    "load_plugins",
    "names",
    "plugin_errors",
    "register",
]

ENTRY_POINT_GROUP = "nfbench.flows"
BUILTIN_PACKAGE = "harness.flows.families"
Factory = Callable[..., Flow]
REGISTRY: Registry[Factory] = Registry("architecture")

_builtins_loaded = False
_plugins_loaded = False
_plugin_errors: dict[str, str] = {}


def register(
    name: str, summary: str = "", *, images: bool = False, vectors: bool = True, **meta: Any
) -> Callable[[Factory], Factory]:
    """Decorator: register an architecture factory under ``name``.

    ``images``/``vectors`` say which event shapes it takes (``(C, H, W)`` / ``(D,)``); a job
    flattens images for a vectors-only architecture.
    """

    def deco(factory: Factory) -> Factory:
        _signature_defaults(name, factory)  # refuse a factory whose hyper-parameters are bad
        REGISTRY.add(name, factory, summary, images=images, vectors=vectors, **meta)
        return factory

    return deco


def _signature_defaults(name: str, factory: Factory) -> dict[str, object]:
    params = list(inspect.signature(factory).parameters.values())
    if len(params) < 2 or params[0].kind not in (
        params[0].POSITIONAL_ONLY,
        params[0].POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(
            f"architecture '{name}': a factory takes (event_shape, context_dim, *, hp=default…)"
        )
    out: dict[str, object] = {}
    for p in params[2:]:
        if p.kind is p.VAR_KEYWORD or p.kind is p.VAR_POSITIONAL:
            continue
        if p.default is p.empty:
            raise TypeError(f"architecture '{name}': hyper-parameter '{p.name}' needs a default")
        out[p.name] = p.default
    return out


def load_builtins() -> None:
    """Import every module of :data:`BUILTIN_PACKAGE` once; each registers its architectures."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    package = importlib.import_module(BUILTIN_PACKAGE)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")


def load_plugins(force: bool = False) -> list[str]:
    """Load the ``nfbench.flows`` entry points once (again with ``force``); names added."""
    global _plugins_loaded
    load_builtins()
    if _plugins_loaded and not force:
        return []
    _plugins_loaded = True
    before = set(REGISTRY.names())
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, types.ModuleType):
                continue  # the module registered its architectures on import
            if ep.name in REGISTRY and REGISTRY.get(ep.name) is obj:
                continue
            if not callable(obj):
                raise TypeError(f"entry point {ep.value!r} is neither a module nor a factory")
            doc = (inspect.getdoc(obj) or "").strip().splitlines()
            summary = getattr(obj, "summary", doc[0] if doc else "")
            register(
                ep.name,
                summary,
                images=bool(getattr(obj, "images", False)),
                vectors=bool(getattr(obj, "vectors", True)),
                plugin=ep.value,
            )(obj)
        except Exception as exc:  # noqa: BLE001 — a broken plugin must not break the built-in zoo
            _plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"{ENTRY_POINT_GROUP} plugin '{ep.name}' ({ep.value}) failed to load and is "
                f"skipped: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
    return sorted(set(REGISTRY.names()) - before)


def plugin_errors() -> dict[str, str]:
    """Entry points that failed to load: name → error."""
    load_plugins()
    return dict(_plugin_errors)


def names(*, closed_form: bool = False) -> list[str]:
    """The registered flows, sorted (built-ins and plugins): what :func:`build` takes. With
    ``closed_form``, also the models fitted in closed form (:func:`fit`)."""
    load_plugins()
    return [e.name for e in REGISTRY if closed_form or not e.meta.get("closed_form")]


def entry(name: str) -> Entry[Factory]:
    """The registry entry: ``.summary``, ``.meta["images"]``, ``.meta["vectors"]``."""
    load_plugins()
    return REGISTRY.entry(name)


def hparams(name: str) -> dict[str, object]:
    """The hyper-parameters of ``name`` with their defaults."""
    return _signature_defaults(name, entry(name).factory)


def hparam_specs(name: str) -> dict[str, Option]:
    """The spec of every hyper-parameter of ``name`` (type, range or choices, default), as the
    suite checks read them (:mod:`harness.flows.hparam_specs`)."""
    return specs_for(name, hparams(name))


def cross_problems(name: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(hyper-parameter, reason)`` for the rules that tie two hyper-parameters of ``name``
    together (checked after each one's own spec passed); its defaults fill what ``options``
    does not give. An unknown name has none (it is reported elsewhere)."""
    try:
        defaults = hparams(name)
    except Exception:  # noqa: BLE001 — an unknown name is reported elsewhere
        return []
    return cross_rule_problems({**defaults, **options})


def _describe(defaults: dict[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"


def _invalid(name: str, key: str, reason: str, valid: str) -> ValueError:
    return ValueError(
        f"architecture '{name}': invalid hyper-parameter '{key}' — {reason} "
        f"(valid hyper-parameters with defaults: {valid})"
    )


def _checked(name: str, factory: Callable[..., Any], hp: dict[str, Any]) -> str:
    """Refuse unknown hyper-parameters and values their specs refuse; the description of the
    valid ones."""
    defaults = _signature_defaults(name, factory)
    valid = _describe(defaults)
    for key in hp:
        if key not in defaults:
            raise ValueError(
                f"architecture '{name}': unknown hyper-parameter '{key}' "
                f"(valid hyper-parameters with defaults: {valid})"
            )
    problems = hparam_problems(name, defaults, hp)
    if problems:
        key, reason = problems[0]
        raise _invalid(name, key, reason, valid)
    return valid


def build(
    name: str, event_shape: int | Sequence[int], context_dim: int | None = None, **hp: Any
) -> Flow:
    """Build architecture ``name`` for ``event_shape`` (``D`` or ``(C, H, W)``).

    Raises:
        UnknownNameError: unknown architecture (the nearest name is suggested).
        ValueError: unknown or invalid hyper-parameter, or a shape the architecture can't take,
            or a model fitted in closed form (use :func:`fit`).
    """
    ent = entry(name)
    if ent.meta.get("closed_form"):
        raise ValueError(
            f"architecture '{name}' is fitted in closed form, not built and trained: call "
            f"fit('{name}', train, levels, **hyper_parameters)"
        )
    shape = _as_shape(event_shape)
    if len(shape) not in (1, 3):
        raise ValueError(
            f"architecture '{name}': event_shape must be (D,) or (C, H, W), got {shape}"
        )
    if len(shape) == 3 and not ent.meta.get("images", False):
        raise ValueError(
            f"architecture '{name}' takes vectors only, got the image shape {shape}; flatten "
            f"the images to event_shape={math.prod(shape)} (entry('{name}').meta['images'] is "
            "False)"
        )
    if len(shape) == 1 and not ent.meta.get("vectors", True):
        raise ValueError(f"architecture '{name}' takes images (C, H, W) only, got {shape}")
    if context_dim is not None and (
        not isinstance(context_dim, int) or isinstance(context_dim, bool) or context_dim < 1
    ):
        raise ValueError(
            f"architecture '{name}': context_dim must be a positive int or None, "
            f"got {context_dim!r}"
        )
    valid = _checked(name, ent.factory, hp)
    try:
        flow = ent.factory(shape, context_dim, **hp)
    except HyperParameterError as exc:
        raise _invalid(name, exc.key, exc.reason, valid) from None
    if not isinstance(flow, Flow):
        raise TypeError(
            f"architecture '{name}': the factory returned {type(flow).__name__}, not a Flow"
        )
    return flow


def fit(name: str, train: Any, levels: int | None, kind: str, **hp: Any) -> Any:
    """Fit the closed-form model ``name`` on the training split ``train`` of data of ``kind``
    (``"continuous"``/``"discrete"``) with ``levels`` values (None for continuous data).

    The fitted model has ``dims``, ``log_prob_discrete(x)`` (exact ``log P(x)`` in nats, one
    per row) and ``sample(n)``.

    Raises:
        UnknownNameError: unknown architecture.
        ValueError: not a closed-form model, a kind of data it does not accept, or a bad
            hyper-parameter.
    """
    ent = entry(name)
    if not ent.meta.get("closed_form"):
        raise ValueError(f"architecture '{name}' is a flow, trained, not fitted: use build()")
    kinds = ent.meta.get("data_kinds")
    if kinds is not None and kind not in kinds:
        raise ValueError(
            f"architecture '{name}': takes {' or '.join(kinds)} data, got {kind} data"
        )
    _checked(name, ent.factory, hp)
    return ent.factory(train, levels, **hp)
