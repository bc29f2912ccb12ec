"""HTML building blocks: pages, figures, tables; everything from a run is escaped here.

A figure is embedded as its JSON in a ``<script type="application/json">`` block with ``<``,
``>`` and ``&`` written as ``\\u003c`` … so that no string inside it can close the script;
``report.js`` (written once, beside ``plotly.min.js``) draws every block with
``Plotly.newPlot`` and opens a point's MLflow run on click: the point's ``customdata`` (or
its first element), else its trace's ``meta.url``. Pages fetch nothing from the
network: plotly.js is a file in the site (plotly's ``'cdn'`` option breaks offline).

Publishing: every link within a site is relative (``assets/…``, ``data/…``, ``../index.html``),
so a site opens from the local disk and from a static web server under any sub-path. Each
chart has a text alternative (``role="img"``, labelled by its caption and described by the
figcaption, which links to its CSV), and ``report.css`` has a print stylesheet (no navigation
or plot toolbars, no figure split across pages, link targets printed after data links).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path

import plotly.graph_objects as go
import plotly.offline

__all__ = [
    "ASSETS", "Link", "Raw", "data_links", "e", "figure_block", "page", "table", "write_assets"
]

ASSETS = "assets"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222}
header{background:#1f2a44;color:#fff;padding:14px 28px}
header a{color:#cfe0ff} header h1{margin:0 0 4px;font-size:22px}
header .meta{font-size:12px;opacity:.85}
nav.toc{padding:8px 28px;background:#f2f4f8;border-bottom:1px solid #dde;font-size:13px}
nav.toc a{margin-right:14px;color:#1f4f9f;text-decoration:none}
main{padding:8px 28px 40px;max-width:1400px}
section{margin-top:26px} h2{border-bottom:2px solid #1f2a44;padding-bottom:3px}
h3{margin:18px 0 6px}
figure.nf{margin:10px 0 22px;border:1px solid #e3e6ee;border-radius:6px;padding:8px}
figure.nf figcaption,p.caption{font-size:12.5px;color:#444;margin:6px 4px 2px}
figcaption .data a{margin-right:8px}
table.nf{border-collapse:collapse;font-size:12.5px;margin:6px 0 14px}
table.nf th,table.nf td{border-bottom:1px solid #e3e6ee;padding:4px 8px;text-align:left;
  vertical-align:top}
table.nf th{background:#f2f4f8} table.nf td.num{text-align:right;font-variant-numeric:tabular-nums}
table.nf tr.ref td{color:#777;font-style:italic}
table.nf pre{margin:0;white-space:pre-wrap;max-width:620px;font-size:11.5px}
.gallery{display:flex;flex-wrap:wrap;gap:14px}
.gallery figure{margin:0;width:200px;font-size:12px}
.gallery img{width:200px;image-rendering:pixelated;border:1px solid #ccc}
dl.defs dt{font-weight:600;margin-top:4px} dl.defs dd{margin-left:18px}
.bad{color:#b00020;font-weight:600}
@media print{
  @page{margin:14mm}
  body{font-size:11px;color:#000}
  header{background:none;color:#000;padding:0 0 6px;border-bottom:2px solid #000}
  header a{color:#000} nav.toc,.modebar-container{display:none}
  main{padding:0;max-width:none}
  section{break-before:auto} h2,h3{break-after:avoid}
  figure.nf,.gallery figure,table.nf tr{break-inside:avoid}
  figure.nf{border:none;padding:0}
  figcaption .data a::after,p.caption a::after{content:" (" attr(href) ")";font-size:10px}
  table.nf th{background:none;border-bottom:1.5px solid #000}
}
"""

_JS = r"""
(function () {
  "use strict";
  function runUrl(point) {
    var u = point && point.customdata;
    if (Array.isArray(u)) { u = u[0]; }
    if (!u && point && point.data && point.data.meta) { u = point.data.meta.url; }
    return (typeof u === "string" && /^https?:\/\//.test(u)) ? u : null;
  }
  function draw(block) {
    var target = document.getElementById(block.getAttribute("data-target"));
    var spec = JSON.parse(block.textContent);
    var config = {responsive: true, displaylogo: false};
    return Plotly.newPlot(target, spec.data, spec.layout, config).then(function (gd) {
      gd.on("plotly_click", function (ev) {
        var u = ev && ev.points && ev.points.length ? runUrl(ev.points[0]) : null;
        if (u) { window.open(u, "_blank", "noopener"); }
      });
      target.setAttribute("data-rendered", "1");
    }).catch(function (err) {
      target.setAttribute("data-rendered", "error");
      console.error("figure " + target.id + " failed: " + err);
    });
  }
  function drawAll() {
    var blocks = document.querySelectorAll("script.nf-figure-data");
    for (var i = 0; i < blocks.length; i++) { draw(blocks[i]); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else { drawAll(); }
})();
"""


_ICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
         '<rect width="16" height="16" rx="3" fill="#1f2a44"/>'
         '<path d="M3 12c2-7 4-7 5-4s3 3 5-4" stroke="#cfe0ff" stroke-width="1.6" '
         'fill="none"/></svg>\n')


def e(value: object) -> str:
    """HTML-escaped text (quotes too: safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def write_assets(out_dir: Path) -> Path:
    """plotly.min.js (once per site), report.js, report.css and favicon.svg under
    ``out_dir/assets`` (a page names its icon: a browser would otherwise ask the server's
    root for ``/favicon.ico``, outside a site published under a sub-path)."""
    assets = out_dir / ASSETS
    assets.mkdir(parents=True, exist_ok=True)
    plotly_js = assets / "plotly.min.js"
    text = plotly.offline.get_plotlyjs()
    if not plotly_js.is_file() or plotly_js.stat().st_size != len(text.encode()):
        plotly_js.write_text(text, encoding="utf-8")
    (assets / "report.js").write_text(_JS, encoding="utf-8")
    (assets / "report.css").write_text(_CSS, encoding="utf-8")
    (assets / "favicon.svg").write_text(_ICON, encoding="utf-8")
    return assets


def _script_json(fig: go.Figure) -> str:
    """The figure as JSON that cannot end the surrounding ``<script>`` element."""
    text = fig.to_json(validate=False)
    for ch, sub in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, sub)
    return text


class Link:
    """A hyperlink (``href`` and text), escaped when rendered."""

    def __init__(self, href: str, text: str):
        self.href, self.text = href, text

    def __str__(self) -> str:
        return f'<a href="{e(self.href)}">{e(self.text)}</a>'


def figure_block(fig_id: str, fig: go.Figure, caption: str, data_links: Sequence[Link] = (),
                 after_html: str = "") -> str:
    """One figure: its div (id ``fig-<fig_id>``), its JSON, a caption (escaped) with links to
    its data files, then ``after_html`` (trusted HTML built by this module, e.g. a table)."""
    links = " ".join(str(link) for link in data_links)
    div = f"fig-{fig_id}"
    # the text alternative: the chart is an image labelled by its caption and described by
    # the figcaption, which links to the figure's data (CSV and Parquet)
    return (
        f'<figure class="nf" id="{e(div)}-box">'
        f'<div class="nf-figure" id="{e(div)}" role="img" aria-label="{e(caption)}" '
        f'aria-describedby="{e(div)}-caption"></div>'
        f'<script type="application/json" class="nf-figure-data" data-target="{e(div)}">'
        f"{_script_json(fig)}</script>"
        f'<figcaption id="{e(div)}-caption">{e(caption)}'
        + (f' <span class="data">Data: {links}</span>' if links else "")
        + f"</figcaption>{after_html}</figure>"
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *,
          numeric: Sequence[bool] | None = None, row_classes: Sequence[str] | None = None
          ) -> str:
    """An HTML table; cells are escaped unless they are :class:`Link` or ``Raw`` objects."""
    numeric = numeric or [False] * len(columns)
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{e(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = "".join(
            (f'<td class="num">{cell_html(v)}</td>' if num else f"<td>{cell_html(v)}</td>")
            for v, num in zip(row, numeric)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return (
        f'<table class="nf"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table>'
    )


class Raw(str):
    """HTML built by this module from escaped parts (a table cell that is not re-escaped)."""


def cell_html(value: object) -> str:
    if isinstance(value, (Link, Raw)):
        return str(value)
    return e(value)


def page(title: str, body: str, *, assets: str, heading: str, meta: str = "",
         toc: Sequence[tuple[str, str]] = ()) -> str:
    """A whole page. ``title``, ``heading``, ``meta`` and the table of contents are escaped;
    ``body`` is trusted HTML built with the helpers above."""
    nav = "".join(f'<a href="#{e(anchor)}">{e(text)}</a>' for anchor, text in toc)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title>"
        f'<link rel="icon" type="image/svg+xml" href="{e(assets)}/favicon.svg">'
        f'<link rel="stylesheet" href="{e(assets)}/report.css">'
        f'<script src="{e(assets)}/plotly.min.js"></script>'
        f'<script src="{e(assets)}/report.js" defer></script>'
        f"</head><body><header><h1>{e(heading)}</h1><div class=\"meta\">{e(meta)}</div>"
        "</header>"
        + (f'<nav class="toc">{nav}</nav>' if nav else "")
        + f"<main>{body}</main></body></html>\n"
    )


def data_links(prefix: str, stem: str) -> list[Link]:
    """Links to ``prefix/stem.csv`` and ``.parquet``."""
    return [Link(f"{prefix}/{stem}.csv", "CSV"), Link(f"{prefix}/{stem}.parquet", "Parquet")]
