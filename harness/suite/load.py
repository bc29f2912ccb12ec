"""Reading a suite file: YAML → :class:`Suite`, with errors that name the place.

Every problem becomes a :class:`SuiteError` whose message starts with ``FILE:LINE:`` and the
dotted path of the offending field (``matrix.architectures[1]``), then says what is wrong
and how to fix it. The CLI prints it and exits with status 2 before anything is scheduled.

The file is read within bounds (:mod:`harness.suite.bounded_yaml`): at most ``MAX_BYTES``,
nested at most ``MAX_DEPTH`` levels, aliases repeating at most ``MAX_ALIAS_NODES`` nodes. A
value echoed back in a message is cut to a few dozen characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..options import clip, shown
from .bounded_yaml import MAX_BYTES
from .bounded_yaml import load as load_yaml
from .schema import Suite

__all__ = ["SuiteError", "format_loc", "line_of", "load_suite", "parse_suite", "read_suite"]

MAX_LOC = 100  # characters of a field path in a message


class SuiteError(ValueError):
    """A suite that cannot run; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__("\n".join(problems))


def format_loc(loc: tuple[Any, ...]) -> str:
    """``("matrix", "seeds", 0)`` → ``matrix.seeds[0]`` (cut to ``MAX_LOC`` characters)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return clip(out, MAX_LOC) if out else "(top level)"


def _key(node: yaml.Node) -> Any:
    """A mapping key's scalar text, or None for a key that is not a scalar."""
    return node.value if isinstance(node, yaml.ScalarNode) else None


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
                if _key(k) == part:
                    nxt = v
                    break
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and 0 <= part < len(node.value)):
            nxt = node.value[part]
        node = nxt
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node | None, source: str, path: str = "") -> list[str]:
    """YAML keeps the last of two equal keys silently; a suite refuses them.

    Bounded: the tree's depth and its aliases' expansion are (see ``bounded_yaml``)."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key = _key(k)
            name = f"{path}.{key}" if path else str(key)
            if key is not None and key in seen:
                problems.append(f"{source}:{k.start_mark.line + 1}: '{clip(name, MAX_LOC)}' is "
                                f"given twice (first on line {seen[key]}); merge the two")
            elif key is not None:
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
        msg = clip(e["msg"].removeprefix("Value error, "), 300)
        if e["type"] == "extra_forbidden":
            msg = ("unknown field; remove it or check its spelling (the suite schema: "
                   "docs/suites.md)")
        elif e["type"] == "missing":
            msg = "required field is missing"
        got = e.get("input")
        show = "" if e["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else (
            f" (got {shown(got)})"
        )
        if "(got " in msg:
            show = ""  # the validator already showed the value
        problems.append(f"{_where(source, root, loc)}: {format_loc(loc)}: {msg}{show}")
    return problems


def _yaml_problem(source: str, exc: yaml.YAMLError, text: str) -> str:
    """One line: ``FILE:LINE:COLUMN: not valid YAML: what``."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f"{source}:{mark.line + 1}:{mark.column + 1}"
    elif isinstance(getattr(exc, "position", None), int):  # a character the reader refuses
        pos = exc.position
        where = f"{source}:{text.count(chr(10), 0, pos) + 1}:{pos - text.rfind(chr(10), 0, pos)}"
    else:
        where = source
    if isinstance(exc, yaml.reader.ReaderError):
        what = f"unacceptable character #x{exc.character:04x}: control characters are not allowed"
    else:
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        what = f"{context}; {problem}" if context else str(problem)
    return f"{where}: not valid YAML: {clip(' '.join(what.split()), 300)}"


def parse_suite(text: str, source: str = "<suite>") -> tuple[Suite, yaml.Node | None]:
    """Parse YAML text into a :class:`Suite` (and the YAML node tree, for line numbers)."""
    if len(text) > MAX_BYTES:
        raise SuiteError(source, [(f"{source}: the suite is {len(text):,} characters; a suite "
                                   f"is at most {MAX_BYTES:,} (split it into several)")])
    try:
        raw, root = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SuiteError(source, [_yaml_problem(source, exc, text)]) from None
    duplicates = _duplicate_keys(root, source)
    if duplicates:
        raise SuiteError(source, duplicates)
    if raw is None:
        raise SuiteError(source, [f"{source}: the file is empty; a suite needs name and matrix"])
    if not isinstance(raw, dict):
        raise SuiteError(
            source,
            [f"{source}:1: a suite is a mapping (name:, matrix:, …), not {type(raw).__name__}"],
        )
    try:
        return Suite.model_validate(raw), root
    except ValidationError as err:
        raise SuiteError(source, _pydantic_problems(source, root, err)) from None
    except RecursionError:  # not reachable within the depth bound: a last guard
        raise SuiteError(source, [f"{source}: nested too deeply"]) from None


def read_suite(path: str | Path) -> str:
    """The text of a suite file, refusing what is not a small UTF-8 file."""
    p = Path(path)
    shown_path = clip(str(p), 200)
    if not p.is_file():
        hint = ""
        if not p.suffix and len(p.name) < 200:
            cand = Path("suites") / f"{p.name}.yaml"
            if cand.is_file():
                hint = f"; did you mean {cand}?"
        raise SuiteError(str(p), [f"{shown_path}: no such suite file{hint}"])
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise SuiteError(str(p), [(f"{shown_path}: the file is {size:,} bytes; a suite "
                                       f"is at most {MAX_BYTES:,} bytes (split it into "
                                       "several)")])
        with open(p, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:  # grew since stat
            raise SuiteError(str(p), [f"{shown_path}: a suite is at most {MAX_BYTES:,} bytes"])
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(str(p), [(f"{shown_path}: not UTF-8 text (byte {exc.start}); save "
                                   "the suite as UTF-8")]) from None
    except OSError as exc:
        raise SuiteError(str(p), [(f"{shown_path}: cannot read the file: "
                                   f"{clip(exc.strerror or str(exc), 100)}")]) from None


def load_suite(path: str | Path) -> tuple[Suite, yaml.Node | None]:
    """Read and validate a suite file."""
    return parse_suite(read_suite(path), clip(str(path), 200))
