"""The surface tree both front ends produce.

A spec is a list of entries: attributes (``name = value``), sections (``keyword label { entries }``),
``extends "base.arch"`` and ``import a, b from "blocks.arch"``. Values are expressions: numbers,
booleans, names, lists, arithmetic, and calls ``kind(key = value, ...)`` (a component), ``min(a, b)`` (a
function) or ``attn(ln_1(x))`` (a sublayer applied to tensors, inside ``flow``). The text form writes
this tree directly; the YAML form writes mappings (see :mod:`archdsl.frontend.yaml`). Spans (and the
source text of number literals) are carried on every node and excluded from equality, so the two forms
of one spec give equal trees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archdsl.diagnostics import Span


@dataclass(frozen=True)
class Ident:
    name: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span | None = field(default=None, compare=False, repr=False)
    text: str | None = field(default=None, compare=False, repr=False)  # as written, for the formatter


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Name:
    """A reference: a constant, a block, a tensor in a flow, or an enum word such as ``gelu``."""

    name: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / // % **
    left: Expr
    right: Expr
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class List:
    items: tuple[Expr, ...]
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Arg:
    key: Ident | None  # None for positional arguments (functions, tensors in a flow)
    value: Expr
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    func: Ident
    args: tuple[Arg, ...]
    span: Span | None = field(default=None, compare=False, repr=False)


Expr = Num | Bool | Name | BinOp | Neg | List | Call


@dataclass(frozen=True)
class Attr:
    key: Ident
    value: Expr
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Section:
    keyword: Ident
    label: Ident | None
    entries: tuple[Entry, ...]
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Extends:
    path: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Import:
    names: tuple[Ident, ...]
    path: str
    span: Span | None = field(default=None, compare=False, repr=False)


Entry = Attr | Section | Extends | Import


@dataclass(frozen=True)
class Comment:
    line: int
    col: int
    text: str  # including the leading '#'


@dataclass(frozen=True)
class File:
    path: str
    entries: tuple[Entry, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False, repr=False)


# ---------------------------------------------------------------------------------------------------
# Canonical expression text (messages, the formatter, the YAML writer)

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2, "**": 4}


def number_text(e: Num) -> str:
    if e.text is not None:
        return e.text
    return repr(e.value)


def expr_text(e: Expr) -> str:
    """Canonical text of an expression, with only the parentheses precedence needs."""
    return _text(e, 0)


def _text(e: Expr, ctx: int) -> str:
    if isinstance(e, Num):
        return number_text(e)
    if isinstance(e, Bool):
        return "true" if e.value else "false"
    if isinstance(e, Name):
        return e.name
    if isinstance(e, List):
        return "[" + ", ".join(_text(x, 0) for x in e.items) + "]"
    if isinstance(e, Neg):
        s = "-" + _text(e.operand, 3)
        return f"({s})" if ctx > 3 else s
    if isinstance(e, BinOp):
        p = _PREC[e.op]
        if e.op == "**":  # right-associative; its left operand is an atom
            s = f"{_text(e.left, 5)} ** {_text(e.right, 3)}"
        else:
            s = f"{_text(e.left, p)} {e.op} {_text(e.right, p + 1)}"
        return f"({s})" if p < ctx else s
    args = ", ".join((f"{a.key.name} = {_text(a.value, 0)}" if a.key else _text(a.value, 0)) for a in e.args)
    return f"{e.func.name}({args})"


def too_deep(entries: tuple[Entry, ...] | Expr, limit: int) -> Span | None:
    """The span of the first expression nested deeper than ``limit`` (each operator, call and list is a
    level: ``a + b + c`` is two deep), or None. Iterative, so that it is safe on any tree: every other
    walker of expressions is recursive, and runs only on trees this one has passed."""
    todo: list[tuple[object, int, Span | None]] = [
        (e, 0, None) for e in (entries if isinstance(entries, tuple) else (entries,))
    ]
    while todo:
        node, depth, where = todo.pop()
        span = getattr(node, "span", None) or where
        if isinstance(node, BinOp | Neg | Call | List):
            depth += 1
            if depth > limit:
                return span
        if isinstance(node, Attr):
            todo.append((node.value, depth, span))
        elif isinstance(node, Section):
            todo.extend((e, depth, span) for e in node.entries)
        elif isinstance(node, BinOp):
            todo.extend(((node.left, depth, span), (node.right, depth, span)))
        elif isinstance(node, Neg):
            todo.append((node.operand, depth, span))
        elif isinstance(node, Call):
            todo.extend((a.value, depth, span) for a in node.args)
        elif isinstance(node, List):
            todo.extend((x, depth, span) for x in node.items)
    return None
