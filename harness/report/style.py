"""Shared look of the figures: colours per architecture, escaping, hover text, layout.

Plotly renders a subset of HTML inside text (``<b>``, ``<a href>``, ``<br>``), so every string
that comes from a run (names, labels, tags) goes through :func:`esc` before it enters a
figure: ``&lt;script&gt;`` is then drawn as the characters ``<script>``, never as markup.
"""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Iterable

import plotly.graph_objects as go

__all__ = ["arch_colour", "base_layout", "esc", "fmt", "hover", "no_data", "unique"]

_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79",
    "#ad494a", "#637939",
)
_FIXED = {
    "realnvp": _PALETTE[0], "maf": _PALETTE[1], "iaf": _PALETTE[2], "glow": _PALETTE[3],
    "nsf-coupling": _PALETTE[4], "nsf-ar": _PALETTE[5], "ffjord": _PALETTE[6],
}
REFERENCE_COLOUR = "#7f7f7f"  # reference rows (tagged nfbench.reference) are grey
HEIGHT = 420


def arch_colour(arch: str, reference: bool = False) -> str:
    """A colour per architecture name, the same in every figure and every report (grey for a
    reference row)."""
    if reference:
        return REFERENCE_COLOUR
    if arch in _FIXED:
        return _FIXED[arch]
    return _PALETTE[zlib.crc32(arch.encode()) % len(_PALETTE)]


def esc(value: object) -> str:
    """Text from a run made safe for Plotly (and HTML): markup characters escaped."""
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 4) -> str:
    """A number for tables and hover text (``—`` for missing)."""
    if value is None:
        return "—"
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def hover(*parts: tuple[str, object]) -> str:
    """Hover text: one escaped ``name: value`` line per part."""
    lines = []
    for name, value in parts:
        text = fmt(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else str(value)
        lines.append(f"{esc(name)}: {esc(text)}" if name else esc(text))
    return "<br>".join(lines)


def base_layout(fig: go.Figure, title: str, height: int = HEIGHT) -> go.Figure:
    """Title (escaped), height, white template, legend; returns ``fig``."""
    fig.update_layout(
        title={"text": esc(title), "x": 0.01, "font": {"size": 15}},
        height=height,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"font": {"size": 11}},
        hoverlabel={"align": "left"},
    )
    return fig


def no_data(fig: go.Figure, message: str) -> go.Figure:
    """An annotation in the middle of an empty figure."""
    fig.add_annotation(text=esc(message), x=0.5, y=0.5, xref="paper", yref="paper",
                       showarrow=False, font={"size": 14, "color": "#666"})
    return fig


def unique(values: Iterable[str]) -> list[str]:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values))
