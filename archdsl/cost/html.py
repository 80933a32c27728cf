"""Self-contained HTML pages for reports and comparisons: tables, and plots as inline SVG drawn by
matplotlib (text as paths, so no fonts are fetched). No scripts and no external resources: the page
opens offline and renders the same everywhere.

Plots show each cost against the length on log-log axes — the polynomial as a line over a range that
takes in the lengths asked for and every crossover, the exact counts at those lengths as points — the
crossovers marked, and a per-layer stacked bar of where the FLOPs go.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from typing import Any

from archdsl.cost.compare import METRICS, Comparison, in_length, metric_poly, metric_value
from archdsl.cost.poly import Poly
from archdsl.cost.render import convention_lines, header, layer_rows, summary_lines
from archdsl.cost.report import Report

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 12.5px; }
figure { margin: 1em 0; } svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 12.5px; }
"""

ROLE_COLOURS = {
    "attention": "#4c72b0",
    "ffn": "#dd8452",
    "head": "#55a868",
    "embedding": "#c44e52",
    "position": "#8172b3",
    "norm": "#937860",
    "adapter": "#da8bc3",
}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def svg(fig: Any) -> str:
    """A figure as an ``<svg>`` element (reproducible: fixed ids, no date)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "archdsl", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "archdsl"})
    text = buf.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF boilerplate
    return text[text.index("<svg") :]


def _grid(lo: float, hi: float, k: int = 160) -> list[float]:
    a, b = math.log(lo), math.log(hi)
    return [math.exp(a + (b - a) * i / (k - 1)) for i in range(k)]


def _curve(p: Poly, xs: Sequence[float]) -> tuple[list[float], list[float]]:
    """The polynomial's positive values along the grid (float evaluation)."""
    out_x, out_y = [], []
    for x in xs:
        y = sum(float(c) * x ** k[1] for k, c in p.terms.items())
        if y > 0:
            out_x.append(x)
            out_y.append(y)
    return out_x, out_y


def _span(seqs: Sequence[int], marks: Sequence[float]) -> tuple[float, float]:
    pts = [*seqs, *marks]
    return max(1.0, min(pts) / 2), max(pts) * 2


def _axes_loglog(ax: Any, title: str, unit: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("FLOPs" if unit == "flops" else "bytes")
    ax.grid(True, which="major", alpha=0.3)


def _panel(
    ax: Any,
    title: str,
    unit: str,
    lines: Sequence[tuple[str, Poly, Sequence[int], Sequence[Any]]],
    span: tuple[float, float],
    marks: Sequence[tuple[float, float, str]] = (),
) -> None:
    """One log-log panel: per series its polynomial as a line and its exact counts as points."""
    xs = _grid(*span)
    for label, poly, at, values in lines:
        cx, cy = _curve(poly, xs)
        (line,) = ax.plot(cx, cy, label=label, linewidth=1.6)
        ax.plot(at, [float(v) for v in values], "o", color=line.get_color(), markersize=4)
    for x, y, text in marks:
        ax.axvline(x, color="#888", linestyle=":", linewidth=1)
        ax.plot([x], [y], marker="X", color="black", markersize=8, zorder=5)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, -14), fontsize=8)
    _axes_loglog(ax, title, unit)
    ax.legend(fontsize=8)


def layer_bars(r: Report) -> Any:
    """Forward FLOPs and activation memory per layer, stacked by the role of each component."""
    fig = _figure(11, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    names = [layer.name for layer in r.layers]
    roles = list(dict.fromkeys(c.role for layer in r.layers for c in layer.components))
    bottom = [0.0] * len(names)
    for role in roles:
        vals = [float(sum(c.flops_forward for c in layer.components if c.role == role)) for layer in r.layers]
        if any(vals):
            ax1.bar(names, vals, bottom=bottom, label=role, color=ROLE_COLOURS.get(role))
            bottom = [a + b for a, b in zip(bottom, vals, strict=True)]
    ax1.set_title(f"{r.model}: forward FLOPs per layer (n = {r.seq_len:,})", fontsize=10)
    ax1.set_ylabel("FLOPs")
    ax1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not on them
    ax2.bar(names, [float(layer.activation_bytes) for layer in r.layers], color="#4c72b0")
    ax2.set_title(f"activations saved for backward ({r.settings.recompute})", fontsize=10)
    ax2.set_ylabel("bytes")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    return fig


def _table(rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _conventions() -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in convention_lines())
    return f'<h2>Conventions</h2><ul class="note">{items}</ul>'


def report_page(reports: Sequence[Report]) -> str:
    """One spec at one or more lengths: the costs against n, the per-layer breakdown, the tables."""
    r = reports[-1]
    seqs = [x.seq_len for x in reports]
    span = _span(seqs, [])
    body = [
        f"<h1>{html.escape(r.model)}</h1>",
        "<p>" + "<br>".join(html.escape(x) for x in header(r)) + "</p>",
    ]
    fig = _figure(11, 3.8)
    flops_ax, mem_ax = fig.subplots(1, 2)
    lines = []
    for key in ("forward", "forward_mask_aware", "train_step"):
        title = next(m.title for m in METRICS if m.key == key)
        lines.append(
            (title, in_length(r, metric_poly(r, key)), seqs, [metric_value(x, key) for x in reports])
        )
    _panel(flops_ax, "FLOPs against n", "flops", lines, span)
    lines = []
    for key in ("activation_bytes", "kv_cache_bytes", "train_memory", "infer_memory"):
        title = next(m.title for m in METRICS if m.key == key).split(" (")[0]
        lines.append(
            (title, in_length(r, metric_poly(r, key)), seqs, [metric_value(x, key) for x in reports])
        )
    _panel(mem_ax, "memory against n", "bytes", lines, span)
    body += ["<h2>Costs against sequence length</h2>", f"<figure>{svg(fig)}</figure>"]
    body += ["<h2>Per layer</h2>", f"<figure>{svg(layer_bars(r))}</figure>"]
    for x in reports:
        body += [f"<h2>At n = {x.seq_len:,}</h2>", _table(layer_rows(x))]
        body.append("<pre>" + html.escape("\n".join(summary_lines(x))) + "</pre>")
    body.append(_conventions())
    return _page(f"archdsl report: {r.model}", body)


def compare_page(c: Comparison) -> str:
    """Variants side by side: each metric against n for every variant with the crossovers marked, the
    per-layer bars of each, and the comparison's tables."""
    roots = [x.root for x in c.crossovers]
    span = _span(c.seq_lens, roots)
    names = [v.name for v in c.variants]
    body = [f"<h1>Comparison: {html.escape(', '.join(names))}</h1>"]
    s = c.base.reports[0].settings
    body.append(
        f"<p>batch {s.batch}, {s.dtype}, recompute {s.recompute}, {s.attention} attention; lines are the "
        "polynomials, points the exact counts at the lengths asked for, ✕ the crossovers.</p>"
    )
    for group, keys in (
        ("FLOPs", ("forward", "forward_mask_aware", "train_step")),
        ("Memory", ("activation_bytes", "kv_cache_bytes", "train_memory", "infer_memory")),
    ):
        fig = _figure(12, 3.6 * math.ceil(len(keys) / 2))
        axes = fig.subplots(math.ceil(len(keys) / 2), 2).flatten()
        for ax, key in zip(axes, keys, strict=False):
            m = next(m for m in METRICS if m.key == key)
            lines = [
                (
                    v.name,
                    in_length(v.reports[0], metric_poly(v.reports[0], key)),
                    c.seq_lens,
                    c.values(key)[v.name],
                )
                for v in c.variants
            ]
            marks = []
            for x in c.crossovers:
                if x.metric == key:
                    p = in_length(
                        c.variants[names.index(x.a)].reports[0],
                        metric_poly(c.variants[names.index(x.a)].reports[0], key),
                    )
                    y = sum(float(coef) * x.root ** k[1] for k, coef in p.terms.items())
                    marks.append((x.root, y, f"n ≈ {x.root:,.1f}"))
            _panel(ax, m.title, m.unit, lines, span, marks)
        for ax in axes[len(keys) :]:
            ax.set_visible(False)
        body += [f"<h2>{group} against sequence length</h2>", f"<figure>{svg(fig)}</figure>"]
    body.append("<h2>Crossovers</h2>")
    if c.crossovers:
        body.append("<ul>" + "".join(f"<li>{html.escape(x.text())}</li>" for x in c.crossovers) + "</ul>")
    else:
        body.append("<p>No two variants' costs cross for n &gt; 0.</p>")
    body.append("<h2>Side by side</h2>")
    body.append("<pre>" + html.escape(c.render("table")) + "</pre>")
    for v in c.variants:
        body += [
            f"<h2>{html.escape(v.name)}: per layer</h2>",
            f"<figure>{svg(layer_bars(v.reports[-1]))}</figure>",
        ]
    body.append(_conventions())
    return _page("archdsl compare: " + ", ".join(names), body)


__all__ = ["compare_page", "report_page"]
