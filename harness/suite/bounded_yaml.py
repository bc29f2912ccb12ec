"""YAML with bounds: a suite file can cost only a bounded amount of time and memory to read.

PyYAML's safe loader builds no objects of arbitrary classes, but left alone it

- follows aliases without limit: nine anchors of nine aliases each ("billion laughs") are a
  few hundred bytes that expand to 9⁹ nodes for anything that walks the tree;
- recurses once per nesting level while it composes nodes (3,000 nested ``[`` end in a
  ``RecursionError``);
- accepts an alias to its own ancestor (a cyclic value that no walk of it ends);
- reads integers of any length (Python refuses to convert more than 4,300 digits, with a
  ``ValueError`` that is no YAML error and names no place).

:func:`load` first walks the document's parse events (a flat stream: no recursion, libyaml's
speed) and counts: a node nested deeper than ``MAX_DEPTH`` levels, aliases whose expansions
repeat more than ``MAX_ALIAS_NODES`` nodes in all, or an alias inside the node it names stop
it there. Only a document within the bounds is composed into a node tree (kept for line
numbers), checked for integers of more than ``MAX_INT_DIGITS`` digits, and built into plain
Python values. Every refusal is a :class:`BoundError` (a
``yaml.YAMLError`` with a ``problem_mark``), reported with the file, line and column like any
other YAML error.

The size of the file (``MAX_BYTES``) is checked by the caller before it reads the file.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "BoundError",
    "check_bounds",
    "load",
]

MAX_BYTES = 256 << 10  # a suite file of at most 256 KiB (the shipped suites are under 2 KiB)
MAX_DEPTH = 32  # nesting levels (a suite needs about 6)
MAX_ALIAS_NODES = 10_000  # nodes that aliases may repeat, in all
MAX_INT_DIGITS = 1000  # digits of an integer (Python converts at most 4,300)
_INT_TAG = "tag:yaml.org,2002:int"

# libyaml where PyYAML was built with it (the wheels for x86-64 are), else the pure-Python one
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class BoundError(yaml.MarkedYAMLError):
    """A YAML document past one of the bounds (the message names the bound and the fix)."""


def check_bounds(text: str) -> None:
    """Raise :class:`BoundError` where ``text`` passes a bound (see the module docstring).

    Each collection's size with its aliases expanded is counted when it closes: a frame per
    open collection holds ``[anchor, nodes so far]``; an alias adds the recorded size of its
    anchor's node to the open frame and to the running total of repeated nodes.
    """
    frames: list[list[Any]] = []  # [anchor or None, node count] per open collection
    sizes: dict[str, int] = {}  # anchor → expanded size of its node
    repeated = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(frames) >= MAX_DEPTH:
                raise BoundError(None, None, f"nested more than {MAX_DEPTH} levels deep (a "
                                 "suite needs about 6)", event.start_mark)
            frames.append([event.anchor, 1])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, size = frames.pop()
            if anchor is not None:
                sizes[anchor] = size
            if frames:
                frames[-1][1] += size
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            if frames:
                frames[-1][1] += 1
        elif isinstance(event, yaml.AliasEvent):
            if any(f[0] == event.anchor for f in frames):
                raise BoundError(None, None, f"the alias *{event.anchor} is inside the node "
                                 "it names (a cycle); a suite has no cycles", event.start_mark)
            size = sizes.get(event.anchor, 0)  # an undefined alias: the composer says so
            repeated += size
            if repeated > MAX_ALIAS_NODES:
                raise BoundError(None, None, f"aliases repeat more than {MAX_ALIAS_NODES:,} "
                                 f"nodes (at *{event.anchor}); write the values out or use "
                                 "fewer aliases", event.start_mark)
            if frames:
                frames[-1][1] += size


def _check_integers(root: yaml.Node) -> None:
    """Refuse, at its place, an integer longer than ``MAX_INT_DIGITS`` digits (Python would
    refuse to convert it, without saying where)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _INT_TAG and len(node.value) > MAX_INT_DIGITS:
                raise BoundError(None, None, f"an integer of {len(node.value):,} digits; numbers "
                                 f"here have at most {MAX_INT_DIGITS:,}", node.start_mark)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)


def load(text: str) -> tuple[Any, yaml.Node | None]:
    """The plain Python value of one YAML document (dicts, lists, str, int, float, bool, None,
    dates) and its node tree (for line numbers), within the bounds.

    Raises:
        BoundError: past a bound, or a value Python cannot hold as written (an integer of
            more than 4,300 digits).
        yaml.YAMLError: text that is not YAML, or that holds a tag the safe loader refuses.
    """
    check_bounds(text)
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_integers(root)
        try:
            return loader.construct_document(root), root
        except (ValueError, OverflowError) as exc:  # a value Python refuses, found nowhere else
            raise BoundError(None, None, f"a value cannot be read: {str(exc)[:100]}",
                             root.start_mark) from None
    except RecursionError:  # not reachable within MAX_DEPTH: a last guard
        raise BoundError(None, None, f"nested too deeply (the limit is {MAX_DEPTH} levels)",
                         None) from None
    finally:
        loader.dispose()
