"""Every figure a report prints is true (issue 9): a polynomial printed or stored beside a figure gives
that figure at the sizes asked for, or comes with its regime (the KV cache: its pieces); the regimes
stated hold; crossovers are exactly where the exact counts change order, one statement per pair and
metric."""

from __future__ import annotations

import functools
import html
import itertools
import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
import sympy
from conftest import SPECS

import archdsl
from archdsl.cost.compare import METRICS, Comparison, compare, metric_value
from archdsl.cost.render import markdown, summary_lines, table
from archdsl.cost.report import Report

# windowed, sparse, chunked and hashed kinds at lengths below, at and past their windows and blocks
CASES = [
    ("mistral_7b", {"window": 512, "n_layers": 2}, (256, 512, 513, 1022, 1533)),
    ("gemma2_9b", {"window": 256, "n_layers": 2, "context": 2048}, (100, 256, 510, 1020)),
    ("local_global", None, (100, 2048)),
    ("longformer", {"n_layers": 1}, (100, 257, 512, 600)),
    ("bigbird", {"n_layers": 1}, (64, 100, 192, 256)),
    ("sparse_transformer", {"n_layers": 1}, (100, 128, 256, 300)),
    ("reformer", {"n_layers": 1}, (64, 100, 16448)),
    ("performer", {"n_layers": 1}, (100, 128)),
    ("linear_transformer", {"n_layers": 1}, (100, 128)),
    ("gpt2_small_linear", {"n_layers": 1}, (100, 128)),
    ("transformer_xl", {"n_layers": 1}, (100,)),
    ("t5_base", {"n_layers": 1}, (100,)),
]

b, n, m = sympy.symbols("b n m")
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def parse_poly(text: str) -> sympy.Expr:
    """A polynomial as reports print it (``36864·b·n² + (1/2)·n``) as a sympy expression."""
    text = re.sub(r"([bnm])([⁰¹²³⁴⁵⁶⁷⁸⁹]+)", lambda g: f"{g[1]}**{g[2].translate(_SUPERSCRIPTS)}", text)
    return sympy.sympify(text.replace("·", "*"), locals={"b": b, "n": n, "m": m})


def value_at(text: str, sizes: dict[str, int]) -> Fraction:
    v = parse_poly(text).subs({b: sizes["b"], n: sizes["n"], m: sizes.get("m", 0)})
    return Fraction(int(v.p), int(v.q))


@functools.cache
def spec_of(name: str) -> archdsl.Spec:
    overrides = next(o for x, o, _ in CASES if x == name)
    return archdsl.load(SPECS / f"{name}.arch", overrides)


@functools.cache
def sweep(name: str, batch: int) -> dict[int, Report]:
    """The case's reports at its lengths (one graph for all)."""
    lengths = next(x for c, _, x in CASES if c == name)
    return dict(zip(lengths, archdsl.sweep(spec_of(name), list(lengths), batch=batch), strict=True))


def report(name: str, batch: int, length: int) -> Report:
    return sweep(name, batch)[length]


SIZES = [(name, batch, length) for name, _, lengths in CASES for batch in (1, 2) for length in lengths]


def size_id(x: tuple[str, int, int]) -> str:
    return f"{x[0]}-b{x[1]}-n{x[2]}"


# a figure's label in the summary, and the exact figure
FIGURES = {
    "mask-aware forward": lambda r: r.total("flops_mask_aware"),
    "forward": lambda r: r.flops()["forward"],
    "training step": lambda r: r.flops()["train_step"],
    "activations": lambda r: r.memory["activation_bytes"],
    # a decoder's cache: keys and values, a recurrent state, or both (render.cache_label)
    r"(?:KV cache \+ state|KV cache|decoding state)": lambda r: r.memory["kv_cache_bytes"],
}
_FIGURE = r"[\d.]+ ?[A-Za-z]*(?: \([^)]*\))?"  # 292.59 G, 4.00 MiB (batch 1, context 256)


def equation(label: str) -> re.Pattern[str]:
    """``label figure = polynomial``, the polynomial up to its unit or its comments."""
    return re.compile(
        rf"(?<!mask-aware ){label} {_FIGURE} = (.+?)(?= bytes| \(the polynomial| \(piecewise|;|$)", re.M
    )


def stated(label: str) -> re.Pattern[str]:
    """``label figure; for <regime> (not here): polynomial``, or nominal."""
    return re.compile(rf"(?<!mask-aware ){label} {_FIGURE}; (for .+ \(not here\): |nominally )", re.M)


def summaries(r: Report) -> dict[str, str]:
    """The summary as the text formats print it (the HTML page's: below)."""
    return {"lines": "\n".join(summary_lines(r)), "table": table(r), "md": markdown(r)}


def check_summary(r: Report, text: str) -> None:
    """Each figure is printed once: beside a polynomial that gives it, or with where its polynomial
    holds (or called nominal)."""
    sizes = r.sizes()
    for label, figure in FIGURES.items():
        polys = equation(label).findall(text)
        for poly in polys:
            assert value_at(poly, sizes) == figure(r), (label, poly)
        assert len(polys) + len(stated(label).findall(text)) == 1, (label, text)


@pytest.mark.parametrize("at", SIZES, ids=size_id)
def test_a_printed_polynomial_equals_its_figure_or_states_its_regime(at: tuple[str, int, int]) -> None:
    r = report(*at)
    for text in summaries(r).values():
        check_summary(r, text)


def test_the_html_page_prints_the_same_truths() -> None:
    from archdsl.cost.html import report_page

    spec = spec_of("mistral_7b")
    rs = archdsl.sweep(spec, [256, 1022])
    pres = re.findall(r"<pre>(.*?)</pre>", report_page(rs), re.S)
    assert len(pres) == len(rs)
    for r, pre in zip(rs, pres, strict=True):
        check_summary(r, html.unescape(pre))


def test_the_issue_example_prints_the_kv_cache_piecewise() -> None:
    r = archdsl.analyze(archdsl.load(SPECS / "mistral_7b.arch", {"window": 512, "n_layers": 2}), seq_len=256)
    [kv] = [x for x in summary_lines(r) if "KV cache" in x]
    assert "KV cache 4.00 MiB (batch 1, context 256) = 16384·b·n bytes" in kv
    assert "16384·b·n bytes for n ≤ 511; 8388608·b bytes for n ≥ 512" in kv
    [fwd] = [x for x in summary_lines(r) if x.startswith("FLOPs")]
    assert fwd.endswith(
        "forward 292.59 G; for n > 512 and n a multiple of 32 (not here): 1152352256·b·n - 520093696·b"
    )


# -- JSON -------------------------------------------------------------------------------------------------

# in each part of the report, a polynomial and the figure it stands for
JSON_PAIRS = {
    "flops": {
        "forward_poly": "forward",
        "forward_mask_aware_poly": "forward_mask_aware",
        "backward_poly": "backward",
        "train_step_poly": "train_step",
        "train_step_mask_aware_poly": "train_step_mask_aware",
    },
    "memory": {"activation_poly": "activation_bytes", "kv_cache_poly": "kv_cache_bytes"},
    "stack": {"forward_poly": "flops_forward"},
    "layer": {"forward_poly": "flops_forward", "activation_poly": "activation_bytes"},
    "component": {"forward_poly": "flops_forward"},
}


def _parts(j: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "flops", j["flops"]
    yield "memory", j["memory"]
    for s in j["stacks"]:
        yield "stack", s
    for layer in j["layers"]:
        yield "layer", layer
        for c in layer["components"]:
            yield "component", c


def _close(x: Fraction, y: int | float) -> bool:
    return x == y if isinstance(y, int) else float(x) == pytest.approx(y, rel=1e-12)


@pytest.mark.parametrize("at", SIZES[::3], ids=size_id)
def test_every_json_polynomial_says_whether_it_gives_its_figure(at: tuple[str, int, int]) -> None:
    r = report(*at)
    j = r.to_dict()
    sizes = r.sizes()
    for part, d in _parts(j):
        polys = [k for k in d if k.endswith("_poly")]
        assert set(polys) == set(JSON_PAIRS[part]), part
        for key in polys:
            exact = _close(value_at(d[key], sizes), d[JSON_PAIRS[part][key]])
            assert d[f"{key}_exact"] is exact, (part, d.get("name"), key)
    mem = j["memory"]
    if r.batch == 1:
        assert mem["activation_poly_batch_1_exact"] is (
            value_at(mem["activation_poly_batch_1"], sizes) == mem["activation_bytes"]
        )
    # the piece that holds at these sizes gives the KV cache
    if mem["kv_cache_piecewise"] is not None:
        [piece] = [p for p in mem["kv_cache_piecewise"] if _holds(p["where"], sizes)]
        assert value_at(piece["poly"], sizes) == mem["kv_cache_bytes"]


def _holds(where: dict[str, list[int | None]], sizes: dict[str, int]) -> bool:
    return all(lo <= sizes[v] and (hi is None or sizes[v] <= hi) for v, (lo, hi) in where.items())


# -- the regimes stated hold ----------------------------------------------------------------------------


def _in_regime(regime: dict[str, int], lengths: int) -> list[int]:
    """The first lengths of a regime."""
    start = regime["above"] + 1
    first = -(-start // regime["multiple_of"]) * regime["multiple_of"]
    return [first + k * regime["multiple_of"] for k in range(lengths)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_polynomials_hold_at_the_first_lengths_of_their_regime(case: tuple[str, Any, Any]) -> None:
    name = case[0]
    spec = spec_of(name)
    base = archdsl.analyze(spec, seq_len=1)
    limit = base.context or 2**20
    lengths = [x for x in _in_regime(base.to_dict()["flops"]["poly_regime"], 3) if x <= limit]
    for batch in (1, 3):
        for r in archdsl.sweep(spec, lengths, batch=batch):
            length, f, mem, sizes = r.seq_len, r.flops(), r.memory, r.sizes()
            assert f["forward_poly_exact"] and f["train_step_poly_exact"] and f["backward_poly_exact"], length
            assert f["forward_mask_aware_poly_exact"] != (name == "bigbird")  # BigBird's is nominal
            assert r.activation_poly_here(**sizes) == mem["activation_bytes"], (batch, length)
            assert mem["kv_cache_poly_exact"], length


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_the_kv_cache_pieces_hold_at_every_length(case: tuple[str, Any, Any]) -> None:
    name = case[0]
    [r] = archdsl.sweep(spec_of(name), [1])
    pieces = r.kv_pieces
    if name in ("mistral_7b", "gemma2_9b", "sparse_transformer"):  # a cap (and, in Gemma 2, global layers)
        assert pieces is not None and len(pieces.pieces) == 2
    if pieces is None:
        return
    top = min(r.context or 4096, 4096)
    near = {x + e for x in pieces.breakpoints() for e in range(-2, 3)}
    for length in sorted({*range(1, 17), *near, *range(17, top + 1, 61), top} - {0}):
        other = r.at(length)
        assert pieces.at(other.sizes())(**other.sizes()) == other.memory["kv_cache_bytes"], length


def test_reformer_regime_covers_its_kept_pairs() -> None:
    """With several hashing rounds, Reformer's saved pair indices are an estimate capped at the window:
    its activation polynomial holds only past 2 · buckets · c (causal), which its regime now says."""
    spec = archdsl.load(SPECS / "reformer.arch", {"n_layers": 1})
    r = archdsl.analyze(spec, seq_len=64, batch=2)
    assert r.regime == (64, 2 * 128 * 64)
    assert not r.memory["activation_poly_exact"]  # 64 was claimed to be in the regime before
    assert "(not here)" in next(x for x in summary_lines(r) if "activations" in x and "policy" not in x)


# -- comparisons --------------------------------------------------------------------------------------------


@functools.cache
def small_pair(which: str) -> Comparison:
    """GPT-2 against linear attention (context 256), and a 48-token window against full attention
    (context 300): small enough to count every length."""
    if which == "linear":
        gpt2 = {"context": 256, "n_layers": 1}
        specs = [archdsl.load(SPECS / f"{x}.arch", gpt2) for x in ("gpt2_small", "gpt2_small_linear")]
        return compare(specs, [64, 128, 256])
    window = {"window": 48, "context": 300, "n_layers": 1}
    full = {**window, "model.block.attention": "mha(heads = n_heads, kv_heads = n_kv_heads, bias = false)"}
    specs = [archdsl.load(SPECS / "mistral_7b.arch", o) for o in (window, full)]
    return compare(specs, [32, 64, 128, 256])


PAIRS = ("linear", "window")


@pytest.mark.parametrize("pair", PAIRS)
def test_crossovers_are_exactly_where_the_exact_counts_change_order(pair: str) -> None:
    c = small_pair(pair)
    lo, hi = c.span
    assert hi == min(v.reports[0].context for v in c.variants)  # type: ignore[type-var]
    stated = {(x.metric, x.a, x.b): x for x in c.crossovers}
    assert len(stated) == len(c.crossovers)  # one statement per pair and metric
    for metric in METRICS:
        for a, bb in itertools.combinations(c.variants, 2):
            order = []
            for length in range(lo, hi + 1):
                d = metric_value(a.at(length), metric.key) - metric_value(bb.at(length), metric.key)
                order.append(bb.name if d > 0 else a.name if d < 0 else None)
            changes = [(lo + i + 1, x, y) for i, (x, y) in enumerate(itertools.pairwise(order)) if x != y]
            x = stated.get((metric.key, a.name, bb.name))
            if not changes:
                assert x is None, metric.key
                continue
            assert x is not None, metric.key
            assert [(k.n, k.before, k.after) for k in x.crossings] == changes, metric.key
            assert x.start == order[0] and x.cheaper_after == order[-1]
            for who, first, last in x.runs():  # the statement, run by run
                assert set(order[first - lo : last - lo + 1]) == {who}, (metric.key, who, first, last)


@pytest.mark.parametrize("pair", PAIRS)
def test_compare_tables_print_polynomials_with_their_regime(pair: str) -> None:
    c = small_pair(pair)
    for metric in METRICS:
        forms, vals = c.forms(metric.key), c.values(metric.key)
        for v in c.variants:
            line = c.form_line(v.name, metric.key)
            off = {x for x, y in zip(c.seq_lens, vals[v.name], strict=True) if forms[v.name].value(x) != y}
            named = re.search(r"\(not the counts at n = ([\d, ]+)\)", line)
            assert {int(x.replace(",", "")) for x in named[1].split(", ")} == off if named else not off, line
            if forms[v.name].piecewise is None and not forms[v.name].regime.everywhere:
                assert " for " in line, line  # the regime, said
            poly = line.split(": ", 1)[1].split(" for ")[0].split(" (")[0]
            for x, y in zip(c.seq_lens, vals[v.name], strict=True):
                if x not in off and forms[v.name].piecewise is None:
                    assert value_at(poly, {"b": c.base.reports[0].batch, "n": x}) == y, line


def test_gpt2_against_mistral_makes_no_claim_the_counts_reject() -> None:
    """The issue's pair: within GPT-2's context the exact counts never change order, so there is no
    crossover (the polynomials' roots past 1,024, or in the window's dense regime, are not ones)."""
    two = {"n_layers": 2}
    c = compare(
        [archdsl.load(SPECS / "gpt2_small.arch", two), archdsl.load(SPECS / "mistral_7b.arch", two)],
        [256, 512, 1024],
    )
    assert c.crossovers == [] and c.span == (1, 1024)
    text = c.render()
    assert (
        "not borne out" not in text
        and "none: no two variants' exact counts change order for n ≤ 1,024" in text
    )
    regime = "for n > 4,096 and n a multiple of 32"
    assert f"mistral_7b: 1269792768·n - 4160749568 {regime} (not the counts at n = 256, 512, 1,024)" in text
