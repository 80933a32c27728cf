"""Exact polynomials in batch ``b`` and sequence lengths ``n`` and ``m``: the symbolic form of every cost.

Kinds write their costs with ``+ - * //`` on shape entries (:mod:`archdsl.kinds.base`), so the same
function that counts FLOPs at ``n = 1024`` gives, handed :class:`Poly` sizes, the cost as a polynomial.
A purpose-built type rather than sympy expressions on the hot path: a report of a 100-layer model adds a
few thousand terms, which sympy takes a second over and this class a millisecond. :meth:`Poly.to_sympy`
hands the polynomial to sympy where its algebra is needed (solving for crossovers).

Coefficients are exact rationals. A symbolic length stands for a long sequence whose length is a
multiple of every block size: ``//`` and ``%`` by an integer d treat each term in n or m as a multiple
of d (``(n + 63) // 64 * 64`` is ``n``; ``n (n + 1) // 2`` is ``n²/2 + n/2``) and round the constant;
window kinds take n past their window (:mod:`archdsl.kinds.local`). So a polynomial equals the exact
count for every such n, and reports say whether it does at the sizes asked for. Comparing a symbolic
size (``min(n, w)``) raises ``TypeError``: kinds guard such code with ``isinstance(n, int)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

#: the variables, in the order of a monomial's exponents
VARS = ("b", "n", "m")
Mono = tuple[int, int, int]
Number = int | Fraction

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _norm(c: Number) -> Number:
    return c.numerator if isinstance(c, Fraction) and c.denominator == 1 else c


class Poly:
    """A polynomial with rational coefficients in ``b``, ``n`` and ``m``; immutable."""

    __slots__ = ("_hash", "_texts", "_values", "terms")

    def __init__(self, terms: dict[Mono, Number] | None = None) -> None:
        out: dict[Mono, Number] = {}
        for k, v in (terms or {}).items():
            if v:
                out[k] = v.numerator if type(v) is Fraction and v.denominator == 1 else v
        self.terms = out
        self._hash: int | None = None
        self._texts: dict[str, str] | None = None  # immutable: written out once per notation
        self._values: dict[tuple[Number, Number, Number], Number] | None = None  # and evaluated once

    @classmethod
    def _of(cls, terms: dict[Mono, Number]) -> Poly:
        """A polynomial of ``terms`` already in normal form (no zero coefficient, whole fractions as
        ints): what arithmetic on polynomials makes, without checking it again."""
        p = object.__new__(cls)
        p.terms = terms
        p._hash = None
        p._texts = None
        p._values = None
        return p

    @classmethod
    def sum(cls, items: Iterable[Any]) -> Poly:
        """The sum of polynomials (or numbers), added term by term into one polynomial."""
        out: dict[Mono, Number] = {}
        for item in items:
            for k, v in Poly.lift(item).terms.items():
                out[k] = out.get(k, 0) + v
        return cls(out)

    @classmethod
    def var(cls, name: str) -> Poly:
        e = [0, 0, 0]
        e[VARS.index(name)] = 1
        return cls({(e[0], e[1], e[2]): 1})

    @staticmethod
    def lift(x: Any) -> Poly:
        if type(x) is Poly:
            return x
        if type(x) is int:  # the common case, checked first (bool is not int here)
            return Poly._of({(0, 0, 0): x} if x else {})
        if isinstance(x, Poly):
            return x
        if isinstance(x, bool) or not isinstance(x, int | Fraction):
            raise TypeError(f"a cost must be built from integers, got {type(x).__name__} {x!r}")
        return Poly({(0, 0, 0): x})

    # -- arithmetic ---------------------------------------------------------------------------------

    def __add__(self, other: Any) -> Poly:
        if type(other) is int and not other:
            return self
        o = Poly.lift(other)
        out = dict(self.terms)
        for k, v in o.terms.items():
            total = out.get(k, 0) + v
            if total:
                out[k] = total.numerator if type(total) is Fraction and total.denominator == 1 else total
            else:
                del out[k]  # v is not 0, so k was a term
        return Poly._of(out)

    __radd__ = __add__

    def __neg__(self) -> Poly:
        return Poly._of({k: -v for k, v in self.terms.items()})

    def __sub__(self, other: Any) -> Poly:
        return self + (-Poly.lift(other))

    def __rsub__(self, other: Any) -> Poly:
        return Poly.lift(other) + (-self)

    def __mul__(self, other: Any) -> Poly:
        if type(other) is int:  # a polynomial times a whole number: each coefficient
            if not other:
                return Poly._of({})
            if all(type(v) is int for v in self.terms.values()):
                return Poly._of({k: v * other for k, v in self.terms.items()})
        o = Poly.lift(other)
        out: dict[Mono, Number] = {}
        for (a1, a2, a3), u in self.terms.items():
            for (b1, b2, b3), v in o.terms.items():
                k = (a1 + b1, a2 + b2, a3 + b3)
                out[k] = out.get(k, 0) + u * v
        return Poly(out)

    __rmul__ = __mul__

    def __pow__(self, k: int) -> Poly:
        out = Poly.lift(1)
        for _ in range(k):
            out = out * self
        return out

    def __truediv__(self, d: Any) -> Poly:
        if isinstance(d, Poly):
            if not d.is_constant:
                raise TypeError("a cost cannot be divided by a symbolic size")
            d = d.constant
        if isinstance(d, bool) or not isinstance(d, int | Fraction) or d == 0:
            raise TypeError(f"a cost can only be divided by a non-zero integer, got {d!r}")
        return Poly({k: Fraction(v) / d for k, v in self.terms.items()})

    def _split(self, d: int) -> tuple[Poly, Number]:
        """(the terms a length divides, the constant): with n and m multiples of d, every term in n or
        m with an integer coefficient is a multiple of d."""
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise TypeError(f"a cost can only be floor-divided by a positive integer, got {d!r}")
        rest = Poly({k: v for k, v in self.terms.items() if k != (0, 0, 0)})
        return rest, self.constant

    def __floordiv__(self, d: Any) -> Poly:
        """``floor(P / d)`` for lengths that are multiples of ``d`` (see the module docstring): the
        length terms divide exactly, the constant rounds down, batch-only terms divide exactly."""
        if isinstance(d, Poly):
            if not d.is_constant:
                raise TypeError("a cost cannot be divided by a symbolic size")
            d = d.constant
        rest, c = self._split(d)
        floor_c = c // d if isinstance(c, int) else Fraction(c.numerator // (c.denominator * d))
        return rest / d + floor_c

    def __mod__(self, d: Any) -> Poly:
        """``P mod d`` for lengths that are multiples of ``d``: the constant's remainder."""
        _, c = self._split(d)
        return Poly.lift(c % d)

    def __rfloordiv__(self, other: Any) -> Poly:
        raise TypeError("a cost cannot be divided by a symbolic size")

    __rtruediv__ = __rfloordiv__

    def _compare(self, other: Any) -> bool:
        raise TypeError(
            "a symbolic size cannot be compared (guard the code with isinstance(n, int), as "
            "archdsl.kinds.local's _cap does)"
        )

    __lt__ = __le__ = __gt__ = __ge__ = _compare

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Poly):
            return self.terms == other.terms
        if isinstance(other, int | Fraction):
            return self.terms == Poly.lift(other).terms
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:  # immutable: hashed once (polynomials key the analysis caches)
            self._hash = hash(frozenset(self.terms.items()))
        return self._hash

    def __bool__(self) -> bool:
        return bool(self.terms)

    # -- reading it ---------------------------------------------------------------------------------

    @property
    def is_constant(self) -> bool:
        return all(k == (0, 0, 0) for k in self.terms)

    @property
    def constant(self) -> Number:
        return self.terms.get((0, 0, 0), 0)

    def __call__(self, b: Number = 1, n: Number = 0, m: Number = 0) -> Number:
        """The value at the given sizes (exact: an int, or a Fraction)."""
        vals = (b, n, m)
        whole = type(b) is int and type(n) is int and type(m) is int  # sizes: kept (floats are not)
        if whole and self._values is not None and vals in self._values:
            return self._values[vals]
        total: Number = 0
        for k, c in self.terms.items():
            x = c
            for v, e in zip(vals, k, strict=True):
                if e:
                    x = x * v**e
            total += x
        out = _norm(total)
        if whole:
            if self._values is None:
                self._values = {}
            self._values[vals] = out
        return out

    def with_batch(self, b: Number) -> Poly:
        """The polynomial with the batch set to ``b`` (a polynomial in the lengths)."""
        out: dict[Mono, Number] = {}
        for (eb, en, em), c in self.terms.items():
            out[(0, en, em)] = out.get((0, en, em), 0) + c * b**eb
        return Poly(out)

    def degree(self, var: str) -> int:
        i = VARS.index(var)
        return max((k[i] for k in self.terms), default=0)

    def monomials(self) -> list[tuple[Mono, Number]]:
        """Terms from the highest total degree down (then by n, m, b)."""
        return sorted(self.terms.items(), key=lambda kv: (-sum(kv[0]), -kv[0][1], -kv[0][2], -kv[0][0]))

    def growth(self) -> list[tuple[int, int]]:
        """The (n, m) degrees of the terms that dominate for long sequences: those no other term
        exceeds in both degrees (``n² + n`` gives ``[(2, 0)]``; ``n m + m²`` gives both)."""
        nm = {(k[1], k[2]) for k, c in self.terms.items() if c > 0 and (k[1] or k[2])}
        return sorted(
            (t for t in nm if not any(o != t and o[0] >= t[0] and o[1] >= t[1] for o in nm)),
            reverse=True,
        )

    def _text(self, mul: str, power: Any) -> str:
        if not self.terms:
            return "0"
        parts: list[str] = []
        for k, c in self.monomials():
            factors = [power(v, e) for v, e in zip(VARS, k, strict=True) if e]
            mag = abs(c)
            coef = f"{mag}" if isinstance(mag, int) else f"({mag})"
            if factors and mag == 1:
                body = mul.join(factors)
            else:
                body = mul.join([coef, *factors])
            parts.append(("- " if c < 0 else "+ ") + body)
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]

    def _written(self, mul: str, power: Any) -> str:
        if self._texts is None:
            self._texts = {}
        if mul not in self._texts:
            self._texts[mul] = self._text(mul, power)
        return self._texts[mul]

    def __str__(self) -> str:
        """Unicode, for people: ``36864·b·n² + 247064064·b·n``."""
        return self._written("·", lambda v, e: v if e == 1 else v + str(e).translate(_SUPERSCRIPT))

    def expr(self) -> str:
        """Python / sympy syntax, for programs: ``36864*b*n**2 + 247064064*b*n``."""
        return self._written("*", lambda v, e: v if e == 1 else f"{v}**{e}")

    def __repr__(self) -> str:
        return f"Poly({self.expr()})"

    def to_sympy(self) -> Any:
        """The same polynomial as a sympy expression in the symbols ``b, n, m`` (positive integers)."""
        import sympy

        syms = sympy.symbols("b n m", positive=True, integer=True)
        total = sympy.Integer(0)
        for k, c in self.terms.items():
            term = sympy.Rational(c.numerator, c.denominator) if isinstance(c, Fraction) else sympy.Integer(c)
            for s, e in zip(syms, k, strict=True):
                term *= s**e
            total += term
        return total


B, N, M = Poly.var("b"), Poly.var("n"), Poly.var("m")
