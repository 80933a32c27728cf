"""The command line's contract, as a new user meets it: a closed pipe, --set where the README says,
help that fits the mistake, terminal-safe output, and a main job that needs no root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SPECS, run_cli

from archdsl.diagnostics import Diagnostic, SourceCache, Span, render


def piped(args: str) -> tuple[int, str]:
    """Run archdsl into ``head -c 10``: its exit status and its stderr."""
    r = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m archdsl {args} 2>err.txt | head -c 10 >/dev/null; "
         "echo ${PIPESTATUS[0]}"],
        capture_output=True, text=True, cwd=ROOT / "tests", timeout=120,
    )  # fmt: skip
    err = (ROOT / "tests" / "err.txt").read_text()
    (ROOT / "tests" / "err.txt").unlink()
    return int(r.stdout.strip()), err


def test_a_closed_pipe_ends_quietly() -> None:
    for args in ("schema", "report ../specs/gpt2_small.arch --format json", "explain --markdown"):
        status, err = piped(args)
        assert err == "", (args, err)
        # Python's documented recipe for EPIPE: status 1 (0 when all the output fit in the pipe's buffer
        # before the reader left; the schema is larger than any pipe buffer)
        assert status == 1 if args == "schema" else status in (0, 1), (args, status)


def test_set_on_fmt_prints_the_changed_spec() -> None:
    r = run_cli("fmt", "specs/tiny.arch", "--set", "n_layers=3", "--set", "model.block.attention.heads=2")
    assert r.returncode == 0, r.stderr
    assert "n_layers = 3" in r.stdout and "mha(heads = 2," in r.stdout
    r = run_cli("fmt", "specs/tiny.arch", "--set", "n_layerz=3")
    assert r.returncode == 1 and "E015" in r.stderr and "did you mean `n_layers`?" in r.stderr
    r = run_cli("fmt", "specs/tiny.arch", "--set", "n_layers=3", "--write")
    assert r.returncode == 2 and "--set" in r.stderr


def test_set_on_schema_is_a_clear_usage_error() -> None:
    r = run_cli("schema", "--set", "n_layers=2")
    assert r.returncode == 2 and r.stdout == ""
    assert "schema" in r.stderr and "--set" in r.stderr and "unrecognized" not in r.stderr


def test_missing_brace_after_a_section_header(write_spec) -> None:  # type: ignore[no-untyped-def]
    for header in ("model gpt2", "block dense"):
        text = (SPECS / "tiny.arch").read_text()
        text = text.replace("model tiny {", f"{header}" if header.startswith("model") else "model tiny {")
        if header.startswith("block"):
            text = "block dense\n  attention = mha(heads = 4)\n}\n" + text
        r = run_cli("check", str(write_spec("m.arch", text)))
        assert r.returncode == 1
        assert f"`{header}` is missing its '{{'" in r.stderr, r.stderr
        assert f"help: write `{header} {{`" in r.stderr and "model = " not in r.stderr


def test_tabs_in_yaml_are_explained(write_spec) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("check", str(write_spec("t.yaml", "model:\n\tname: x\n")))
    assert r.returncode == 1 and "E002" in r.stderr and "tab" in r.stderr.split("help:")[1]
    assert "tab" in run_cli("explain", "E002").stdout


def test_reference_does_not_call_a_weighted_kind_parameterless() -> None:
    text = (ROOT / "docs" / "language.md").read_text()
    pooler = text.split("#### `pooler`")[1].split("####")[0]
    assert "No parameters" not in pooler and "pooler()" in pooler


def test_file_names_and_source_lines_are_escaped_for_the_terminal(tmp_path: Path) -> None:
    name = tmp_path / "a\x1b[31mb\u202e.arch"
    name.write_text("x = = 1\n")
    r = subprocess.run(
        [sys.executable, "-m", "archdsl", "check", str(name)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    assert "\x1b" not in r.stderr and "\u202e" not in r.stderr
    assert "a\\x1b[31mb\\u202e.arch" in r.stderr


def test_caret_stays_under_the_problem_after_escapes() -> None:
    line = "# \x1b[0m\tx = 1 + oops"
    d = Diagnostic("E003", "unknown name `oops`", Span("f.arch", 1, 16, 1, 20))
    out = render(d, SourceCache({"f.arch": line}))
    shown, caret = out.splitlines()[3], out.splitlines()[4]
    assert "\x1b" not in out and "\t" not in out
    start = caret.index("^")
    assert shown[start : start + 4] == "oops" and caret.count("^") == 4


def test_readme_main_job_needs_no_root_or_browser() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- quickstart -->")[1].split("<!-- /quickstart -->")[0]
    first, second = [line for line in block.splitlines() if line.strip() and not line.startswith("```")]
    for word in ("apt-get", "chromium", "sudo", "[dev]"):
        assert word not in first, word
    assert "chromium" in second and "pytest" in second
