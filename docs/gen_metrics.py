"""Build step of the documentation site (mkdocs-gen-files, ``mkdocs.yml``): append the whole
measurement vocabulary to ``metrics.md``, one table per group of ``harness/keys.py``, read
with :func:`harness.keys.vocabulary` (the comment on a name's line is its meaning), so the
page lists exactly the names the code writes."""

from __future__ import annotations

import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's harness, whatever is installed

from harness import keys  # noqa: E402


def _cell(text: str) -> str:
    """Markdown table cell: reST double back-quotes as code spans, pipes escaped."""
    return text.replace("``", "`").replace("|", "\\|")


def vocabulary_markdown() -> str:
    out, section = [], None
    for value, meaning, where in keys.vocabulary():
        if where != section:
            section = where
            out += ["", f"### {_cell(where[:1].upper() + where[1:])}", "",
                    "| key | meaning |", "| --- | --- |"]
        out.append(f"| `{value}` | {_cell(meaning)} |")
    spread = ", ".join(f"`{k}`" for k in keys.spread_keys(keys.PERF_DENSITY_MS))
    out += ["", f"Beside every timed `perf/*_ms` metric `K`: `K{keys.SUFFIX_MEDIAN}`, "
            f"`K{keys.SUFFIX_IQR}` and `K{keys.SUFFIX_BLOCKS}` (e.g. {spread}); MLflow's "
            f"system metrics: `{keys.SYSTEM_PREFIX}*`.", ""]
    return "\n".join(out)


with mkdocs_gen_files.open("metrics.md", "a") as page:
    page.write(vocabulary_markdown())
