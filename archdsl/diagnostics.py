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
    """Raised by the pipeline when a spec has errors; carries all of them, sorted by position."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        super().__init__("\n".join(f"{d.code}: {d.message}" for d in self.diagnostics))


class SourceCache:
    """Reads source lines for rendering; files that cannot be read render without a snippet."""

    def __init__(self, texts: dict[str, str] | None = None) -> None:
        self._lines: dict[str, list[str]] = {k: v.splitlines() for k, v in (texts or {}).items()}

    def line(self, file: str, lineno: int) -> str | None:
        if file not in self._lines:
            try:
                self._lines[file] = Path(file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                self._lines[file] = []
        lines = self._lines[file]
        return lines[lineno - 1] if 0 < lineno <= len(lines) else None


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
    out = [f"{d.severity.value}[{d.code}]: {d.message}"]
    s = d.span
    if s is not None:
        gutter = len(str(s.line))
        pad = " " * gutter
        out.append(f"{pad}--> {s.file}:{s.line}:{s.col}")
        text = sources.line(s.file, s.line)
        if text is not None:
            text = text.expandtabs(4) if "\t" not in text[: s.col] else text
            end = s.end_col if s.end_line == s.line else len(text.rstrip()) + 1
            width = max(1, min(end, len(text) + 1) - s.col)
            out.append(f"{pad} |")
            out.append(f"{s.line} | {text}")
            out.append(f"{pad} | {' ' * (s.col - 1)}{'^' * width}")
    for note in d.notes:
        out.append(f"  = note: {note}")
    out.append(f"help: {d.help_text}")
    return "\n".join(out)


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


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """A ``help`` text proposing the closest choice, or listing them when none is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if choices and len(choices) <= 12:
        return "expected one of: " + ", ".join(f"`{c}`" for c in choices)
    return None
