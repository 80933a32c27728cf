"""The command line: exit codes, stdout/stderr discipline, JSON shape, no tracebacks for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, SPECS, run_cli


def test_check_ok_exits_0() -> None:
    r = run_cli(
        "check", "specs/gpt2_small.arch", "specs/gpt2_small.yaml", "specs/bert_like.arch", "specs/tiny.arch"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(": ok") == 4


def test_check_heads_not_dividing_exits_1_with_location_and_caret(write_spec) -> None:  # type: ignore[no-untyped-def]
    text = (SPECS / "gpt2_small.arch").read_text().replace("n_heads  = 12", "n_heads  = 10")
    p = write_spec("bad_heads.arch", text)
    r = run_cli("check", str(p))
    assert r.returncode == 1
    assert r.stdout == ""
    err = r.stderr
    assert "error[E011]: d_model (768) is not divisible by heads (10)" in err
    assert f"--> {p}:23:21" in err
    assert "attention = mha(heads = n_heads" in err
    assert "^^^^^^^^^^^^^^^" in err
    assert "Traceback" not in err


def test_check_json_format() -> None:
    r = run_cli("check", "specs/gpt2_small.arch", "--set", "n_heads=10", "--format", "json")
    assert r.returncode == 1
    [d] = json.loads(r.stdout)
    assert d["code"] == "E011" and d["line"] == 23 and d["column"] == 21 and d["severity"] == "error"
    assert {"file", "end_line", "end_column", "help", "message"} <= set(d)


def test_report_json_gpt2_small_and_yaml_twin_identical() -> None:
    a = run_cli("report", "specs/gpt2_small.arch", "--seq", "1024", "--batch", "1", "--format", "json")
    b = run_cli("report", "specs/gpt2_small.yaml", "--seq", "1024", "--batch", "1", "--format", "json")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout
    j = json.loads(a.stdout)
    assert j["params"]["total"] == 124_439_808
    assert j["flops"]["forward"] == 291_648_307_200
    assert {k: j["settings"][k] for k in ("batch", "seq_len", "dtype", "recompute")} == {
        "batch": 1,
        "seq_len": 1024,
        "dtype": "fp32",
        "recompute": "none",
    }
    assert len(j["layers"]) == 15  # embedding, 12 blocks, ln_f, lm_head
    assert all(
        isinstance(layer["params"], int) and isinstance(layer["flops_forward"], int) for layer in j["layers"]
    )
    assert sum(layer["params"] for layer in j["layers"]) == j["params"]["total"]
    assert sum(layer["flops_forward"] for layer in j["layers"]) == j["flops"]["forward"]


def test_report_table() -> None:
    r = run_cli("report", "specs/gpt2_small.arch", "--seq", "1024")
    assert r.returncode == 0
    assert "124,439,808" in r.stdout and "291,648,307,200" in r.stdout
    assert "FlopCounterMode" in r.stdout  # the convention is stated


def test_report_with_overrides_and_too_long_sequence() -> None:
    r = run_cli(
        "report",
        "specs/gpt2_small.arch",
        "--set",
        "n_layers=2",
        "--set",
        "d_model=64",
        "--set",
        "n_heads=4",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["layers"]) == 5
    r = run_cli("report", "specs/gpt2_small.arch", "--seq", "2048")
    assert r.returncode == 1 and "E014" in r.stderr and "Traceback" not in r.stderr


def test_compile_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "m.py"
    r = run_cli("compile", str(SPECS / "gpt2_small.arch"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "class Transformer(Stack)" in out.read_text()


def test_usage_and_io_errors_exit_2() -> None:
    for args in (
        ("check", "specs/does_not_exist.arch"),
        ("report",),
        ("frobnicate", "x"),
        ("report", "specs/gpt2_small.arch", "--seq", "abc"),
        ("report", "specs/gpt2_small.arch", "--batch", "0"),
        ("check", "specs/gpt2_small.arch", "--set", "n_layers"),
    ):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_bad_override_is_a_spec_error() -> None:
    r = run_cli("check", "specs/gpt2_small.arch", "--set", "n_layer=2")
    assert r.returncode == 1
    assert "E015" in r.stderr and "did you mean `n_layers`?" in r.stderr
    r = run_cli("check", "specs/gpt2_small.arch", "--set", "n_layers=2 +")
    assert r.returncode == 1 and "E001" in r.stderr and "Traceback" not in r.stderr


def test_garbage_input_never_tracebacks(write_spec) -> None:  # type: ignore[no-untyped-def]
    for name, text in [
        ("a.arch", "\x00\x01 model {{{"),
        ("b.arch", "model m { block { repeat = 10 ** 100 } }"),
        ("c.yaml", "- just\n- a list\n"),
        ("d.yaml", "model: {name: [1]}\n"),
        ("e.arch", "x = " + "(" * 5000 + "1" + ")" * 5000),
        ("f.yaml", "x: " + "[" * 5000),
        ("g.arch", "model m { type = decoder d_model = 0 vocab = -3 }"),
    ]:
        r = run_cli("check", str(write_spec(name, text)))
        assert r.returncode == 1, (name, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (name, r.stderr)


def test_python_dash_m_and_console_script_agree() -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "archdsl"  # installed by the README's set-up (pip install -e)
    a = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    b = run_cli("--version")
    assert a.returncode == 0 and a.stdout.startswith("archdsl ")
    assert a.stdout == b.stdout


def _stderr_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run archdsl with stderr on a pseudo-terminal (stdout piped): what a user at a terminal sees."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a width
    p = subprocess.Popen(
        [sys.executable, "-m", "archdsl", *args], stdout=subprocess.PIPE, stderr=slave, cwd=ROOT, text=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = p.stdout.read() if p.stdout else ""
    p.wait(timeout=120)
    os.close(master)
    return p.returncode, out, b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only() -> None:
    sweep = ("compare", "specs/gpt2_small.arch", "specs/gpt2_small_linear.arch", "--seq", "128,256,512,1k")
    code, out, err = _stderr_on_a_terminal(*sweep)
    assert code == 0 and "crossovers" in out
    assert "compare:" in err and "/8 [" in err  # the bar: 8 reports (2 specs x 4 lengths)
    piped = run_cli(*sweep)
    assert piped.returncode == 0 and piped.stderr == ""  # no bar when stderr is not a terminal
    code, _, err = _stderr_on_a_terminal("report", "specs/gpt2_small.arch", "--seq", "256,1k")
    assert code == 0 and "report:" in err and "/2 [" in err
