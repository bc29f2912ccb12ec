"""The data layer's one error type.

:class:`DataError` is a :class:`ValueError` whose message names the place (a file, a data
set, an option) and the fix, so that a bad data directory or a corrupt file is answered
before anything is trained. Unknown *names* (data sets, dequantizers) raise the registry's
:class:`harness.registry.UnknownNameError` instead, which suggests the nearest valid name.
"""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad data input: a missing or corrupt file, an impossible option, an unfit scheme."""
