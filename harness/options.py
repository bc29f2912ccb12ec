"""Option specs: what one named option accepts (a type and a range, or a set of choices).

Architectures, data sets and dequantization schemes declare their options with
:class:`Option` values at registration; the suite checks (which import no torch) read them
as plain data and refuse a wrong type or an out-of-range value with the file, line and field,
before anything runs. Booleans are never numbers here (YAML reads ``yes``/``no``/``on``/
``off`` as booleans), and every number is finite.

Example:
    >>> Option.integer(1, 8).problem(0)
    'must be an int in [1, 8] (got 0)'
    >>> Option.number(0, 0.5, low_open=True, high_open=True, nullable=True).problem(None)
    >>> Option.choice("label").problem("labels")
    "must be one of 'label' (got 'labels')"
    >>> Option.integer(1, 8).problem(True)
    'must be an int in [1, 8], not a boolean (got True)'
    >>> Option.number(0, 100, low_open=True).problem(float("inf"))
    'must be a finite number in (0, 100] (got inf)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_SHOWN", "Option", "clip", "shown"]

MAX_SHOWN = 60  # characters of a value echoed back in a message


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 24, 8)]}… ({len(text):,} characters)"


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (never a 10,000-character echo).

    A huge integer is not converted to decimal (Python refuses past 4,300 digits): its size is
    given instead.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about 10^{int(value.bit_length() * math.log10(2))}"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 50:
        return f"a {type(value).__name__} of {len(value):,} items"
    return clip(repr(value), limit)


def _number(x: float) -> str:
    """A bound in words: whole numbers with digit groups (``4,294,967,295``), else ``%g``."""
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:g}"


@dataclass(frozen=True)
class Option:
    """What one option accepts.

    Attributes:
        type: ``"bool"``, ``"int"``, ``"float"`` (an int is accepted too), ``"str"``,
            ``"mapping"`` or ``"any"``.
        low, high: inclusive bounds of a number (exclusive with ``low_open`` / ``high_open``).
        choices: the values a ``"str"`` option may take (None: any string up to ``max_len``).
        nullable: whether ``null`` is allowed.
        max_len: the longest string.
        help: one line for messages and documentation.
        default: the value used when the option is not given (where it matters to a check).
    """

    type: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    max_len: int = 1000
    help: str = ""
    default: Any = None

    # ── constructors ────────────────────────────────────────────────────────────────
    @classmethod
    def integer(cls, low: int | None = None, high: int | None = None, **kw: Any) -> Option:
        return cls("int", low, high, **kw)

    @classmethod
    def number(cls, low: float | None = None, high: float | None = None, **kw: Any) -> Option:
        return cls("float", low, high, **kw)

    @classmethod
    def flag(cls, **kw: Any) -> Option:
        return cls("bool", **kw)

    @classmethod
    def choice(cls, *values: Any, **kw: Any) -> Option:
        return cls("str", choices=tuple(values), **kw)

    @classmethod
    def text(cls, max_len: int = 1000, **kw: Any) -> Option:
        return cls("str", max_len=max_len, **kw)

    @classmethod
    def mapping(cls, **kw: Any) -> Option:
        return cls("mapping", **kw)

    @classmethod
    def like(cls, default: Any) -> Option:
        """The spec implied by a default value alone: its type, any finite value."""
        if isinstance(default, bool):
            return cls.flag(default=default)
        if isinstance(default, int):
            return cls.integer(default=default)
        if isinstance(default, float):
            return cls.number(default=default)
        if isinstance(default, str):
            return cls.text(default=default)
        if isinstance(default, Mapping):
            return cls.mapping(nullable=True, default=default)
        return cls("any", default=default)

    # ── checking ────────────────────────────────────────────────────────────────────
    def describe(self) -> str:
        """In words: ``an int in [1, 8]``, ``a number in (0, 0.5) or null``, …"""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {"bool": "true or false", "int": "an int", "float": "a number",
                    "str": "a string", "mapping": "a mapping", "any": "any value"}[self.type]
            if self.type == "float":
                text = "a finite number"
            if self.type in ("int", "float") and (self.low is not None or self.high is not None):
                lo = "-∞" if self.low is None else _number(self.low)
                hi = "∞" if self.high is None else _number(self.high)
                text += (f" in {'(' if self.low_open or self.low is None else '['}{lo}, "
                         f"{hi}{')' if self.high_open or self.high is None else ']'}")
        return text + (" or null" if self.nullable else "")

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is acceptable, else what is wrong with it (one clause)."""
        if value is None:
            return None if self.nullable else f"must be {self.describe()}, not null"
        want = self.describe()
        got = f" (got {shown(value)})"
        if self.type == "any":
            return None
        if self.type == "bool":
            return None if isinstance(value, bool) else f"must be {want}{got}"
        if self.type in ("int", "float"):
            if isinstance(value, bool):
                return f"must be {want}, not a boolean{got}"
            ok_type = isinstance(value, int) or (self.type == "float" and isinstance(value, float))
            if not ok_type:
                return f"must be {want}{got}"
            if isinstance(value, float) and not math.isfinite(value):
                return f"must be {want}{got}"
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                return f"must be {want}{got}"
            if self.high is not None and (
                value >= self.high if self.high_open else value > self.high
            ):
                return f"must be {want}{got}"
            return None
        if self.type == "str":
            if not isinstance(value, str):
                return f"must be {want}{got}"
            if self.choices is not None and value not in self.choices:
                return f"must be {want}{got}"
            if len(value) > self.max_len:
                return f"must be at most {self.max_len:,} characters{got}"
            return None
        if self.type == "mapping":
            return None if isinstance(value, Mapping) else f"must be {want}{got}"
        raise ValueError(f"Option: unknown type {self.type!r}")
