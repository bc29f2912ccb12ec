"""The one writer: MLflow → tables → figures → a static site that can be published as it is.

Layout of ``out_dir``::

    index.html            one suite: that suite's page; several: the list of suites
    assets/               plotly.min.js (once), report.js, report.css
    data/                 CSV + Parquet behind every figure and table, runs.csv/.parquet
    samples/              samples.png of each configuration's best seed
    <suite-slug>/         with several suites: index.html, data/, samples/ per suite
    .nfbench-report.json  what this writer wrote (stale files of an earlier report go)

Nothing else in ``out_dir`` is touched.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .. import keys
from ..tracking.read import load_curves, load_runs
from ..tracking.store import resolve_uri
from ..tracking.uri import mask_uri
from .html import ASSETS, Link, Raw, data_links, e, figure_block, page, table, write_assets
from .page import Section, slug
from .safety import check_ui_base, escape_formulas
from .sections import Context, suite_sections
from .sections.across import across_section
from .sections.curves import CURVES_SHOWN
from .sections.samples import collect as collect_samples
from .sections.tuning import TUNING_KINDS, with_urls
from .table import DEFAULT_UI, prepare

__all__ = ["write_report"]

MANIFEST = ".nfbench-report.json"


def _publishable(df: pd.DataFrame) -> pd.DataFrame:
    """Columns Parquet can store: mixed object columns become strings (missing stays null)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            values = out[col]
            out[col] = values.where(values.isna(), values.astype(str))
    return out


def _write_data(df: pd.DataFrame, folder: Path, stem: str, written: list[Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = _publishable(df)
    escape_formulas(data).to_csv(folder / f"{stem}.csv", index=False)  # no formula runs
    data.to_parquet(folder / f"{stem}.parquet", index=False)
    written += [folder / f"{stem}.csv", folder / f"{stem}.parquet"]


def _meta(runs: pd.DataFrame, uri: str) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    revisions = ", ".join(sorted(map(str, runs["revision"].dropna().unique()))[:4]) or "?"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{len(runs)} runs ({counts or 'none'}) · data sets: "
            f"{', '.join(map(str, pd.unique(runs['dataset']))) or '—'} · revision {revisions} · "
            f"from {mask_uri(uri)} · generated {when}")


def _render_sections(sections: list[Section], data_prefix: str) -> str:
    parts = []
    for sec in sections:
        parts.append(f'<section id="{e(sec.anchor)}"><h2>{e(sec.title)}</h2>')
        if sec.note:
            parts.append(f'<p class="caption">{e(sec.note)}</p>')
        if sec.html:
            parts.append(str(sec.html))
        for panel in sec.panels:
            links = data_links(data_prefix, panel.id)
            if panel.figure is not None:
                parts.append(figure_block(panel.id, panel.figure, panel.caption, links,
                                          str(panel.after)))
            elif panel.id != "samples":
                parts.append(f'<p class="caption">{e(panel.caption)} Data: '
                             f'{" ".join(map(str, links))}</p>{panel.after}')
        parts.append("</section>")
    return "".join(parts)


def _suite_page(suite: str, runs: pd.DataFrame, curves: pd.DataFrame, folder: Path,
                assets: str, uri: str, written: list[Path], home: str | None,
                tuning: pd.DataFrame | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    samples = collect_samples(runs, uri, folder / "samples", "samples", written)
    sections = suite_sections(Context(runs, curves, samples, tuning))
    for sec in sections:
        for panel in sec.panels:
            _write_data(panel.data, folder / "data", panel.id, written)
    _write_data(runs, folder / "data", "runs", written)
    body = ""
    if home:
        body += f'<p>{Link(home, "← all suites")}</p>'
    body += (f'<p class="caption">All runs of this suite: '
             f'{" ".join(map(str, data_links("data", "runs")))}. Click a point to open its run '
             "in MLflow.</p>")
    body += _render_sections(sections, "data")
    toc = [(s.anchor, s.title) for s in sections]
    html_text = page(f"nfbench · {suite}", body, assets=assets, heading=f"nfbench report: {suite}",
                     meta=_meta(runs, uri), toc=toc)
    index = folder / "index.html"
    index.write_text(html_text, encoding="utf-8")
    written.append(index)
    return index


def _suite_summary(runs: pd.DataFrame) -> list[object]:
    status = runs["status"].value_counts()
    return [
        len(runs), int(status.get(keys.STATUS_FINISHED, 0)),
        int(status.get(keys.STATUS_DIVERGED, 0)),
        int(status.get(keys.STATUS_FAILED, 0) + status.get(keys.STATUS_KILLED, 0)),
        ", ".join(map(str, pd.unique(runs["dataset"]))),
        ", ".join(sorted(map(str, pd.unique(runs["arch_label"])))),
        ", ".join(sorted(map(str, runs["revision"].dropna().unique()))),
        ", ".join(sorted(map(str, runs["device"].dropna().unique()))),
    ]


def _index(suites: list[str], runs: pd.DataFrame, folders: dict[str, str], out: Path,
           uri: str, written: list[Path]) -> Path:
    cols = ["suite", "runs", "finished", "diverged", "failed or killed", "data sets",
            "architectures", "revisions", "devices"]
    rows, data = [], []
    for suite in suites:
        summary = _suite_summary(runs[runs["experiment"] == suite])
        rows.append([Link(f"{folders[suite]}/index.html", suite), *summary])
        data.append([suite, *summary])
    _write_data(pd.DataFrame(data, columns=cols), out / "data", "suites", written)
    numeric = [False] + [True] * 4 + [False] * 4
    body = (f"<section><h2>Suites</h2>{table(cols, rows, numeric=numeric)}"
            f'<p class="caption">One page per suite. Data: '
            f'{" ".join(map(str, data_links("data", "suites")))}</p></section>')
    body += _across(runs, out, written)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = page("nfbench reports", Raw(body), assets=ASSETS, heading="nfbench reports",
                meta=f"{len(suites)} suites · from {mask_uri(uri)} · generated {when}")
    index = out / "index.html"
    index.write_text(text, encoding="utf-8")
    written.append(index)
    return index


def _across(runs: pd.DataFrame, out: Path, written: list[Path]) -> str:
    """The front page's ranks and aggregate score over every suite of the report."""
    sec = across_section(runs, " Over every suite of this report: an architecture is "
                               "matched across suites by its label.")
    for panel in sec.panels:
        _write_data(panel.data, out / "data", panel.id, written)
    return _render_sections([sec], "data")


def _clean_stale(out: Path, written: list[Path]) -> None:
    """Delete what an earlier report wrote and this one did not; record what this one wrote."""
    manifest = out / MANIFEST
    now = {str(p.relative_to(out)) for p in written}
    if manifest.is_file():
        try:
            before = set(json.loads(manifest.read_text()).get("files", []))
        except (ValueError, AttributeError):
            before = set()
        for rel in sorted(before - now):
            path = out / rel
            if path.is_file() and out in path.resolve().parents:
                path.unlink()
    manifest.write_text(json.dumps({"files": sorted(now)}, indent=1))


def write_report(suites: Sequence[str], tracking_uri: str | None, out_dir: str | Path, *,
                 ui_base: str = DEFAULT_UI) -> Path:
    """Write the report of ``suites`` (MLflow experiments in ``tracking_uri``) to ``out_dir``.

    With one suite, ``out_dir/index.html`` is that suite's page (leaderboards per data set,
    Pareto fronts, …); with several, it lists them and each has ``<slug>/index.html``. Points
    and tables link to ``{ui_base}/#/experiments/{id}/runs/{run_id}``.

    Returns:
        The path of ``out_dir/index.html``.

    Raises:
        UnknownSuiteError: a suite the store does not hold (the message lists those it does).
        ReportInputError: ``ui_base`` is not a safe http(s) URL (checked before anything is
            read or written).
        ValueError: no suite given.
    """
    check_ui_base(ui_base)
    suites = list(dict.fromkeys(suites))
    if not suites:
        raise ValueError("write_report needs at least one suite name (e.g. ['smoke'])")
    uri = resolve_uri(tracking_uri)
    raw = load_runs(uri, suites)
    runs = prepare(raw, ui_base)
    curves = load_curves(uri, raw[runs["ok"].to_numpy()], keys_wanted=CURVES_SHOWN)
    tuning = with_urls(load_runs(uri, suites, kinds=TUNING_KINDS), ui_base)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    assets = write_assets(out)
    written += sorted(p for p in assets.iterdir() if p.is_file())
    if len(suites) == 1:
        index = _suite_page(suites[0], runs, curves, out, ASSETS, uri, written, None, tuning)
    else:
        folders = {s: slug(s) for s in suites}
        by_run = runs.groupby("experiment").groups
        for suite in suites:
            sel = runs.loc[by_run.get(suite, [])] if suite in by_run else runs.iloc[:0]
            sub_curves = curves[curves["run_id"].isin(sel["run_id"])]
            _suite_page(suite, sel.reset_index(drop=True), sub_curves, out / folders[suite],
                        f"../{ASSETS}", uri, written, "../index.html",
                        tuning[tuning["experiment"] == suite])
        index = _index(suites, runs, folders, out, uri, written)
    _clean_stale(out, written)
    return index
