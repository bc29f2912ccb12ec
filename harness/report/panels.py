"""A suite's page as sections of panels: each panel a figure, its caption and its data.

:func:`suite_sections` is pure: prepared runs, curves and a table of sample images in, a list
of :class:`Section` out; the writer (:mod:`harness.report.site`) turns it into files.
Captions say what was measured and how (device, batch sizes, repeats, seeds).
"""

from __future__ import annotations

import pandas as pd

from .. import keys
from . import derive
from .figures import figure_curves, figure_heatmap, figure_leaderboard, figure_pareto
from .figures_cost import figure_asymmetry, figure_dequant, figure_logdet
from .figures_stability import figure_stability, figure_triangle
from .html import Link, Raw, e, table
from .scores import DEFINITIONS, triangle_scores
from .sections import Panel, Section, slug
from .style import fmt
from .table import aggregate, provenance

__all__ = ["Panel", "Section", "slug", "suite_sections"]


def _leaderboard_table(board: pd.DataFrame) -> str:
    from .panels_stats import interval_text, vs_best_text

    unit = str(board["unit"].iloc[0]) if len(board) else ""
    extra = [c for c in (keys.EVAL_BPD_IW, keys.EVAL_NLL_GAP) if board[c].notna().any()]
    cols = ["#", "configuration", f"{unit} mean [95 % CI]", "against the best",
            "seeds (finished / runs)", *extra,
            "samples / s", "density ms", "parameters", "published", "run", "model"]
    rows, classes = [], []
    for d in board.to_dict("records"):
        rows.append([
            "" if pd.isna(d["rank"]) else int(d["rank"]), d["config"],
            interval_text(d["score"], d["ci_lo"], d["ci_hi"], d["n_ok"]),
            vs_best_text(d["vs_best"], d["p_best"], d["poi_best"]),
            f"{d['n_ok']} / {d['n_runs']} ({d['seeds'] or '—'})",
            *[fmt(d[c]) for c in extra],
            fmt(d[keys.PERF_SAMPLE_THROUGHPUT]), fmt(d[keys.PERF_DENSITY_MS]),
            fmt(d["flow.params"]), d["published_all"] or "—", Link(d["url"], "MLflow"),
            Link(d["model_url"], "model") if d.get("model_url") else "—",
        ])
        classes.append("ref" if d["reference"] else "")
    numeric = [True, False, True, False, False, *[True] * len(extra), True, True, True, False,
               False, False]
    return table(cols, rows, numeric=numeric, row_classes=classes)


def _leaderboards(agg: pd.DataFrame, runs: pd.DataFrame, pairs: pd.DataFrame) -> Section:
    from .panels_stats import leaderboard_with_seeds

    board = leaderboard_with_seeds(derive.leaderboard_frame(agg), runs, pairs)
    sec = Section("leaderboards", "Leaderboards")
    for dataset in pd.unique(board["dataset"]):
        part = board[board["dataset"] == dataset]
        unit = part["unit"].iloc[0]
        sources = sorted({s for s in part["published_source"] if s})
        what = ("bits per dimension, dequantization and every preprocessing Jacobian "
                "included" if unit == "bpd" else "nats per example")
        published = (f" ({'; '.join(sources)}: their own protocols and budgets)" if sources
                     else " (none published for this data set)")
        caption = (
            f"Test {unit} on {dataset} ({what}) of each configuration's best-validation "
            "checkpoint: mean over finished seeds with its 95 % bootstrap interval (percentile, "
            "10,000 resamples; none with one seed, and with few seeds no wider than their "
            "range); lower is better. Stars mark the configurations statistically tied with "
            "the best (Holm-corrected p ≥ 0.05 against it: paired t-test over shared seeds, "
            "Welch's otherwise; see Pairwise significance). Grey rows are the reference "
            "baselines (Gaussian, "
            f"histogram); diamonds are published figures{published}. Failed and diverged runs "
            f"are not averaged (see Runs). {provenance(runs[runs['dataset'] == dataset])}"
        )
        after = _leaderboard_table(part)
        sec.panels.append(Panel(f"leaderboard-{slug(str(dataset))}", caption, part,
                                figure_leaderboard(part, f"{dataset}: test {unit}"), Raw(after)))
    if not sec.panels:
        sec.note = "No runs."
    return sec


def _per_dataset(agg: pd.DataFrame, runs: pd.DataFrame, frame: pd.DataFrame, anchor: str,
                 title: str, make, caption: str) -> Section:
    sec = Section(anchor, title)
    for dataset in pd.unique(frame["dataset"]) if len(frame) else []:
        part = frame[frame["dataset"] == dataset].reset_index(drop=True)
        sub = runs[runs["dataset"] == dataset]
        sec.panels.append(Panel(f"{anchor}-{slug(str(dataset))}",
                                f"{caption} {provenance(sub)}", part,
                                make(part, f"{title}: {dataset}")))
    if not sec.panels:
        sec.note = (f"Nothing to draw: no finished run in this suite recorded what "
                    f"{title.lower()} needs.")
    return sec


def _single(anchor: str, title: str, frame: pd.DataFrame, fig_fn, caption: str,
            runs: pd.DataFrame, after: str = "", timing: bool = True) -> Section:
    sec = Section(anchor, title)
    if frame.empty:
        sec.note = f"Nothing to draw: no run in this suite recorded what {title.lower()} needs."
        return sec
    sec.panels.append(Panel(anchor, f"{caption} {provenance(runs, timing)}", frame,
                            fig_fn(frame, title), Raw(after)))
    return sec


def _triangle_after(scores: pd.DataFrame) -> str:
    rows = [[s.config, fmt(s.invertibility, 3), fmt(s.expressivity, 3), fmt(s.efficiency, 3),
             fmt(s.total, 3), Link(s.url, "MLflow")] for s in scores.itertuples(index=False)]
    defs = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in DEFINITIONS.items())
    return (table(["architecture", "invertibility I", "expressivity E", "efficiency F",
                   "I + E + F", "run"], rows, numeric=[False, True, True, True, True, False])
            + f'<dl class="defs">{defs}</dl>')


def _status(runs: pd.DataFrame) -> Section:
    sec = Section("runs", "Runs left out")
    frame = derive.status_frame(runs)
    counts = runs["status"].value_counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    if frame.empty:
        sec.note = f"Every run finished with a finite score ({summary})."
        return sec
    rows = [[r.status, r.dataset, r.config, "" if pd.isna(r.seed) else int(r.seed),
             Raw(f"<pre>{e(str(r.error)[-600:])}</pre>") if isinstance(r.error, str) else "",
             Link(r.url, "MLflow")] for r in frame.itertuples(index=False)]
    after = table(["status", "data set", "configuration", "seed", "last error", "run"], rows)
    sec.panels.append(Panel("runs-left-out", f"Runs by status: {summary}. The runs below did "
                            "not finish, or finished without a finite test bpd / NLL: they are "
                            "left out of the leaderboards, fronts and curves; diverged runs keep "
                            "their stability diagnostics.", frame, None, Raw(after)))
    return sec


def _gallery(samples: pd.DataFrame) -> Section:
    sec = Section("samples", "Samples")
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


def suite_sections(runs: pd.DataFrame, curves: pd.DataFrame, samples: pd.DataFrame
                   ) -> list[Section]:
    """The sections of one suite's page (``runs`` from :func:`harness.report.table.prepare`;
    ``samples``: ``run_id dataset config seed url src`` rows, ``src`` relative to the page)."""
    agg = aggregate(runs, derive.METRICS)
    per_arch = aggregate(runs, derive.METRICS, by=("dataset", "arch_label"))  # schemes pooled
    from . import derive_stats, panels_stats

    timed = runs[runs["ok"]]
    pairs = derive_stats.pairs_frame(runs)  # every pair of configurations, tested once
    sections = [_leaderboards(agg, runs, pairs), panels_stats.across_section(runs),
                panels_stats.significance_section(runs, pairs),
                panels_stats.seeds_section(runs)]
    sections.append(_per_dataset(
        agg, runs, derive.pareto_frame(agg), "pareto", "Pareto fronts", figure_pareto,
        "Quality against speed: each point is a configuration's mean over finished seeds; "
        "sampling throughput = timing batch / median sampling time, density time = median ms "
        "of log_prob on one batch. Outlined points are on the Pareto front (no configuration is "
        "both better and faster); the dotted staircase is the best score reached at each speed. "
        "Failed and diverged runs are excluded."))
    scores = triangle_scores(per_arch)
    if scores["a"].isna().all():  # no configuration has all three scores: nothing to place
        scores = scores.iloc[:0]
    sections.append(_single(
        "triangle", "Invertibility – expressivity – efficiency", scores, figure_triangle,
        "Each architecture (its label; dequantization schemes pooled) placed by three "
        "normalised scores (definitions under the figure; all relative to this suite).", timed,
        _triangle_after(scores)))
    sections.append(_single(
        "heatmap", "Architecture × data set", derive.heatmap_frame(agg), figure_heatmap,
        "Colour: (score − best) / (worst − best) within each data set (0 = best there); text: "
        "mean test bpd or NLL over finished seeds.", timed, timing=False))
    sections.append(_per_dataset(
        agg, runs, derive.curve_frame(runs, pd.DataFrame(curves), agg), "curves",
        "Training curves", figure_curves,
        "Training (solid, band = ± one standard deviation over seeds) and validation (dashed) "
        "bpd / NLL of finished runs, against the optimiser step and the seconds of training "
        "(mean over seeds at each step)."))
    sections.append(_single(
        "logdet", "Cost of the log-determinant", derive.logdet_frame(per_arch), figure_logdet,
        "Log-det time = time of transform(x) with the log-det − time without it (two timed "
        "passes, not a guess), against the data dimension, per architecture (mean over seeds "
        "and dequantization schemes); right: its share of the forward pass.", timed))
    sections.append(_single(
        "asymmetry", "Density against sampling time (MAF / IAF asymmetry)",
        derive.speed_frame(per_arch, timed), figure_asymmetry,
        "Ms per batch (first quartile of the timing blocks, mean over seeds) of log_prob "
        "(density) and of sample (sampling), per architecture and data set; MAF needs D "
        "passes to sample and IAF D passes to evaluate a density. The hover gives sampling ÷ "
        "density with its 95 % bootstrap interval over the runs' recorded blocks ('not "
        "resolved' when it straddles 1 or lies within ±5 % of it).",
        timed))
    from .compile_panel import compile_section

    compiled = compile_section(runs)  # only when the suite has eager and compiled runs
    if compiled is not None:
        sections.append(compiled)
    sections.append(panels_stats.timing_noise_section(runs))
    sections.append(_single(
        "dequant", "Dequantization gap", derive.dequant_frame(agg), figure_dequant,
        "Discrete data: test bpd under uniform and variational dequantization (the variational "
        "bound) and the importance-weighted bound of the variational runs; gap = uniform − "
        "variational for the same architecture (in the hover).", timed, timing=False))
    stab = derive.stability_frame(runs)
    sections.append(_single(
        "stability", "Stability", stab, figure_stability,
        "One point per finished (dot) or diverged (red cross) run: max round-trip error on test "
        "data, share of bounded scales near their bound, training steps skipped for a "
        "non-finite loss, mean KS statistic of the latent against N(0, 1), CNF function "
        "evaluations, Glow's 1×1 convolution condition number.",
        runs[runs["status"].isin([keys.STATUS_FINISHED, keys.STATUS_DIVERGED])], timing=False))
    sections.append(_gallery(samples))
    sections.append(_status(runs))
    return sections
