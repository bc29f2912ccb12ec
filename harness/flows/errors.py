"""What a factory or a layer raises for a hyper-parameter it cannot take.

A :class:`HyperParameterError` names the hyper-parameter and the reason; the registry's
:func:`~harness.flows.zoo.build` turns it into a message that also names the architecture and
its valid hyper-parameters with their defaults. The ranges and choices of every
hyper-parameter are checked before a factory runs, against their specs
(:mod:`harness.flows.hparam_specs`); what is raised here is what only the building can tell
(an event shape too small, more levels than an image can be squeezed) and a layer's own check
of its arguments (:func:`check_choice`).

This module imports nothing of the flow library: every part of it may raise these.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HyperParameterError", "check_choice"]


class HyperParameterError(ValueError):
    """Raised by a factory for an invalid hyper-parameter value; :func:`build` adds context."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


def check_choice(key: str, value: object, options: Sequence[object]) -> None:
    """Refuse ``value`` unless it is one of ``options``."""
    if value not in options:
        raise HyperParameterError(key, f"must be one of {list(options)!r}, got {value!r}")
