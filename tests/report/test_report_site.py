"""The written site: pages, data beside every figure, plotly.js once, links, escaping."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from report_synth import HOSTILE, HOSTILE_DEVICE, HOSTILE_LABEL

from harness import keys
from harness.report import write_report
from harness.report.page import slug
from harness.tracking.read import UnknownSuiteError

FIGURE = re.compile(r'<div class="nf-figure" id="(fig-[^"]+)"[^>]*></div>'
                    r'<script type="application/json" class="nf-figure-data" '
                    r'data-target="(fig-[^"]+)">(.*?)</script>', re.DOTALL)


def _figures(page: Path) -> list[tuple[str, dict]]:
    found = []
    for div, target, body in FIGURE.findall(page.read_text()):
        assert div == target
        found.append((div, json.loads(body)))
    return found


def test_single_suite_index_is_the_suite_page(zoo_site: Path, store):
    text = zoo_site.read_text()
    assert zoo_site.name == "index.html"
    figs = dict(_figures(zoo_site))
    datasets = {t.dataset for t in store.runs("zoo")}
    for d in datasets:  # the first report: a leaderboard and a front per data set
        assert any(k.startswith("fig-leaderboard-") and d in k for k in figs), d
        assert any(k.startswith("fig-pareto-") and d in k for k in figs), d
        assert any(k.startswith("fig-curves-") and d in k for k in figs), d
    for section in ("triangle", "heatmap", "logdet", "asymmetry", "dequant", "stability"):
        assert f"fig-{section}" in figs
    assert text.count("<table") >= len(datasets) + 2  # leaderboards, scores, runs
    assert 'id="samples"' in text and text.count("<img ") >= 10


def test_every_figure_has_its_data_as_csv_and_parquet(zoo_site: Path):
    root = zoo_site.parent
    for fig_id, _ in _figures(zoo_site):
        stem = fig_id.removeprefix("fig-")
        csv = pd.read_csv(root / "data" / f"{stem}.csv")
        parquet = pd.read_parquet(root / "data" / f"{stem}.parquet")
        assert len(csv) == len(parquet) > 0, stem
        assert list(csv.columns) == list(parquet.columns)
        assert f'href="data/{stem}.csv"' in zoo_site.read_text()
    runs = pd.read_parquet(root / "data" / "runs.parquet")
    assert len(runs) == 79 and {"run_id", "score", "url", keys.EVAL_NLL} <= set(runs.columns)


def test_plotly_js_is_written_once_and_nothing_is_fetched(zoo_site: Path, multi_site: Path):
    for site in (zoo_site.parent, multi_site.parent):
        copies = [p for p in site.rglob("*.js") if "plotly" in p.name]
        assert [p.relative_to(site).as_posix() for p in copies] == ["assets/plotly.min.js"]
        assert copies[0].stat().st_size > 1_000_000
        for page in site.rglob("*.html"):
            text = page.read_text()
            assert "cdn.plot.ly" not in text and "https://cdn" not in text
            srcs = re.findall(r'<script src="([^"]+)"', text)
            assert all(not s.startswith("http") for s in srcs)
            for src in srcs:
                assert (page.parent / src).resolve().is_file(), (page, src)


def test_points_and_tables_link_to_mlflow_runs(zoo_site: Path, store):
    text = zoo_site.read_text()
    ids = {t.run_id for t in store.runs("zoo")}
    linked = set(re.findall(r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/([0-9a-f]{32})",
                            text))
    assert linked and linked <= ids
    # every finished configuration's representative run is linked from its leaderboard row
    finished = {t.run_id for t in store.runs("zoo") if t.status == keys.STATUS_FINISHED}
    assert len(linked & finished) >= 40


def test_ui_base_and_multi_suite_index(multi_site: Path, store):
    root = multi_site.parent
    index = multi_site.read_text()
    pages = sorted(p.relative_to(root).as_posix() for p in root.glob("*/index.html"))
    assert len(pages) == 3
    for p in pages:
        assert f'href="{p}"' in index
    solo = next(root / p for p in pages if p.startswith("solo-"))
    assert "http://mlflow.example:5000/#/experiments/" in solo.read_text()
    assert "../assets/plotly.min.js" in solo.read_text()
    assert (root / "data" / "suites.csv").is_file()
    # one data set, one seed: a leaderboard without a spread
    board = re.search(r"<table.*?</table>", solo.read_text(), re.DOTALL).group(0)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", board)
    assert cells and not any("±" in c for c in cells)


def test_names_tags_and_params_are_escaped(multi_site: Path):
    root = multi_site.parent
    page = next(p for p in root.glob("*/index.html") if p.parent.name.startswith("script-"))
    text = page.read_text() + multi_site.read_text()
    for bad in (HOSTILE, HOSTILE_LABEL, HOSTILE_DEVICE, "<script>alert", "<img src=x",
                "<svg onload", "<i>H200</i>"):
        assert bad not in text, bad
    assert html.escape(HOSTILE, quote=True) in text
    assert html.escape(HOSTILE_DEVICE, quote=True) in text
    # inside figure JSON the label is HTML-escaped text (Plotly draws it as characters)
    figs = _figures(page)
    names = json.dumps([f for _, f in figs])
    assert html.escape(HOSTILE_LABEL) in names
    assert page.parent.name.startswith("script-alert-suite-script-img-src")
    # the failed run's error, which carries the suite name, is escaped in the runs table
    assert "out of memory &lt;in&gt;" in text


def test_suites_with_nothing_to_draw_say_so(multi_site: Path):
    bare = next(p for p in multi_site.parent.glob("bare-*/index.html"))
    text = bare.read_text()
    figs = dict(_figures(bare))
    assert any(k.startswith("fig-leaderboard-") for k in figs)
    assert "Nothing to draw" in text  # no timings, no diagnostics, no curves
    assert set(figs) == {f"fig-leaderboard-{slug('moons')}", "fig-heatmap",
                         f"fig-pairs-{slug('moons')}", "fig-aggregate"}  # one seed: no test
    # the infinite NLL is not a finished result: not drawn, listed with the runs left out
    drawn = [y for t in figs[f"fig-leaderboard-{slug('moons')}"]["data"] for y in t["y"]]
    assert sorted(drawn) == ["maf", "realnvp"]
    assert re.search(r"<td>finished</td><td>moons</td><td>glow</td>", text)


def test_rewriting_removes_stale_files_but_not_foreign_ones(store, tmp_path: Path):
    foreign = tmp_path / "notes.txt"
    foreign.write_text("mine")
    write_report(["solo", "bare"], store.uri, tmp_path)
    old = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith("bare-") for n in old)
    write_report(["solo"], store.uri, tmp_path)
    now = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert "notes.txt" in now and "index.html" in now
    assert not any(p.startswith(("bare-", "solo-")) for p in now)


def test_unknown_suite_is_refused_before_writing(store, tmp_path: Path):
    with pytest.raises(UnknownSuiteError, match="smoek"):
        write_report(["smoek"], store.uri, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="at least one suite"):
        write_report([], store.uri, tmp_path / "out")
