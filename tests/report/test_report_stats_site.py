"""The statistics of a report page against the truth the synthetic store was written with:
seed intervals and the tied group on the leaderboards, the ranks and critical difference,
the aggregate score, the seeds needed; ``nfbench plan --seeds-for``; and the new figures in
headless Chromium (offline, no console errors)."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from report_synth import fill_suite
from scipy import stats as sps

from harness.cli import main
from harness.report import stats, write_report
from harness.report.page import slug

RANKED = [(a, d, "none" if d in ("moons", "8gaussians", "power") else "uniform", [0, 1, 2])
          for a in ("realnvp", "glow", "nsf-coupling", "ffjord", "gaussian")
          for d in ("moons", "8gaussians", "power", "digits", "mnist")]
SUITE = "ranked"


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    """Five architectures × five data sets × three seeds, every cell finished."""
    root = tmp_path_factory.mktemp("ranked")
    uri = f"sqlite:///{root / 'm.db'}"
    truths = fill_suite(uri, SUITE, RANKED, artifact_root=root / "art", points=5,
                        samples=False, histories=False)
    fill_suite(uri, "one-seed", [("realnvp", "moons", "none", [0])], artifact_root=root / "art",
               points=5, samples=False, histories=False)
    site = write_report([SUITE], uri, root / "site")
    front = write_report([SUITE, "one-seed"], uri, root / "front")
    return uri, truths, site, front


def _truth_scores(truths) -> pd.DataFrame:
    rows = []
    for t in truths:
        score = t.metrics.get("eval/bpd", t.metrics.get("eval/nll"))
        rows.append([t.dataset, t.arch_label, t.seed, score, t.arch])
    return pd.DataFrame(rows, columns=["dataset", "label", "seed", "score", "arch"])


def _figure(page: Path, fig_id: str) -> dict:
    text = page.read_text()
    m = re.search(rf'data-target="fig-{re.escape(fig_id)}">(.*?)</script>', text, re.DOTALL)
    assert m, fig_id
    return json.loads(m.group(1))


def test_ranks_and_critical_difference_match_scipy_and_demsar(ranked):
    _, truths, site, _ = ranked
    truth = _truth_scores(truths)
    matrix = truth.pivot_table(index="dataset", columns="label", values="score",
                               aggfunc="mean")
    data = pd.read_csv(site.parent / "data" / "ranks.csv")
    assert data["friedman_p"].iloc[0] == pytest.approx(
        sps.friedmanchisquare(*matrix.T.values).pvalue)
    k, n = matrix.shape[1], matrix.shape[0]
    assert data["cd"].iloc[0] == pytest.approx(2.728 * math.sqrt(k * (k + 1) / (6 * n)),
                                               rel=2e-3)  # Demšar's q_0.05 for k = 5
    ranks = matrix.rank(axis=1).mean()
    assert dict(zip(data["config"], data["meanrank"])) == pytest.approx(ranks.to_dict())
    fig = _figure(site, "ranks")
    labels = [t for tr in fig["data"] for t in (tr.get("text") or []) if "(" in str(t)]
    assert len(labels) == k and any("CD = " in str(t) for tr in fig["data"]
                                    for t in (tr.get("text") or []))


def test_leaderboards_show_seed_intervals_and_the_tied_group(ranked):
    _, truths, site, _ = ranked
    truth = _truth_scores(truths)
    board = pd.read_csv(site.parent / "data" / f"leaderboard-{slug('moons')}.csv")
    for r in board.itertuples(index=False):
        values = truth[(truth["dataset"] == "moons") & (truth["label"] == r.config)]["score"]
        assert (r.ci_lo, r.ci_hi) == pytest.approx(stats.seed_interval(values.to_numpy()))
        assert r.ci_lo <= r.score <= r.ci_hi
    assert (board["vs_best"] == "best").sum() == 1
    assert set(board["vs_best"]) <= {"best", "tied", "worse"}
    text = site.read_text()
    assert "mean [95 % CI]" in text and ("tied with best (p = " in text
                                         or "worse (p = " in text)
    fig = _figure(site, f"leaderboard-{slug('moons')}")
    flows = next(t for t in fig["data"] if t.get("name") == "flows")
    assert "arrayminus" in flows["error_x"]  # intervals, not ± std
    if (board["vs_best"] == "tied").any():
        assert any(t.get("name") == "tied with the best" for t in fig["data"])


def test_pairs_use_paired_tests_over_shared_seeds(ranked):
    site = ranked[2]
    pairs = pd.read_csv(site.parent / "data" / f"pairs-{slug('power')}.csv")
    assert len(pairs) == 10 and set(pairs["test"]) == {"paired t"}
    assert pairs["p_holm"].tolist() == pytest.approx(stats.holm(pairs["p"]).tolist())


def test_aggregate_and_seeds_needed(ranked):
    _, truths, site, _ = ranked
    agg = pd.read_csv(site.parent / "data" / "aggregate.csv")
    assert (agg["n_datasets"] == 5).all()
    assert ((agg["ci_lo"] <= agg["score"]) & (agg["score"] <= agg["ci_hi"])).all()
    gaussian = agg[agg["config"] == "gaussian"].iloc[0]
    assert gaussian["score"] == pytest.approx(0.0, abs=0.05)  # the reference row is 0
    assert agg["score"].max() <= 1.0
    truth = _truth_scores(truths)
    seeds = pd.read_csv(site.parent / "data" / "seeds-needed.csv")
    moons = truth[(truth["dataset"] == "moons") & (truth["arch"] != "gaussian")]
    sd, used = stats.pooled_sd([g["score"].to_numpy() for _, g in moons.groupby("label")])
    row = seeds[seeds["dataset"] == "moons"].iloc[0]
    assert row["configs"] == used == 4 and row["pooled_sd"] == pytest.approx(sd)
    assert row["seeds for 0.01"] == stats.seeds_needed(sd, 0.01)


def test_the_front_page_of_several_suites_has_the_ranks(ranked):
    _, _, _, front = ranked
    text = front.read_text()
    assert 'id="across"' in text and 'data-target="fig-ranks"' in text
    assert "matched across suites by its label" in text
    assert (front.parent / "data" / "ranks.csv").is_file()


def test_plan_seeds_for(ranked, tmp_path, capsys):
    uri = ranked[0]
    suite = tmp_path / "ranked.yaml"
    suite.write_text("name: ranked\nmatrix: {architectures: [realnvp], datasets: [moons], "
                     "dequantization: [none], seeds: [0, 1]}\n")
    assert main(["plan", str(suite), "--no-preflight", "--tracking-uri", uri,
                 "--seeds-for", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "seeds to detect a difference of 0.01" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("moons"))
    assert int(line.split()[-1]) >= 2
    other = tmp_path / "other.yaml"
    other.write_text(suite.read_text().replace("name: ranked", "name: never-ran"))
    assert main(["plan", str(other), "--no-preflight", "--tracking-uri", uri,
                 "--seeds-for", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "has no runs of suite 'never-ran'" in err and "run it first" in err
    assert main(["plan", str(suite), "--seeds-for", "-1", "--tracking-uri", uri]) == 2
    assert "--seeds-for" in capsys.readouterr().err


@pytest.mark.slow
def test_the_statistics_figures_render_offline(ranked, chromium):
    from playwright.sync_api import sync_playwright
    from test_report_browser import ARGS, Visit

    _, _, site, front = ranked
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=ARGS, offline=True,
            viewport={"width": 1300, "height": 900})
        try:
            for page in (site, front):
                visit = Visit(ctx, page)
                rendered = visit.rendered()
                assert len(rendered) == visit.n_figures
                assert "fig-ranks" in rendered and "fig-aggregate" in rendered
                if page == site:
                    assert {f"fig-pairs-{slug('moons')}",
                            f"fig-timing-noise-{slug('moons')}"} <= set(rendered)
                assert visit.errors == [] and visit.network == []
                visit.page.close()
        finally:
            ctx.close()


def test_timing_noise_flags_what_the_runs_recorded(ranked):
    _, truths, site, _ = ranked
    noise = pd.read_csv(site.parent / "data" / f"timing-noise-{slug('moons')}.csv")
    density = noise[noise["metric"] == "perf/density_ms"].set_index("config")
    for config, row in density.iterrows():
        runs = [t for t in truths if t.dataset == "moons" and t.arch_label == config]
        rel = max(t.metrics["perf/density_ms_iqr"] / t.metrics["perf/density_ms_median"]
                  for t in runs)
        assert row["rel_iqr"] == pytest.approx(rel)
        assert row["noisy"] == (rel > 0.10)
        assert row["contended_runs"] == sum(t.metrics["perf/contended"] > 0 for t in runs)
        assert row["slowdown"] == pytest.approx(max(t.metrics["perf/slowdown"] for t in runs))
    text = site.read_text()
    assert "noisy" in text or noise["noisy"].sum() == 0
