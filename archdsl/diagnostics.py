"""Source spans, diagnostics and their rendering (rustc / ruff style).

Every problem archdsl finds in a spec is a :class:`Diagnostic` with a stable code, a message that names
the values involved, a :class:`Span` into the source and, where we can tell, a ``help`` line that says what
to do. Rendering is the only place that knows how a diagnostic looks on a terminal or in JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


@dataclass(frozen=True)
class Span:
    """A region of one source file; lines and columns start at 1, ``end_col`` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


# Stable codes, documented in archdsl/errors.py (docs/errors.md is generated from it).
def _codes() -> dict[str, str]:
    from archdsl.errors import ERRORS

    return {code: doc.title for code, doc in ERRORS.items()}


CODES: dict[str, str] = _codes()


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None = None
    help: str | None = None
    severity: Severity = Severity.ERROR
    notes: tuple[str, ...] = field(default=())

    @property
    def help_text(self) -> str:
        """The help line: the specific one, or where to read about the code."""
        return self.help or f"`archdsl explain {self.code}` shows an example and the fix"

    def sort_key(self) -> tuple[str, int, int, str]:
        if self.span is None:
            return ("", 0, 0, self.code)
        return (self.span.file, self.span.line, self.span.col, self.code)

    def to_dict(self) -> dict[str, object]:
        s = self.span
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "file": s.file if s else None,
            "line": s.line if s else None,
            "column": s.col if s else None,
            "end_line": s.end_line if s else None,
            "end_column": s.end_col if s else None,
            "help": self.help_text,
        }


class SpecError(Exception):
    """Raised by the pipeline when a spec has errors; carries all of them, sorted by position, and the
    source texts read so far (to render them with their source lines)."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        self.sources: dict[str, str] = dict(sources or {})
        super().__init__("\n".join(f"{d.code}: {d.message}" for d in self.diagnostics))


class SourceCache:
    """Source lines for rendering: the texts given, else the file if it is a small regular file (a
    FIFO or a device is never opened); files that cannot be read render without a snippet."""

    def __init__(self, texts: dict[str, str] | None = None) -> None:
        self._lines: dict[str, list[str]] = {k: _split(v) for k, v in (texts or {}).items()}

    def add(self, texts: dict[str, str]) -> SourceCache:
        for k, v in texts.items():
            self._lines.setdefault(k, _split(v))
        return self

    def line(self, file: str, lineno: int) -> str | None:
        if file not in self._lines:
            text = _read_small(file)
            self._lines[file] = _split(text) if text is not None else []
        lines = self._lines[file]
        return lines[lineno - 1] if 0 < lineno <= len(lines) else None


def _split(text: str) -> list[str]:
    """Lines as the parsers count them: only newlines end a line."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _read_small(file: str) -> str | None:
    import os
    import stat

    from archdsl.limits import MAX_SOURCE_BYTES

    try:
        st = os.stat(file)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SOURCE_BYTES:
            return None
        return Path(file).read_bytes().decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return None


# What a terminal must never receive raw from a spec: control characters (ESC starts escape
# sequences), bidirectional and other invisible format characters, separators, unassigned and
# private-use code points. They are shown as Python escapes, as ruff and rustc show them.
_UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))


def printable(text: str, keep_tabs: bool = False) -> str:
    """``text`` with every character a terminal could act on escaped (``\\x1b``, ``\\u202e``)."""
    if text.isascii() and text.isprintable():
        return text
    import unicodedata

    out = []
    for ch in text:
        if (ch == "\t" and keep_tabs) or unicodedata.category(ch) not in _UNSAFE_CATEGORIES:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    return "".join(out)


def render(d: Diagnostic, sources: SourceCache | None = None) -> str:
    """Render one diagnostic the way rustc and ruff do::

    error[E011]: d_model (768) is not divisible by heads (10)
     --> specs/foo.arch:12:15
       |
    12 |   attention = attention(heads = n_heads)
       |               ^^^^^^^^^^^^^^^^^^^^^^^^^^
       = note: ...
    help: choose heads among 1, 2, 3, 4, 6, 8, 12, ...
    """
    sources = sources or SourceCache()
    out = [f"{d.severity.value}[{d.code}]: {printable(d.message)}"]
    s = d.span
    if s is not None:
        gutter = len(str(s.line))
        pad = " " * gutter
        out.append(f"{pad}--> {printable(s.file)}:{s.line}:{s.col}")
        text = sources.line(s.file, s.line)
        if text is not None:
            line, col, width = _snippet(text, s)
            out.append(f"{pad} |")
            out.append(f"{s.line} | {line}")
            out.append(f"{pad} | {' ' * (col - 1)}{'^' * width}")
    for note in d.notes:
        out.append(f"  = note: {printable(note)}")
    out.append(f"help: {printable(d.help_text)}")
    return "\n".join(out)


def _snippet(text: str, s: Span) -> tuple[str, int, int]:
    """The source line as shown (tabs expanded, unsafe characters escaped) and the caret's column and
    width on it."""
    end = s.end_col if s.end_line == s.line else len(text.rstrip()) + 1
    end = max(s.col + 1, min(end, len(text) + 1))
    before, inside, after = text[: s.col - 1], text[s.col - 1 : end - 1], text[end - 1 :]
    b, i, a = (printable(p, keep_tabs=True).replace("\t", "    ") for p in (before, inside, after))
    if len(b) + len(i) + len(a) > SNIPPET_WIDTH:  # a long line: the part around the caret, as rustc does
        keep = SNIPPET_WIDTH // 4
        if len(b) > keep:
            b = "…" + b[-keep:]
        i = i if len(i) <= 2 * keep else i[: 2 * keep] + "…"
        a = a if len(a) <= keep else a[:keep] + "…"
    return b + i + a, len(b) + 1, max(1, len(i))


#: longest source line a diagnostic shows whole
SNIPPET_WIDTH = 160


def render_all(diags: list[Diagnostic], sources: SourceCache | None = None, fmt: str = "text") -> str:
    diags = sorted(diags, key=Diagnostic.sort_key)
    if fmt == "json":
        return json.dumps([d.to_dict() for d in diags], indent=2)
    sources = sources or SourceCache()
    blocks = [render(d, sources) for d in diags]
    n_err = sum(d.severity is Severity.ERROR for d in diags)
    if n_err:
        codes = sorted({d.code for d in diags})
        blocks.append(
            f"found {n_err} error{'s' if n_err != 1 else ''}; "
            f"`archdsl explain {codes[0]}` explains {'an error code' if len(codes) > 1 else 'it'}"
        )
    return "\n\n".join(blocks)


_MAX_CANDIDATES = 256


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """A ``help`` text proposing the closest choice, or listing them when none is close."""
    import difflib

    pool = list(choices)
    if len(pool) > _MAX_CANDIDATES:  # difflib is quadratic per pair: keep long lists cheap
        pool = [c for c in pool if abs(len(c) - len(word)) <= 2 and c[:1] == word[:1]][:_MAX_CANDIDATES]
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if choices and len(choices) <= 12:
        return "expected one of: " + ", ".join(f"`{c}`" for c in choices)
    return None
