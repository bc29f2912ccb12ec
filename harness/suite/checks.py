"""Checks of a parsed suite against the registries (names, hyper-parameters, combinations).

This layer imports no torch: the catalogue of valid names is injected (the CLI builds it
from :mod:`harness.flows` and :mod:`harness.data`). Each problem names its place in the file
and, for a misspelt name, the nearest valid one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..registry import nearest
from .load import SuiteError, format_loc, line_of
from .schema import AxisItem, Suite

__all__ = ["Catalog", "check_suite"]


@dataclass
class Catalog:
    """What the registries offer, as plain data.

    ``arch_hparams[name]`` holds the hyper-parameters an architecture takes (with defaults);
    ``dataset_kind[name]`` is ``"continuous"`` or ``"discrete"``; ``dequant_ok(scheme,
    kind)`` says whether a scheme fits a kind of data (None) or why not (a reason).
    """

    arch_hparams: Mapping[str, Mapping[str, Any]]
    dataset_kind: Mapping[str, str]
    dequant_schemes: list[str]
    dequant_ok: Callable[[str, str], str | None] = field(default=lambda s, k: None)
    dataset_options: Mapping[str, list[str]] = field(default_factory=dict)

    def combination(self, arch: AxisItem, dataset: AxisItem, dequant: AxisItem) -> str | None:
        kind = self.dataset_kind.get(dataset.name)
        if kind is None:
            return None
        return self.dequant_ok(dequant.name, kind)


def _unknown(kind: str, name: str, valid: list[str]) -> str:
    near = nearest(name, valid)
    hint = f"; did you mean '{near}'?" if near else ""
    return f"unknown {kind} '{name}'{hint} (valid: {', '.join(sorted(valid))})"


def check_suite(
    suite: Suite, catalog: Catalog, source: str = "<suite>", root: yaml.Node | None = None
) -> None:
    """Raise :class:`SuiteError` listing every unknown name or hyper-parameter."""
    problems: list[str] = []

    def where(loc: tuple[Any, ...]) -> str:
        line = line_of(root, loc)
        return f"{source}:{line}" if line else source

    axes = (
        ("architectures", "architecture", list(catalog.arch_hparams)),
        ("datasets", "data set", list(catalog.dataset_kind)),
        ("dequantization", "dequantization scheme", list(catalog.dequant_schemes)),
    )
    for field_name, kind, valid in axes:
        for i, item in enumerate(getattr(suite.matrix, field_name)):
            loc = ("matrix", field_name, i)
            if item.name not in valid:
                problems.append(f"{where(loc)}: {format_loc(loc)}: {_unknown(kind, item.name, valid)}")
                continue
            if field_name == "architectures":
                known = catalog.arch_hparams[item.name]
                for key in item.options:
                    if key not in known:
                        choices = ", ".join(f"{k}={v!r}" for k, v in sorted(known.items()))
                        problems.append(
                            f"{where(loc + (key,))}: {format_loc(loc + (key,))}: "
                            f"'{item.name}' has no hyper-parameter '{key}'"
                            + (f"; did you mean '{nearest(key, list(known))}'?" if nearest(key, list(known)) else "")
                            + f" (valid: {choices or 'none'})"
                        )
    for rule_field in ("include", "exclude"):
        for i, rule in enumerate(getattr(suite, rule_field)):
            for attr, valid in (
                ("arch", [a.name for a in suite.matrix.architectures]
                 + [a.display for a in suite.matrix.architectures]),
                ("dataset", [d.name for d in suite.matrix.datasets]
                 + [d.display for d in suite.matrix.datasets]),
                ("dequant", [q.name for q in suite.matrix.dequantization]
                 + [q.display for q in suite.matrix.dequantization]),
            ):
                value = getattr(rule, attr)
                if value is not None and value not in valid:
                    loc = (rule_field, i, attr)
                    problems.append(
                        f"{where(loc)}: {format_loc(loc)}: '{value}' is not in the matrix"
                        + (f"; did you mean '{nearest(value, valid)}'?" if nearest(value, valid) else "")
                    )
            if rule.seed is not None and rule.seed not in suite.matrix.seeds:
                loc = (rule_field, i, "seed")
                problems.append(f"{where(loc)}: {format_loc(loc)}: seed {rule.seed} is not in matrix.seeds")
    if problems:
        raise SuiteError(source, problems)
