"""What every section of a suite's page builds on: the :class:`Context` it derives its frame
from, and the two shapes most sections take.

A *section* is a module of :mod:`harness.report.sections` with

* ``ANCHOR``: its id on the page (and the stem of its panels' ids and data files);
* ``TITLE``: its heading and its entry in the page's table of contents;
* ``build(ctx: Context) -> Section | None``: the section, pure (no I/O), or None when it has
  no place on this page (tuning for a suite without studies, the compile section for a suite
  without both runtimes).

:class:`Context` holds the prepared runs (:func:`harness.report.table.prepare`) and what
several sections derive from them once: the aggregates over :data:`METRICS` per
configuration (``agg``) and per architecture label (``per_arch``, dequantization schemes
pooled), the finished runs (``timed``) and every pair of configurations tested once
(``pairs``). :func:`per_dataset` makes a section of one panel per data set, :func:`single` a
section of one panel; :func:`columns` picks a frame's columns (absent ones as NaN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd
import plotly.graph_objects as go

from ... import keys
from ..html import Raw
from ..page import Panel, Section, slug
from ..pairwise import pairs_frame
from ..table import aggregate, provenance

__all__ = ["ID", "METRICS", "SAMPLE_COLUMNS", "STABILITY_KEYS", "Context", "columns",
           "per_dataset", "single"]

STABILITY_KEYS = (
    keys.STAB_INV_ERR_MAX,
    keys.STAB_SATURATED_SHARE,
    keys.STAB_NONFINITE_STEPS,
    keys.STAB_LATENT_KS,
    keys.STAB_NFE,
    keys.STAB_COND_MAX,
)
METRICS = (  # what the aggregates carry: the mean and std over seeds of each
    "score",
    keys.EVAL_BPD_IW,
    keys.EVAL_NLL_GAP,
    keys.EVAL_BPD,
    keys.PERF_SAMPLE_THROUGHPUT,
    keys.PERF_DENSITY_MS,
    keys.PERF_SAMPLE_MS,
    keys.PERF_INVERSE_MS,
    keys.PERF_LOGDET_MS,
    keys.PERF_LOGDET_SHARE,
    keys.PERF_FORWARD_NOLOGDET_MS,
    keys.PERF_TRAIN_STEP_MS,
    keys.PERF_PEAK_MEM_MB,
    *STABILITY_KEYS,
    "data.dims",
    "flow.params",
)
ID = ["dataset", "config", "arch", "arch_label", "dequant", "reference", "unit",
      "dataset_name"]  # what names a configuration: first in each frame made from `agg`
SAMPLE_COLUMNS = ["run_id", "dataset", "config", "seed", "url", "src"]


def columns(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``df[cols]`` with absent columns as NaN (a suite that never logged a metric)."""
    out = df.reindex(columns=cols)
    return out.copy()


@dataclass
class Context:
    """The inputs of one suite's page.

    ``runs``: :func:`harness.report.table.prepare`'s table; ``curves``:
    :func:`harness.tracking.read.load_curves`' long table; ``samples``: the sample images
    shown (:data:`SAMPLE_COLUMNS`, ``src`` relative to the page); ``tuning``: the suite's
    study and trial runs with their ``url`` (None: none loaded).
    """

    runs: pd.DataFrame
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SAMPLE_COLUMNS))
    tuning: pd.DataFrame | None = None

    @cached_property
    def agg(self) -> pd.DataFrame:
        """One row per configuration (data set × architecture label × dequantization)."""
        return aggregate(self.runs, METRICS)

    @cached_property
    def per_arch(self) -> pd.DataFrame:
        """One row per data set and architecture label (dequantization schemes pooled)."""
        return aggregate(self.runs, METRICS, by=("dataset", "arch_label"))

    @cached_property
    def timed(self) -> pd.DataFrame:
        """The finished runs with a finite score (those whose timings are shown)."""
        return self.runs[self.runs["ok"]]

    @cached_property
    def pairs(self) -> pd.DataFrame:
        """Every pair of configurations of each data set, tested once
        (:func:`harness.report.pairwise.pairs_frame`)."""
        return pairs_frame(self.runs)


Figure = Callable[[pd.DataFrame, str], go.Figure]


def per_dataset(runs: pd.DataFrame, frame: pd.DataFrame, anchor: str, title: str,
                make: Figure, caption: str) -> Section:
    """One panel per data set of ``frame`` (id ``<anchor>-<data set>``), its caption ending
    with the provenance of that data set's ``runs``; a note when there is none."""
    sec = Section(anchor, title)
    for dataset in pd.unique(frame["dataset"]) if len(frame) else []:
        part = frame[frame["dataset"] == dataset].reset_index(drop=True)
        sub = runs[runs["dataset"] == dataset]
        sec.panels.append(Panel(f"{anchor}-{slug(str(dataset))}",
                                f"{caption} {provenance(sub)}", part,
                                make(part, f"{title}: {dataset}")))
    if not sec.panels:
        sec.note = (f"Nothing to draw: no finished run in this suite recorded what "
                    f"{title.lower()} needs.")
    return sec


def single(anchor: str, title: str, frame: pd.DataFrame, make: Figure, caption: str,
           runs: pd.DataFrame, after: str = "", timing: bool = True) -> Section:
    """One panel (id ``anchor``) of ``frame``, its caption ending with the provenance of
    ``runs`` (with their timing set-up unless ``timing`` is False), then ``after`` (trusted
    HTML); a note when ``frame`` is empty."""
    sec = Section(anchor, title)
    if frame.empty:
        sec.note = f"Nothing to draw: no run in this suite recorded what {title.lower()} needs."
        return sec
    sec.panels.append(Panel(anchor, f"{caption} {provenance(runs, timing)}", frame,
                            make(frame, title), Raw(after)))
    return sec
