"""Fuzz target for archdsl: bytes in, as a spec file, through load -> check -> analyze -> emit_source.

The invariant (the same one tests/test_fuzz_mutation.py holds every mutant of the shipped specs to):
the pipeline either succeeds — and then the emitted source compiles as Python — or raises
``archdsl.SpecError`` whose diagnostics each have a code ``E0xx`` and a span (file:line:col), and
render (text and JSON) without error. Any other exception is a bug; so is an input that takes more than
a second or grows the process by more than 256 MiB.

Run it with atheris (coverage-guided, libFuzzer flags)::

    pip install atheris
    python tests/fuzz/fuzz_archdsl.py -runs=100000 [-max_len=4096] [CORPUS_DIR ...]

seeded with the shipped specs and a dictionary of the language's words (see tests/fuzz/README.md)::

    python tests/fuzz/fuzz_archdsl.py --make-corpus /tmp/corpus --make-dict /tmp/archdsl.dict
    python tests/fuzz/fuzz_archdsl.py -runs=100000 -dict=/tmp/archdsl.dict /tmp/corpus

or without atheris, with the built-in mutator over the shipped specs (deterministic in ``--seed``)::

    python tests/fuzz/fuzz_archdsl.py --runs 10000 [--seed 0]

The first byte of an input picks the suffix (even: ``.arch``, odd: ``.yaml``); the rest is the file.
Inputs are written next to copies of the shipped specs, so ``extends "gpt2_small.arch"`` resolves.
The module also holds the mutation operators (``mutants``) tests/test_fuzz_mutation.py uses.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
SUFFIXES = (".arch", ".yaml")
CODE = re.compile(r"E0[0-9][0-9]\Z")
# An input may take at most SLOW_S of CPU time and SLOW_WALL_S of wall time (generous: CI machines are
# shared), and grow the process by at most MEMORY_MB; ARCHDSL_FUZZ_SLOW / ARCHDSL_FUZZ_MEMORY_MB raise
# the limits (to fuzz past a known slow input with atheris, which stops at the first failure). Emitting
# verifies each constant the file lets you change by elaborating the spec again with it changed: about
# 1 s of CPU for the 61-layer moe_1t, so an input that is emitted may take twice as long.
SLOW_S = float(os.environ.get("ARCHDSL_FUZZ_SLOW", "2.0"))
SLOW_WALL_S = max(5.0, 5 * SLOW_S)
MEMORY_MB = float(os.environ.get("ARCHDSL_FUZZ_MEMORY_MB", "256"))
TIMEOUT_S = 5  # past this, an input is interrupted (where Python can be)


class InvariantError(AssertionError):
    """The pipeline broke the invariant: ``kind`` says how (``exception``, ``diagnostic``, ``emit``,
    ``slow``, ``memory``, ``timeout``)."""

    def __init__(self, kind: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.cause = cause


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException, so ``except Exception`` in archdsl does not swallow it."""


def shipped_specs() -> list[Path]:
    """Every spec shipped with archdsl: specs/*.arch, specs/*.yaml, specs/lib/*.arch."""
    return sorted(
        [*SPECS.glob("*.arch"), *SPECS.glob("*.yaml"), *SPECS.glob("*.yml"), *SPECS.glob("lib/*.arch")]
    )


# -- the invariant ----------------------------------------------------------------------------------------


def check_diagnostics(diags: list[Any], sources: dict[str, str] | None = None) -> None:
    """Each diagnostic has a stable code and a span; together they render as text and as JSON."""
    from archdsl.diagnostics import SourceCache, render_all

    if not diags:
        raise InvariantError("diagnostic", "SpecError with no diagnostics")
    for d in diags:
        if not isinstance(d.code, str) or not CODE.match(d.code):
            raise InvariantError("diagnostic", f"diagnostic code {d.code!r} is not E0xx: {d.message}")
        s = d.span
        if s is None:
            raise InvariantError("diagnostic", f"{d.code} has no span: {d.message}")
        if not (isinstance(s.file, str) and s.file and s.line >= 1 and s.col >= 1):
            raise InvariantError("diagnostic", f"{d.code} has a bad span {s!r}: {d.message}")
        if not isinstance(d.message, str) or not d.message:
            raise InvariantError("diagnostic", f"{d.code} has no message")
    render_all(diags, SourceCache(sources or {}))
    json.loads(render_all(diags, SourceCache(sources or {}), fmt="json"))


def run_pipeline(path: Path, emit: Callable[[Any], bool] | None = None) -> str:
    """load -> check -> analyze (batch 1, length 8) -> emit_source, holding the invariant. Returns how
    far the input got: ``load``, ``check`` or ``analyze`` (refused there with diagnostics) or
    ``clean``. ``emit(spec)`` decides whether to emit a clean spec (default: always). Raises
    :class:`InvariantError`."""
    import archdsl

    stage = "load"
    try:
        spec = archdsl.load(path)
        stage = "check"
        diags = archdsl.check(spec)
        if diags:
            check_diagnostics(diags, dict(spec.sources))
            return "check"
        stage = "analyze"
        archdsl.analyze(spec, batch=1, seq_len=8)
        stage = "emit"
        if emit is None or emit(spec):
            source = archdsl.emit_source(spec)
            try:
                compile(source, "<emitted>", "exec")
            except (SyntaxError, ValueError) as e:
                raise InvariantError("emit", f"emitted source does not compile: {e}", e) from None
        return "clean"
    except archdsl.SpecError as e:
        check_diagnostics(e.diagnostics, getattr(e, "sources", None))
        return stage
    except (InvariantError, _Timeout):
        raise
    except RecursionError as e:  # before Exception: keep the message short
        raise InvariantError("exception", f"RecursionError in {stage}: {str(e)[:120]}", e) from None
    except Exception as e:
        raise InvariantError("exception", f"{type(e).__name__} in {stage}: {str(e)[:300]}", e) from None


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only; elsewhere, no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _fire(signum: int, frame: Any) -> None:
        raise _Timeout

    old = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run_guarded(
    path: Path, emit: Callable[[Any], bool] | None = None, alarm: bool = True
) -> tuple[str, float]:
    """:func:`run_pipeline` with the time and memory guards; returns (outcome, seconds). ``alarm``:
    interrupt an input after ``TIMEOUT_S`` (off under libFuzzer, which has ``-timeout`` and its own
    SIGALRM)."""
    rss = _rss_mb()
    emitted = [False]

    def emit_counted(spec: Any) -> bool:
        emitted[0] = emit is None or emit(spec)
        return emitted[0]

    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with _alarm(TIMEOUT_S) if alarm else contextlib.nullcontext():
            outcome = run_pipeline(path, emit_counted)
    except _Timeout:
        raise InvariantError("timeout", f"interrupted after {TIMEOUT_S} s") from None
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    budget = 2 if emitted[0] else 1  # emitting elaborates the spec again per constant (see above)
    if cpu > budget * SLOW_S or seconds > budget * SLOW_WALL_S:
        raise InvariantError("slow", f"took {seconds:.2f} s ({cpu:.2f} s CPU; outcome: {outcome})")
    grown = _rss_mb() - rss
    if grown > MEMORY_MB:
        raise InvariantError("memory", f"grew the process by {grown:.0f} MiB (outcome: {outcome})")
    return outcome, seconds


# -- a workspace of spec copies -----------------------------------------------------------------------------


class Workspace:
    """A temporary copy of specs/ (with lib/): inputs are written into it as ``mutant.arch`` (or
    ``.yaml``) beside the file they came from, so relative ``extends`` and ``import`` paths resolve."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="archdsl-fuzz-"))
        shutil.copytree(SPECS, self.dir / "specs")

    def write(self, data: bytes, suffix: str, beside: str = "specs/gpt2_small.arch") -> Path:
        folder = (self.dir / beside).parent
        path = folder / f"mutant{suffix}"
        path.write_bytes(data)
        return path

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


_WORKSPACE: Workspace | None = None
_ALARM = True  # main() turns it off under atheris


def workspace() -> Workspace:
    """The workspace :func:`TestOneInput` writes into (made on first use, removed at exit)."""
    global _WORKSPACE
    if _WORKSPACE is None:
        _WORKSPACE = Workspace()
        atexit.register(_WORKSPACE.close)
    return _WORKSPACE


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris' name)
    """The atheris entry point: the first byte picks the suffix, the rest is the spec file."""
    if not data:
        return
    suffix = SUFFIXES[data[0] % 2]
    path = workspace().write(data[1:], suffix)
    run_guarded(path, alarm=_ALARM)


# -- mutation operators -------------------------------------------------------------------------------------

TOKEN = re.compile(
    rb'#[^\n]*|"[^"\n]*"|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?'
    rb"|\.[0-9]+|\*\*|//|\S"
)
NUMBER = re.compile(rb"[0-9.]")
NAME = re.compile(rb"[A-Za-z_]")

#: replacements for a number: edge values, huge and tiny ones, floats for ints, malformed literals and
#: expressions that are deep, long or undefined
NUMBERS: tuple[bytes, ...] = (
    b"0", b"-1", b"1", b"2", b"3", b"-0", b"00", b"017", b"0x10", b"1_000", b"1__0", b"1_", b"1.", b".5",
    b"5e", b"1e", b"0.0", b"-0.0", b"0.5", b"1.5", b"3.0", b"1e5", b"1e-999", b"1e999", b"-1e999",
    b"1e308", b"4.9e-324", b"2147483648", b"4294967296", b"9223372036854775807", b"9223372036854775808",
    b"18446744073709551616", b"1099511627776", b"99999999999999999999999999999", b"1" + b"0" * 5000,
    b"9" * 4301, b"0." + b"0" * 5000 + b"1", b"1e" + b"9" * 400, b"2 ** 40", b"2 ** 63", b"2 ** 64",
    b"2 ** 1000", b"2 ** 100000", b"10 ** 10 ** 10", b"2 ** -1", b"2 ** 0.5", b"0 ** -1", b"0 ** 0",
    b"(-1) ** 0.5", b"-(2 ** 63)", b"1 / 0", b"1 // 0", b"1 % 0", b"0 / 0", b"1.0 / 0", b"1e308 * 10",
    b"7 / 2", b"max()", b"min(1)", b"max(1, 2.5)", b"max(1e999, 1)", b"min(true, 2)", b"true", b"false",
    b"none", b"[1, 2]", b"[]", b"x", b"d_model", b'"8"', b"-" * 3000 + b"1", b"(" * 300 + b"1" + b")" * 300,
    b"[" * 200 + b"1" + b"]" * 200, b"1" + b" + 1" * 5000, b"1" + b" * 1" * 5000, b"2" + b" ** 1" * 2000,
    b"max(" * 150 + b"1" + b")" * 150,
)  # fmt: skip

#: replacements for a name: Python keywords, soft keywords, builtins, modules generated code uses,
#: nn.Module attributes, names archdsl derives, words of the language, YAML 1.1 specials, odd names
NAMES: tuple[bytes, ...] = (
    b"class", b"def", b"lambda", b"return", b"import", b"from", b"None", b"True", b"False", b"not",
    b"and", b"if", b"else", b"for", b"while", b"global", b"nonlocal", b"async", b"await", b"yield",
    b"match", b"case", b"type", b"_", b"self", b"cls", b"super", b"print", b"exec", b"eval",
    b"__import__", b"__init__", b"__class__", b"__dict__", b"__builtins__", b"__name__", b"__main__",
    b"open", b"input", b"len", b"range", b"sum", b"min", b"max", b"object", b"int", b"float", b"str",
    b"list", b"dict", b"id", b"torch", b"nn", b"F", b"math", b"os", b"sys", b"random", b"checkpoint",
    b"forward", b"training", b"train", b"eval", b"parameters", b"state_dict", b"cuda", b"to", b"apply",
    b"modules", b"children", b"register_buffer", b"zero_grad", b"half", b"compile", b"x", b"memory",
    b"model", b"block", b"layer", b"flow", b"encoder", b"decoder", b"lora", b"extends", b"true",
    b"false", b"none", b"yes", b"no", b"on", b"off", b"null", b"Null", b"inf", b"nan", b"NaN", b"Infinity",
    b"build_model", b"Block", b"PreNormBlock", b"FlowBlock", b"GPT", b"config", b"h", b"wte", b"lm_head",
    b"B", b"T", b"idx", b"src", b"a" * 5000, b"caf\xc3\xa9", b"\xe2\x84\x8c", b"x\xc2\xa0y", b"A1_",
)  # fmt: skip

#: bytes a flip writes: NUL, control characters, bytes that are never valid UTF-8, lead bytes without
#: continuation, structure characters
BYTES: tuple[int, ...] = (0x00, 0x01, 0x07, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B, 0x7F, 0x80, 0xBF, 0xC0, 0xC3,
                          0xE2, 0xED, 0xF0, 0xF4, 0xF8, 0xFE, 0xFF, 0x22, 0x23, 0x28, 0x29, 0x2C, 0x3A,
                          0x3D, 0x5B, 0x5D, 0x7B, 0x7D, 0x2D, 0x26, 0x2A, 0x21, 0x7C, 0x3E, 0x25)  # fmt: skip

#: sequences inserted whole: invalid or unusual UTF-8 and Unicode (BOM, surrogates, line separators,
#: non-ASCII letters and digits)
ODD_BYTES: tuple[bytes, ...] = (
    b"\x00", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf", b"\xe2\x80\xa8", b"\xe2\x80\xa9",
    b"\xc2\x85", b"\x0c", b"\r", b"\r\n", b"\t", b"\x1b[31m", b"\xc3\xa9", b"\xe2\x84\x8c",
    b"\xf0\x9d\x94\xa1", b"\xef\xbc\x91\xef\xbc\x92", b"\xd9\xa3", b"\xe2\x80\x8b", b"\xe2\x80\xae",
)  # fmt: skip

#: language-level snippets: structure characters, sections, composition (with paths that leave the
#: folder, name devices or folders, or cycle), deep nesting, and YAML constructs (anchors, aliases,
#: tags, documents, directives, block scalars, merge keys, complex keys)
SNIPPETS: tuple[bytes, ...] = (
    b"{", b"}", b"(", b")", b"[", b"]", b"=", b",", b'"', b"#", b"**", b"//", b"-", b"+", b":", b"\n",
    b'extends "gpt2_small.arch"', b'extends "mutant.arch"', b'extends "../specs/tiny.arch"',
    b'extends "/dev/zero"', b'extends "/etc/passwd"', b'extends "lib"', b'extends ""',
    b'extends "lib/blocks.arch"', b'import dense from "lib/blocks.arch"',
    b'import nothing from "lib/blocks.arch"', b'import a, a from "x.arch"', b"block extra { }",
    b"layer 0 { }", b"layer 99999 { }", b"flow { }", b"model m2 { }", b"lora { }", b"encoder { }",
    b"decoder { }", b"block { repeat = 100000 }", b"n_layers = 100000", b"layers = [dense] * 100000",
    b"(" * 500, b"[" * 500, b"{" * 500, b"a = " + b"(" * 99 + b"1" + b")" * 99,
    b"x = " + b"[" * 99 + b"]" * 99, b"&a ", b"*a", b"!!python/object/apply:os.system ['true'] ",
    b"!!str ", b"!tag ", b"--- ", b"...", b"%YAML 1.1\n", b"%TAG ! tag:x,2000:\n", b"? ", b"- ", b": ",
    b"|\n", b">\n", b"~", b"null", b".inf", b".nan", b"<<: *a\n", b"{a: 1, a: 2}", b"[a, [b, [c]]]",
    b"key: &x [*x]", b"\t", b"'", b"@", b"`",
)  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One mutated input: where it came from, how it was made, its bytes and the suffix to give it."""

    source: str  # e.g. "specs/gpt2_small.arch"
    op: str
    detail: str
    data: bytes
    suffix: str

    def describe(self) -> str:
        return f"{self.source} [{self.op}] {self.detail}"


Span = tuple[int, int]  # a token's [start, end) in the input
Spans = list[Span]
Result = tuple[str, bytes] | None  # an operator's (description, mutated bytes), or None if it cannot apply


def _tokens(data: bytes) -> Spans:
    return [(m.start(), m.end()) for m in TOKEN.finditer(data)]


def _show(b: bytes, keep: int = 40) -> str:
    s = repr(b)[2:-1]
    return s if len(s) <= keep else s[:keep] + f"…({len(b)} bytes)"


def _pick(rng: random.Random, spans: Spans, data: bytes, pattern: re.Pattern[bytes] | None) -> Span | None:
    cands = [t for t in spans if pattern is None or pattern.match(data, t[0])]
    return rng.choice(cands) if cands else None


def _op_delete(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    t = _pick(rng, toks, data, None)
    if t is None:
        return None
    return f"delete {_show(data[t[0] : t[1]])!r} at byte {t[0]}", data[: t[0]] + data[t[1] :]


def _op_swap(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    if len(toks) < 2:
        return None
    i = rng.randrange(len(toks) - 1)
    j = i + 1 if rng.random() < 0.5 else rng.randrange(len(toks))
    i, j = min(i, j), max(i, j)
    if i == j:
        return None
    (a0, a1), (b0, b1) = toks[i], toks[j]
    out = data[:a0] + data[b0:b1] + data[a1:b0] + data[a0:a1] + data[b1:]
    return f"swap {_show(data[a0:a1])!r}@{a0} and {_show(data[b0:b1])!r}@{b0}", out


def _op_duplicate(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    t = _pick(rng, toks, data, None)
    if t is None:
        return None
    tok = data[t[0] : t[1]]
    return f"duplicate {_show(tok)!r} at byte {t[0]}", data[: t[1]] + b" " + tok + data[t[1] :]


def _op_flip(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    if not data:
        return None
    i = rng.randrange(len(data))
    if rng.random() < 0.3:
        new = data[i] ^ (1 << rng.randrange(8))
    else:
        new = rng.choice(BYTES)
    return f"byte {i}: {data[i]:#04x} -> {new:#04x}", data[:i] + bytes([new]) + data[i + 1 :]


def _op_odd_bytes(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    i = rng.randrange(len(data) + 1)
    seq = rng.choice(ODD_BYTES)
    if rng.random() < 0.3 and toks:  # inside a token
        t = rng.choice(toks)
        i = rng.randrange(t[0], t[1] + 1)
    return f"insert {_show(seq)!r} at byte {i}", data[:i] + seq + data[i:]


def _op_truncate(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    if not data:
        return None
    i = rng.randrange(len(data))
    return f"truncate at byte {i} of {len(data)}", data[:i]


def _op_number(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    t = _pick(rng, toks, data, NUMBER)
    if t is None:
        return None
    new = rng.choice(NUMBERS)
    return f"number {_show(data[t[0] : t[1]])!r}@{t[0]} -> {_show(new)!r}", data[: t[0]] + new + data[t[1] :]


def _op_name(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    t = _pick(rng, toks, data, NAME)
    if t is None:
        return None
    if rng.random() < 0.25:  # another name of the same file: a different, real name in the wrong place
        names = [data[a:b] for a, b in toks if NAME.match(data, a)]
        new = rng.choice(names)
    else:
        new = rng.choice(NAMES)
    return f"name {_show(data[t[0] : t[1]])!r}@{t[0]} -> {_show(new)!r}", data[: t[0]] + new + data[t[1] :]


def _op_rename(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    """Rename a name everywhere it occurs (a constant, block, sublayer or tensor — or a kind or a
    keyword): the spec stays whole, and the new name reaches the generated code."""
    names = sorted({data[a:b] for a, b in toks if NAME.match(data, a)})
    if not names:
        return None
    old, new = rng.choice(names), rng.choice(NAMES)
    out = re.sub(rb"(?<![A-Za-z0-9_])" + re.escape(old) + rb"(?![A-Za-z0-9_])", lambda m: new, data)
    return f"rename {_show(old)!r} -> {_show(new)!r} everywhere", out


def _op_snippet(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    bounds = [0, len(data), *(a for a, _ in toks), *(b for _, b in toks)]
    i = rng.choice(bounds)
    snip = rng.choice(SNIPPETS)
    pad = b" " if rng.random() < 0.7 else b""
    return f"insert {_show(snip)!r} at byte {i}", data[:i] + pad + snip + pad + data[i:]


def _op_lines(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    lines = data.split(b"\n")
    if len(lines) < 2:
        return None
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    what = rng.choice(("delete", "duplicate", "swap", "indent", "dedent", "tab"))
    if what == "delete":
        del lines[i]
    elif what == "duplicate":
        lines.insert(j, lines[i])
    elif what == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif what == "indent":
        lines[i] = b"  " + lines[i]
    elif what == "dedent":
        lines[i] = lines[i].lstrip()
    else:
        lines[i] = b"\t" + lines[i].lstrip(b" ")
    where = f"line {i + 1}" + (f" / {j + 1}" if what in ("duplicate", "swap") else "")
    return f"{what} {where}", b"\n".join(lines)


def _op_splice(data: bytes, toks: Spans, rng: random.Random, other: bytes) -> Result:
    ot = _tokens(other)
    if not ot or not toks:
        return None
    a = rng.randrange(len(ot))
    b = min(len(ot), a + rng.randint(1, 12))
    piece = other[ot[a][0] : ot[b - 1][1]]
    t = rng.choice(toks)
    return f"splice {_show(piece)!r} at byte {t[0]}", data[: t[0]] + piece + b" " + data[t[0] :]


OPERATORS: dict[str, Callable[[bytes, Spans, random.Random, bytes], Result]] = {
    "delete": _op_delete,
    "swap": _op_swap,
    "duplicate": _op_duplicate,
    "flip": _op_flip,
    "odd-bytes": _op_odd_bytes,
    "truncate": _op_truncate,
    "number": _op_number,
    "name": _op_name,
    "rename": _op_rename,
    "snippet": _op_snippet,
    "lines": _op_lines,
    "splice": _op_splice,
}


def mutants(path: Path, n: int, seed: int = 0, others: list[Path] | None = None) -> Iterator[Mutant]:
    """``n`` mutants of the spec at ``path`` (see :func:`mutants_of`)."""
    source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    suffix = path.suffix if path.suffix in SUFFIXES else ".yaml"
    pool = [p.read_bytes() for p in others or [path]]
    yield from mutants_of(path.read_bytes(), source, suffix, n, seed, pool)


def yaml_twins(paths: list[Path]) -> list[tuple[str, bytes]]:
    """The YAML form (``archdsl fmt --to yaml``) of each text spec, as (source, bytes): more YAML to
    mutate than the one shipped YAML spec. A spec that fails to convert is skipped (the mutation test
    sees it unmutated anyway)."""
    from archdsl.fmt import to_yaml
    from archdsl.frontend.text import parse_text

    out = []
    for p in paths:
        if p.suffix != ".arch":
            continue
        try:
            text = to_yaml(parse_text(p.read_text(encoding="utf-8"), str(p)))
        except Exception:
            continue
        out.append((f"{p.relative_to(ROOT)} (YAML twin)", text.encode()))
    return out


def mutants_of(
    data: bytes, source: str, suffix: str, n: int, seed: int = 0, pool: list[bytes] | None = None
) -> Iterator[Mutant]:
    """``n`` mutants of ``data`` (named ``source``, read with ``suffix``), deterministic in ``seed``:
    the operators in turn, one or (one time in five) two or three stacked; one in twenty is fed with
    the other suffix (an ``.arch`` read as YAML and back). ``pool``: specs to splice from."""
    rng = random.Random(f"{seed}:{source}")
    pool = pool or [data]
    names = list(OPERATORS)
    made = 0
    attempt = 0
    while made < n and attempt < 20 * n:
        attempt += 1
        op = names[attempt % len(names)]
        other = rng.choice(pool)
        out, details = data, []
        for k in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
            name = op if k == 0 else rng.choice(names)
            got = OPERATORS[name](out, _tokens(out), rng, other)
            if got is None:
                continue
            details.append(got[0] if k == 0 else f"{name}: {got[0]}")
            out = got[1]
        if not details or out == data:
            continue
        as_suffix = suffix
        if rng.random() < 0.05:
            as_suffix = SUFFIXES[1 - SUFFIXES.index(suffix)]
        made += 1
        note = f" (as {as_suffix})" if as_suffix != suffix else ""
        yield Mutant(source, op, "; ".join(details) + note, out, as_suffix)


# -- the fallback fuzzer, without atheris ------------------------------------------------------------------


def _fallback(runs: int, seed: int) -> int:
    """``runs`` mutants of the shipped specs through the invariant; prints each failure, returns 1 if
    any."""
    specs = shipped_specs()
    ws = workspace()
    per = max(1, -(-runs // len(specs)))
    failures: dict[str, list[str]] = {}
    done = 0
    t0 = time.perf_counter()
    for spec in specs:
        for m in mutants(spec, per, seed, specs):
            if done >= runs:
                break
            done += 1
            path = ws.write(m.data, m.suffix, m.source)
            try:
                run_guarded(path)
            except InvariantError as e:
                key = f"{e.kind}: {type(e.cause).__name__ if e.cause else ''}"
                failures.setdefault(key, []).append(f"{m.describe()}\n    {e.message}")
    print(f"{done} inputs in {time.perf_counter() - t0:.1f} s; {sum(map(len, failures.values()))} failures")
    for key, items in sorted(failures.items()):
        print(f"\n== {key} ({len(items)})")
        for item in items[:5]:
            print("  " + item)
    return 1 if failures else 0


def make_corpus(folder: Path) -> int:
    """Seed inputs for atheris: every shipped spec, with its suffix byte in front."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in shipped_specs():
        prefix = bytes([SUFFIXES.index(path.suffix) if path.suffix in SUFFIXES else 1])
        (folder / path.name).write_bytes(prefix + path.read_bytes())
    return len(shipped_specs())


def make_dict(path: Path) -> int:
    """A libFuzzer dictionary (``-dict=``): the language's words, every kind, parameter and choice of
    the registry, the placements, LoRA targets, and YAML's structure characters."""
    from archdsl.kinds import REGISTRY
    from archdsl.kinds.peft import LORA_TARGETS
    from archdsl.placements import PLACEMENTS

    words = {"model", "block", "layer", "flow", "encoder", "decoder", "lora", "extends", "import", "from"}
    words |= {"true", "false", "none", "type", "d_model", "vocab", "embedding", "head", "position", "layers"}
    words |= {
        "repeat",
        "placement",
        "shared",
        "base",
        "checkpoint",
        "norm",
        "attention",
        "ffn",
        "x",
        "memory",
    }
    words |= {"cross_attention", "adapter", "final_norm", "embedding_norm", "dropout", "layerdrop", "targets"}
    words |= {"decoder", "encoder_decoder", "kind", "name", "min", "max", *LORA_TARGETS, *PLACEMENTS}
    for kind in REGISTRY.values():
        words.add(kind.name)
        for p in kind.params:
            words.add(p.name)
            words.update(p.choices)
    for preset in PLACEMENTS.values():
        words.update(p.name for p in preset.params)
    tokens = [*sorted(words), " = ", "{", "}", "(", ")", "[", "]", ", ", "**", "//", ": ", "- ", "#", '"']
    lines = [f'"{t}"' if '"' not in t else '"\\""' for t in tokens]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def main(argv: list[str]) -> int:
    if "--make-corpus" in argv or "--make-dict" in argv:
        if "--make-corpus" in argv:
            folder = Path(argv[argv.index("--make-corpus") + 1])
            print(f"{make_corpus(folder)} seed inputs in {folder}")
        if "--make-dict" in argv:
            where = Path(argv[argv.index("--make-dict") + 1])
            print(f"{make_dict(where)} dictionary entries in {where}")
        return 0
    if "--runs" in argv or "--no-atheris" in argv:
        runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 1000
        seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
        return _fallback(runs, seed)
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        print("atheris is not installed (pip install atheris); running the built-in mutator instead")
        runs = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("-runs=")), 1000)
        return _fallback(runs, 0)
    global _ALARM
    _ALARM = False
    with atheris.instrument_imports():
        import archdsl
        import archdsl.lower.emit  # noqa: F401
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
