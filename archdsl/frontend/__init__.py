"""Front ends: each turns one source form into the shared surface tree (:mod:`archdsl.syntax`).

Specs are untrusted input. Before any parser sees a spec, :func:`read_source` reads it as a regular file
of bounded size (a FIFO or a device is never opened for reading, so it cannot block) and decodes it as
strict UTF-8, and :func:`check_text` refuses what no spec needs and what could mislead a reader or a
terminal: NUL and other control characters, bidirectional and other invisible format characters
(Trojan Source, CVE-2021-42574), lone carriage returns, and more tokens than :data:`MAX_TOKENS`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from pathlib import Path

from archdsl import syntax as S
from archdsl.diagnostics import Diagnostic, Span, SpecError
from archdsl.limits import MAX_DEPTH, MAX_SOURCE_BYTES, MAX_TOKENS

__all__ = [
    "MAX_DEPTH",
    "MAX_SOURCE_BYTES",
    "MAX_TOKENS",
    "TEXT_SUFFIXES",
    "YAML_SUFFIXES",
    "SourceError",
    "check_text",
    "count_tokens",
    "parse_source",
    "read_source",
    "syntax_code",
]

TEXT_SUFFIXES = (".arch",)
YAML_SUFFIXES = (".yaml", ".yml")


class SourceError(SpecError):
    """The spec file itself cannot be read (missing, a directory, a FIFO, no permission): an I/O
    problem (exit status 2), not a problem in the spec (status 1)."""


def syntax_code(path: str) -> str:
    """The syntax error code of a file's form: E002 for YAML, E001 for the text form."""
    return "E002" if Path(path).suffix.lower() in YAML_SUFFIXES else "E001"


def _here(path: str, line: int = 1, col: int = 1) -> Span:
    return Span(path, line, col, line, col + 1)


def _unreadable(path: str, why: str) -> SourceError:
    return SourceError(
        [
            Diagnostic(
                "E019",
                f"cannot read `{path}`: {why}",
                _here(path),
                help="give the path of a spec file (.arch, .yaml or .yml)",
            )
        ]
    )


def _position(text: str, offset: int) -> tuple[int, int]:
    """Line and column (from 1) of a character offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _too_large(path: str, size: int | None = None) -> SpecError:
    shown = f" ({size:,} bytes)" if size is not None else ""
    return SpecError(
        [
            Diagnostic(
                syntax_code(path),
                f"spec is larger than {MAX_SOURCE_BYTES:,} bytes{shown}",
                _here(path),
                help="a spec describes an architecture in a few dozen lines; split data out of it",
            )
        ]
    )


def read_source(path: str) -> str:
    """Read one spec file: a regular file of at most :data:`MAX_SOURCE_BYTES`, in UTF-8 (a leading byte
    order mark is dropped). Raises :class:`SourceError` (E019) when it cannot be read and
    :class:`SpecError` when its bytes are not a spec's."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then tells what was opened
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise _unreadable(path, _reason(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _unreadable(path, f"not a regular file ({_file_type(st.st_mode)})")
        if st.st_size > MAX_SOURCE_BYTES:
            raise _too_large(path, st.st_size)
        chunks = []
        left = MAX_SOURCE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise _unreadable(path, _reason(e)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_SOURCE_BYTES:
        raise _too_large(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        good = data[: e.start].decode("utf-8")
        line, col = _position(good, len(good))
        raise SpecError(
            [
                Diagnostic(
                    syntax_code(path),
                    f"the file is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})",
                    _here(path, line, col),
                    help="save the spec as UTF-8 text",
                )
            ]
        ) from None
    return text.removeprefix("\ufeff")


def _reason(e: Exception) -> str:
    if isinstance(e, ValueError):
        return "the path holds a NUL character"
    if isinstance(e, OSError) and e.errno == errno.EISDIR:
        return "it is a directory"
    return getattr(e, "strerror", None) or str(e)


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


# Characters no spec needs: controls other than tab and newline (a carriage return only before a
# newline), line and paragraph separators, and invisible format characters (bidirectional controls,
# zero-width spaces and joiners) that make a text display otherwise than it parses.
_NOT_PLAIN = re.compile(r"[^\t\n\r\x20-\x7e]|\r(?!\n)")
_REFUSED = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_TEXT_TOKEN = re.compile(r"#[^\n]*|[A-Za-z0-9_.]+|\*\*|//|[^\s#A-Za-z0-9_.]")
_YAML_COMMENT = re.compile(r"(?m)(?:^|(?<=\s))#[^\n]*")
_YAML_TOKEN = re.compile(r"[^\s:,\[\]{}'\"]+")


def _describe_char(ch: str) -> str:
    if ch == "\r":
        return "a carriage return without a newline"
    what = {
        "Cc": "control character",
        "Cf": "invisible format character",
        "Zl": "line separator",
        "Zp": "paragraph separator",
        "Cs": "surrogate",
        "Co": "private-use character",
        "Cn": "unassigned character",
    }[unicodedata.category(ch)]
    if ch in _BIDI:
        what = "bidirectional control character"
    name = unicodedata.name(ch, "")
    return f"{what} U+{ord(ch):04X}" + (f" ({name.lower()})" if name else "")


def count_tokens(text: str, path: str) -> int:
    """About how many tokens a spec holds (comments are free): the bound on parsing time."""
    if syntax_code(path) == "E001":
        return sum(1 for t in _TEXT_TOKEN.findall(text) if not t.startswith("#"))
    return len(_YAML_TOKEN.findall(_YAML_COMMENT.sub("", text)))


def too_many_tokens(path: str, tokens: int, span: Span | None = None) -> Diagnostic:
    return Diagnostic(
        syntax_code(path),
        f"spec has more than {MAX_TOKENS:,} tokens ({tokens:,})",
        span or _here(path),
        help="a spec describes an architecture in a few hundred tokens; "
        "name repeated parts with blocks and layer patterns",
    )


def check_text(text: str, path: str) -> None:
    """Refuse a text that is too large, holds a character no spec needs, or has too many tokens."""
    if len(text) > MAX_SOURCE_BYTES or len(text.encode("utf-8", errors="replace")) > MAX_SOURCE_BYTES:
        raise _too_large(path)
    diags = []
    for m in _NOT_PLAIN.finditer(text):
        ch = m.group()
        if ch != "\r" and unicodedata.category(ch) not in _REFUSED:
            continue  # letters, symbols and spaces of other scripts (in comments, say)
        line, col = _position(text, m.start())
        diags.append(
            Diagnostic(
                syntax_code(path),
                f"{_describe_char(ch)} in the spec",
                _here(path, line, col),
                help="remove it: a spec is plain text, and such characters can make it display "
                "otherwise than it reads",
            )
        )
        if len(diags) >= 10:
            break
    if diags:
        raise SpecError(diags)
    tokens = count_tokens(text, path)
    if tokens > MAX_TOKENS:
        raise SpecError([too_many_tokens(path, tokens)])


def parse_source(text: str, path: str) -> S.File:
    """Parse ``text`` by the form its ``path`` suffix names."""
    check_text(text, path)
    suffix = Path(path).suffix.lower()
    if suffix in YAML_SUFFIXES:
        from archdsl.frontend.yaml import parse_yaml

        return parse_yaml(text, path)
    from archdsl.frontend.text import parse_text

    return parse_text(text, path)
