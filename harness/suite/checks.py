"""Checks of a parsed suite against the registries (names, options, combinations, size).

This layer imports no torch: the catalogue of valid names and of the options each one takes
(:class:`~harness.options.Option` specs) is injected (the CLI builds it from
:mod:`harness.flows` and :mod:`harness.data`). Each problem names its place in the file —
``FILE:LINE: matrix.datasets[1].n_bits: …`` — and, for a misspelt name, the nearest valid one.

What is checked, before anything is built or scheduled:

- the matrix's size: its cells (architectures × data sets × schemes × seeds) are counted
  and refused over ``max_jobs`` (default :data:`MAX_JOBS`), before anything is expanded;
- names: architectures, data sets, dequantization schemes, and the names in include /
  exclude rules;
- options: every hyper-parameter, data-set option and scheme option against its spec
  (unknown key with the nearest valid one, type, range), the rules that tie two of them
  together, ``condition: label`` only on a data set with labels, the q flow of variational
  dequantization and its hyper-parameters;
- MLflow: every option becomes a run parameter ``arch.KEY`` / ``data.KEY`` / ``dequant.KEY``,
  so its name must be one MLflow stores (letters, digits, ``_ - . / :`` and spaces, at most
  250 characters, no ``..`` or ``//``) and its value at most 6,000 characters;
- runtimes: ``cuda-graphs`` only for jobs that get a GPU (``resources.gpus`` > 0; whether
  the machine has one is checked by ``nfbench run`` before anything starts);
- the ``tune:`` section, if any (:mod:`harness.suite.tune_checks`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..options import Option, clip, shown
from ..registry import nearest
from .expand import count_cells, flatten
from .load import SuiteError, format_loc, line_of
from .schema import AxisItem, Suite
from .tune_checks import tune_problems

__all__ = ["MAX_JOBS", "MLFLOW_PARAM_KEY_MAX", "MLFLOW_PARAM_VALUE_MAX", "Catalog",
           "check_suite", "param_name_problem"]

MAX_JOBS = 10_000  # default job limit (cells of the matrix); --max-jobs raises it

# MLflow's rules for a run parameter (mlflow.utils.validation, 3.x; a test compares them)
MLFLOW_PARAM_KEY_MAX = 250
MLFLOW_PARAM_VALUE_MAX = 6000
_MLFLOW_PARAM_KEY = re.compile(r"^[/\w.\- :]*$")

Problems = list[tuple[str, str]]  # (option key, reason)


def _no_cross(name: str, options: Mapping[str, Any]) -> Problems:
    return []


@dataclass
class Catalog:
    """What the registries offer, as plain data.

    ``arch_hparams[name]`` holds the hyper-parameters an architecture takes (with defaults);
    ``dataset_kind[name]`` is ``"continuous"`` or ``"discrete"``; ``dequant_ok(scheme,
    kind)`` says whether a scheme fits a kind of data (None) or why not (a reason).

    The option specs (``arch_options``, ``dataset_options``, ``dequant_options``: name →
    option → :class:`Option`) say what each option accepts; an architecture without specs
    gets them from its defaults' types, a data set or scheme without specs has its options
    unchecked. ``arch_cross`` / ``dequant_cross`` return ``(key, reason)`` for rules that
    tie two options together. ``dataset_classes[name]`` is the number of class labels a data
    set has (for ``condition: label``). ``flows`` are the architectures a variational
    dequantizer's q flow may be (default: every architecture).

    ``arch_meta[name]`` is an architecture's registry metadata; the combination rules read
    ``data_kinds`` (the kinds of data it accepts) and ``dequant_columns`` (the only
    dequantization columns it runs in: a model whose likelihood is exact runs once) and,
    where either is set, the label ``reference`` (a baseline row) for the message.
    """

    arch_hparams: Mapping[str, Mapping[str, Any]]
    dataset_kind: Mapping[str, str]
    dequant_schemes: list[str]
    dequant_ok: Callable[[str, str], str | None] = field(default=lambda s, k: None)
    dataset_options: Mapping[str, Mapping[str, Option]] = field(default_factory=dict)
    arch_options: Mapping[str, Mapping[str, Option]] = field(default_factory=dict)
    dequant_options: Mapping[str, Mapping[str, Option]] = field(default_factory=dict)
    dataset_classes: Mapping[str, int | None] = field(default_factory=dict)
    arch_cross: Callable[[str, Mapping[str, Any]], Problems] = _no_cross
    dequant_cross: Callable[[str, Mapping[str, Any]], Problems] = _no_cross
    flows: list[str] | None = None
    arch_meta: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def combination(self, arch: AxisItem, dataset: AxisItem, dequant: AxisItem) -> str | None:
        """Why this cell of the matrix is dropped, or None when it runs."""
        kind = self.dataset_kind.get(dataset.name)
        if kind is None:
            return None
        meta = self.arch_meta.get(arch.name, {})
        what = f"the {arch.name} reference row" if meta.get("reference") else arch.name
        kinds = meta.get("data_kinds")
        if kinds is not None and kind not in kinds:
            return f"{what} is for {' or '.join(kinds)} data"
        columns = meta.get("dequant_columns")
        if columns is not None:
            if dequant.name not in columns:
                return (f"{what}'s likelihood is exact, with no dequantization: it runs once, "
                        f"in the {' or '.join(repr(c) for c in columns)} column")
            return None
        return self.dequant_ok(dequant.name, kind)

    def arch_specs(self, name: str) -> Mapping[str, Option]:
        if name in self.arch_options:
            return self.arch_options[name]
        return {k: Option.like(v) for k, v in self.arch_hparams.get(name, {}).items()}


def _unknown(kind: str, name: str, valid: list[str]) -> str:
    near = nearest(name, valid)
    hint = f"; did you mean '{near}'?" if near else ""
    return f"unknown {kind} '{clip(name)}'{hint} (valid: {', '.join(sorted(valid))})"


def param_name_problem(name: str) -> str | None:
    """Why MLflow would refuse ``name`` as a run parameter's key, or None."""
    if len(name) > MLFLOW_PARAM_KEY_MAX:
        return f"is {len(name):,} characters; MLflow stores at most {MLFLOW_PARAM_KEY_MAX}"
    if not _MLFLOW_PARAM_KEY.match(name):
        return ("holds a character MLflow refuses in a parameter name (allowed: letters, "
                "digits, _ - . / : and spaces)")
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(("..", "/")):
        return "is not a plain name (MLflow refuses '..', '//', a leading or trailing '/')"
    return None


def _params_problems(section: str, cfg: dict[str, Any]) -> Problems:
    """Run-parameter problems of one axis item's config section, by option key."""
    out: Problems = []
    for key, value in flatten({section: cfg}).items():
        option = key.split(".")[1] if "." in key else key
        why = param_name_problem(key)
        if why:
            out.append((option, f"the run parameter '{clip(key)}' {why}; rename the option"))
        elif len(value) > MLFLOW_PARAM_VALUE_MAX:
            out.append((option, (f"the value is {len(value):,} characters as a run parameter; "
                                 f"MLflow stores at most {MLFLOW_PARAM_VALUE_MAX:,}")))
    return out


def _option_problems(specs: Mapping[str, Option], options: Mapping[str, Any], what: str,
                     valid_hint: str) -> Problems:
    """Unknown keys (nearest valid one) and bad values of ``options`` against ``specs``."""
    out: Problems = []
    for key, value in options.items():
        if not isinstance(key, str):
            out.append((str(key), f"an option name must be a string (got {shown(key)})"))
            continue
        spec = specs.get(key)
        if spec is None:
            near = nearest(key, list(specs))
            out.append((key, f"{what} has no {valid_hint} '{clip(key)}'"
                             + (f"; did you mean '{near}'?" if near else "")
                             + f" (valid: {', '.join(sorted(specs)) or 'none'})"))
            continue
        why = spec.problem(value)
        if why:
            out.append((key, why))
    return out


def check_suite(
    suite: Suite,
    catalog: Catalog,
    source: str = "<suite>",
    root: yaml.Node | None = None,
    *,
    max_jobs: int = MAX_JOBS,
) -> None:
    """Raise :class:`SuiteError` listing every problem (see the module docstring)."""
    problems: list[str] = []

    def where(loc: tuple[Any, ...]) -> str:
        line = line_of(root, loc)
        return f"{source}:{line}" if line else source

    def report(loc: tuple[Any, ...], message: str) -> None:
        problems.append(f"{where(loc)}: {format_loc(loc)}: {message}")

    cells = count_cells(suite)
    if cells > max_jobs:
        m = suite.matrix
        runtimes = f" × {len(m.runtime)} runtimes" if len(m.runtime) > 1 else ""
        report(("matrix",), f"{cells:,} jobs ({len(m.architectures)} architectures × "
                            f"{len(m.datasets)} data sets × {len(m.dequantization)} schemes"
                            f"{runtimes} × {len(m.seeds)} seeds) is over the limit of "
                            f"{max_jobs:,} jobs; shrink an axis, or raise the limit with "
                            f"--max-jobs {cells}")
        raise SuiteError(source, problems)

    axes = (
        ("architectures", "architecture", list(catalog.arch_hparams)),
        ("datasets", "data set", list(catalog.dataset_kind)),
        ("dequantization", "dequantization scheme", list(catalog.dequant_schemes)),
    )
    for field_name, kind, valid in axes:
        for i, item in enumerate(getattr(suite.matrix, field_name)):
            loc = ("matrix", field_name, i)
            if item.name not in valid:
                report(loc, _unknown(kind, item.name, valid))
                continue
            for key, why in _item_problems(field_name, item, catalog):
                report(loc + (key,), why)

    for rule_field in ("include", "exclude"):
        for i, rule in enumerate(getattr(suite, rule_field)):
            for attr, valid in (
                ("arch", [a.name for a in suite.matrix.architectures]
                 + [a.display for a in suite.matrix.architectures]),
                ("dataset", [d.name for d in suite.matrix.datasets]
                 + [d.display for d in suite.matrix.datasets]),
                ("dequant", [q.name for q in suite.matrix.dequantization]
                 + [q.display for q in suite.matrix.dequantization]),
                ("runtime", [r.name for r in suite.matrix.runtime]
                 + [r.display for r in suite.matrix.runtime]),
            ):
                value = getattr(rule, attr)
                if value is not None and value not in valid:
                    near = nearest(value, valid)
                    report((rule_field, i, attr), f"'{clip(value)}' is not in the matrix"
                           + (f"; did you mean '{near}'?" if near else ""))
            if rule.seed is not None and rule.seed not in suite.matrix.seeds:
                report((rule_field, i, "seed"), f"seed {rule.seed} is not in matrix.seeds")
    for i, item in enumerate(suite.matrix.runtime):
        if item.name == "cuda-graphs" and not suite.resources.gpus:
            report(("matrix", "runtime", i),
                   "runtime cuda-graphs runs on a GPU only, and this suite's jobs get none "
                   "(resources.gpus is 0); give each job a GPU (resources: {gpus: 1}) or use "
                   "runtime compile")
    for loc, message in tune_problems(suite, catalog):  # the tune: section, if any
        report(loc, message)
    if problems:
        raise SuiteError(source, problems)


def _item_problems(field_name: str, item: AxisItem, catalog: Catalog) -> Problems:
    """Problems of one known axis item's options, by option key."""
    opts = item.options
    if field_name == "architectures":
        specs = catalog.arch_specs(item.name)
        out = _option_problems(specs, opts, f"'{item.name}'", "hyper-parameter")
        if not out:
            out = catalog.arch_cross(item.name, opts)
        return out or _params_problems("arch", {"name": item.name, **opts})
    if field_name == "datasets":
        specs = catalog.dataset_options.get(item.name)
        out = _option_problems(specs, opts, f"data set '{item.name}'", "option") if specs else []
        if not out and opts.get("condition") and not catalog.dataset_classes.get(item.name):
            labelled = sorted(n for n, c in catalog.dataset_classes.items() if c)
            out.append(("condition", (f"data set '{item.name}' has no class labels; remove "
                                      "'condition' or use a labelled data set "
                                      f"({', '.join(labelled)})")))
        return out or _params_problems("data", {"name": item.name, **opts})
    specs = catalog.dequant_options.get(item.name)
    out = _option_problems(specs, opts, f"'{item.name}'", "option") if specs else []
    if not out and specs and "flow" in specs:
        out = _q_flow_problems(specs, opts, catalog)
    if not out:
        out = catalog.dequant_cross(item.name, opts)
    return out or _params_problems("dequant", {"scheme": item.name, **opts})


def _q_flow_problems(specs: Mapping[str, Option], opts: Mapping[str, Any],
                     catalog: Catalog) -> Problems:
    """The q flow of variational dequantization: a known architecture, its hyper-parameters."""
    flows = catalog.flows if catalog.flows is not None else list(catalog.arch_hparams)
    flow = opts.get("flow", specs["flow"].default)
    if flow not in flows:
        return [("flow", _unknown("architecture", str(flow), flows))]
    given = opts.get("flow_options") or {}
    out = _option_problems(catalog.arch_specs(flow), given, f"'{flow}'", "hyper-parameter")
    if not out:
        out = catalog.arch_cross(flow, given)
    return [("flow_options", f"{key}: {why}") for key, why in out]
