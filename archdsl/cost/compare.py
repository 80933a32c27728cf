"""Variants side by side: the same figures for several specs at several lengths, ratios to the first, and
the lengths where two variants' costs cross — found on the exact counts.

Every metric compared is a function of the length (with the batch fixed): FLOPs, activation memory,
KV cache, and the training and inference footprints (weights, gradients, optimizer states plus
activations; weights plus cache). Its polynomial (here in the length alone) is the count in the
model's regime — past its windows, at multiples of its blocks (:mod:`archdsl.cost.regime`); the KV
cache is piecewise and exact everywhere. Each is printed with where it holds, never as the count
where it is not.

A crossover is where the exact counts change order. They are compared over every length the models take (1
to the shorter context, or to the longest length asked for: past a model's context its figures are
computed as if its position tables were longer, its weights unchanged, and are marked †) at the lengths
where something may change: the ends, the lengths asked for, a geometric grid (eight lengths an octave),
each variant's regime threshold and KV-cache breakpoints and, around every positive root of the two
polynomials' difference (solved exactly by sympy), the root's neighbours and both variants' block
boundaries. Where two neighbouring lengths disagree, bisection finds the change (below 32 lengths apart,
every length is counted), and each change is checked at n - 1 and n. One statement per pair and metric
gives the order from the first length to the last; where the polynomials' difference has a root in both
models' regime it is stated too, with that regime (the counts pad to whole blocks, so they can cross a
little later).

One length variable ``n`` stands for the length being swept: a decoder's or encoder's sequence, and
for an encoder-decoder both its source and target (unless a source length is fixed).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from archdsl.cost.poly import Poly
from archdsl.cost.regime import Bound, Piece, Piecewise, Regime
from archdsl.cost.render import human, human_bytes
from archdsl.cost.report import Report, plain
from archdsl.diagnostics import SpecError
from archdsl.ir import Spec


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str  # "flops" | "bytes"


METRICS = (
    Metric("forward", "forward FLOPs (dense)", "flops"),
    Metric("forward_mask_aware", "forward FLOPs (mask-aware)", "flops"),
    Metric("train_step", "training-step FLOPs", "flops"),
    Metric("activation_bytes", "activation memory", "bytes"),
    Metric("kv_cache_bytes", "KV cache (or recurrent state)", "bytes"),
    Metric("train_memory", "training memory (weights + grads + AdamW + activations)", "bytes"),
    Metric("infer_memory", "inference memory (weights + KV cache or state)", "bytes"),
)
#: a bracket this short is counted length by length rather than bisected
SCAN = 32
#: the search's end for models without a positional limit, at most
LONGEST = 2**24


def metric_title(key: str) -> str:
    return next(m.title for m in METRICS if m.key == key)


def metric_value(r: Report, key: str) -> int | Fraction:
    """A metric's exact value in one report."""
    f, m = r.flops(), r.memory
    if key in ("forward", "forward_mask_aware", "train_step"):
        return r.total("flops_mask_aware") if key == "forward_mask_aware" else f[key]
    if key == "train_memory":
        return m["weights_bytes"] + m["grads_bytes"] + m["optimizer_bytes"] + m["activation_bytes"]
    if key == "infer_memory":
        return m["weights_bytes"] + m["kv_cache_bytes"]
    return m[key]


def _fixed_bytes(r: Report, key: str) -> int:
    """What a footprint adds to its activations or cache: weights (and gradients and optimizer states)."""
    m = r.memory
    if key == "train_memory":
        return m["weights_bytes"] + m["grads_bytes"] + m["optimizer_bytes"]
    return m["weights_bytes"] if key == "infer_memory" else 0


def metric_poly(r: Report, key: str) -> Poly:
    """A metric as a polynomial in b, n, m (in its regime: :func:`metric_regime`)."""
    f, m = r.flops(), r.memory
    if key == "forward":
        return f["forward_poly"]
    if key == "forward_mask_aware":
        return f["forward_mask_aware_poly"]
    if key == "train_step":
        return f["train_step_poly"]
    if key in ("activation_bytes", "train_memory"):  # the batch's own (b = 1 keeps views)
        return Poly.lift(_fixed_bytes(r, key)) + r.activation_poly_here
    return Poly.lift(_fixed_bytes(r, key)) + m["kv_cache_poly"]


def metric_regime(r: Report, key: str) -> Regime:
    """Where a metric's polynomial (at the report's batch) holds."""
    if key in ("kv_cache_bytes", "infer_memory"):
        return r.kv_regime
    return r.flops_regime


def metric_piecewise(r: Report, key: str) -> Piecewise | None:
    """A metric's piecewise form, exact at every length (the KV cache and what it is part of)."""
    if key not in ("kv_cache_bytes", "infer_memory") or r.kv_pieces is None:
        return None
    fixed = _fixed_bytes(r, key)
    return r.kv_pieces.map(lambda p: p + fixed)


def _substitutions(r: Report) -> tuple[Poly, Poly, Poly]:
    """What b, n and m become in the swept length alone (called n)."""
    n = Poly.var("n")
    b = Poly.lift(r.settings.batch)
    if r.model_type == "encoder_decoder":
        return b, Poly.lift(r.settings.src_len) if r.settings.src_len else n, n
    return b, n, Poly.lift(0)


def in_length(r: Report, p: Poly) -> Poly:
    """``p(b, n, m)`` as a polynomial in the swept length alone (called n): the batch as set; an
    encoder-decoder's source length fixed if set, else equal to the target's."""
    subs = _substitutions(r)
    out = Poly()
    for k, c in p.terms.items():
        term = Poly.lift(c)
        for v, e in zip(subs, k, strict=True):
            if e:
                term = term * v**e
        out = out + term
    return out


def _bounds_in_length(r: Report, bounds: tuple[Bound, ...]) -> tuple[Bound, ...] | None:
    """A piece's bounds on the swept length (None where a fixed source length falls outside them)."""
    src = r.settings.src_len if r.model_type == "encoder_decoder" else None
    lo, hi = 1, None
    for var, a, z in bounds:
        if var == "n" and src is not None:
            if src < a or (z is not None and src > z):
                return None
            continue
        lo, hi = max(lo, a), z if hi is None else hi if z is None else min(hi, z)
    if hi is not None and hi < lo:
        return None
    return () if lo == 1 and hi is None else (("n", lo, hi),)


def piecewise_in_length(r: Report, pw: Piecewise) -> Piecewise:
    pieces = []
    for piece in pw.pieces:
        bounds = _bounds_in_length(r, piece.bounds)
        if bounds is not None:
            pieces.append(Piece(bounds, in_length(r, piece.poly)))
    return Piecewise(tuple(pieces)).merged()


@dataclass(frozen=True)
class Form:
    """One variant's metric as a function of the swept length: its polynomial, where that holds —
    ``valid`` is False where a fixed source length falls outside the regime — and the piecewise form,
    exact everywhere, where known."""

    poly: Poly
    regime: Regime
    valid: bool
    piecewise: Piecewise | None

    def holds(self, n: int) -> bool:
        if self.piecewise is not None:
            return True
        return self.valid and n > self.regime.above and n % self.regime.multiple == 0

    def value(self, n: int) -> int | Fraction:
        """What the form gives at n (the piece holding there, or the polynomial)."""
        p = self.piecewise.at({"n": n}) if self.piecewise is not None else self.poly
        return p(n=n)

    def text(self) -> str:
        if self.piecewise is not None:
            return self.piecewise.text()
        where = self.regime.text(batch=False)
        if not self.valid:
            return f"{self.poly} (nominal: the source length lies outside the polynomials' regime)"
        return f"{self.poly} for {where}" if where else str(self.poly)


def metric_form(r: Report, key: str) -> Form:
    regime = metric_regime(r, key)
    _, n, _ = _substitutions(r)
    valid = True
    if r.model_type == "encoder_decoder" and n.is_constant:  # the source length is fixed
        src = int(n.constant)
        valid = src > regime.above and src % regime.multiple == 0
    pw = metric_piecewise(r, key)
    return Form(in_length(r, metric_poly(r, key)), regime, valid, pw and piecewise_in_length(r, pw))


# -- crossovers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """The exact counts change order at ``n``: ``before`` is cheaper at n - 1, ``after`` at n (None:
    they cost the same)."""

    n: int
    before: str | None
    after: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "cheaper_before": self.before, "cheaper_after": self.after}


@dataclass
class Crossover:
    """Where two variants' exact counts of one metric change order, over the lengths ``span``."""

    metric: str
    a: str
    b: str
    span: tuple[int, int]
    start: str | None  # the cheaper at the first length (None: the same)
    crossings: list[Crossing]
    roots: list[tuple[float, str]] = field(default_factory=list)  # the polynomials', in both regimes
    regime: Regime = field(default_factory=Regime)  # where both polynomials hold

    @property
    def cheaper_after(self) -> str | None:
        """The cheaper at the last length."""
        return self.crossings[-1].after if self.crossings else self.start

    def runs(self) -> list[tuple[str | None, int, int]]:
        """(cheaper, first length, last length) from the first length of the span to the last."""
        starts = [(self.start, self.span[0])] + [(c.after, c.n) for c in self.crossings]
        ends = [n - 1 for _, n in starts[1:]] + [self.span[1]]
        return [(who, lo, hi) for (who, lo), hi in zip(starts, ends, strict=True)]

    def text(self) -> str:
        parts = []
        runs = self.runs()
        for i, (who, lo, hi) in enumerate(runs):
            what = f"{who} is cheaper" if who else "they cost the same"
            if i == 0:
                parts.append(f"{what} up to n = {hi:,}" if hi > lo else f"{what} at n = {lo:,}")
            elif i == len(runs) - 1:
                parts.append(f"{what} from n = {lo:,} on" if hi > lo else f"{what} at n = {lo:,}")
            else:
                parts.append(f"{what} from n = {lo:,} to {hi:,}" if hi > lo else f"{what} at n = {lo:,}")
        checked = ", ".join(f"{c.n - 1:,} and {c.n:,}" for c in self.crossings)
        pair = f"{metric_title(self.metric)}, {self.a} vs {self.b}"
        out = f"{pair}: {'; '.join(parts)} (checked at n = {checked})"
        if self.roots:
            where = self.regime.text(batch=False)
            roots = ", ".join(_root_text(value, text) for value, text in self.roots)
            out += f"; the polynomials{f' (for {where})' if where else ''} cross at n = {roots}"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "range": list(self.span),
            "cheaper_at_start": self.start,
            "cheaper_at_end": self.cheaper_after,
            "crossings": [c.to_dict() for c in self.crossings],
            "polynomial_roots": [{"n": value, "n_exact": text} for value, text in self.roots],
            "polynomial_regime": self.regime.to_dict(),
            "text": self.text(),
        }


def _root_text(value: float, exact: str) -> str:
    """``8,190`` for an integer root, ``259/2 ≈ 129.50`` otherwise."""
    return f"{int(exact):,}" if exact.isdigit() else f"{exact} ≈ {value:,.2f}"


def positive_roots(p: Poly) -> list[tuple[float, str]]:
    """Positive real roots of a polynomial in n, exactly (sympy), as (value, exact text)."""
    if p.degree("n") == 0:
        return []
    import sympy

    n = sympy.Symbol("n")
    expr = p.to_sympy().subs(sympy.Symbol("n", positive=True, integer=True), n)
    roots = []
    for r in sympy.Poly(expr, n).real_roots():
        value = float(r.evalf(30))
        if value > 0:
            roots.append((value, str(sympy.nsimplify(r) if r.is_rational else r)))
    return sorted(set(roots))


@dataclass
class Variant:
    name: str
    spec: Spec
    graph: Any  # its checked graph
    reports: list[Report]
    cache: dict[int, Report] = field(default_factory=dict)

    def at(self, n: int) -> Report:
        """The report at length n (the comparison's settings), computed once; past the model's
        context, what the same architecture costs with tables that long."""
        from archdsl.pipeline import report_at

        if n not in self.cache:
            s = replace(self.reports[0].settings, seq_len=n)
            self.cache[n] = report_at(self.spec, self.graph, s, past_context=True)
        return self.cache[n]

    @property
    def context(self) -> int | None:
        return self.reports[0].context

    def past(self, n: int) -> bool:
        """Whether length n is past the model's context (its figures are then extrapolated)."""
        return self.context is not None and n > self.context

    def form(self, key: str) -> Form:
        return metric_form(self.reports[0], key)


def both_regime(a: Variant, b: Variant) -> tuple[int, int]:
    """(lcm of the blocks, largest threshold) of two variants' regimes."""
    (ma, ta), (mb, tb) = a.reports[0].regime, b.reports[0].regime
    return math.lcm(ma, mb), max(ta, tb)


class Order:
    """The order of two variants' exact counts of a metric at each length, counted once:
    1 where ``a`` costs more, -1 where less, 0 where they are equal."""

    def __init__(self, a: Variant, b: Variant, key: str) -> None:
        self.a, self.b, self.key = a, b, key
        self.known: dict[int, int] = {}

    def __call__(self, n: int) -> int:
        if n not in self.known:
            d = metric_value(self.a.at(n), self.key) - metric_value(self.b.at(n), self.key)
            self.known[n] = (d > 0) - (d < 0)
        return self.known[n]

    def cheaper(self, n: int) -> str | None:
        return {1: self.b.name, -1: self.a.name, 0: None}[self(n)]


def changes(order: Callable[[int], int], lo: int, hi: int) -> list[int]:
    """Lengths n in (lo, hi] where the order at n - 1 and at n differ, given that it differs at lo
    and hi: bisection, and every length once the bracket is shorter than ``SCAN``."""
    if hi - lo <= SCAN:
        return [n for n in range(lo + 1, hi + 1) if order(n) != order(n - 1)]
    mid = (lo + hi) // 2
    out = []
    if order(mid) != order(lo):
        out += changes(order, lo, mid)
    if order(hi) != order(mid):
        out += changes(order, mid, hi)
    return out


def _near_roots(roots: Iterable[float], blocks: Iterable[int]) -> set[int]:
    """Around each root: its integer neighbours, and the ends of the blocks about it."""
    out: set[int] = set()
    for r in roots:
        out |= {math.floor(r), math.ceil(r), math.ceil(r) + 1}
        for size in blocks:
            k0 = math.floor(r / size)
            out |= {k * size + e for k in range(k0 - 1, k0 + 3) for e in (0, 1)}
    return out


def sample_lengths(
    a: Variant, b: Variant, span: tuple[int, int], seq_lens: Sequence[int], roots: Sequence[float]
) -> list[int]:
    """Where the exact counts are compared first (see the module docstring)."""
    lo, hi = span
    pts = {lo, hi, *seq_lens}
    pts |= {round(2 ** (j / 8)) for j in range(8 * hi.bit_length() + 1)}
    for v in (a, b):
        r = v.reports[0]
        above = r.regime[1]
        pts |= {above, above + 1}
        if r.kv_pieces is not None:
            pts |= {x + e for x in r.kv_pieces.breakpoints() for e in (-1, 0)}
    blocks = {a.reports[0].regime[0], b.reports[0].regime[0], both_regime(a, b)[0]} - {1}
    pts |= _near_roots(roots, blocks)
    return sorted(p for p in pts if lo <= p <= hi)


def consistent_changes(order: Callable[[int], int], samples: Sequence[int]) -> list[int]:
    """Every change of order found between the samples, and then between changes wherever the order
    just before one change differs from the order just after the previous (a change the samples
    stepped over), until the runs agree."""
    found: set[int] = set()
    for lo, hi in itertools.pairwise(samples):
        if order(lo) != order(hi):
            found |= set(changes(order, lo, hi))
    while True:
        starts = [samples[0], *sorted(found)]
        gaps = [(x, y - 1) for x, y in itertools.pairwise(starts) if order(x) != order(y - 1)]
        if not gaps:
            return sorted(found)
        for x, y in gaps:
            found |= set(changes(order, x, y))


def crossover(a: Variant, b: Variant, key: str, span: tuple[int, int], seq_lens: Sequence[int]) -> Crossover:
    """Where a and b's exact counts of ``key`` change order over ``span``."""
    fa, fb = a.form(key), b.form(key)
    roots = positive_roots(fa.poly - fb.poly)
    order = Order(a, b, key)
    found = consistent_changes(order, sample_lengths(a, b, span, seq_lens, [r for r, _ in roots]))
    crossings = [Crossing(n, order.cheaper(n - 1), order.cheaper(n)) for n in found]
    regime = Regime(math.lcm(fa.regime.multiple, fb.regime.multiple), max(fa.regime.above, fb.regime.above))
    in_both = [(v, t) for v, t in roots if regime.above < v <= span[1]] if fa.valid and fb.valid else []
    return Crossover(key, a.name, b.name, span, order.cheaper(span[0]), crossings, in_both, regime)


def search_span(variants: Sequence[Variant], seq_lens: Sequence[int]) -> tuple[int, int]:
    """The lengths every variant takes: 1 to the shortest context, or to the longest length asked for
    where that is longer (past a variant's context its figures are extrapolated, and marked); without
    a context, past every length asked for and every root of the polynomials' differences, by a
    factor of four."""
    limits = [v.context for v in variants if v.context is not None]
    if limits:
        return 1, max(min(limits), max(seq_lens))
    far = max(seq_lens)
    for key in (m.key for m in METRICS):
        polys = [v.form(key).poly for v in variants]
        for i, p in enumerate(polys):
            for q in polys[i + 1 :]:
                far = max([far, *(math.ceil(r) for r, _ in positive_roots(p - q))])
    return 1, min(4 * far, LONGEST)


def find_crossovers(
    variants: Sequence[Variant], seq_lens: Sequence[int], span: tuple[int, int]
) -> list[Crossover]:
    """One crossover per pair and metric whose exact counts change order somewhere in ``span``."""
    out = []
    for key in (m.key for m in METRICS):
        for i, a in enumerate(variants):
            for b in variants[i + 1 :]:
                try:
                    x = crossover(a, b, key, span, seq_lens)
                except SpecError:  # a length one of them cannot take: no claim
                    continue
                if x.crossings:
                    out.append(x)
    return out


# -- the comparison ---------------------------------------------------------------------------------------


@dataclass
class Comparison:
    variants: list[Variant]
    seq_lens: list[int]
    crossovers: list[Crossover] = field(default_factory=list)
    span: tuple[int, int] = (1, 1)  # the lengths the crossovers were searched over

    @property
    def base(self) -> Variant:
        return self.variants[0]

    def values(self, key: str) -> dict[str, list[int | Fraction]]:
        return {v.name: [metric_value(r, key) for r in v.reports] for v in self.variants}

    def polys(self, key: str) -> dict[str, Poly]:
        return {v.name: v.form(key).poly for v in self.variants}

    def forms(self, key: str) -> dict[str, Form]:
        return {v.name: v.form(key) for v in self.variants}

    def form_line(self, name: str, key: str) -> str:
        """A variant's polynomial (or piecewise form) with where it holds, and the lengths of the
        table it does not give."""
        form = self.forms(key)[name]
        vals = self.values(key)[name]
        off = [n for n, x in zip(self.seq_lens, vals, strict=True) if form.value(n) != x]
        text = f"{name}: {form.text()}"
        if off:
            text += " (not the counts at n = " + ", ".join(f"{n:,}" for n in off) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        s = self.base.reports[0].settings
        metrics = {}
        for m in METRICS:
            vals = self.values(m.key)
            first = vals[self.base.name]
            forms = self.forms(m.key)
            metrics[m.key] = {
                "title": m.title,
                "unit": m.unit,
                "poly": {k: f.poly.expr() for k, f in forms.items()},
                "poly_regime": {k: f.regime.to_dict() for k, f in forms.items()},
                "poly_exact": {
                    k: [f.poly(n=n) == x for n, x in zip(self.seq_lens, vals[k], strict=True)]
                    for k, f in forms.items()
                },
                "piecewise": {k: f.piecewise.to_list() if f.piecewise else None for k, f in forms.items()},
                "values": {
                    k: [float(x) if isinstance(x, Fraction) else x for x in v] for k, v in vals.items()
                },
                "ratios": {k: [_ratio(x, y) for x, y in zip(v, first, strict=True)] for k, v in vals.items()},
            }
        return plain(
            {
                "settings": {
                    "batch": s.batch,
                    "seq_lens": self.seq_lens,
                    "src_len": s.src_len,
                    "dtype": s.dtype,
                    "recompute": s.recompute,
                    "attention": s.attention,
                    "length_variable": "n: the swept length (an encoder-decoder's source and target alike "
                    "unless src_len is set)",
                    "crossover_range": list(self.span),
                },
                "variants": [
                    {
                        "name": v.name,
                        "spec": v.spec.path,
                        "type": v.reports[0].model_type,
                        "params": v.reports[0].params(),
                        "context": v.context,
                        "past_context": [v.past(n) for n in self.seq_lens],
                    }
                    for v in self.variants
                ],
                "metrics": metrics,
                "crossovers": [c.to_dict() for c in self.crossovers],
            }
        )

    def render(self, fmt: str = "table") -> str:
        from archdsl.cost.render import columns, markdown_table

        s = self.base.reports[0].settings
        names = [v.name for v in self.variants]
        out = [
            f"compare: {', '.join(names)}",
            f"batch {s.batch}, {s.dtype}, recompute {s.recompute}, {s.attention} attention; "
            f"ratios to {self.base.name}",
            "",
        ]
        p = [v.reports[0].params() for v in self.variants]
        rows: list[tuple[str, ...]] = [("params", *names)]
        for key in ("total", "non_embedding", "trainable", "active"):
            rows.append((key, *(f"{x[key]:,}" for x in p)))
        out += [*_block(rows, fmt, columns, markdown_table), ""]
        past = [v for v in self.variants if any(v.past(n) for n in self.seq_lens)]
        for v in past:
            out.append(
                f"† past {v.name}'s context ({v.context:,} positions): computed as if its position tables "
                "were longer (its weights unchanged)"
            )
        if past:
            out.append("")
        for m in METRICS:
            vals = self.values(m.key)
            fmt_v = human if m.unit == "flops" else human_bytes
            rows = [("n", *names, *(f"{k} ×" for k in names[1:]))]
            for i, n in enumerate(self.seq_lens):
                base = vals[self.base.name][i]
                rows.append(
                    (
                        f"{n:,}",
                        *(fmt_v(float(vals[v.name][i])) + ("†" if v.past(n) else "") for v in self.variants),
                        *(_ratio_text(vals[k][i], base) for k in names[1:]),
                    )
                )
            md = fmt == "md"
            out.append(f"### {m.title}\n" if md else m.title)
            out += _block(rows, fmt, columns, markdown_table)
            out += [("- " if md else "  ") + self.form_line(k, m.key) for k in names] + [""]
        out.append(
            f"crossovers (where the exact counts change order, n = {self.span[0]:,} … {self.span[1]:,}):"
        )
        bullet = "- " if fmt == "md" else "  "
        out += [f"{bullet}{c.text()}" for c in self.crossovers] or [
            f"{bullet}none: no two variants' exact counts change order for n ≤ {self.span[1]:,}"
        ]
        return "\n".join(out) + "\n"


def _block(rows: list[tuple[str, ...]], fmt: str, columns: Any, markdown: Any) -> list[str]:
    right = (False, *([True] * (len(rows[0]) - 1)))
    return markdown(rows, right) if fmt == "md" else ["  " + line for line in columns(rows, right)]


def _ratio(x: int | Fraction, base: int | Fraction) -> float | None:
    return float(Fraction(x) / Fraction(base)) if base else None


def _ratio_text(x: int | Fraction, base: int | Fraction) -> str:
    r = _ratio(x, base)
    if r is None:
        return "-"
    return f"{r:.3f}×" if r >= 0.01 else f"{r:.2e}×"


def variant_names(specs: Sequence[Spec]) -> list[str]:
    """The models' names, or the files' where two models share a name."""
    names = [s.model.name for s in specs]
    if len(set(names)) < len(names):
        names = [Path(s.path).stem for s in specs]
    if len(set(names)) < len(names):
        names = [f"{name}#{i + 1}" for i, name in enumerate(names)]
    return names


def default_lengths(specs: Sequence[Spec]) -> list[int]:
    """Powers of two from 128 up to the shortest context among the variants."""
    from archdsl.pipeline import default_seq_len

    top = min(default_seq_len(s) for s in specs)
    out = [n for n in (2**k for k in range(7, 21)) if n <= top]
    return out or [top]


def compare(
    specs: Sequence[Spec],
    seq_lens: Sequence[int | None],
    batch: int = 1,
    src_len: int | None = None,
    *,
    dtype: str = "fp32",
    recompute: str = "none",
    attention: str = "flash",
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> Comparison:
    """Reports of every spec at every length, and the crossovers between every pair."""
    from archdsl.cost.report import Settings
    from archdsl.pipeline import checked_graph, report_at

    lengths = [n for n in seq_lens if n is not None] or default_lengths(specs)
    names = variant_names(specs)
    ticks = iter(progress(range(len(specs) * len(lengths)))) if progress else iter(())
    variants = []
    for name, spec in zip(names, specs, strict=True):
        g = checked_graph(spec)
        reports = []
        for n in lengths:  # past the model's context: its architecture with tables that long (marked)
            s = Settings(batch, n, src_len, dtype, recompute, attention)
            reports.append(report_at(spec, g, s, past_context=True))
            next(ticks, None)
        variants.append(Variant(name, spec, g, reports))
    next(ticks, None)  # let the bar finish
    span = search_span(variants, lengths)
    return Comparison(variants, lengths, find_crossovers(variants, lengths, span), span)
