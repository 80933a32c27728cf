"""`--format html`: one self-contained page (inline SVG from matplotlib), opened in headless Chromium
(Debian's `chromium`, which .ci/run installs), which must render it without a console message."""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import SPECS, run_cli

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium() -> str:
    """The browser, or a failure that says why the page could not be checked (never a pass)."""
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    pytest.fail(
        "headless Chromium not found, so the HTML report could not be checked in a browser: install "
        "Debian's `chromium` (apt-get install chromium; .ci/run does) or set CHROMIUM to a browser"
    )


def render(page: Path, tmp: Path) -> tuple[str, list[str]]:
    """The DOM after Chromium loaded the page, and the console messages it logged."""
    r = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


def test_the_console_check_catches_errors(tmp_path: Path) -> None:
    """The check below is not vacuous: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined();</script></body></html>")
    dom, console = render(bad, tmp_path)
    assert "<p>x</p>" in dom
    assert any("notDefined" in line for line in console), console


def test_compare_page_renders_with_crossovers_marked(tmp_path: Path) -> None:
    page = tmp_path / "compare.html"
    r = run_cli(
        "compare",
        "specs/gpt2_small.arch",
        "specs/gpt2_small_linear.arch",
        "--seq",
        "128,256,512,1k",
        "--format",
        "html",
        "-o",
        str(page),
    )
    assert r.returncode == 0, r.stderr
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and not re.search(
        r"(src|href)=\"(https?:)?//|url\((?!#)", text
    )  # self-contained
    svgs = re.findall(r"<svg.*?</svg>", text, re.S)
    assert len(svgs) >= 4  # FLOPs, memory, a per-layer bar per variant
    for s in svgs:
        ET.fromstring(s)  # well-formed
    assert "n = 158: gpt2_small_linear cheaper" in text  # the FLOPs crossing, marked on the plot
    assert "n ≈ 129.5" not in text  # the polynomials' root is not a crossing of the counts
    dom, console = render(page, tmp_path)
    assert console == [], console
    assert dom.count("<svg") == len(svgs) and "Crossovers" in dom and "gpt2_small_linear" in dom


def test_report_page_renders(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    r = run_cli("report", "specs/mistral_7b.arch", "--seq", "1k,8k,32k", "--format", "html", "-o", str(page))
    assert r.returncode == 0, r.stderr
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == 2 and text.count("<table>") == 3
    dom, console = render(page, tmp_path)
    assert console == [], console
    assert "At n = 32,768" in dom and "per layer" in dom.lower()
    # each length's table has its own header; the page's names every length, not the last alone
    top = re.search(r"</h1>\s*<p>(.*?)</p>", text, re.S)[1]  # type: ignore[index]
    assert "seq_len" not in top and "lengths 1,024, 8,192, 32,768 (context 32,768)" in top
    for n in (1024, 8192, 32768):
        section = text.split(f"<h2>At n = {n:,}</h2>")[1].split("<h2>")[0]
        assert re.match(rf"\s*<p>[^<]*<br>batch 1, seq_len {n}, fp32", section), section[:200]


# -- the plots: within the model's context, crossings as the text says, no label over another -----------


@functools.cache
def figures() -> dict[str, tuple[Any, Any]]:
    """(what, figure, the comparison or reports) for a report sweep and a comparison."""
    import archdsl
    from archdsl.cost.compare import compare
    from archdsl.cost.html import compare_figures, report_figure

    specs = [archdsl.load(SPECS / f"{x}.arch") for x in ("gpt2_small", "gpt2_small_linear")]
    c = compare(specs, [128, 256, 512, 1024])
    reports = archdsl.sweep(archdsl.load(SPECS / "gpt2_small.arch"), [256, 1024])
    return {"report": (report_figure(reports), reports), **{g: (f, c) for g, f in compare_figures(c)}}


PLOTS = ("report", "FLOPs", "Memory")


@pytest.mark.parametrize("what", PLOTS)
def test_plots_stop_at_the_context_and_mark_only_reported_crossings(what: str) -> None:
    from archdsl.cost.compare import METRICS

    fig, source = figures()[what]
    context = 1024  # GPT-2's learned positions
    titles = {m.title: m.key for m in METRICS}
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        assert ax.get_xlim()[1] <= context, ax.get_title()
        for line in ax.get_lines():
            assert max(line.get_xdata(), default=0) <= context
        marked = sorted(x for line in ax.get_lines() if line.get_marker() == "X" for x in line.get_xdata())
        if what == "report":
            assert marked == []
            continue
        key = titles[ax.get_title()]
        assert marked == sorted(k.n for x in source.crossovers if x.metric == key for k in x.crossings)
    if what == "FLOPs":
        assert any(
            line.get_marker() == "X" and list(line.get_xdata()) == [158] for line in fig.axes[0].get_lines()
        )


@pytest.mark.parametrize("what", PLOTS)
def test_no_label_overlaps_another_or_the_plot(what: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, _ = figures()[what]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = []
    for ax in (a for a in fig.axes if a.get_visible()):
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label]
        texts += _tick_labels(ax.xaxis, ax.get_xlim()) + _tick_labels(ax.yaxis, ax.get_ylim())
        texts += list(ax.texts)  # annotations
        legend = ax.get_legend()
        if legend is not None:
            texts += list(legend.get_texts())
            frame = legend.get_window_extent(renderer)
            for other in (a for a in fig.axes if a.get_visible()):  # a legend never covers a plot
                assert not frame.overlaps(other.get_window_extent(renderer)), (what, ax.get_title())
        boxes += [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible()]
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (what, ta, tb)


def _tick_labels(axis: Any, limits: tuple[float, float]) -> list[Any]:
    """The tick labels drawn: those of ticks inside the view (matplotlib keeps one or two beyond it)."""
    lo, hi = sorted(limits)
    return [t.label1 for t in axis.get_major_ticks() if lo <= t.get_loc() <= hi and t.label1.get_text()]
