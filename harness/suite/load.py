"""Reading a suite file: YAML → :class:`Suite`, with errors that name the place.

Every problem becomes a :class:`SuiteError` whose message starts with ``FILE:LINE:`` and the
dotted path of the offending field (``matrix.architectures[1]``), then says what is wrong
and how to fix it. The CLI prints it and exits with status 2 before anything is scheduled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import Suite

__all__ = ["SuiteError", "format_loc", "line_of", "load_suite", "parse_suite"]


class SuiteError(ValueError):
    """A suite that cannot run; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__("\n".join(problems))


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the deepest node that exists)."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if getattr(k, "value", None) == part:
                    nxt = v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                nxt = node.value[part]
        node = nxt
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node | None, source: str, path: str = "") -> list[str]:
    """YAML keeps the last of two equal keys silently; a suite refuses them."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key = getattr(k, "value", None)
            name = f"{path}.{key}" if path else str(key)
            if key in seen:
                problems.append(f"{source}:{k.start_mark.line + 1}: '{name}' is given twice "
                                f"(first on line {seen[key]}); merge the two")
            else:
                seen[key] = k.start_mark.line + 1
            problems += _duplicate_keys(v, source, name)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            problems += _duplicate_keys(v, source, f"{path}[{i}]")
    return problems


def _where(source: str, root: yaml.Node | None, loc: tuple[Any, ...]) -> str:
    line = line_of(root, loc)
    return f"{source}:{line}" if line else source


def _pydantic_problems(source: str, root: yaml.Node | None, err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        # drop pydantic's internal validator names from the location
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling (see the README's suite schema)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        got = e.get("input")
        show = "" if e["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else (
            f" (got {got!r})"
        )
        problems.append(f"{_where(source, root, loc)}: {format_loc(loc)}: {msg}{show}")
    return problems


def parse_suite(text: str, source: str = "<suite>") -> tuple[Suite, yaml.Node | None]:
    """Parse YAML text into a :class:`Suite` (and the YAML node tree, for line numbers)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError(source, [f"{where}: not valid YAML: {problem}"]) from None
    duplicates = _duplicate_keys(root, source)
    if duplicates:
        raise SuiteError(source, duplicates)
    if raw is None:
        raise SuiteError(source, [f"{source}: the file is empty; a suite needs name and matrix"])
    if not isinstance(raw, dict):
        raise SuiteError(
            source, [f"{source}:1: a suite is a mapping (name:, matrix:, …), not {type(raw).__name__}"]
        )
    try:
        return Suite.model_validate(raw), root
    except ValidationError as err:
        raise SuiteError(source, _pydantic_problems(source, root, err)) from None


def load_suite(path: str | Path) -> tuple[Suite, yaml.Node | None]:
    """Read and validate a suite file."""
    p = Path(path)
    if not p.is_file():
        hint = ""
        if not p.suffix:
            cand = Path("suites") / f"{p.name}.yaml"
            if cand.is_file():
                hint = f"; did you mean {cand}?"
        raise SuiteError(str(p), [f"{p}: no such suite file{hint}"])
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(str(p), [f"{p}: cannot read the file: {exc}"]) from None
    return parse_suite(text, str(p))
