"""What a report publishes from untrusted text: link targets and spreadsheet cells.

Labels, data-set options and error messages in a report come from suites and runs that
anyone with access to the store wrote, and a report is opened by others: in a browser, and
its CSV files in a spreadsheet.

- **Links**: the MLflow UI base that run links start with (``--ui-base``) must be an
  ``http(s)`` URL with a host, no credentials, no fragment and no control characters, so that
  no ``javascript:`` (or ``data:``, ``file:``) link reaches a page; anything else is a
  :class:`ReportInputError`, raised before anything is read or written.
- **CSV cells**: a spreadsheet evaluates a cell that starts with ``=``, ``+``, ``-`` or ``@``
  (or a tab or carriage return before one) as a formula (CSV injection). Every CSV the report
  writes passes through :func:`escape_formulas`, which prefixes such text cells, and such
  column names, with a single quote (the spreadsheet convention for "this is text"). A cell
  that is a plain number (``-1.5``, ``+2e-3``) is left as it is, as are numeric columns:
  a negative number is not a formula.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pandas as pd

__all__ = ["FORMULA_START", "ReportInputError", "check_ui_base", "escape_cell",
           "escape_formulas"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_URL = 2048
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # control characters and spaces


class ReportInputError(ValueError):
    """A report option that cannot be published safely (the message names it and the fix)."""


def _shown(value: str, limit: int = 80) -> str:
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)


def check_ui_base(ui_base: object) -> str:
    """``ui_base`` if it is a safe base for run links, else a :class:`ReportInputError`.

    Safe: a string of at most 2,048 characters, scheme ``http`` or ``https``, a host, no
    ``user:password@``, no ``#fragment`` (run links append ``/#/experiments/…``), and no
    spaces or control characters.
    """
    fix = "give the MLflow UI's address, e.g. --ui-base http://127.0.0.1:5000"
    if not isinstance(ui_base, str) or not ui_base:
        raise ReportInputError(f"--ui-base: expected an http(s) URL, got {ui_base!r}; {fix}")
    if len(ui_base) > MAX_URL:
        raise ReportInputError(f"--ui-base: {len(ui_base)} characters, more than {MAX_URL}; "
                               f"{fix}")
    if _CONTROL.search(ui_base):
        raise ReportInputError(f"--ui-base {_shown(ui_base)}: spaces or control characters "
                               f"are not allowed in a link; {fix}")
    try:
        parts = urlsplit(ui_base)
        host = parts.hostname
    except ValueError as err:
        raise ReportInputError(f"--ui-base {_shown(ui_base)}: not a URL ({err}); {fix}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ReportInputError(
            f"--ui-base {_shown(ui_base)}: scheme '{parts.scheme or '(none)'}' is not allowed, "
            f"only http and https (a report's links must not run code); {fix}")
    if not host:
        raise ReportInputError(f"--ui-base {_shown(ui_base)}: no host; {fix}")
    if "@" in parts.netloc:
        raise ReportInputError(f"--ui-base {_shown(ui_base)}: credentials in a published "
                               f"link; remove the 'user:password@' part; {fix}")
    if parts.fragment or ui_base.endswith("#"):
        raise ReportInputError(f"--ui-base {_shown(ui_base)}: a '#fragment' breaks the run "
                               f"links (they append '/#/experiments/…'); {fix}")
    return ui_base


def escape_cell(value: object) -> object:
    """``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


def escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` fit for CSV: text cells and column names that would start a formula
    are escaped (:func:`escape_cell`); numeric, boolean and date columns are untouched."""
    out = df.copy()
    for col in out.columns:
        series = out[col]
        if series.dtype == object or isinstance(series.dtype, (pd.StringDtype,
                                                                pd.CategoricalDtype)):
            out[col] = series.map(escape_cell, na_action="ignore")
    out.columns = [escape_cell(c) for c in out.columns]
    return out
