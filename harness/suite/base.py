"""The bases of every suite model: strict pydantic models, and the limits both schemas share.

Every section of a suite (:mod:`harness.suite.schema`, and its ``tune:`` section in
:mod:`harness.suite.tune_schema`) is a :class:`StrictModel`: unknown keys are refused, a
parsed suite is frozen, numbers are finite (no ``.inf``, no ``.nan``), and a boolean is never
a number: YAML reads ``yes``, ``no``, ``on``, ``off``, ``true`` and ``false`` as booleans,
and ``steps: yes`` must not quietly become one step (pydantic would read it as 1). A
:class:`NamedModel` may also be written as its name alone (``optimizer: adamw``).

This module sits below both schemas, so that imports inside :mod:`harness.suite` point one way.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

__all__ = ["MAX_SEED", "MAX_STEPS", "NamedModel", "StrictModel"]

MAX_STEPS = 10**8  # steps, warm-up, and every "every N steps"
MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit


def _numeric(annotation: Any) -> str | None:
    """``"scalar"`` for an int / float annotation (or an optional one), ``"items"`` for a
    list or tuple of them, else None."""
    if annotation in (int, float):
        return "scalar"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        kinds = {_numeric(a) for a in args if a is not type(None)}
        return "scalar" if "scalar" in kinds else None
    if origin in (list, tuple) and args and all(a in (int, float, Ellipsis) for a in args):
        return "items"
    return None


class StrictModel(BaseModel):
    """A suite section: unknown keys refused, frozen, finite, no boolean where a number
    belongs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse ``true``/``yes``/``on`` … where a number belongs (pydantic reads them as 1)."""
        field = cls.model_fields.get(info.field_name or "")
        kind = _numeric(field.annotation) if field is not None else None
        # pydantic turns a ValueError (not a TypeError) into a validation error
        if kind == "scalar" and isinstance(value, bool):
            raise ValueError(
                f"a number is expected, not a boolean (got {value!r}; YAML reads "
                "yes/no/on/off/true/false as booleans)")
        if kind == "items" and isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, bool):
                    raise ValueError(  # noqa: TRY004
                        f"item {i} is a boolean, not a number (got {item!r}; YAML "
                        "reads yes/no/on/off/true/false as booleans)")
        return value


class NamedModel(StrictModel):
    """A section that may be written as its ``name`` alone (``optimizer: adamw``)."""

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value
