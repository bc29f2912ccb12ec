"""The compile panel: compiled runs paired with eager ones, ratios, compile time, break-even;
runtimes kept apart in the leaderboards; nothing shown for a suite with one runtime."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import COMPILE_S, COMPILED_SPEED

from harness import keys
from harness.report.sections.compiled import OPERATIONS, break_even, compile_frame
from harness.report.table import aggregate, prepare
from harness.tracking.read import load_runs


@pytest.fixture(scope="module")
def compiled(store) -> pd.DataFrame:
    return prepare(load_runs(store.uri, ["compiled"]))


def test_runtime_column_and_labels_keep_runtimes_apart(compiled, store):
    assert set(compiled["runtime"]) == {"eager", "compile"}
    for row in compiled.itertuples():
        want = row.base_label + (" · compile" if row.runtime == "compile" else "")
        assert row.arch_label == want and row.config == want
    agg = aggregate(compiled, [keys.PERF_DENSITY_MS])
    assert len(agg) == 4  # two architectures × two runtimes: never pooled
    # a store written before the runtime axis: every run eager, labels unchanged
    zoo = prepare(load_runs(store.uri, ["solo"]))
    assert set(zoo["runtime"]) == {"eager"} and (zoo["arch_label"] == zoo["base_label"]).all()


def test_compile_frame_against_the_written_runs(compiled, store):
    frame = compile_frame(compiled)
    assert set(frame["operation"]) == set(OPERATIONS)
    truths = store.runs("compiled")
    eager = {(t.arch, t.seed): t.metrics for t in truths if keys.TAG_RUNTIME not in t.tags}
    for row in frame.itertuples(index=False):
        arch = "realnvp" if row.architecture.lower().startswith("realnvp") else "maf"
        key = OPERATIONS[row.operation]
        e_ms = sum(eager[(arch, s)][key] for s in (0, 1)) / 2
        assert row.pairs == 2 and row.runtime == "compile"
        assert row.ratio == pytest.approx(COMPILED_SPEED[arch], rel=1e-9)
        assert row.eager_ms == pytest.approx(e_ms, rel=1e-9)
        assert row.compiled_ms == pytest.approx(COMPILED_SPEED[arch] * e_ms, rel=1e-9)
        assert row.compile_s == COMPILE_S
        if COMPILED_SPEED[arch] < 1:
            want = 1000 * COMPILE_S / (e_ms - COMPILED_SPEED[arch] * e_ms)
            assert row.break_even == pytest.approx(want, rel=1e-9)
        else:
            assert row.break_even is None or math.isnan(row.break_even)


def test_break_even_formula():
    assert break_even(10.0, 3.0, 1.0) == pytest.approx(5000.0)
    assert break_even(10.0, 1.0, 1.0) is None and break_even(10.0, 1.0, 2.0) is None
    assert break_even(math.nan, 3.0, 1.0) is None


def test_no_panel_without_both_runtimes(store, compiled):
    assert compile_frame(prepare(load_runs(store.uri, ["solo"]))).empty
    assert compile_frame(compiled[compiled["runtime"] == "compile"]).empty


def test_compiled_suite_page_has_the_panel(compiled_site):
    html = compiled_site.read_text()
    assert 'id="compile"' in html and "break-even batches" in html and "never" in html


def _with_blocks(runs: pd.DataFrame, compiled_factor: dict[str, float] | None) -> pd.DataFrame:
    """The runs with recorded blocks (16, log-normal σ 0.05) around each eager run's times:
    a compiled run's times are the eager run's × ``compiled_factor`` of its arch (None: the
    written runs' own factor)."""
    import json

    rng = np.random.default_rng(7)
    eager = runs[runs["runtime"] == "eager"].set_index(["arch", "seed"])
    tags = []
    for r in runs.itertuples(index=False):
        base = eager.loc[(r.arch, r.seed)]
        factor = 1.0 if r.runtime == "eager" else (
            COMPILED_SPEED[r.arch] if compiled_factor is None else compiled_factor[r.arch])
        tags.append(json.dumps({key: list(base[key] * factor
                                          * np.exp(0.05 * rng.standard_normal(16)))
                                for key in OPERATIONS.values()}))
    return runs.assign(**{keys.TAG_TIMING_BLOCKS: tags})


def test_compiled_ratios_carry_a_bootstrap_interval_and_a_verdict(compiled):
    """Blocks recorded: realnvp compiled 2× faster is resolved (interval about 0.5, below 1),
    maf 1.25× slower is resolved slower; the same times on both sides are 'not resolved'."""
    from harness.report.sections.compiled import figure_compile

    frame = compile_frame(_with_blocks(compiled, None))
    for row in frame.itertuples(index=False):
        arch = "realnvp" if row.architecture.lower().startswith("realnvp") else "maf"
        truth = COMPILED_SPEED[arch]
        assert row.ratio_lo < row.ratio < row.ratio_hi
        assert row.ratio_lo <= truth * 1.05 and row.ratio_hi >= truth / 1.05
        assert row.verdict == ("compiled faster" if truth < 1 else "compiled slower")
    bars = figure_compile(frame).data
    assert all(bar.error_y.visible and max(bar.error_y.array) > 0 for bar in bars)
    same = compile_frame(_with_blocks(compiled, {"realnvp": 1.0, "maf": 1.0}))
    assert (same["verdict"] == "not resolved").all()
    assert ((same["ratio_lo"] < 1) & (same["ratio_hi"] > 1)
            | (same["ratio_lo"] >= 0.95) & (same["ratio_hi"] <= 1.05)).all()
