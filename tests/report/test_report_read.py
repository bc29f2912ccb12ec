"""Reading MLflow back: the runs table and the curves table equal what was written."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness import keys
from harness.tracking.read import UnknownSuiteError, load_curves, load_runs


def test_runs_table_holds_every_tag_param_and_metric_as_written(store):
    runs = load_runs(store.uri, ["zoo"]).set_index("run_id")
    truths = store.runs("zoo")
    assert sorted(runs.index) == sorted(t.run_id for t in truths)
    assert (runs["experiment"] == "zoo").all()
    for t in truths:
        row = runs.loc[t.run_id]
        for tag, value in t.tags.items():
            assert str(row[tag]) == value, (t.run_id, tag)
        for name, value in t.params.items():
            got = row[name]
            assert (float(got) == float(value)) if isinstance(got, (int, float, np.number)) \
                else got == value, (t.run_id, name)
        for metric in [c for c in runs.columns if "/" in c]:
            want = t.metrics.get(metric)
            if want is not None:
                assert row[metric] == pytest.approx(want, rel=1e-12), (t.run_id, metric)
            elif t.curves.empty or metric not in set(t.curves["key"]):
                assert math.isnan(row[metric]), (t.run_id, metric)
    mlflow_status = {keys.STATUS_FAILED: "FAILED", keys.STATUS_KILLED: "KILLED"}
    for t in truths:
        assert runs.loc[t.run_id, "mlflow_status"] == mlflow_status.get(t.status, "FINISHED")


def test_numeric_params_become_numbers(store):
    runs = load_runs(store.uri, ["zoo"])
    assert pd.api.types.is_numeric_dtype(runs["data.dims"])
    assert pd.api.types.is_numeric_dtype(runs[keys.TAG_SEED])
    assert not pd.api.types.is_numeric_dtype(runs["train.optimizer"])
    assert set(runs["data.dims"]) == {2, 6, 64, 784}


def test_sqlite_fast_path_equals_search_runs(store):
    suites = ["solo", "zoo", "revs"]
    fast = load_runs(store.uri, suites)
    slow = load_runs(store.uri, suites, fast=False)
    pd.testing.assert_frame_equal(fast, slow)
    # suites in the order given, each in start order
    assert list(pd.unique(fast["experiment"])) == suites


@pytest.mark.parametrize("fast", [True, False])
def test_unknown_suite_names_the_suites_there_are(store, fast):
    with pytest.raises(UnknownSuiteError) as err:
        load_runs(store.uri, ["zoo", "smoek"], fast=fast)
    assert "'smoek'" in str(err.value) and "'zoo'" in str(err.value)
    assert err.value.missing == ["smoek"]


def _truth_curves(truths) -> pd.DataFrame:
    parts = [t.curves.assign(run_id=t.run_id) for t in truths if not t.curves.empty]
    df = pd.concat(parts, ignore_index=True)[["run_id", "step", "wall_s", "key", "value"]]
    return df.sort_values(["run_id", "key", "step"]).reset_index(drop=True)


def test_curves_from_parquet_and_history_equal_what_was_logged(store):
    truths = store.runs("zoo")
    runs = load_runs(store.uri, ["zoo"])
    curves = load_curves(store.uri, runs)
    want = _truth_curves(truths)
    assert list(curves.columns) == ["run_id", "step", "wall_s", "key", "value"]
    assert curves["step"].dtype == np.int64 and curves["value"].dtype == np.float64
    got = curves.reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["run_id", "step", "key"]], want[["run_id", "step", "key"]],
                                  check_dtype=False)
    np.testing.assert_allclose(got["value"], want["value"], rtol=1e-12, equal_nan=True)
    # the failed run had no Parquet artifact: its curves came from the metric histories,
    # with the training clock taken from train/wall_s
    failed = [t for t in truths if not t.curves_in_parquet]
    assert len(failed) == 1
    mine = got[got["run_id"] == failed[0].run_id]
    theirs = want[want["run_id"] == failed[0].run_id]
    assert len(mine) == len(theirs) > 0
    np.testing.assert_allclose(mine["wall_s"], theirs["wall_s"], rtol=1e-9, atol=1e-9)


def test_curves_without_history_fallback_and_by_key(store):
    runs = load_runs(store.uri, ["zoo"])
    failed = runs.loc[runs[keys.TAG_STATUS] == keys.STATUS_FAILED, "run_id"].tolist()
    no_fallback = load_curves(store.uri, runs, history_fallback=False)
    assert not no_fallback["run_id"].isin(failed).any()
    only = load_curves(store.uri, runs, keys_wanted=[keys.TRAIN_NLL, keys.VAL_BPD])
    assert set(only["key"]) == {keys.TRAIN_NLL, keys.VAL_BPD}
    full = no_fallback[no_fallback["key"].isin([keys.TRAIN_NLL, keys.VAL_BPD])]
    assert len(only[~only["run_id"].isin(failed)]) == len(full)


def test_curves_through_a_remote_artifact_store(store):
    """Runs whose artifacts are not a local folder are downloaded (in threads); a run without
    the artifact (the failed one) falls back on its metric histories there too."""
    zoo = load_runs(store.uri, ["zoo"])
    runs = pd.concat([zoo[zoo[keys.TAG_STATUS] == keys.STATUS_FAILED], zoo.iloc[:3]])
    local = load_curves(store.uri, runs)
    remote = load_curves(store.uri, runs.assign(artifact_uri="mlflow-artifacts:/elsewhere"))
    pd.testing.assert_frame_equal(local, remote)
    assert local["run_id"].nunique() == 4


def test_empty_inputs_and_infinities(store):
    assert load_curves(store.uri, load_runs(store.uri, ["solo"]).iloc[:0]).empty
    for fast in (True, False):
        bare = load_runs(store.uri, ["bare"], fast=fast).set_index(keys.TAG_ARCH)
        assert bare[keys.EVAL_NLL].to_dict() == {"realnvp": 1.7, "maf": 1.9, "glow": np.inf}
    assert load_curves(store.uri, bare.reset_index()).empty
