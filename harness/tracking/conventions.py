"""MLflow's own conventions, so that nfbench's runs read in MLflow's UI as MLflow's own do.

* **Experiment kind.** A suite's experiment carries ``mlflow.experimentKind`` =
  ``custom_model_development`` (MLflow's name for "model training"); the driver sets it on a
  new experiment and on one created before (when missing). MLflow 3's UI reads it to choose
  an experiment's tabs; MLflow 3.17's UI, though, follows its own "GenAI / Model training"
  switch (kept in the browser, GenAI at first), which a link sets with the query parameter
  ``workflowType=machine_learning``. Every MLflow UI link nfbench prints (:func:`ui_url`)
  carries it, so it opens on the runs table whatever the browser chose before.
* **Source.** The code revision of a run goes in MLflow's source tags:
  ``mlflow.source.git.commit`` (the git revision, without nfbench's ``+dirty`` mark, which
  stays in ``nfbench.revision``), ``mlflow.source.name`` (``nfbench run SUITE``) and
  ``mlflow.source.type`` (``LOCAL``). The runs table's Source and Version columns show them.
* **Description.** A run's description (``mlflow.note.content``) is a one-line summary of its
  job: architecture, data set, dequantization, seed, budget, suite and key.
* **Dataset input.** Every run logs its data set as an MLflow dataset input: the registry name,
  a digest (the first :data:`DIGEST_LEN` hex digits of the data fingerprint, whose full value
  is the run parameter ``data.fingerprint``; MLflow caps a digest at 36 characters), the data
  options as its source (JSON, source type ``nfbench``) and the split sizes as its profile.
  The runs table's Dataset column and its dataset filters then work.
* **Nested runs.** A run made under another (a tuning trial under its study) carries
  ``mlflow.parentRunId`` (:func:`nested_under`); the UI folds it under its parent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DATASET_SOURCE_TYPE",
    "DIGEST_LEN",
    "EXPERIMENT_KIND",
    "MODEL_DEVELOPMENT",
    "NOTE",
    "PARENT_RUN",
    "SOURCE_COMMIT",
    "SOURCE_NAME",
    "SOURCE_TYPE",
    "dataset_input",
    "experiment_tags",
    "job_note",
    "nested_under",
    "source_tags",
    "ui_url",
]

EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"  # MLflow 3.x's value for model training
SOURCE_COMMIT = "mlflow.source.git.commit"
SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
NOTE = "mlflow.note.content"
PARENT_RUN = "mlflow.parentRunId"
DATASET_CONTEXT = "mlflow.data.context"  # an input tag: which use of the data set
DATASET_SOURCE_TYPE = "nfbench"
DIGEST_LEN = 16
DIRTY = "+dirty"
UI_MODE = "workflowType=machine_learning"  # MLflow 3.17's UI: the "Model training" side
NOTE_MAX = 1000  # characters of a run description


def experiment_tags() -> dict[str, str]:
    """Tags a suite's experiment carries so that MLflow's UI opens it on its runs table."""
    return {EXPERIMENT_KIND: MODEL_DEVELOPMENT}


def source_tags(revision: str, suite: str) -> dict[str, str]:
    """MLflow's source tags for a run of ``suite`` made by code at ``revision``
    (``nfbench.revision``'s form: a git revision, ``+dirty`` with local changes, or
    ``vX.Y.Z`` outside a checkout)."""
    tags = {SOURCE_NAME: f"nfbench run {suite}", SOURCE_TYPE: "LOCAL"}
    commit = revision.removesuffix(DIRTY)
    if commit and not commit.startswith("v"):  # a package version is no commit
        tags[SOURCE_COMMIT] = commit
    return tags


def job_note(axes: Mapping[str, Any], train: Mapping[str, Any], suite: str, key: str) -> str:
    """One line describing a job: ``axes`` (arch, dataset, dequant, seed display names),
    its ``train`` section, its suite and key."""
    budget = []
    if train.get("steps"):
        budget.append(f"{train['steps']:,} steps")
    if train.get("minutes"):
        budget.append(f"{train['minutes']:g} min")
    opt = train.get("optimizer") or {}
    text = (f"{axes['arch']} on {axes['dataset']}, dequantization {axes['dequant']}, "
            + ("" if axes.get("runtime", "eager") == "eager" else f"runtime {axes['runtime']}, ")
            + f"seed {axes['seed']}: {' or '.join(budget) or 'no budget'} of batch "
            f"{train.get('batch_size', '?')}"
            + (f", {opt['name']} lr {opt['lr']:g}" if opt.get("name") and opt.get("lr") else "")
            + f" (nfbench suite {suite}, job {key})")
    return text if len(text) <= NOTE_MAX else text[: NOTE_MAX - 1] + "…"


def dataset_input(name: str, fingerprint: str, options: Mapping[str, Any],
                  splits: Mapping[str, Any], context: str = "train"):
    """The MLflow dataset input of a data set: ``name`` (registry name), the first
    :data:`DIGEST_LEN` hex digits of ``fingerprint`` as digest, ``options`` (the job's data
    options, JSON) as source, ``splits`` (sizes) as profile."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    if not fingerprint:
        raise ValueError(f"data set {name!r} has no fingerprint to use as its digest")
    source = json.dumps(dict(options), sort_keys=True, default=str)
    profile = json.dumps({k: v for k, v in splits.items()}, sort_keys=True, default=str)
    dataset = Dataset(name=name, digest=fingerprint[:DIGEST_LEN],
                      source_type=DATASET_SOURCE_TYPE, source=source, profile=profile)
    return DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT, context)])


def nested_under(parent_run_id: str) -> dict[str, str]:
    """The tag that nests a new run under ``parent_run_id`` in MLflow's UI (pass it to
    ``create_run(tags=…)``; the parent must be in the same experiment)."""
    if not parent_run_id:
        raise ValueError("nested_under needs the parent's run id")
    return {PARENT_RUN: parent_run_id}


def ui_url(ui_base: str, experiment_id: str, run_id: str | None = None,
           tab: str | None = None) -> str:
    """The MLflow UI's page of an experiment's runs table, or of one run (``tab``: one of its
    tabs, e.g. ``system-metrics``), opened on the UI's model-training side."""
    page = f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs"
    if run_id:
        page += f"/{run_id}" + (f"/{tab}" if tab else "")
    return f"{page}?{UI_MODE}"
