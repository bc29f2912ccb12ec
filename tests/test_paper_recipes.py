"""The papers' tabular recipes end to end on small files in the real formats.

The MAF archive cannot be downloaded here, so the five data sets are written at a few
hundred rows each in the archive's own formats (``tests/tabular_fixtures.py``). Then:
``nfbench plan suites/maf-paper.yaml --data-dir FIXTURES`` plans every job; a suite derived from
the recipe, changed only in its budget (a few steps), its matrix (one data set, one seed) and with
timing off, runs ONE job through ``nfbench run --backend inline`` into a real SQLite MLflow store
and finishes, batch normalisation and early stopping included; ``suites/nsf-paper.yaml`` plans too;
and every published tabular figure the report can show names its paper and table.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness import keys
from harness.cli import main
from harness.report.published import published_for, published_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tabular_fixtures import write_tabular_fixtures

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    pytest.importorskip("h5py")
    return write_tabular_fixtures(tmp_path_factory.mktemp("maf-archive"))


@pytest.fixture(autouse=True)
def _no_system_metrics(monkeypatch):
    monkeypatch.setenv("NFBENCH_SYSTEM_METRICS", "off")


@pytest.mark.parametrize("recipe", ["maf-paper", "nsf-paper"])
def test_the_recipes_plan_on_the_archive_layout(recipe, fixtures, capsys):
    # the pre-flight of these wide, deep flows on 63 dimensions takes minutes on a shared
    # 2-core machine; the families' exactness with batch_norm is tested in tests/flows
    assert main(["plan", str(ROOT / "suites" / f"{recipe}.yaml"), "--no-preflight",
                 "--data-dir", str(fixtures)]) == 0
    out = capsys.readouterr().out
    assert f"suite {recipe}: " in out
    for dataset in ("power", "gas", "hepmass", "miniboone", "bsds300"):
        assert f" {dataset} " in out, dataset


def test_maf_recipe_runs_one_short_job_to_finished(fixtures, tmp_path, sqlite_uri, monkeypatch):
    recipe = yaml.safe_load((ROOT / "suites" / "maf-paper.yaml").read_text())
    maf = recipe["matrix"]["architectures"][1]
    assert maf["label"] == "maf5-h100-relu" and maf["batch_norm"] is True
    small = {
        **recipe,
        "name": "maf-paper-ci",
        "matrix": {**recipe["matrix"], "architectures": [maf], "datasets": ["power"],
                   "seeds": [0]},
        "include": [{"arch": maf["label"], "dataset": "power"}],
        "train": {**recipe["train"], "steps": 12, "eval_every": 4, "checkpoint_every": 8,
                  "log_every": 4},
        "timing": {"enabled": False},
        "resources": {"cpus": 1},
    }
    # the recipe's protocol stays: batch 100, Adam 1e-4, weight decay, patience in epochs
    assert small["train"]["batch_size"] == 100 and small["train"]["patience_epochs"] == 30
    path = tmp_path / "maf-paper-ci.yaml"
    path.write_text(yaml.safe_dump(small))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path), "--backend", "inline", "--tracking-uri", sqlite_uri,
                 "--data-dir", str(fixtures), "--no-report"]) == 0
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("maf-paper-ci").experiment_id])
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    assert tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
    assert tags[keys.TAG_STOPPED_BY] == keys.STOP_STEPS  # 30 epochs are far beyond 12 steps
    assert metrics[keys.TRAIN_STEPS_DONE] == 12
    assert math.isfinite(metrics[keys.EVAL_NLL]) and math.isfinite(metrics[keys.EVAL_VAL_NLL])
    assert params["arch.batch_norm"] == "True" and float(params["train.patience_epochs"]) == 30
    assert params["data.dims"] == "6"


def test_every_published_tabular_figure_names_its_paper_and_table():
    table = published_table()
    tabular = table[table["unit"] == "nats"]
    assert len(tabular) and tabular["source"].str.contains(r"\bTable \d").all()
    papers = {"MAF": "Papamakarios", "NSF": "Durkan", "FFJORD": "Grathwohl"}
    for source in tabular["source"].unique():
        assert any(author in source for author in papers.values()), source
    maf = published_for("power", "maf")
    assert {"MAF (5)", "MAF (10)", "MAF (re-run)"} <= set(maf["model"])
    row = maf[maf["model"] == "MAF (5)"].iloc[0]
    assert row["value"] == pytest.approx(-0.14) and "Table 1" in row["source"]
    assert "Papamakarios" in row["source"]
    nsf = published_for("miniboone", "nsf-ar")
    assert nsf.iloc[0]["value"] == pytest.approx(9.22) and "Durkan" in nsf.iloc[0]["source"]
