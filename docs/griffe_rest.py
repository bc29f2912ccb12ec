"""Build step of the documentation site (a griffe extension, ``mkdocs.yml``): the docstrings
are written for reading in the source, with reST roles (``:func:`name```) and ``Example:``
sections of doctests; this turns them into what mkdocstrings renders as Markdown, when the
API reference is built. The source is not changed."""

from __future__ import annotations

import re

import griffe

# :mod:`~harness.flows.base` → `base`; :func:`build` → `build`
ROLE = re.compile(r":(?:mod|class|func|meth|data|attr|exc|obj):`(~?)([^`]+)`")
EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def markdown(text: str) -> str:
    """A docstring's reST roles as code spans, and ``Example:`` as Google style's
    ``Examples:`` (whose doctests griffe renders as code).

    >>> markdown(":mod:`~harness.flows.base` and :func:`build`")
    '`base` and `build`'
    """
    return EXAMPLE.sub(r"\1Examples:", ROLE.sub(_role, text))


class RestRoles(griffe.Extension):
    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
