"""Text form (.arch) -> surface tree, with Lark (LALR, positions kept).

This module is the one place where Lark's exceptions are translated into diagnostics: terminal names
become words a user knows, and no Lark traceback escapes (``from None``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import marshal
import math
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.grammar import Rule
from lark.lexer import TerminalDef

from archdsl import syntax as S
from archdsl.diagnostics import Diagnostic, Span, SpecError
from archdsl.limits import MAX_DEPTH, MAX_INT


def grammar_path() -> Path:
    """The grammar ships inside the wheel (archdsl/grammar/); a source checkout keeps it at the top."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "grammar" / "archdsl.lark"
    return packaged if packaged.exists() else here.parent / "grammar" / "archdsl.lark"


_COMMENTS: list[Token] = []  # filled by the lexer during one parse (see parse_text)


@functools.cache
def _parser() -> Lark:
    grammar = grammar_path().read_text(encoding="utf-8")
    return build_parser(grammar, parser_cache(grammar))


_OPTIONS: dict[str, Any] = {
    "parser": "lalr",
    "start": ["start", "expr"],
    "propagate_positions": True,
    "maybe_placeholders": False,
}


def build_parser(grammar: str, cache: Path | None = None) -> Lark:
    """The LALR parser of ``grammar``. ``cache``: a file its tables are kept in between runs (building
    them is most of a ``check``'s start-up; reading them back takes a few milliseconds): read when it
    holds them, else written (silently not, where it cannot be)."""
    callbacks = {"COMMENT": _COMMENTS.append}
    if cache is not None:
        kept = _read_tables(cache, callbacks)
        if kept is not None:
            return kept
    parser = Lark(grammar, lexer_callbacks=callbacks, **_OPTIONS)
    if cache is not None:
        _write_tables(parser, cache)
    return parser


def parser_cache(grammar: str) -> Path | None:
    """Where the parser's tables are kept: ``archdsl/`` in the user's cache folder (``$XDG_CACHE_HOME``,
    else ``~/.cache``; the package itself may be installed read-only), in a file named by the
    grammar's hash and the versions of Lark and Python that wrote it. None — build them each time —
    with ``ARCHDSL_NO_CACHE`` set, without a folder to write, or where the folder is not the user's
    own alone."""
    if os.environ.get("ARCHDSL_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None  # no home to speak of
    folder = Path(base) / "archdsl"
    digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]
    version = f"lark{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _own(folder):
            return None
    except OSError:
        return None
    return folder / f"parser-{digest}-{version}.marshal"


def _own(path: Path) -> bool:
    """Whether only the current user can have written ``path`` (always, where there are no owners)."""
    if not hasattr(os, "getuid"):
        return True
    st = path.stat()
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _read_tables(path: Path, callbacks: dict[str, Any]) -> Lark | None:
    """The parser from tables kept in ``path`` — plain data (``marshal``: no code is run to read it),
    checked to be nothing but plain data — or None where there are none to use (no file, one another
    user could have written, damaged, or of a Lark that reads them otherwise)."""
    try:
        if not _own(path):
            return None
        data, memo = marshal.loads(path.read_bytes())
        if not (_plain(data) and _plain(memo)):
            return None
        return Lark._load_from_dict(data, memo, lexer_callbacks=callbacks)
    except Exception:  # a missing or unusable file: the tables are built instead
        return None


def _write_tables(parser: Lark, path: Path) -> None:
    """Keep the parser's tables in ``path`` (whole or not at all: written aside, then moved in)."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        data, memo = parser.memo_serialize([TerminalDef, Rule])
        data["options"] = {k: v for k, v in data["options"].items() if k != "lexer_callbacks"}
        part.write_bytes(marshal.dumps((data, memo)))
        os.replace(part, path)
    except Exception:  # a read-only or full disk, a Lark that keeps other data: no cache, no error
        with contextlib.suppress(OSError):
            part.unlink()


_PLAIN = (str, int, float, bool, type(None))


def _plain(x: object) -> bool:
    """Whether ``x`` is only dicts, lists and tuples of strings, numbers, booleans and None."""
    todo = [x]
    while todo:
        y = todo.pop()
        if isinstance(y, dict):
            todo.extend(y.keys())
            todo.extend(y.values())
        elif isinstance(y, list | tuple):
            todo.extend(y)
        elif not isinstance(y, _PLAIN):
            return False
    return True


# Terminal names Lark reports, in words users know.
_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "EQUAL": "'='",
    "LPAR": "'('",
    "RPAR": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "PERCENT": "'%'",
    "TRUE": "'true'",
    "FALSE": "'false'",
    "LSQB": "'['",
    "RSQB": "']'",
    "STRING": 'a "quoted path"',
    "EXTENDS": "'extends'",
    "IMPORT": "'import'",
    "FROM": "'from'",
    "$END": "end of file",
}


def _word(term: str) -> str:
    if term in _WORDS:
        return _WORDS[term]
    if term.startswith("__ANON") or term.isupper():
        pattern = _parser().get_terminal(term).pattern.value if term in _terms() else term
        return f"'{pattern}'"
    return term


@functools.cache
def _terms() -> frozenset[str]:
    return frozenset(t.name for t in _parser().terminals)


def _expected(names: set[str] | frozenset[str]) -> str:
    words = sorted({_word(n) for n in names})
    if not words:  # Lark knows nothing that could follow here
        return "the end of the value"
    # Operators make long lists that help nobody; keep the structural words when there are many.
    if len(words) > 6:
        keep = [w for w in words if w in ("'='", "'('", "')'", "'{'", "'}'", "','", "a name")]
        words = keep or words[:6]
        return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1] + " (or an operator)"
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]


def _token_text(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    return f"'{tok}'"


_DANGLING = re.compile(r"(=|\+|-|\*|/|%|\(|,|\[)\s*$")
MAX_SYNTAX_ERRORS = 10
REPARSE_TOKENS = 20_000  # about this much text (in 4-byte tokens) is parsed again to find more errors


def _code(line: str) -> str:
    """A line without its comment (strings have no `#`; the grammar has no other use for it)."""
    return line.split("#", 1)[0].rstrip()


def _previous_code_line(lines: list[str], lineno: int) -> int | None:
    for k in range(lineno - 1, 0, -1):
        if _code(lines[k - 1]).strip():
            return k
    return None


def _unclosed_brace(text: str) -> tuple[int, int] | None:
    """Line and column of the innermost `{` that is never closed."""
    stack: list[tuple[int, int]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for col, ch in enumerate(_code(line), start=1):
            if ch == "{":
                stack.append((lineno, col))
            elif ch == "}" and stack:
                stack.pop()
    return stack[-1] if stack else None


def _unclosed_bracket(lines: list[str], line: int, col: int) -> tuple[int, int, str] | None:
    """The innermost `(` or `[` still open just before (line, col)."""
    stack: list[tuple[int, int, str]] = []
    for ln in range(1, line + 1):
        code = _code(lines[ln - 1])
        if ln == line:
            code = code[: col - 1]
        for c, ch in enumerate(code, start=1):
            if ch in "([":
                stack.append((ln, c, ch))
            elif ch in ")]" and stack:
                stack.pop()
            elif ch in "{}":
                stack.clear()  # a section boundary: brackets do not span sections
    return stack[-1] if stack else None


def _syntax_error(err: UnexpectedInput, text: str, path: str) -> tuple[Diagnostic, str | None]:
    """One Lark error as a diagnostic, and the text with the damage blanked out so parsing can go on
    to find the next error (None when it cannot)."""
    lines = text.splitlines() or [""]
    line = getattr(err, "line", None) or 1
    col = getattr(err, "column", None) or 1
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        hint = None
        if ch in "\"'":
            hint = "strings are not values in archdsl; write enum words bare, e.g. activation = gelu"
        elif ch == ":":
            hint = "the text form writes `name = value`; `name: value` is the YAML form"
        elif ch == ";":
            hint = "entries are separated by new lines, not ';'"
        d = Diagnostic(
            "E001", f"unexpected character {ch!r}", Span(path, line, col, line, col + 1), help=hint
        )
        return d, _blank(lines, line)
    tok = err.token if isinstance(err, UnexpectedToken) else None
    if isinstance(err, UnexpectedEOF) or (tok is not None and tok.type == "$END"):
        expected = set(err.expected) if hasattr(err, "expected") else set()
        where = _unclosed_brace(text)
        if where is not None:
            ln, c = where
            d = Diagnostic(
                "E001",
                "this `{` is never closed",
                Span(path, ln, c, ln, c + 1),
                help="add the closing `}`",
            )
            return d, text + "\n}"
        ln = len(lines)
        c = len(lines[-1]) + 1
        d = Diagnostic(
            "E001", f"unexpected end of file; expected {_expected(expected)}", Span(path, ln, c, ln, c + 1)
        )
        return d, None
    assert isinstance(err, UnexpectedToken) and tok is not None
    expected = set(err.expected) | set(getattr(err, "accepts", None) or ())
    opened = _unclosed_bracket(lines, line, col)
    if opened is not None and opened[0] < line and {"RPAR", "RSQB"} & expected:
        ln, c, ch = opened
        closer = ")" if ch == "(" else "]"
        d = Diagnostic(
            "E001",
            f"this '{ch}' is never closed",
            Span(path, ln, c, ln, c + 1),
            help=f"add the closing '{closer}'",
        )
        return d, _blank(lines, ln)
    prev = _previous_code_line(lines, line)
    # the error comes where a new entry would start: nothing, or one name, before it on its line
    first_on_line = (
        re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)?\s*", _code(lines[line - 1])[: col - 1]) is not None
    )
    prev_code = _code(lines[prev - 1]) if prev else ""
    if (
        prev is not None
        and prev != line
        and _DANGLING.search(prev_code)
        and (first_on_line or prev_code.endswith("("))
    ):
        # the real mistake is at the end of the line before: a value or a ')' never came
        op = prev_code.strip()[-1]
        c = len(prev_code) + 1
        message, hint = {
            "=": ("missing value after '='", "write `name = value`"),
            "(": ("'(' is never closed", "close the call with ')'"),
            "[": ("'[' is never closed", "close the list with ']'"),
            ",": ("missing argument after ','", "remove the trailing ',' or add the argument"),
        }.get(op, (f"missing operand after '{op}'", "complete the expression"))
        return Diagnostic("E001", message, Span(path, prev, c - 1, prev, c), help=hint), _blank(lines, prev)
    if expected == {"LBRACE"} and prev is not None and first_on_line and prev != line:
        # `repeat 2` then a new line: read as a section header whose `{` never came
        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s+(.+?)\s*", prev_code)
        stripped = prev_code.strip()
        c = len(prev_code) - len(prev_code.lstrip()) + 1
        span = Span(path, prev, c, prev, c + len(stripped))
        if m and m.group(1) in SECTION_KEYWORDS:  # `model gpt2` then its entries: the `{` is missing
            d = Diagnostic(
                "E001",
                f"`{stripped}` is missing its '{{'",
                span,
                help=f"write `{stripped} {{`, and close the section with `}}`",
            )
            return d, _open_section(lines, prev)
        hint = f"write `{m.group(1)} = {m.group(2)}`" if m else "write `name = value`"
        return Diagnostic("E001", f"`{stripped}` is missing its '='", span, help=hint), _blank(lines, prev)
    hint = None
    if tok.type == "STRING":
        hint = "strings are not values in archdsl; write enum words bare, e.g. activation = gelu"
    elif tok.type == "RBRACE" and "EQUAL" in expected:
        hint = "an attribute needs a value: `name = value`"
    elif "EQUAL" in expected and tok.type in ("INT", "FLOAT", "NAME", "LPAR"):
        hint = "write attributes as `name = value`"
    elif "COMMA" in expected and "RPAR" in expected:
        hint = "separate arguments with ','"
    elif "COMMA" in expected and "RSQB" in expected:
        hint = "separate list items with ','"
    elif expected == {"STRING"}:
        hint = 'quote the path: extends "base.arch", import a from "blocks.arch"'
    elif expected == {"LBRACE"}:
        hint = "for an attribute write `name = value`; a section is `keyword label { … }`"
    elif tok.type == "EQUAL" and ("LBRACE" in expected or "NAME" in expected):
        hint = "a label names a section: `block dense { … }`"
    end_col = col + max(1, len(str(tok)))
    d = Diagnostic(
        "E001",
        f"unexpected {_token_text(tok)}; expected {_expected(expected)}",
        Span(path, line, col, line, end_col),
        help=hint,
    )
    return d, _blank(lines, line)


#: the keywords that open sections (`model NAME { … }`, `block NAME { … }`, `flow { … }`, …)
SECTION_KEYWORDS = ("model", "block", "layer", "encoder", "decoder", "flow", "lora")


def _open_section(lines: list[str], lineno: int) -> str:
    """The text with the missing `{` added to a section header, if a `}` further down closes it;
    otherwise with the header blanked."""
    rest = sum(_code(x).count("{") - _code(x).count("}") for x in lines[lineno:])
    if rest >= 0:
        return _blank(lines, lineno)
    out = [*lines[: lineno - 1], _code(lines[lineno - 1]) + " {", *lines[lineno:]]
    return "\n".join(out) + "\n"


def _blank(lines: list[str], lineno: int) -> str:
    """The text with line ``lineno`` emptied, keeping its braces' balance with a placeholder section."""
    code = _code(lines[lineno - 1])
    net = code.count("{") - code.count("}")
    indent = code[: len(code) - len(code.lstrip())]
    replacement = indent + ("_ {" * net if net > 0 else "}" * -net)
    out = [*lines[: lineno - 1], replacement, *lines[lineno:]]
    return "\n".join(out) + "\n"


def _span(path: str, meta: object) -> Span | None:
    if getattr(meta, "empty", True):
        return None
    m = meta
    return Span(path, m.line, m.column, m.end_line, m.end_column)  # type: ignore[attr-defined]


def _tok_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line or 1, tok.column or 1, tok.end_line or 1, tok.end_column or 1)


def _number(tok: Token, path: str) -> int | float:
    s = str(tok).replace("_", "")
    if tok.type == "INT" and len(s) > 1 and s[0] == "0":
        shown = _short(str(tok))
        raise SpecError(
            [
                Diagnostic(
                    "E001",
                    f"integer `{shown}` has a leading zero",
                    _tok_span(path, tok),
                    help=f"write {_short(s.lstrip('0') or '0')}; YAML 1.1 would read `{shown}` as the "
                    f"octal {_octal(s)}",
                )
            ]
        )
    # digits are counted before converting: a 5,000-digit literal must not reach int() (its limit)
    if tok.type == "INT" and (len(s) > len(str(MAX_INT)) or int(s) > MAX_INT):
        raise SpecError(
            [
                Diagnostic(
                    "E004",
                    f"integer `{_short(str(tok))}` is too large",
                    _tok_span(path, tok),
                    help=f"values in a spec fit in 64 bits (at most {MAX_INT:,})",
                )
            ]
        )
    if tok.type == "FLOAT":
        value = float(s)
        if not math.isfinite(value):
            raise SpecError(
                [
                    Diagnostic(
                        "E004",
                        f"number `{_short(str(tok))}` is too large to be a finite float",
                        _tok_span(path, tok),
                        help="values in a spec are finite numbers (at most about 1.8e308)",
                    )
                ]
            )
        return value
    return int(s)


def _short(s: str, keep: int = 24) -> str:
    """A literal as messages show it: long ones cut in the middle."""
    return s if len(s) <= keep else f"{s[: keep // 2]}…{s[-keep // 2 :]} ({len(s):,} characters)"


def _octal(s: str) -> str:
    if len(s) > 30 or any(c in "89" for c in s):
        return "(not octal either)" if any(c in "89" for c in s) else "(a very large number)"
    return str(int(s, 8))


@dataclasses.dataclass(frozen=True)
class _Label:
    ident: S.Ident


class _ToSyntax(Transformer_NonRecursive):
    """Lark tree -> surface tree. Non-recursive, so deep nesting cannot overflow the Python stack."""

    def __init__(self, path: str) -> None:
        super().__init__(visit_tokens=False)  # no callbacks for tokens: they pass as they are
        self.path = path
        for name, method in vars(_ToSyntax).items():  # each rule's method bound once, not per node
            if hasattr(method, "visit_wrapper"):
                setattr(self, name, getattr(self, name))

    def _s(self, meta: object) -> Span | None:
        return _span(self.path, meta)

    @v_args(meta=True)
    def start(self, meta: object, children: list[S.Entry]) -> tuple[S.Entry, ...]:
        return tuple(children)

    @v_args(meta=True)
    def ident(self, meta: object, children: list[Token]) -> S.Ident:
        return S.Ident(str(children[0]), _tok_span(self.path, children[0]))

    @v_args(meta=True)
    def attr(self, meta: object, children: list[object]) -> S.Attr:
        key, value = children
        return S.Attr(key, value, self._s(meta))  # type: ignore[arg-type]

    @v_args(meta=True)
    def section(self, meta: object, children: list[object]) -> S.Section:
        keyword = children[0]
        label = None
        rest = children[1:]
        if rest and isinstance(rest[0], _Label):
            label, rest = rest[0].ident, rest[1:]
        return S.Section(keyword, label, tuple(rest), self._s(meta))  # type: ignore[arg-type]

    @v_args(meta=True)
    def label(self, meta: object, children: list[Token]) -> _Label:
        return _Label(S.Ident(str(children[0]), _tok_span(self.path, children[0])))

    @v_args(meta=True)
    def extends(self, meta: object, children: list[Token]) -> S.Extends:
        return S.Extends(str(children[0])[1:-1], self._s(meta))

    @v_args(meta=True)
    def import_(self, meta: object, children: list[object]) -> S.Import:
        *names, path = children
        return S.Import(tuple(names), str(path)[1:-1], self._s(meta))  # type: ignore[arg-type]

    @v_args(meta=True)
    def list(self, meta: object, children: list[S.Expr]) -> S.List:
        return S.List(tuple(c for c in children if c is not None), self._s(meta))

    @v_args(meta=True)
    def int(self, meta: object, children: list[Token]) -> S.Num:
        return S.Num(_number(children[0], self.path), self._s(meta), str(children[0]))

    @v_args(meta=True)
    def float(self, meta: object, children: list[Token]) -> S.Num:
        return S.Num(_number(children[0], self.path), self._s(meta), str(children[0]))

    @v_args(meta=True)
    def true(self, meta: object, children: list[Token]) -> S.Bool:
        return S.Bool(True, self._s(meta))

    @v_args(meta=True)
    def false(self, meta: object, children: list[Token]) -> S.Bool:
        return S.Bool(False, self._s(meta))

    @v_args(meta=True)
    def name(self, meta: object, children: list[Token]) -> S.Name:
        return S.Name(str(children[0]), self._s(meta))

    def _bin(op: str):  # type: ignore[no-untyped-def]  # noqa: N805
        @v_args(meta=True)
        def method(self, meta, children):  # type: ignore[no-untyped-def]
            left, right = children
            return S.BinOp(op, left, right, self._s(meta))

        return method

    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    floordiv = _bin("//")
    mod = _bin("%")
    pow = _bin("**")

    @v_args(meta=True)
    def neg(self, meta: object, children: list[S.Expr]) -> S.Neg:
        return S.Neg(children[0], self._s(meta))

    @v_args(meta=True)
    def unary(self, meta: object, children: list[S.Expr]) -> S.Expr:  # unary plus
        return children[0]

    @v_args(meta=True)
    def call(self, meta: object, children: list[object]) -> S.Call:
        func = children[0]
        args = tuple(a for a in children[1:] if a is not None)
        return S.Call(func, args, self._s(meta))  # type: ignore[arg-type]

    @v_args(meta=True)
    def kwarg(self, meta: object, children: list[object]) -> S.Arg:
        key, value = children
        return S.Arg(key, value, self._s(meta))  # type: ignore[arg-type]

    @v_args(meta=True)
    def posarg(self, meta: object, children: list[object]) -> S.Arg:
        return S.Arg(None, children[0], self._s(meta))  # type: ignore[arg-type]


def _depth_error(text: str, path: str) -> Diagnostic | None:
    """Brackets nested deeper than MAX_DEPTH, found before parsing (comments skipped)."""
    depth = 0
    line, col = 1, 1
    comment = False
    for ch in text:
        if ch == "#":
            comment = True
        elif ch == "\n":
            comment = False
        elif comment:
            pass
        elif ch in "({[":
            depth += 1
            if depth > MAX_DEPTH:
                return _deep(Span(path, line, col, line, col + 1))
        elif ch in ")}]":
            depth -= 1
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
    return None


def _deep(span: Span | None) -> Diagnostic:
    return Diagnostic(
        "E001",
        f"nesting deeper than {MAX_DEPTH} levels",
        span,
        help="flatten the expression with named constants",
    )


_LOCAL = threading.local()  # one transformer per thread, its methods bound once


def _transformer(path: str) -> _ToSyntax:
    t: _ToSyntax | None = getattr(_LOCAL, "transformer", None)
    if t is None:
        t = _LOCAL.transformer = _ToSyntax(path)
    t.path = path
    return t


def _transform(path: str, tree: object) -> Any:
    try:
        out = _transformer(path).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, SpecError):
            raise e.orig_exc from None
        raise
    deep = S.too_deep(out, MAX_DEPTH)
    if deep is not None:
        raise SpecError([_deep(deep)])
    return out


def _all_syntax_errors(err: UnexpectedInput, text: str, path: str) -> list[Diagnostic]:
    """Report an error, blank out the damage, parse again: up to MAX_SYNTAX_ERRORS, each once."""
    diags: list[Diagnostic] = []
    current: str | None = text
    # each further error costs a parse of the whole text: a large text gets fewer
    budget = max(1, min(MAX_SYNTAX_ERRORS, REPARSE_TOKENS // max(1, len(text) // 4)))
    while current is not None and len(diags) < budget:
        d, current = _syntax_error(err, current, path)
        if d.span is not None and any(
            x.span and (x.span.line, x.span.col) == (d.span.line, d.span.col) for x in diags
        ):
            break
        diags.append(d)
        if current is None:
            break
        try:
            _parser().parse(current, start="start")
            break
        except UnexpectedInput as again:
            err = again
    return diags


def parse_text(text: str, path: str) -> S.File:
    deep = _depth_error(text, path)
    if deep is not None:
        raise SpecError([deep])
    _COMMENTS.clear()
    try:
        tree = _parser().parse(text, start="start")
    except UnexpectedInput as err:
        raise SpecError(_all_syntax_errors(err, text, path)) from None
    comments = tuple(S.Comment(t.line or 0, t.column or 0, str(t).rstrip()) for t in _COMMENTS)
    _COMMENTS.clear()
    entries = _transform(path, tree)
    return S.File(path, entries, comments)


def parse_expr(text: str, path: str, line: int = 1, col: int = 1) -> S.Expr:
    """Parse one expression (a YAML value, a ``--set`` value); spans are shifted to (line, col)."""
    from archdsl.frontend import check_text

    try:
        check_text(text, path)  # a YAML escape can put a control character into a value
    except SpecError as e:
        raise SpecError([_shift(d, line, col) for d in e.diagnostics]) from None
    atom = _atom(text, path)
    if atom is not None:  # a lone number, name or boolean (most YAML values): no parser needed
        try:
            return _shift_tree(atom(), line, col)
        except SpecError as e:
            raise SpecError([_shift(d, line, col) for d in e.diagnostics]) from None
    deep = _depth_error(text, path)
    if deep is not None:
        raise SpecError([_shift(deep, line, col)])
    try:
        tree = _parser().parse(text, start="expr")
    except UnexpectedInput as err:
        raise SpecError([_shift(_syntax_error(err, text, path)[0], line, col)]) from None
    try:
        expr = _transform(path, tree)
    except SpecError as e:
        raise SpecError([_shift(d, line, col) for d in e.diagnostics]) from None
    return _shift_tree(expr, line, col)


@functools.cache
def _atom_pattern() -> re.Pattern[str]:
    """One NAME, INT or FLOAT token of the grammar (its own regular expressions), spaces around."""
    terms = {t: _parser().get_terminal(t).pattern.to_regexp() for t in ("NAME", "INT", "FLOAT")}
    return re.compile(r"[ \t]*(?:(?P<NAME>{NAME})|(?P<INT>{INT})|(?P<FLOAT>{FLOAT}))[ \t]*".format(**terms))


#: words the grammar reads as its own tokens, not as names
_GRAMMAR_WORDS = frozenset(("true", "false", "extends", "import", "from"))


def _atom(text: str, path: str) -> Any:
    """A maker of the syntax node for a text that is one token, exactly as the parser would read it;
    None for anything else (the parser decides)."""
    m = _atom_pattern().fullmatch(text)
    if m is None:
        return None
    kind = m.lastgroup
    word = m.group(kind)  # type: ignore[arg-type]
    if kind == "NAME" and word in _GRAMMAR_WORDS - {"true", "false"}:
        return None
    start = m.start(kind) + 1  # type: ignore[arg-type]
    span = Span(path, 1, start, 1, start + len(word))
    if kind == "NAME":
        return lambda: S.Bool(word == "true", span) if word in ("true", "false") else S.Name(word, span)
    tok = Token(kind, word, line=1, column=start, end_line=1, end_column=start + len(word))  # type: ignore[arg-type]
    return lambda: S.Num(_number(tok, path), span, word)


def _shift_span(s: Span | None, line: int, col: int) -> Span | None:
    if s is None or (line, col) == (1, 1):
        return s
    c0 = col - 1 if s.line == 1 else 0
    c1 = col - 1 if s.end_line == 1 else 0
    return Span(s.file, s.line + line - 1, s.col + c0, s.end_line + line - 1, s.end_col + c1)


def _shift(d: Diagnostic, line: int, col: int) -> Diagnostic:
    return Diagnostic(d.code, d.message, _shift_span(d.span, line, col), d.help, d.severity, d.notes)


def _shift_tree(e: object, line: int, col: int) -> object:
    """Rebuild a parsed expression with spans moved into the enclosing file's coordinates."""
    if (line, col) == (1, 1) or not dataclasses.is_dataclass(e):
        return e
    changes: dict[str, object] = {}
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if f.name == "span":
            changes["span"] = _shift_span(v, line, col)
        elif isinstance(v, tuple):
            changes[f.name] = tuple(_shift_tree(x, line, col) for x in v)
        elif dataclasses.is_dataclass(v):
            changes[f.name] = _shift_tree(v, line, col)
    return dataclasses.replace(e, **changes)  # type: ignore[type-var]
