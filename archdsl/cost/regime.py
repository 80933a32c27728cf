"""Where a polynomial gives the exact count, and the piecewise form of the KV cache.

A cost's polynomial is its count in one regime: lengths past every window (where window kinds stop
attending densely) and multiples of every block (the chunks padded kinds round up to) — a kind's
``regime`` says which, and the model's is the lcm of the blocks and the largest threshold
(:func:`archdsl.cost.analysis.poly_regime`). Activations add one more condition: with a batch of
one, batched matmuls may keep views of a projection's output instead of copies, so their polynomial
is that of b >= 2. Outside its regime a polynomial is not the count, and nothing may print it as if
it were: :func:`equation` is the one place a figure and its polynomial are put side by side, and it
writes ``=`` only where the polynomial gives the figure, and the regime wherever that is not every
length.

The KV cache is simpler than the rest: per layer a function of the context alone, and for windowed
kinds ``min(n, w)``-like — linear up to a cap, then constant. :func:`kv_piecewise` finds each
component's pieces from its exact counts (the symbolic count is the last piece, holding from the
first length where the exact counts meet it; the piece below is the line through the first two
counts) and checks them at every length up to a few blocks past the kind's regime and at powers of
two beyond: a piecewise form is given only where it holds at every length checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archdsl.cost.poly import Poly

Bound = tuple[str, int, int | None]  # (length variable, lowest, highest; None: no end)


@dataclass(frozen=True)
class Regime:
    """The sizes where a polynomial equals the exact count: lengths that are multiples of
    ``multiple`` and above ``above``, batches of at least ``min_batch``."""

    multiple: int = 1
    above: int = 0
    min_batch: int = 1

    @property
    def everywhere(self) -> bool:
        return self.multiple == 1 and self.above == 0 and self.min_batch == 1

    def holds(self, sizes: Mapping[str, int]) -> bool:
        """Whether ``sizes`` (``b``, ``n``, ``m``) lie in the regime."""
        lengths = [v for k, v in sizes.items() if k != "b"]
        return sizes.get("b", 1) >= self.min_batch and all(
            n > self.above and n % self.multiple == 0 for n in lengths
        )

    def text(self, lengths: Sequence[str] = ("n",), batch: bool = True) -> str:
        """``b ≥ 2, n > 4,096 and n a multiple of 4,095`` (empty where it holds everywhere);
        ``batch=False`` leaves the batch condition out (a comparison fixes the batch)."""
        names = " and ".join(lengths)
        parts = [f"b ≥ {self.min_batch:,}"] if batch and self.min_batch > 1 else []
        if self.above:
            parts.append(f"{names} > {self.above:,}")
        if self.multiple > 1:
            many = "multiples" if len(lengths) > 1 else "a multiple"
            parts.append(f"{names} {many} of {self.multiple:,}")
        return join_and(parts)

    def to_dict(self) -> dict[str, int]:
        return {"multiple_of": self.multiple, "above": self.above, "batch_at_least": self.min_batch}


def join_and(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# -- piecewise polynomials ----------------------------------------------------------------------------


def _within(bound: Bound, sizes: Mapping[str, Any]) -> bool:
    var, lo, hi = bound
    x = sizes.get(var)
    return x is None or (x >= lo and (hi is None or x <= hi))


def _bound_text(bound: Bound) -> str:
    var, lo, hi = bound
    if hi is None:
        return f"{var} ≥ {lo:,}"
    if lo <= 1:
        return f"{var} ≤ {hi:,}"
    return f"{lo:,} ≤ {var} ≤ {hi:,}"


@dataclass(frozen=True)
class Piece:
    """A polynomial and the lengths it holds for: every bound ``lo <= var <= hi``."""

    bounds: tuple[Bound, ...]
    poly: Poly

    def holds(self, sizes: Mapping[str, Any]) -> bool:
        return all(_within(b, sizes) for b in self.bounds)

    def where(self) -> str:
        return " and ".join(_bound_text(b) for b in self.bounds) or "every length"

    def to_dict(self) -> dict[str, Any]:
        return {"where": {var: [lo, hi] for var, lo, hi in self.bounds}, "poly": self.poly.expr()}


def _meet(a: tuple[Bound, ...], b: tuple[Bound, ...]) -> tuple[Bound, ...] | None:
    """The bounds of both (None where they exclude each other)."""
    out: dict[str, tuple[int, int | None]] = {var: (lo, hi) for var, lo, hi in a}
    for var, lo, hi in b:
        lo0, hi0 = out.get(var, (1, None))
        lo1 = max(lo, lo0)
        hi1 = hi if hi0 is None else hi0 if hi is None else min(hi, hi0)
        if hi1 is not None and hi1 < lo1:
            return None
        out[var] = (lo1, hi1)
    return tuple((var, lo, hi) for var, (lo, hi) in sorted(out.items()))


@dataclass(frozen=True)
class Piecewise:
    """A count as polynomials on pieces of the lengths that together cover every length."""

    pieces: tuple[Piece, ...]

    @staticmethod
    def of(poly: Poly) -> Piecewise:
        return Piecewise((Piece((), poly),))

    def at(self, sizes: Mapping[str, Any]) -> Poly:
        """The polynomial that holds at ``sizes``."""
        return next(p.poly for p in self.pieces if p.holds(sizes))

    def __add__(self, other: Piecewise) -> Piecewise:
        out = []
        for p in self.pieces:
            for q in other.pieces:
                bounds = _meet(p.bounds, q.bounds)
                if bounds is not None:
                    out.append(Piece(bounds, p.poly + q.poly))
        return Piecewise(tuple(out)).merged()

    def map(self, f: Callable[[Poly], Poly]) -> Piecewise:
        return Piecewise(tuple(Piece(p.bounds, f(p.poly)) for p in self.pieces)).merged()

    def merged(self) -> Piecewise:
        """Neighbouring pieces of one variable with the same polynomial made one."""
        pieces = sorted(self.pieces, key=lambda p: tuple((v, lo) for v, lo, _ in p.bounds))
        out: list[Piece] = []
        for p in pieces:
            if out and _adjacent(out[-1], p):
                last = out.pop()
                var, lo, _ = last.bounds[0]
                p = Piece(((var, lo, p.bounds[0][2]),), p.poly)
            out.append(p)
        if len(out) == 1:
            out = [Piece((), out[0].poly)]
        return Piecewise(tuple(out))

    @property
    def single(self) -> bool:
        return len(self.pieces) == 1

    def text(self, unit: str = "") -> str:
        """``16384·b·n bytes for n ≤ 511; 8388608·b bytes for n ≥ 512``."""
        if self.single:
            return f"{self.pieces[0].poly}{unit}"
        return "; ".join(f"{p.poly}{unit} for {p.where()}" for p in self.pieces)

    def breakpoints(self) -> list[int]:
        """The first lengths of the pieces after the first."""
        return sorted({lo for p in self.pieces for _, lo, _ in p.bounds if lo > 1})

    def to_list(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.pieces]


def _adjacent(a: Piece, b: Piece) -> bool:
    if len(a.bounds) != 1 or len(b.bounds) != 1 or a.poly != b.poly:
        return False
    (va, _, hi), (vb, lo, _) = a.bounds[0], b.bounds[0]
    return va == vb and hi is not None and hi + 1 == lo


# -- the KV cache of one component ----------------------------------------------------------------------


#: lengths a component's KV-cache form is checked at one by one, at most (bounded work for any regime)
MAX_CHECKED = 4096


def _checked_lengths(multiple: int, above: int, limit: int | None) -> tuple[int, list[int]]:
    """(K, beyond): every length up to K is checked — two whole blocks past the kind's regime, and
    past twice its threshold, but at most ``MAX_CHECKED`` — and then the powers of two from K to the
    context (or 2^24)."""
    top = min(2 * above + 4 * multiple + 2, MAX_CHECKED)
    if limit is not None:
        top = min(top, limit)
    end = limit if limit is not None else 2**24
    powers = {k for k in (2**e for e in range(64)) if top < k <= end}
    beyond = sorted(powers | ({end} if end > top else set()))
    return top, beyond


def component_kv(
    count: Callable[[Any], Any], var: str, regime: tuple[int, int], limit: int | None
) -> Piecewise | None:
    """A component's KV-cache elements per sequence as pieces in its context length ``var``, from
    ``count`` (the kind's ``kv_cache`` at an integer or a polynomial context). The last piece is the
    symbolic count, from the first length where the exact counts meet it; below that, the line
    through the counts at 1 and 2 (or the count at 1). None where that does not hold at a length
    checked (a count with a remainder, say: the polynomial holds for multiples of a block only)."""
    sym = Poly.lift(count(Poly.var(var)))
    top, beyond = _checked_lengths(*regime, limit)
    exact = {k: int(count(k)) for k in range(1, top + 1)}

    def poly_at(k: int) -> int | Fraction:
        return sym(n=k) if var == "n" else sym(m=k)

    if any(int(count(k)) != poly_at(k) for k in beyond):
        return None
    start = top + 1
    while start > 1 and exact[start - 1] == poly_at(start - 1):
        start -= 1
    if (limit is None or top < limit) and start > top - 2 * regime[0]:
        return None  # met over less than two whole blocks, short of the context: not established
    if start == 1:
        return Piecewise.of(sym)
    v = Poly.var(var)
    slope = exact[2] - exact[1] if start > 2 else 0
    low = v * slope + (exact[1] - slope)
    low_at = (lambda k: low(n=k)) if var == "n" else (lambda k: low(m=k))
    if any(exact[k] != low_at(k) for k in range(1, start)):
        return None
    return Piecewise((Piece(((var, 1, start - 1),), low), Piece(((var, start, None),), sym)))


def total(parts: Iterable[Piecewise | None]) -> Piecewise | None:
    """The sum of piecewise counts (None if any is unknown)."""
    out = Piecewise.of(Poly())
    for p in parts:
        if p is None:
            return None
        out = out + p
    return out


# -- a figure beside its polynomial -------------------------------------------------------------------


def equation(
    figure: str,
    exact: bool,
    poly: Poly,
    regime: Regime,
    unit: str = "",
    lengths: Sequence[str] = ("n",),
    in_regime: bool = False,
) -> str:
    """A figure and its polynomial, truthfully: ``figure = poly`` where the polynomial gives the
    figure (with the regime it holds in, unless that is every length); else the figure, and the
    polynomial with its regime — or, where the sizes lie in the regime and it still differs (a
    nominal count: BigBird's random blocks), said so."""
    if exact:  # at this batch it holds: only the lengths' conditions are worth saying
        where = regime.text(lengths, batch=False)
        return f"{figure} = {poly}{unit}" + (f" (the polynomial holds for {where})" if where else "")
    where = regime.text(lengths)
    if in_regime or not where:
        return f"{figure}; nominally {poly}{unit} (not the exact count here)"
    return f"{figure}; for {where} (not here): {poly}{unit}"


def piecewise_equation(figure: str, pw: Piecewise, sizes: Mapping[str, int], unit: str = "") -> str:
    """A figure and the piece of its piecewise form that gives it, with every piece."""
    here = pw.at(sizes)
    if pw.single:
        return f"{figure} = {here}{unit}"
    return f"{figure} = {here}{unit} (piecewise: {pw.text(unit)})"
