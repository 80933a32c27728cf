"""Variants side by side: the same figures for several specs at several lengths, ratios to the first, and
the lengths where two variants' costs cross — solved exactly from their polynomials.

Every metric compared is a polynomial in the length (with the batch fixed): FLOPs, activation memory,
KV cache, and the training and inference footprints (weights, gradients, optimizer states plus
activations; weights plus cache). Two variants cross where their difference has a positive real root;
sympy finds the roots exactly (as algebraic numbers), and each is checked against the exact counts at
the integers on either side of it (a window kind's polynomial holds only past its window, so a root in
the dense regime would not be a crossing of the real counts: those are flagged, not hidden).

One length variable ``n`` stands for the length being swept: a decoder's or encoder's sequence, and
for an encoder-decoder both its source and target (unless a source length is fixed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from archdsl.cost.poly import Poly
from archdsl.cost.render import human, human_bytes
from archdsl.cost.report import Report, plain
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
    Metric("kv_cache_bytes", "KV cache", "bytes"),
    Metric("train_memory", "training memory (weights + grads + AdamW + activations)", "bytes"),
    Metric("infer_memory", "inference memory (weights + KV cache)", "bytes"),
)


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


def metric_poly(r: Report, key: str) -> Poly:
    """A metric as a polynomial in b, n, m."""
    f, m = r.flops(), r.memory
    if key == "forward":
        return f["forward_poly"]
    if key == "forward_mask_aware":
        return f["forward_mask_aware_poly"]
    if key == "train_step":
        return f["train_step_poly"]
    if key == "activation_bytes":
        return m["activation_poly"]
    if key == "kv_cache_bytes":
        return m["kv_cache_poly"]
    fixed = m["weights_bytes"] + (m["grads_bytes"] + m["optimizer_bytes"] if key == "train_memory" else 0)
    return Poly.lift(fixed) + (m["activation_poly"] if key == "train_memory" else m["kv_cache_poly"])


def in_length(r: Report, p: Poly) -> Poly:
    """``p(b, n, m)`` as a polynomial in the swept length alone (called n): the batch as set; an
    encoder-decoder's source length fixed if set, else equal to the target's."""
    n = Poly.var("n")
    b = r.settings.batch
    if r.model_type == "encoder_decoder":
        src = Poly.lift(r.settings.src_len) if r.settings.src_len else n
        subs = (Poly.lift(b), src, n)
    else:
        subs = (Poly.lift(b), n, Poly.lift(0))
    out = Poly()
    for k, c in p.terms.items():
        term = Poly.lift(c)
        for v, e in zip(subs, k, strict=True):
            if e:
                term = term * v**e
        out = out + term
    return out


@dataclass
class Crossover:
    """Two variants' metric cross at length ``root``: ``cheaper_after`` costs less just past it."""

    metric: str
    a: str
    b: str
    root: float
    root_exact: str  # the root as sympy prints it (an integer, a rational, or a radical)
    first_n: int  # the first integer length past the root
    exact_n: int | None  # the first integer length from which the exact counts agree (None: they don't)
    cheaper_after: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "n": self.root,
            "n_exact": self.root_exact,
            "first_integer_n": self.first_n,
            "exact_n": self.exact_n,
            "cheaper_after": self.cheaper_after,
            "note": self.note,
        }

    def text(self) -> str:
        title = next(m.title for m in METRICS if m.key == self.metric)
        other = self.b if self.cheaper_after == self.a else self.a
        if self.exact_n is None:
            check = f"not borne out: {self.note}"
        elif self.exact_n == self.first_n:
            check = "the exact counts agree"
        else:
            check = f"the exact counts cross at n = {self.exact_n:,}"
        return (
            f"{title}: {self.cheaper_after} is cheaper than {other} past n = {self.root:,.2f} "
            f"(root {self.root_exact}); {check}"
        )


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
        """The report at length n (the comparison's settings), computed once."""
        from archdsl.pipeline import report_at

        if n not in self.cache:
            self.cache[n] = report_at(self.spec, self.graph, replace(self.reports[0].settings, seq_len=n))
        return self.cache[n]


@dataclass
class Comparison:
    variants: list[Variant]
    seq_lens: list[int]
    crossovers: list[Crossover] = field(default_factory=list)

    @property
    def base(self) -> Variant:
        return self.variants[0]

    def values(self, key: str) -> dict[str, list[int | Fraction]]:
        return {v.name: [metric_value(r, key) for r in v.reports] for v in self.variants}

    def polys(self, key: str) -> dict[str, Poly]:
        return {v.name: in_length(v.reports[0], metric_poly(v.reports[0], key)) for v in self.variants}

    def to_dict(self) -> dict[str, Any]:
        s = self.base.reports[0].settings
        metrics = {}
        for m in METRICS:
            vals = self.values(m.key)
            first = vals[self.base.name]
            metrics[m.key] = {
                "title": m.title,
                "unit": m.unit,
                "poly": {k: p.expr() for k, p in self.polys(m.key).items()},
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
                },
                "variants": [
                    {
                        "name": v.name,
                        "spec": v.spec.path,
                        "type": v.reports[0].model_type,
                        "params": v.reports[0].params(),
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
        for m in METRICS:
            vals = self.values(m.key)
            polys = self.polys(m.key)
            fmt_v = human if m.unit == "flops" else human_bytes
            rows = [("n", *names, *(f"{k} ×" for k in names[1:]))]
            for i, n in enumerate(self.seq_lens):
                base = vals[self.base.name][i]
                rows.append(
                    (
                        f"{n:,}",
                        *(fmt_v(float(vals[k][i])) for k in names),
                        *(_ratio_text(vals[k][i], base) for k in names[1:]),
                    )
                )
            md = fmt == "md"
            out.append(f"### {m.title}\n" if md else m.title)
            out += _block(rows, fmt, columns, markdown_table)
            out += [("- " if md else "  ") + f"{k}: {polys[k]}" for k in names] + [""]
        out.append("crossovers (exact roots of the polynomials in n; checked against the exact counts):")
        out += [f"  {c.text()}" for c in self.crossovers] or [
            "  none: no two variants' costs cross for n > 0"
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


def find_crossovers(variants: Sequence[Variant]) -> list[Crossover]:
    out = []
    for key in (m.key for m in METRICS):
        for i, a in enumerate(variants):
            for b in variants[i + 1 :]:
                pa = in_length(a.reports[0], metric_poly(a.reports[0], key))
                pb = in_length(b.reports[0], metric_poly(b.reports[0], key))
                for value, text in positive_roots(pa - pb):
                    first = max(1, math.ceil(value))
                    after = pa - pb
                    # the sign just past the root decides who is cheaper after it
                    probe = after(n=Fraction(value).limit_denominator(10**6) + Fraction(1, 2))
                    cheaper = b.name if probe > 0 else a.name
                    exact_n, note = _exact_crossing(a, b, key, value, cheaper)
                    out.append(Crossover(key, a.name, b.name, value, text, first, exact_n, cheaper, note))
    return out


def _exact_crossing(a: Variant, b: Variant, key: str, root: float, cheaper: str) -> tuple[int | None, str]:
    """The first integer n from which ``cheaper`` costs less by the exact counts, found by bisection
    between root / 2 and 2 root (the polynomial's root is exact where the counts are polynomial; a
    kind that pads to whole blocks or switches to dense attention below its window moves it)."""
    first = 0 if cheaper == a.name else 1

    def ok(n: int) -> bool:
        va, vb = (metric_value(v.at(n), key) for v in (a, b))
        return (va, vb)[first] < (va, vb)[1 - first]

    lo, hi = max(1, math.floor(root / 2)), math.ceil(2 * root) + 1
    try:
        if not ok(hi):
            return None, f"the exact counts at n = {hi:,} do not bear it out"
        if ok(lo):
            return None, f"by the exact counts it is cheaper already at n = {lo:,}"
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    except Exception as e:  # a length past a positional table, say
        return None, "exact counts unavailable: " + str(e).replace("\n", " ")
    return hi, ""


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
        for n in lengths:
            s = Settings(batch, n, src_len, dtype, recompute, attention)
            reports.append(report_at(spec, g, s))
            next(ticks, None)
        variants.append(Variant(name, spec, g, reports))
    next(ticks, None)  # let the bar finish
    return Comparison(variants, lengths, find_crossovers(variants))
