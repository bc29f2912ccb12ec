"""The sample gallery: the samples.png of each configuration's best finished seed (image
grids for image data, model density heat maps for 2-D data), as its run logged it.

Its frame is files: :func:`collect` copies each image beside the page (the writer calls it,
once per page) and returns the rows :func:`build` shows (:data:`~.base.SAMPLE_COLUMNS`).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from ... import keys
from ...tracking.read import local_artifact_path
from ..html import Raw, e
from ..page import Panel, Section
from .base import SAMPLE_COLUMNS, Context

__all__ = ["ANCHOR", "TITLE", "build", "collect"]

ANCHOR = "samples"
TITLE = "Samples"


@functools.lru_cache(maxsize=4)
def _client(uri: str):
    """An MLflow client, made only when needed (creating one opens the store: ~1 s)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def collect(runs: pd.DataFrame, uri: str, folder: Path, prefix: str,
            written: list[Path]) -> pd.DataFrame:
    """Copy the samples.png of each configuration's best finished seed into ``folder`` (each
    copy added to ``written``); one row per image, ``src`` = ``prefix/<run id>.png``."""
    ok = runs[runs["ok"]].sort_values("score", kind="stable")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _, best in ok.groupby(["dataset", "config"], sort=True):
            run = best.iloc[0]
            target = folder / f"{run['run_id']}.png"
            local = local_artifact_path(run["artifact_uri"], keys.ART_SAMPLES)
            try:
                if local is not None:
                    if not local.is_file():
                        continue
                    source = local
                else:
                    source = Path(_client(uri).download_artifacts(run["run_id"],
                                                                  keys.ART_SAMPLES, tmp))
            except (MlflowException, OSError):  # no samples.png for this run
                continue
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
            rows.append([run["run_id"], run["dataset"], run["config"], run["seed"], run["url"],
                         f"{prefix}/{target.name}"])
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def build(ctx: Context) -> Section:
    """The gallery (trusted HTML) and its rows as the data of a panel drawn by nothing."""
    samples = ctx.samples
    sec = Section(ANCHOR, TITLE)
    if samples.empty:
        sec.note = "No run logged a samples.png artifact."
        return sec
    items = []
    for s in samples.itertuples(index=False):
        items.append(f'<figure><a href="{e(s.url)}"><img src="{e(s.src)}" alt="{e(s.config)} '
                     f'on {e(s.dataset)}"></a><figcaption>{e(s.config)} · '
                     f"{e(s.dataset)} · seed {e(s.seed)}</figcaption></figure>")
    sec.html = Raw(
        '<p class="caption">Samples drawn from each configuration\'s best seed (image grids '
        "for image data, model density heat maps for 2-D data), as logged by the run "
        f'(artifact {e(keys.ART_SAMPLES)}); click one to open its run.</p>'
        f'<div class="gallery">{"".join(items)}</div>')
    sec.panels.append(Panel("samples", "samples shown", samples))
    return sec
