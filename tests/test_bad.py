"""The hostile-spec corpus (tests/bad): every case ends in a diagnostic, never in code archdsl did not
mean to run.

Per case, the invariant: exit status 1 (the spec is wrong) or 2 (it cannot be read); a rendered
diagnostic with ``file:line:col`` — the first one with the code and position tests/bad/MANIFEST
expects; no traceback and no "internal error"; under a second of CPU time (CPU, not wall-clock, so a
busy machine does not fail it; benchmarks/bench_limits.py times the worst cases on the clock); and no
output file created or changed.
Cases are the committed files in tests/bad/cases, the larger ones tests/bad/make_corpus.py describes,
and the ones only the file system can hold (FIFOs, directories, symlinks, devices, a 10 MB file),
made below. ``pytest tests/test_bad.py --update-bad`` rewrites the manifest (read the diff).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "bad"))
import make_corpus

from archdsl.cli import main

BAD = ROOT / "tests" / "bad"
MANIFEST = BAD / "MANIFEST"
#: the command a case runs, unless the manifest says otherwise: check, and now and then the commands
#: that would write a file or build a report, to see that they refuse as check does
DEFAULT_COMMANDS = ("check {case}", "compile {case} -o out.py", "report {case} --seq 16 -o out.json")


def generated(root: Path) -> dict[str, str]:
    """Cases the file system holds, made in ``root``; by name, their command."""
    out: dict[str, str] = {}
    os.mkfifo(root / "fifo.arch")
    out["fifo.arch"] = "check {case}"
    os.mkfifo(root / "fifo_extended.arch")
    (root / "extends_fifo.arch").write_text('extends "fifo_extended.arch"\n' + make_corpus.arch())
    out["extends_fifo.arch"] = "check {case}"
    (root / "a_directory.arch").mkdir()
    out["a_directory.arch"] = "check {case}"
    (root / "extends_directory.arch").write_text('extends "a_directory.arch"\n' + make_corpus.arch())
    out["extends_directory.arch"] = "check {case}"
    (root / "symlink_out.arch").symlink_to("/etc/hostname")
    (root / "extends_symlink_out.arch").write_text('extends "symlink_out.arch"\n' + make_corpus.arch())
    out["extends_symlink_out.arch"] = "check {case}"
    (root / "dev_zero.arch").symlink_to("/dev/zero")
    out["dev_zero.arch"] = "check {case}"
    (root / "extends_dev_zero.yaml").write_text("extends: dev_zero.arch\n" + make_corpus.yaml())
    out["extends_dev_zero.yaml"] = "check {case}"
    out["missing.arch"] = "check {case}"
    with open(root / "ten_mb.arch", "wb") as f:
        f.write(make_corpus.arch().encode() + b"# " + b"x" * (10 << 20) + b"\n")
    out["ten_mb.arch"] = "check {case}"
    with open(root / "ten_mb.yaml", "wb") as f:
        f.write(make_corpus.yaml().encode() + b"# " + b"x" * (10 << 20) + b"\n")
    out["ten_mb.yaml"] = "report {case}"
    chain = [f"chain_{i:02d}.arch" for i in range(20)]  # more files than one composition reads
    for this, nxt in itertools.pairwise(chain):
        (root / this).write_text(f'extends "{nxt}"\n')
    (root / chain[-1]).write_text(make_corpus.arch())
    out[chain[0]] = "check {case}"
    (root / "unreadable.arch").write_text(make_corpus.arch())
    os.chmod(root / "unreadable.arch", 0)
    if os.access(root / "unreadable.arch", os.R_OK):  # root reads anything: use an unreadable kind
        os.chmod(root / "unreadable.arch", 0o644)
        (root / "unreadable.arch").unlink()
        os.mkfifo(root / "unreadable.arch")
    out["unreadable.arch"] = "check {case}"
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("bad") / "cases"
    shutil.copytree(BAD / "cases", root)
    for name, data in make_corpus.large().items():
        (root / name).write_bytes(data)
    files = sorted(p.name for p in root.iterdir() if p.is_file())  # lib/: what cases import
    commands = {
        name: DEFAULT_COMMANDS[0] if i % 5 else DEFAULT_COMMANDS[1 + i // 5 % 2]
        for i, name in enumerate(files)
    }
    commands.update(generated(root))
    return root, commands


def read_manifest() -> dict[str, tuple[int, str, str, str]]:
    out = {}
    for line in MANIFEST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, status, code, where, command = line.split("\t")
            out[name] = (int(status), code, where, command)
    return out


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.iterdir():
        with contextlib.suppress(OSError):
            st = p.lstat()
            out[p.name] = (st.st_mtime_ns, st.st_size)
    return out


def run_case(root: Path, command: str, case: str) -> tuple[int, str, float]:
    args = [a.replace("{case}", case) for a in shlex.split(command)]
    err, out = io.StringIO(), io.StringIO()
    before = Path.cwd()
    os.chdir(root)
    t0 = time.process_time()  # CPU time: what the case costs, whatever else the machine is doing
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            status = main(args)
    finally:
        took = time.process_time() - t0
        os.chdir(before)
    return status, out.getvalue() + err.getvalue(), took


FIRST = re.compile(r"error\[(E\d{3})\]: [^\n]*\n\s*--> ([^\n]+):(\d+):(\d+)")


def test_corpus_is_large_and_in_both_forms(corpus: tuple[Path, dict[str, str]]) -> None:
    _, commands = corpus
    names = list(commands)
    assert len(names) >= 150, len(names)
    assert sum(n.endswith(".arch") for n in names) >= 75 and sum(n.endswith(".yaml") for n in names) >= 75
    # the committed files are the ones make_corpus.py writes
    committed = {str(p.relative_to(BAD / "cases")) for p in (BAD / "cases").rglob("*") if p.is_file()}
    expected = {k for k, v in make_corpus.cases().items() if len(make_corpus.as_bytes(v)) <= 16 * 1024}
    assert committed == expected, "regenerate: python tests/bad/make_corpus.py"


def test_every_case_ends_in_a_diagnostic(
    corpus: tuple[Path, dict[str, str]], request: pytest.FixtureRequest
) -> None:
    root, commands = corpus
    update = request.config.getoption("--update-bad")
    manifest = {} if update else read_manifest()
    if not update:
        assert set(manifest) == set(commands), (
            "cases and MANIFEST differ: pytest tests/test_bad.py --update-bad"
        )
    failures: list[str] = []
    rows = []
    for case in sorted(commands):
        command = manifest[case][3] if case in manifest else commands[case]
        before = snapshot(root)
        status, text, took = run_case(root, command, case)
        after = snapshot(root)
        m = FIRST.search(text)
        got = (status, m[1] if m else "-", f"{m[3]}:{m[4]}" if m else "-")
        rows.append(f"{case}\t{got[0]}\t{got[1]}\t{got[2]}\t{command}")
        problems = []
        if status not in (1, 2):
            problems.append(f"exit {status}")
        if m is None:
            problems.append("no rendered diagnostic with file:line:col")
        if "Traceback" in text or "internal error" in text:
            problems.append("traceback or internal error")
        if took >= 1.0:
            problems.append(f"took {took:.2f} s")
        if before != after:
            problems.append(f"files changed: {sorted(set(before.items()) ^ set(after.items()))[:3]}")
        if "\x1b" in text or "\u202e" in text:
            problems.append("raw control characters in the output")
        if not update and got != manifest[case][:3]:
            problems.append(f"expected {manifest[case][:3]}, got {got}")
        if problems:
            failures.append(f"{case} ({command}): {'; '.join(problems)}\n{text[:600]}")
    if update:
        MANIFEST.write_text(
            "# case\texit\tfirst code\tline:col\tcommand (tests/test_bad.py; regenerate with --update-bad)\n"
            + "\n".join(rows)
            + "\n"
        )
    assert not failures, f"{len(failures)} cases fail:\n\n" + "\n\n".join(failures[:20])


def test_cases_in_a_real_process(corpus: tuple[Path, dict[str, str]]) -> None:
    """A sample in real processes: what a user sees, and the memory one check of a hostile spec takes."""
    root, commands = corpus
    manifest = read_manifest()
    sample = sorted(commands)[::6] + [
        c for c in ("ten_mb.arch", "fifo.arch", "names_10k.arch") if c in commands
    ]
    for case in sample:
        args = [a.replace("{case}", case) for a in shlex.split(manifest[case][3])]
        r = subprocess.run(
            [sys.executable, "-c", MEASURED, *args], capture_output=True, text=True, cwd=root, timeout=60
        )
        assert r.returncode == manifest[case][0], (case, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (case, r.stderr)
        peak_kb, cpu = r.stderr.rsplit("MEASURED ", 1)[1].split()
        assert int(peak_kb) / 1024 < 300, (case, peak_kb)
        assert float(cpu) < 2.0, (case, cpu)  # a second of work, and the interpreter starting


#: archdsl's command line in a process that reports its own peak memory (kB) and CPU seconds last.
#: The peak is VmHWM, the high-water mark of this program's own memory: ru_maxrss would include the
#: memory of the process it was forked from (Linux keeps it across exec).
MEASURED = (
    "import os, re, sys\n"
    "from archdsl.cli import main\n"
    "status = main(sys.argv[1:])\n"
    "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]\n"
    "t = os.times()\n"
    "sys.stderr.write(f'\\nMEASURED {peak} {t.user + t.system:.3f}\\n')\n"
    "sys.exit(status)\n"
)
