"""A report page's parts: :class:`Section` s of :class:`Panel` s, and :func:`slug` for the
ids and file names they get. Every section module (:mod:`harness.report.sections`) builds
these, and the writer (:mod:`harness.report.site`) turns them into HTML and data files; they
live here so that neither imports the other to share them."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

__all__ = ["Panel", "Section", "slug"]


@dataclass
class Panel:
    """One figure (or table) with its caption and the data behind it (``id`` names both the
    element and the data files)."""

    id: str
    caption: str
    data: pd.DataFrame
    figure: go.Figure | None = None
    after: str = ""  # trusted HTML shown under the figure (tables, definitions)


@dataclass
class Section:
    """One section of a page: its anchor (the element's id), its title (the heading and the
    table of contents' entry) and its panels."""

    anchor: str
    title: str
    panels: list[Panel] = field(default_factory=list)
    note: str = ""  # plain text (escaped) shown when a section has nothing to draw
    html: str = ""  # trusted HTML (the sample gallery)


def slug(name: str) -> str:
    """A file- and id-safe name, unique per input (a short hash of the name is appended)."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40] or "x"
    return f"{base}-{zlib.crc32(name.encode()):08x}"[: len(base) + 7]
