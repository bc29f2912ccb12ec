"""``nfbench plan SUITE --seeds-for D``: how many seeds would detect a difference of D.

From the finished runs of the suite in the store: per data set, the pooled standard
deviation over seeds of its flows and the seeds per configuration that a two-sided
two-sample t-test at α = 0.05 needs to detect D with 80 % power
(:func:`harness.report.sections.seeds.seeds_frame`).
"""

from __future__ import annotations

import math

from ..tracking.read import UnknownSuiteError, load_runs
from ..tracking.uri import mask_uri
from .sections.seeds import seeds_frame
from .table import prepare

__all__ = ["NoRunsError", "seeds_plan"]


class NoRunsError(LookupError):
    """The store holds no finished run of the suite."""


def seeds_plan(uri: str, suite: str, difference: float) -> str:
    """The table as text.

    Raises:
        NoRunsError: the store has no experiment for ``suite``, or no finished run in it.
    """
    try:
        runs = prepare(load_runs(uri, [suite]))
    except UnknownSuiteError:
        raise NoRunsError(f"the store {mask_uri(uri)} has no runs of suite {suite!r}") from None
    if not runs["ok"].any():
        raise NoRunsError(f"suite {suite!r} has no finished run in {mask_uri(uri)}")
    frame = seeds_frame(runs, differences=(difference,))
    need_col = frame.columns[-1]
    lines = [(f"seeds to detect a difference of {difference:g} (bpd or nats) between two "
              "configurations at 80 % power (two-sided two-sample t-test, α = 0.05), from the "
              f"spread over seeds of the finished flows of {suite!r} in {mask_uri(uri)}:")]
    header = (f"{'data set':28} {'unit':5} {'configs':>7} {'pooled sd':>10} {'largest sd':>10} "
              f"{'seeds now':>9} {'seeds needed':>12}")
    lines += [header, "-" * len(header)]
    for r in frame.to_dict("records"):
        need = r[need_col]
        row = (f"{str(r['dataset'])[:28]:28} {r['unit']:5} {r['configs']:>7} "
               f"{r['pooled_sd']:>10.4g} {r['max_sd']:>10.4g} {r['seeds_now']:>9} ")
        if isinstance(need, float) and math.isnan(need):
            row += f"{'—':>12}  (no configuration has two seeds: run two to see the spread)"
        else:
            row += f"{int(need):>12}"
        lines.append(row)
    return "\n".join(lines)
