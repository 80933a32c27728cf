"""Golden tests: every bad spec in tests/golden/cases renders exactly the diagnostics in its .out file.

A case runs ``archdsl check CASE`` unless its first line says otherwise (``# archdsl: report --seq
4096``). Regenerate the expected outputs after an intended change with ``pytest --update-golden``
(then read the diff).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from conftest import ROOT

from archdsl.cli import main
from archdsl.errors import ERRORS

CASES = ROOT / "tests" / "golden" / "cases"
# codes a spec's text cannot produce: the language only builds acyclic graphs (E012, a guard tested in
# test_diagnostics); an unreadable file (E019, exit 2) and a model too large for this machine's memory
# (E020) are tested in tests/test_bad.py and tests/test_build_limits.py
NOT_FROM_SOURCE = {"E012", "E019", "E020", "E021"}  # E021: a Hugging Face config field (import-hf)


def cases() -> list[Path]:
    return sorted([*CASES.glob("*.arch"), *CASES.glob("*.yaml")])


def command(case: Path) -> list[str]:
    rel = str(case.relative_to(ROOT))
    first = case.read_text().splitlines()[0] if case.read_text() else ""
    m = re.match(r"#\s*archdsl:\s*(\S+)(.*)", first)
    if m:
        return [m.group(1), rel, *shlex.split(m.group(2))]
    return ["check", rel]


def run(args: list[str]) -> str:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(args)
    return f"$ archdsl {shlex.join(args)}\nexit {code}\n{out.getvalue()}{err.getvalue()}"


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_golden(case: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    got = run(command(case))
    expected_file = case.with_name(case.name + ".out")
    if request.config.getoption("--update-golden"):
        expected_file.write_text(got)
    assert expected_file.exists(), f"no expected output; run pytest --update-golden and read {expected_file}"
    assert got == expected_file.read_text()
    assert "exit 1\n" in got and "Traceback" not in got
    # every diagnostic carries a location, a caret and a help line
    blocks = re.split(r"\n(?=error\[)", got)[1:]
    assert blocks
    for b in blocks:
        assert re.search(r"--> [^\n]+:\d+:\d+", b) and "^" in b and "\nhelp: " in b, b


def test_golden_cases_cover_every_error_code() -> None:
    covered = set()
    for out in CASES.glob("*.out"):
        covered |= set(re.findall(r"error\[(E\d{3})\]", out.read_text()))
    assert set(ERRORS) - NOT_FROM_SOURCE <= covered, sorted(set(ERRORS) - NOT_FROM_SOURCE - covered)
    assert len(cases()) >= 40
    assert {p.suffix for p in cases()} == {".arch", ".yaml"}
