"""Self-contained HTML pages for reports and comparisons: tables, and plots as inline SVG drawn by
matplotlib (text as paths, so no fonts are fetched). No scripts and no external resources: the page
opens offline and renders the same everywhere.

Plots show each cost against the length on log-log axes — the exact counts as a line (computed at
about fifty lengths, never past the model's context), points at the lengths asked for — the
crossings the text reports marked and named in the legend (below the axes, so no label covers a line
or another), and a per-layer stacked bar of where the FLOPs go. No polynomial is drawn: outside its
regime it is not the count.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from archdsl.cost.compare import METRICS, Comparison, metric_title, metric_value
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


def grid_lengths(lo: int, hi: int, extra: Iterable[int] = (), k: int = 48) -> list[int]:
    """About ``k`` integer lengths spaced evenly on a log axis from lo to hi, with ``extra`` (the
    lengths asked for, breakpoints) inside that range."""
    a, b = math.log(lo), math.log(hi)
    pts = {round(math.exp(a + (b - a) * i / (k - 1))) for i in range(k)} | {lo, hi}
    pts |= {x for x in extra if lo <= x <= hi}
    return sorted(pts)


def axis_span(asked: Sequence[int], marks: Sequence[int], context: int | None) -> tuple[int, int]:
    """The x-axis: from half the shortest length asked to twice the longest (or the last crossing),
    never past the model's context."""
    lo = max(1, min([*asked, *marks]) // 2)
    hi = max([*asked, *marks]) * 2
    if context is not None:
        hi = min(hi, context)
    return lo, max(hi, lo + 1)


def _axes_loglog(ax: Any, title: str, unit: str, span: tuple[int, int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlim(*span)  # no margin: the axis ends at the last length the model takes
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("FLOPs" if unit == "flops" else "bytes")
    ax.grid(True, which="major", alpha=0.3)


@dataclass(frozen=True)
class Series:
    """One line of a plot: the exact counts at the lengths ``xs``, with points at the lengths asked."""

    label: str
    xs: Sequence[int]
    ys: Sequence[Any]
    asked: Sequence[int]


def _positive(xs: Sequence[int], ys: Sequence[Any]) -> tuple[list[int], list[float]]:
    pairs = [(x, float(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _panel(
    ax: Any,
    title: str,
    unit: str,
    series: Sequence[Series],
    span: tuple[int, int],
    marks: Sequence[tuple[int, float, str]] = (),
) -> None:
    """One log-log panel: per series its exact counts as a line, with points at the lengths asked;
    the crossings as crosses, named in the legend (below the axes, so no label covers a line or
    another label)."""
    drawn = False
    for s in series:
        xs, ys = _positive(s.xs, s.ys)
        (line,) = ax.plot(xs, ys, label=s.label, linewidth=1.6)
        at = {x: y for x, y in zip(xs, ys, strict=True)}
        px = [x for x in s.asked if x in at]
        ax.plot(px, [at[x] for x in px], "o", color=line.get_color(), markersize=4)
        drawn = drawn or bool(xs)
    for x, y, text in marks:
        ax.plot([x], [y], linestyle="none", marker="X", color="black", markersize=8, zorder=5, label=text)
    _axes_loglog(ax, title if drawn else f"{title}: none", unit, span)
    if not drawn:  # zero at every length (an encoder's KV cache): nothing to put on a log axis
        ax.set_yscale("linear")
        ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)


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


REPORT_PANELS = (
    ("FLOPs against n", "flops", ("forward", "forward_mask_aware", "train_step")),
    ("memory against n", "bytes", ("activation_bytes", "kv_cache_bytes", "train_memory", "infer_memory")),
)


def _short(key: str) -> str:
    """A memory metric's name without its breakdown (``training memory``); FLOPs keep their
    convention (dense, mask-aware)."""
    title = metric_title(key)
    return title.split(" (")[0] if title.endswith("cache)") or "memory" in title else title


def report_figure(reports: Sequence[Report]) -> Any:
    """FLOPs and memory against n: the exact counts over the lengths up to the model's context."""
    r = reports[-1]
    asked = [x.seq_len for x in reports]
    span = axis_span(asked, [], r.context)
    breaks = r.kv_pieces.breakpoints() if r.kv_pieces is not None else []
    xs = grid_lengths(*span, [*asked, *breaks, *(b - 1 for b in breaks)])
    fig = _figure(11, 4.4)
    for ax, (title, unit, keys) in zip(fig.subplots(1, 2), REPORT_PANELS, strict=True):
        series = [Series(_short(k), xs, [metric_value(r.at(n), k) for n in xs], asked) for k in keys]
        _panel(ax, title, unit, series, span)
    return fig


def _header_html(lines: Sequence[str]) -> str:
    return "<p>" + "<br>".join(html.escape(x) for x in lines) + "</p>"


def report_page(reports: Sequence[Report]) -> str:
    """One spec at one or more lengths: the costs against n, the per-layer breakdown, and per length
    its own header, table and summary."""
    r = reports[-1]
    s = r.settings
    lengths = ", ".join(f"{x.seq_len:,}" for x in reports)
    context = f" (context {r.context:,})" if r.context is not None else ""
    body = [
        f"<h1>{html.escape(r.model)}</h1>",
        _header_html(
            [
                header(r)[0],
                f"batch {s.batch}, {s.dtype}, recompute {s.recompute}, {s.attention} attention; "
                f"lengths {lengths}{context}",
            ]
        ),
    ]
    body += [
        "<h2>Costs against sequence length</h2>",
        '<p class="note">lines: the exact counts; points: the lengths asked for.</p>',
        f"<figure>{svg(report_figure(reports))}</figure>",
    ]
    body += [f"<h2>Per layer (n = {r.seq_len:,})</h2>", f"<figure>{svg(layer_bars(r))}</figure>"]
    for x in reports:
        body += [f"<h2>At n = {x.seq_len:,}</h2>", _header_html(header(x)), _table(layer_rows(x))]
        body.append("<pre>" + html.escape("\n".join(summary_lines(x))) + "</pre>")
    body.append(_conventions())
    return _page(f"archdsl report: {r.model}", body)


COMPARE_GROUPS = (
    ("FLOPs", ("forward", "forward_mask_aware", "train_step")),
    ("Memory", ("activation_bytes", "kv_cache_bytes", "train_memory", "infer_memory")),
)


def _crossing_marks(c: Comparison, key: str) -> list[tuple[int, float, str]]:
    """The crossings the text reports for one metric: at each, the exact count (of the first variant
    of the pair) and a legend entry saying who is cheaper from there."""
    by = {v.name: v for v in c.variants}
    marks = []
    for x in c.crossovers:
        if x.metric != key:
            continue
        for k in x.crossings:
            who = f"{k.after} cheaper" if k.after else "equal"
            marks.append((k.n, float(metric_value(by[x.a].at(k.n), key)), f"n = {k.n:,}: {who}"))
    return marks


def compare_figures(c: Comparison) -> list[tuple[str, Any]]:
    """Per group of metrics, a figure of each against n for every variant: the exact counts over the
    lengths every variant takes, with the crossings of the text marked."""
    crossings = [k.n for x in c.crossovers for k in x.crossings]
    span = axis_span(c.seq_lens, crossings, c.span[1])
    xs = grid_lengths(*span, [*c.seq_lens, *crossings])
    out = []
    for group, keys in COMPARE_GROUPS:
        rows = math.ceil(len(keys) / 2)
        fig = _figure(12, 4.4 * rows)
        axes = fig.subplots(rows, 2).flatten()
        for ax, key in zip(axes, keys, strict=False):
            m = next(m for m in METRICS if m.key == key)
            series = [
                Series(v.name, xs, [metric_value(v.at(n), key) for n in xs], c.seq_lens) for v in c.variants
            ]
            _panel(ax, m.title, m.unit, series, span, _crossing_marks(c, key))
        for ax in axes[len(keys) :]:
            ax.set_visible(False)
        out.append((group, fig))
    return out


def compare_page(c: Comparison) -> str:
    """Variants side by side: each metric against n for every variant with the crossings marked, the
    per-layer bars of each, and the comparison's tables."""
    names = [v.name for v in c.variants]
    body = [f"<h1>Comparison: {html.escape(', '.join(names))}</h1>"]
    s = c.base.reports[0].settings
    body.append(
        f"<p>batch {s.batch}, {s.dtype}, recompute {s.recompute}, {s.attention} attention; lines are the "
        f"exact counts for n ≤ {c.span[1]:,}, points the lengths asked for, ✕ the crossings listed below.</p>"
    )
    for v in c.variants:
        if v.context is not None and c.span[1] > v.context:
            body.append(
                f"<p>Past {html.escape(v.name)}'s context ({v.context:,} positions) its figures are "
                "computed as if its position tables were longer (its weights unchanged).</p>"
            )
    for group, fig in compare_figures(c):
        body += [f"<h2>{group} against sequence length</h2>", f"<figure>{svg(fig)}</figure>"]
    body.append("<h2>Crossovers</h2>")
    if c.crossovers:
        body.append("<ul>" + "".join(f"<li>{html.escape(x.text())}</li>" for x in c.crossovers) + "</ul>")
    else:
        body.append(f"<p>No two variants' exact counts change order for n ≤ {c.span[1]:,}.</p>")
    body.append("<h2>Side by side</h2>")
    body.append("<pre>" + html.escape(c.render("table")) + "</pre>")
    for v in c.variants:
        body += [
            f"<h2>{html.escape(v.name)}: per layer (n = {v.reports[-1].seq_len:,})</h2>",
            f"<figure>{svg(layer_bars(v.reports[-1]))}</figure>",
        ]
    body.append(_conventions())
    return _page("archdsl compare: " + ", ".join(names), body)


__all__ = ["compare_page", "report_page"]
