"""The surface tree both front ends produce.

A spec is a list of entries. An entry is an attribute (``name = value``) or a section
(``keyword label { entries }``). Values are expressions: numbers, booleans, names, arithmetic, and calls
``kind(key = value, ...)`` (a component) or ``min(a, b)`` (a function). The text form writes this tree
directly; the YAML form writes mappings (a mapping with ``kind`` is a call, any other mapping a section,
its ``name`` key the label). Spans are carried on every node and excluded from equality, so the two forms
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


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Name:
    """A reference: a constant, or an enum word such as ``gelu`` (resolved by the parameter's schema)."""

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
class Arg:
    key: Ident | None  # None for positional arguments (functions such as min/max)
    value: Expr
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    func: Ident
    args: tuple[Arg, ...]
    span: Span | None = field(default=None, compare=False, repr=False)


Expr = Num | Bool | Name | BinOp | Neg | Call


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


Entry = Attr | Section


@dataclass(frozen=True)
class File:
    path: str
    entries: tuple[Entry, ...]


def expr_text(e: Expr) -> str:
    """Canonical text of an expression (used in messages and, later, by the formatter)."""
    if isinstance(e, Num):
        return repr(e.value)
    if isinstance(e, Bool):
        return "true" if e.value else "false"
    if isinstance(e, Name):
        return e.name
    if isinstance(e, Neg):
        return f"-{_paren(e.operand)}"
    if isinstance(e, BinOp):
        return f"{_paren(e.left)} {e.op} {_paren(e.right)}"
    args = ", ".join(
        (f"{a.key.name} = {expr_text(a.value)}" if a.key else expr_text(a.value)) for a in e.args
    )
    return f"{e.func.name}({args})"


def _paren(e: Expr) -> str:
    return f"({expr_text(e)})" if isinstance(e, BinOp) else expr_text(e)
