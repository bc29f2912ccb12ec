"""One generic registry for named components (architectures, data sets, dequantizers).

A registry maps a name to a factory. Unknown names raise :class:`UnknownNameError`, whose
message lists the valid names and suggests the nearest one, so that a typo in a suite is
answered with the fix.

Example:
    >>> reg = Registry("architecture")
    >>> @reg.register("toy", summary="a toy")
    ... def make_toy(**kw):
    ...     return "toy"
    >>> reg.get("toy")()
    'toy'
    >>> reg.get("tyo")
    Traceback (most recent call last):
    ...
    harness.registry.UnknownNameError: unknown architecture 'tyo'; did you mean 'toy'? (valid: toy)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Entry", "Registry", "UnknownNameError", "nearest"]

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """A name that no registry entry has; the message carries the nearest valid name."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        self.suggestion = nearest(name, valid)
        hint = f"; did you mean '{self.suggestion}'?" if self.suggestion else ""
        super().__init__(f"unknown {kind} '{name}'{hint} (valid: {', '.join(valid)})")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def nearest(name: str, valid: list[str]) -> str | None:
    """The valid name closest to ``name`` (difflib ratio ≥ 0.5), or None."""
    hits = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    if hits:
        return hits[0]
    lowered = {v.lower(): v for v in valid}
    return lowered.get(name.lower())


@dataclass
class Entry(Generic[T]):
    """A registered factory with its one-line summary and free-form metadata."""

    name: str
    factory: T
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named factories of one kind (``kind`` names it in error messages)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, summary: str = "", **meta: Any) -> Callable[[T], T]:
        """Decorator: register ``factory`` under ``name``; a second use of a name is an error."""

        def deco(factory: T) -> T:
            self.add(name, factory, summary, **meta)
            return factory

        return deco

    def add(self, name: str, factory: T, summary: str = "", **meta: Any) -> None:
        if name in self._entries and self._entries[name].factory is not factory:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, factory, summary, dict(meta))

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def get(self, name: str) -> T:
        return self.entry(name).factory

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())
