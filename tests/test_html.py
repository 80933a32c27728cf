"""`--format html`: one self-contained page (inline SVG from matplotlib), opened in headless Chromium
(Debian's `chromium`, which .ci/run installs), which must render it without a console message."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import run_cli

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
    assert "n ≈ 129.5" in text  # the FLOPs crossover, marked on the plot
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
