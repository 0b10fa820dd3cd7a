"""One self-contained, offline HTML evaluation report.

Everything is inline: PNG figures as ``data:image/png;base64`` URIs, tables as HTML,
CSS in a ``<style>`` element and, when there are interactive 3D views, the plotly.js
library in a single ``<script>`` element (views are ``<div>`` fragments without it).
Every string that comes from data (titles, method names, case ids, metric names,
notes, table cells) is HTML-escaped. The rendered page is checked to contain no
external ``src``/``href`` reference before it is returned.
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .volume3d import offline_plotlyjs, plotly_fragment

__all__ = [
    "assert_no_external_references",
    "figure_to_png_bytes",
    "markdown_table_to_html",
    "metrics_to_html",
    "render_report",
]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_EXTERNAL_REF = re.compile(
    r"""\b(?:src|href|action|poster|data)\s*=\s*\\?["'`]?\s*(?:https?:)?//""", re.IGNORECASE
)
_CSS_EXTERNAL = re.compile(r"""(?:@import|url\(\s*["']?\s*(?:https?:)?//)""", re.IGNORECASE)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:1em 1.5em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:0.2em}h2{border-bottom:2px solid #0072B2;padding-bottom:2px;
margin-top:1.8em}h3{margin-bottom:0.3em}
nav ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:0.4em 1.2em}
nav a{color:#0072B2;text-decoration:none}
table.data{border-collapse:collapse;font-size:0.88em;margin:0.5em 0;
font-variant-numeric:tabular-nums}
table.data th,table.data td{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.data th{background:#eef3f8}table.data tbody tr:nth-child(even){background:#fafafa}
table.data td:first-child,table.data th:first-child,table.text td,table.text th{
text-align:left}
figure{margin:1em 0;padding:0.5em;border:1px solid #ddd;border-radius:4px;background:#fff}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:0.9em;color:#444;margin-top:0.3em}
.view{border:1px solid #ddd;border-radius:4px;margin:1em 0;padding:0.3em}
.scroll{overflow-x:auto}.muted{color:#666;font-size:0.9em}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}
"""


# --------------------------------------------------------------------------- helpers


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def figure_to_png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """Render a matplotlib ``Figure`` to PNG bytes (Agg, no pyplot state)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _png_data_uri(png: bytes) -> str:
    if not png.startswith(_PNG_MAGIC):
        raise ValueError("figure bytes are not a PNG image")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    s = str(value)
    return s if len(s) <= 200 else s[:197] + "..."


def _df_html(df: pd.DataFrame, *, index: bool = True, text: bool = False) -> str:
    """``df`` as an HTML table; ``text``: its cells are words, read left-aligned."""
    return df.to_html(
        escape=True,
        border=0,
        classes="data text" if text else "data",
        index=index,
        na_rep="–",
        float_format=lambda v: f"{v:.4g}",
    )


def markdown_table_to_html(markdown: str) -> str:
    """Render a GitHub-style pipe table as an escaped HTML table.

    Text that is not a pipe table (no ``|---|`` separator line) is shown escaped in
    a ``<pre>`` block.
    """
    lines = [ln.strip() for ln in markdown.strip().splitlines() if ln.strip()]
    sep = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
    if len(lines) < 2 or not sep.match(lines[1]) or "|" not in lines[0]:
        return f"<pre>{_esc(markdown)}</pre>"

    def cells(line: str) -> list[str]:
        line = line.strip()
        if line.startswith("|"):
            line = line[1:]
        if line.endswith("|") and not line.endswith("\\|"):
            line = line[:-1]
        parts = re.split(r"(?<!\\)\|", line)
        return [p.strip().replace("\\|", "|") for p in parts]

    header = cells(lines[0])
    out = ['<table class="data">', "<thead><tr>"]
    out += [f"<th>{_esc(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for ln in lines[2:]:
        out.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells(ln)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _flatten(d: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        path = (*prefix, str(k))
        if isinstance(v, Mapping):
            rows += _flatten(v, path)
        else:
            rows.append((" / ".join(path), v))
    return rows


def metrics_to_html(metrics: Mapping[str, Any]) -> str:
    """Metrics dict as an HTML table.

    ``{method: {metric: scalar}}`` becomes a methods × metrics table; any other
    nesting is flattened to ``key / subkey | value`` rows.
    """
    if not metrics:
        return '<p class="muted">No metrics.</p>'
    values = list(metrics.values())
    if all(isinstance(v, Mapping) for v in values) and all(
        not isinstance(x, Mapping) for v in values for x in v.values()
    ):
        df = pd.DataFrame(
            {str(k): {str(m): _fmt(x) for m, x in v.items()} for k, v in metrics.items()}
        ).T
        df.index.name = "method"
        return _df_html(df.fillna("–"))
    rows = _flatten(metrics)
    df = pd.DataFrame({"metric": [r[0] for r in rows], "value": [_fmt(r[1]) for r in rows]})
    return _df_html(df, index=False)


def assert_no_external_references(page: str) -> None:
    """Raise ``ValueError`` if ``page`` has an ``src``/``href`` (etc.) to ``http(s)://``
    or ``//host``, or a CSS ``@import`` / ``url(http...)``."""
    m = _EXTERNAL_REF.search(page) or _CSS_EXTERNAL.search(page)
    if m:
        ctx = page[max(0, m.start() - 60) : m.end() + 60]
        raise ValueError(f"external reference in HTML: ...{ctx!r}...")


def _view_fragment(name: str, view: Any) -> str:
    if hasattr(view, "to_plotly_json"):  # a plotly Figure
        return plotly_fragment(view)
    if not isinstance(view, str):
        raise TypeError(f"interactive view {name!r}: expected HTML str or plotly Figure")
    if "plotly.js v" in view or re.search(r"<html|<!doctype", view, re.IGNORECASE):
        raise ValueError(
            f"interactive view {name!r} is a full document / bundles plotly.js; pass a "
            "fragment (isosurface_html(..., full_html=False)) so plotly.js is inlined once"
        )
    assert_no_external_references(view)
    return view


# --------------------------------------------------------------------------- report


def render_report(
    *,
    title: str,
    findings: pd.DataFrame | None = None,
    summary_table: str | pd.DataFrame | None = None,
    metrics: Mapping[str, Any] | None = None,
    figures: Mapping[str, Figure | bytes] | None = None,
    case_tables: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None,
    interactive_views: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    figure_captions: Mapping[str, str] | None = None,
    subtitle: str | None = None,
    dpi: int = 110,
) -> str:
    """Render the evaluation report as one self-contained HTML document.

    Parameters
    ----------
    title, subtitle:
        Page heading (escaped).
    findings:
        What was found, one row per case (``findings.case_summary``): the first section,
        so the page opens with the answer.
    summary_table:
        Headline comparison: a DataFrame, or a markdown pipe table (e.g.
        ``df.to_markdown()`` output); cells are escaped.
    metrics:
        ``{method: {metric: value}}`` (methods × metrics table) or any nested dict
        (flattened ``a / b | value`` rows).
    figures:
        ``{name: matplotlib Figure or PNG bytes}`` embedded as base64 PNG data URIs,
        in order, with the name (escaped) as caption unless ``figure_captions``
        gives one.
    case_tables:
        Per-case DataFrame, or ``{heading: DataFrame}``; rendered with
        ``to_html(escape=True)`` (index kept: e.g. case ids).
    interactive_views:
        ``{name: HTML fragment or plotly Figure}``; fragments must not bundle
        plotly.js (``isosurface_html(..., full_html=False)``): the library is inlined
        once, in ``<head>``, when there is at least one view.
    notes:
        Free-text remarks (escaped), shown as a list.
    dpi:
        Resolution for rendering ``Figure`` objects.
    """
    figures = dict(figures or {})
    views = {str(k): _view_fragment(str(k), v) for k, v in (interactive_views or {}).items()}
    captions = dict(figure_captions or {})
    if isinstance(case_tables, pd.DataFrame):
        case_tables = {"Per-case results": case_tables}
    case_tables = dict(case_tables or {})

    sections: list[tuple[str, str, str]] = []  # (anchor, heading, body html)

    if findings is not None and len(findings):
        body = _df_html(findings, index=False, text=True)
        sections.append(("findings", "What was found", f'<div class="scroll">{body}</div>'))

    if summary_table is not None:
        if isinstance(summary_table, pd.DataFrame):
            body = _df_html(summary_table)
        else:
            body = markdown_table_to_html(str(summary_table))
        sections.append(("summary", "Summary", f'<div class="scroll">{body}</div>'))

    if metrics:
        sections.append(
            ("metrics", "Metrics", f'<div class="scroll">{metrics_to_html(metrics)}</div>')
        )

    if figures:
        parts = []
        for i, (name, fig) in enumerate(figures.items()):
            png = figure_to_png_bytes(fig, dpi) if isinstance(fig, Figure) else bytes(fig)
            cap = captions.get(name, name)
            parts.append(
                f'<figure id="fig-{i}"><img src="{_png_data_uri(png)}" alt="{_esc(name)}">'
                f"<figcaption><strong>{_esc(name)}</strong>"
                + (f" — {_esc(cap)}" if cap != name else "")
                + "</figcaption></figure>"
            )
        sections.append(("figures", "Figures", "\n".join(parts)))

    if views:
        parts = [
            '<p class="muted">Drag to rotate, scroll to zoom, click legend entries to '
            "hide surfaces. Axes in mm (RAS voxel frame).</p>"
        ]
        for i, (name, frag) in enumerate(views.items()):
            parts.append(f'<div class="view" id="view-{i}"><h3>{_esc(name)}</h3>{frag}</div>')
        sections.append(("views", "Interactive 3D views", "\n".join(parts)))

    if case_tables:
        parts = []
        for heading, df in case_tables.items():
            if len(case_tables) > 1 or heading != "Per-case results":
                parts.append(f"<h3>{_esc(heading)}</h3>")
            parts.append(f'<div class="scroll">{_df_html(df)}</div>')
        sections.append(("cases", "Per-case results", "\n".join(parts)))

    if notes:
        items = "".join(f"<li>{_esc(n)}</li>" for n in notes)
        sections.append(("notes", "Notes", f"<ul>{items}</ul>"))

    nav = "".join(f'<li><a href="#{a}">{_esc(h)}</a></li>' for a, h, _ in sections)
    body = "\n".join(
        f'<section id="{a}"><h2>{_esc(h)}</h2>\n{b}\n</section>' for a, h, b in sections
    )
    head_js = f"<script>{offline_plotlyjs()}</script>" if views else ""
    sub = f'<p class="muted">{_esc(subtitle)}</p>' if subtitle else ""
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n{head_js}\n</head>\n<body>\n"
        f"<header><h1>{_esc(title)}</h1>{sub}</header>\n<nav><ul>{nav}</ul></nav>\n"
        f"{body}\n</body>\n</html>\n"
    )
    assert_no_external_references(page)
    return page
