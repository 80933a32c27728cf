"""Mutation fuzzing of every shipped spec: only archdsl diagnostics may escape.

Over 10,000 deterministic mutants of specs/*.arch, specs/*.yaml and specs/lib/*.arch — token
deletions, swaps and duplications; byte flips (NUL, control characters, bytes that are never UTF-8);
inserted odd byte sequences (BOMs, surrogates, line separators, non-ASCII letters and digits);
truncations; number replacements (0, -1, 2**63, a 5,000-digit integer, 1e999, floats for ints, deep,
long and undefined expressions); name replacements, of one occurrence or of a name everywhere it
occurs (Python keywords, builtins, nn.Module attributes, modules generated code uses, words of the
language); inserted snippets (sections, composition with paths that leave the folder or name devices,
YAML anchors, aliases, tags and directives); line edits and splices between specs; a few read with the
other suffix — go through load -> check -> analyze (batch 1, length 8) and, for those that check clean,
emit_source (which must compile). Each either succeeds or raises ``SpecError`` whose diagnostics have
an E0xx code and a span and render; it takes at most a second of CPU time and 256 MiB. The mutators
and the invariant live in tests/fuzz/fuzz_archdsl.py (the atheris target), so both fuzzers hold
archdsl to the same rule.

Failures are collected, not stopped at: the assertion message groups them by kind and exception class
(and where it was raised), with the mutations that caused them.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import random
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "fuzz" / "fuzz_archdsl.py"

SEED = 20_240_917
MIN_MUTANTS = 10_000
CLI_SAMPLE = 30
CLI_REPORTS = 6
TARGET_INPUTS = 300


def _load_target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_archdsl", TARGET)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_archdsl"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_target()
SPECS = fuzz.shipped_specs()
PER_SPEC = -(-MIN_MUTANTS // len(SPECS)) + 4
PER_TWIN = 40  # and mutants of each text spec's YAML twin: more YAML than the one shipped


def all_mutants() -> list[Any]:
    pool = [p.read_bytes() for p in SPECS]
    shipped = [m for path in SPECS for m in fuzz.mutants(path, PER_SPEC, SEED, SPECS)]
    twins = [
        m
        for source, data in fuzz.yaml_twins(SPECS)
        for m in fuzz.mutants_of(data, source, ".yaml", PER_TWIN, SEED, pool)
    ]
    return shipped + twins


def _where(e: BaseException | None) -> str:
    """The innermost archdsl frame an exception passed through: ``archdsl/elaborate.py:123``."""
    if e is None:
        return ""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/archdsl/" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"archdsl/{f.filename.split('/archdsl/', 1)[1]}:{f.lineno}"


def summarise(failures: dict[tuple[str, str, str], list[tuple[Any, str]]], total: int) -> str:
    """One paragraph per failure class: how many mutants, of which specs, and the three smallest."""
    n = sum(len(v) for v in failures.values())
    out = [f"{n} of {total} mutants broke the invariant, in {len(failures)} classes:"]
    for (kind, exc, where), items in sorted(failures.items(), key=lambda kv: -len(kv[1])):
        sources = sorted({Path(m.source).name for m, _ in items})
        out.append(f"\n[{kind}] {exc} {where} — {len(items)} mutants of {', '.join(sources)}; e.g.:")
        for m, msg in sorted(items, key=lambda it: len(it[0].data))[:3]:
            out.append(f"  {m.describe()}\n      -> {msg}")
    return "\n".join(out)


def _dump(failures: dict[tuple[str, str, str], list[tuple[Any, str]]]) -> None:
    """With ARCHDSL_FUZZ_OUT=DIR, write the smallest mutant of each class there, to reproduce."""
    out = os.environ.get("ARCHDSL_FUZZ_OUT")
    if not out:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    for i, items in enumerate(failures.values()):
        m, msg = min(items, key=lambda it: len(it[0].data))
        (Path(out) / f"class{i:02d}{m.suffix}").write_bytes(m.data)
        (Path(out) / f"class{i:02d}.txt").write_text(f"{m.describe()}\n{msg}\n")


def test_mutants_of_shipped_specs_raise_only_diagnostics() -> None:
    ws = fuzz.Workspace()
    failures: dict[tuple[str, str, str], list[tuple[Any, str]]] = collections.defaultdict(list)
    outcomes: collections.Counter[str] = collections.Counter()
    emitted: set[int] = set()
    slow_emit: set[str] = set()  # sources whose emit was once too slow: not emitted again
    mutants = all_mutants()
    try:
        for m in mutants:
            path = ws.write(m.data, m.suffix, m.source)
            did_emit = [False]

            def emit_new(spec: Any, source: str = m.source, flag: list[bool] = did_emit) -> bool:
                """Emit each distinct model once (most mutants leave the model as it was)."""
                if source in slow_emit:
                    return False
                key = hash((spec.model, spec.constants))
                if key in emitted:
                    return False
                emitted.add(key)
                flag[0] = True
                return True

            try:
                outcome, _ = fuzz.run_guarded(path, emit_new)
                outcomes[outcome] += 1
            except fuzz.InvariantError as e:
                exc = type(e.cause).__name__ if e.cause is not None else ""
                failures[(e.kind, exc, _where(e.cause))].append((m, e.message))
                outcomes["failed"] += 1
                if e.kind == "slow" and did_emit[0]:
                    slow_emit.add(m.source)
    finally:
        ws.close()
    total = len(mutants)
    assert sum(1 for m in mutants if not m.source.endswith("(YAML twin)")) >= MIN_MUTANTS
    # the mutants reach every stage: most are refused early, but many check clean and get analysed
    assert outcomes["load"] > total // 4 and outcomes["clean"] > total // 20, dict(outcomes)
    _dump(failures)
    assert not failures, summarise(failures, total)


def test_cli_on_a_sample_of_mutants() -> None:
    """A sample of mutants through the real CLI (``archdsl check``, and a few through ``archdsl report
    --seq 8``): exit 0, 1 or 2, and never a traceback or an internal error."""
    mutants = all_mutants()
    rng = random.Random(SEED)
    sample = rng.sample(mutants, CLI_SAMPLE + CLI_REPORTS)
    ws = fuzz.Workspace()
    try:
        paths = []
        for i, m in enumerate(sample):
            folder = (ws.dir / m.source).parent
            path = folder / f"cli{i}{m.suffix}"
            path.write_bytes(m.data)
            paths.append(path)

        def run(path: Path) -> subprocess.CompletedProcess[str]:
            i = paths.index(path)
            command = ["check"] if i < CLI_SAMPLE else ["report", "--seq", "8"]
            return subprocess.run(
                [sys.executable, "-m", "archdsl", *command, str(path)],
                capture_output=True,
                text=True,
                errors="replace",
                cwd=ROOT,
                timeout=120,
            )

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(run, paths))
    finally:
        ws.close()
    bad = [
        f"{m.describe()}: exit {r.returncode}\n{r.stderr[-800:]}"
        for m, r in zip(sample, results, strict=True)
        if r.returncode not in (0, 1, 2) or "Traceback" in r.stderr or "internal error" in r.stderr
    ]
    assert not bad, "\n\n".join(bad)


def test_fuzz_target_runs_on_a_few_hundred_inputs() -> None:
    """The atheris target's entry point, on mutants (another seed) and random bytes, so it cannot
    rot; it raises on any input that breaks the invariant."""
    rng = random.Random(SEED + 1)
    inputs: list[bytes] = [b"", b"\x00", b"\x01", b"\x00model", b"\x01model:"]
    for path in SPECS:
        inputs += [bytes([m.suffix == ".yaml"]) + m.data for m in fuzz.mutants(path, 6, SEED + 1, SPECS)]
    inputs += [rng.randbytes(rng.randint(1, 200)) for _ in range(40)]
    inputs = inputs[:TARGET_INPUTS]
    failures = []
    for data in inputs:
        try:
            fuzz.TestOneInput(data)
        except fuzz.InvariantError as e:
            failures.append(f"{data[:60]!r}…: {e}")
    assert len(inputs) >= 250
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("args", [["--runs", "12"]], ids=["fallback"])
def test_fuzz_target_command_line(args: list[str]) -> None:
    """``python tests/fuzz/fuzz_archdsl.py --runs N`` (the mutator that needs no atheris) runs."""
    r = subprocess.run(
        [sys.executable, str(TARGET), *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert "12 inputs in" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
