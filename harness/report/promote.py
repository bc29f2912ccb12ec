"""``nfbench promote``: each data set's best flow of a suite, registered under an alias.

The choice is the report's own (:func:`harness.report.pairwise.seed_frame`, the
leaderboard's "against the best" column): per data set, the configurations *tied with the
best* (the lowest mean score over seeds, and every configuration whose Holm-corrected p against
it is ≥ 0.05) are one group; the tie is broken by the mean over seeds, among the
configurations whose runs logged a flow (a closed-form reference row has none). Of the chosen
configuration, the finished run with the lowest score is registered: its LoggedModel becomes a
version of the registered model named after the suite, with the alias ``best-<data set>``
(:func:`alias_for`), so that ``mlflow.pyfunc.load_model("models:/SUITE@best-moons")`` loads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from .. import keys
from .pairwise import seed_frame
from .stats import ALPHA

__all__ = ["Choice", "alias_for", "choose", "describe", "promote"]


@dataclass(frozen=True)
class Choice:
    """One data set's pick: the configuration, its mean over seeds, the tie it was picked
    from (configuration → mean, best first), and the run and model registered."""

    dataset: str
    config: str
    mean: float
    n_seeds: int
    tied: dict[str, float]
    run_id: str
    model_id: str
    score: float
    without_model: tuple[str, ...] = ()  # tied configurations passed over: no logged flow

    @property
    def alias(self) -> str:
        return alias_for(self.dataset)


def alias_for(dataset: str) -> str:
    """``best-<data set>``: the data set's label, lower case, with runs of other characters
    than letters, digits and ``_`` as one ``-`` (``digits(flatten=True)`` →
    ``best-digits-flatten-true``), as MLflow's aliases allow."""
    return "best-" + (re.sub(r"[^a-z0-9_]+", "-", dataset.lower()).strip("-") or "data")


def choose(runs: pd.DataFrame, alpha: float = ALPHA) -> tuple[list[Choice], list[str]]:
    """Per data set of ``runs`` (:func:`harness.report.table.prepare`'s table), the
    :class:`Choice` (see the module docstring), and a line for each data set with none."""
    seeds = seed_frame(runs, alpha)
    ok = runs[runs["ok"].astype(bool)] if len(runs) else runs
    model_col = ok.get(keys.TAG_MODEL, pd.Series(None, index=ok.index, dtype=object))
    with_model = ok[model_col.notna() & (model_col.astype(str) != "")]
    choices, missing = [], []
    for dataset, part in seeds.groupby("dataset", sort=True):
        tie = part[part["vs_best"].isin(["best", "tied"])].sort_values("mean", kind="stable")
        tied = dict(zip(tie["config"], tie["mean"].astype(float)))
        mine = with_model[with_model["dataset"] == dataset]
        passed = tuple(c for c in tied if c not in set(mine["config"]))
        pick = next((c for c in tied if c not in passed), None)
        if pick is None:
            missing.append(f"{dataset}: no configuration tied with the best logged a flow "
                           f"({', '.join(tied)}); nothing registered")
            continue
        row = tie[tie["config"] == pick].iloc[0]
        run = mine[mine["config"] == pick].sort_values("score", kind="stable").iloc[0]
        choices.append(Choice(str(dataset), str(pick), float(row["mean"]), int(row["n_seeds"]),
                              tied, str(run["run_id"]), str(run[keys.TAG_MODEL]),
                              float(run["score"]), passed))
    return choices, missing


def describe(c: Choice, unit: str, version: int | None, name: str) -> list[str]:
    """The lines ``nfbench promote`` prints for one choice."""
    others = [f"{k} {v:.4f}" for k, v in c.tied.items() if k != c.config]
    lines = [f"{c.dataset}: {c.config} (mean {c.mean:.4f} {unit} over {c.n_seeds} seed(s))",
             "  tied with the best: " + ("; ".join(others) if others else "none")]
    if c.without_model:
        lines.append(f"  passed over (no logged flow): {', '.join(c.without_model)}")
    where = f"models:/{name}@{c.alias}" + (f" (version {version})" if version else "")
    lines.append(f"  {where} ← run {c.run_id}, {unit} {c.score:.4f}, model {c.model_id}")
    return lines


def promote(suite: str, tracking_uri: str | None, out: Callable[[str], None] = print,
            name: str | None = None) -> list[Choice]:
    """Register each data set's best flow of ``suite`` (see the module docstring) under
    ``models:/NAME@best-<data set>`` (NAME: ``name`` or the suite's); prints the picks and
    their ties."""
    from mlflow.tracking import MlflowClient

    from ..tracking import resolve_uri
    from ..tracking.models import register
    from ..tracking.read import load_runs
    from .table import prepare

    uri = resolve_uri(tracking_uri)
    runs = prepare(load_runs(uri, [suite]))
    choices, missing = choose(runs)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = name or suite
    units = dict(zip(runs["dataset"], runs["unit"])) if len(runs) else {}
    for c in choices:
        version = register(client, name, c.alias, c.model_id, c.run_id,
                           description=f"The best flow per data set of suite {suite} "
                                       "(nfbench promote)")
        for line in describe(c, units.get(c.dataset, ""), version, name):
            out(line)
    for line in missing:
        out(line)
    if not choices and not missing:
        out(f"{suite}: no finished run with a score; nothing registered")
    return choices
