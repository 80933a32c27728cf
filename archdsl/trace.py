"""Traced numbers: ints and floats that remember how they were computed from a spec's constants.

The standalone file ``archdsl compile`` writes has a ``Config`` with one field per constant of the
spec, and its constructor tree must follow those fields (``--d_model 64`` gives heads of width
``64 // n_heads``). To learn how every size depends on the constants, :func:`archdsl.pipeline.emit_source`
elaborates and lowers the spec once more with each constant a :class:`TInt` or :class:`TFloat`:
exactly the number it was, plus an expression tree over ``config.<name>``. Arithmetic propagates the
expression (``4 * d_model``, ``d_model // n_heads``), so the constructor tree holds expressions the
emitter prints instead of literals.

What arithmetic cannot carry is recorded rather than lost silently:

- a decision taken on a traced value (a comparison, ``if x % h:``) is a *guard*: the emitted file
  checks that it still comes out the same way for the config it is given, and refuses to build
  otherwise;
- a value converted with ``int()`` or ``float()`` or used as a count or an index becomes a plain
  number. Whether a field then still reproduces the model is not assumed: ``emit_source`` rebuilds the
  real constructor tree with each field changed and compares (see :mod:`archdsl.lower.config`).

Expression trees are tuples, made only of constant names (checked identifiers), numbers and the
operators below; :func:`source` prints them through :func:`~archdsl.lower.pysrc.py_number`.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# ("var", name) | ("num", value) | ("bin", op, a, b) | ("neg", a) | ("abs", a)
Expr = tuple[Any, ...]

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2, "**": 4}

Guard = tuple[Expr, bool]  # ("cmp", op, a, b), and what it came out as
_guards: list[Guard] | None = None
_structural = False


@contextlib.contextmanager
def recording() -> Iterator[list[Guard]]:
    """Record the guards of every decision taken on a traced value inside the block."""
    global _guards
    before, _guards = _guards, []
    try:
        yield _guards
    finally:
        _guards = before


@contextlib.contextmanager
def structural() -> Iterator[None]:
    """Inside the block, traced numbers are equal only to traced numbers of the same value *and*
    expression (constructor trees compared as code, not as values)."""
    global _structural
    before, _structural = _structural, True
    try:
        yield
    finally:
        _structural = before


def expr_of(x: Any) -> Expr:
    return x.expr if isinstance(x, TInt | TFloat) else ("num", x)


def plain(x: Any) -> Any:
    """The number itself, without its trace."""
    if isinstance(x, TInt):
        return int(x)
    if isinstance(x, TFloat):
        return float(x)
    return x


def traced(x: Any) -> bool:
    return isinstance(x, TInt | TFloat)


def wrap(value: Any, expr: Expr) -> Any:
    """``value`` carrying ``expr`` (booleans and non-numbers stay as they are)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return TInt(value, expr) if isinstance(value, int) else TFloat(value, expr)


def var(name: str, value: Any) -> Any:
    return wrap(plain(value), ("var", name))


def as_float(x: Any) -> float:
    """``float(x)``, keeping a trace."""
    return TFloat(float(x), x.expr) if traced(x) else float(x)


def whole(x: Any) -> int:
    """``int(x)``, keeping a trace (for sizes a kind reads from its node)."""
    return TInt(int(x), x.expr) if traced(x) else int(x)


def _binary(op: str, reflected: bool = False) -> Callable[[Any, Any], Any]:
    fn = _BINARY[op]

    def method(self: Any, other: Any) -> Any:
        if not isinstance(other, int | float):
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        r = fn(plain(a), plain(b))
        return wrap(r, ("bin", op, expr_of(a), expr_of(b)))

    return method


def _compare(op: str) -> Callable[[Any, Any], Any]:
    fn = _COMPARE[op]

    def method(self: Any, other: Any) -> Any:
        if not isinstance(other, int | float):
            return NotImplemented
        if _structural and op in ("==", "!="):
            same = traced(other) and plain(self) == plain(other) and self.expr == other.expr
            return same if op == "==" else not same
        r = fn(plain(self), plain(other))
        if _guards is not None:
            _guards.append((("cmp", op, self.expr, expr_of(other)), r))
        return r

    return method


def _bool(self: Any) -> bool:
    r = plain(self) != 0
    if _guards is not None:
        _guards.append((("cmp", "!=", self.expr, ("num", 0)), r))
    return r


def _methods() -> dict[str, Any]:
    ns: dict[str, Any] = {}
    for op, name in (("+", "add"), ("-", "sub"), ("*", "mul"), ("/", "truediv"), ("//", "floordiv")):
        ns[f"__{name}__"] = _binary(op)
        ns[f"__r{name}__"] = _binary(op, reflected=True)
    for op, name in (("%", "mod"), ("**", "pow")):
        ns[f"__{name}__"] = _binary(op)
        ns[f"__r{name}__"] = _binary(op, reflected=True)
    for op, name in (("==", "eq"), ("!=", "ne"), ("<", "lt"), ("<=", "le"), (">", "gt"), (">=", "ge")):
        ns[f"__{name}__"] = _compare(op)
    ns["__bool__"] = _bool
    ns["__neg__"] = lambda self: wrap(-plain(self), ("neg", self.expr))
    ns["__pos__"] = lambda self: self
    ns["__abs__"] = lambda self: wrap(abs(plain(self)), ("abs", self.expr))
    return ns


class TInt(int):
    """An int that remembers its expression over the spec's constants."""

    expr: Expr

    def __new__(cls, value: int = 0, expr: Expr | None = None) -> TInt:
        self = super().__new__(cls, value)
        self.expr = expr if expr is not None else ("num", int(value))
        return self

    __hash__ = int.__hash__


class TFloat(float):
    """A float that remembers its expression over the spec's constants."""

    expr: Expr

    def __new__(cls, value: float = 0.0, expr: Expr | None = None) -> TFloat:
        self = super().__new__(cls, value)
        self.expr = expr if expr is not None else ("num", float(value))
        return self

    __hash__ = float.__hash__


for _name, _method in _methods().items():
    setattr(TInt, _name, _method)
    setattr(TFloat, _name, _method)


def evaluate(e: Expr, env: Mapping[str, Any]) -> Any:
    """An expression's value for the constants ``env`` (as the emitted code computes it)."""
    tag = e[0]
    if tag == "var":
        return env[e[1]]
    if tag == "num":
        return e[1]
    if tag == "neg":
        return -evaluate(e[1], env)
    if tag == "abs":
        return abs(evaluate(e[1], env))
    if tag == "cmp":
        return _COMPARE[e[1]](evaluate(e[2], env), evaluate(e[3], env))
    assert tag == "bin", e
    return _BINARY[e[1]](evaluate(e[2], env), evaluate(e[3], env))


def names(e: Expr) -> set[str]:
    """The constants an expression reads."""
    if e[0] == "var":
        return {e[1]}
    if e[0] == "num":
        return set()
    return set().union(*(names(x) for x in e[1:] if isinstance(x, tuple)))


def source(e: Expr, root: str, number: Callable[[Any], str], prec: int = 0) -> str:
    """Python source for ``e``, constants read as ``root.<name>``; ``number`` prints literals."""
    tag = e[0]
    if tag == "var":
        return f"{root}.{e[1]}"
    if tag == "num":
        text = number(e[1])
        return f"({text})" if text.startswith("-") and prec > 0 else text
    if tag == "neg":
        text = "-" + source(e[1], root, number, 3)
        return f"({text})" if prec > 3 else text
    if tag == "abs":
        return f"abs({source(e[1], root, number)})"
    if tag == "cmp":
        text = f"{source(e[2], root, number, 1)} {e[1]} {source(e[3], root, number, 1)}"
        return f"({text})" if prec > 0 else text
    op = e[1]
    p = _PREC[op]
    if op == "**":  # right-associative, binds tighter than unary minus on its left
        left, right = source(e[2], root, number, p + 1), source(e[3], root, number, 3)
    else:
        left, right = source(e[2], root, number, p), source(e[3], root, number, p + 1)
    text = f"{left} {op} {right}"
    return f"({text})" if p < prec else text


def negate(e: Expr) -> Expr:
    """The comparison that holds when ``e`` does not."""
    flip = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
    return ("cmp", flip[e[1]], e[2], e[3])
