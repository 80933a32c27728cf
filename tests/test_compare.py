"""`archdsl compare`: variants side by side, ratios to the first, crossovers solved exactly and checked
against the exact counts."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import sympy
from conftest import SPECS

import archdsl
from archdsl.cli import main
from archdsl.cost.compare import compare, positive_roots
from archdsl.cost.poly import N


def gpt2_vs_linear() -> archdsl.cost.compare.Comparison:
    specs = [archdsl.load(SPECS / "gpt2_small.arch"), archdsl.load(SPECS / "gpt2_small_linear.arch")]
    return compare(specs, [128, 256, 512, 1024])


def test_linear_attention_crossover_is_solved_exactly() -> None:
    c = gpt2_vs_linear()
    by = {x.metric: x for x in c.crossovers}
    fwd = by["forward"]
    # per layer, softmax attention's core is 4 n² d; causal linear attention's (chunks of c = 64,
    # f = hs = 64 features, e = hs + 1) is 2 n h (c (f + e) + 2 f e): they cross at n = 259/2
    h, hs, d = 12, 64, 768
    per_n = 2 * h * (64 * (hs + hs + 1) + 2 * hs * (hs + 1))
    assert Fraction(per_n, 4 * d) == Fraction(259, 2)
    assert fwd.root_exact == "259/2" and fwd.root == 129.5 and fwd.first_n == 130
    assert fwd.cheaper_after == "gpt2_small_linear"
    # the module pads the sequence to whole chunks, so the exact counts cross a little later; the
    # crossing is where they do
    assert fwd.exact_n is not None and fwd.exact_n >= 130
    linear, dense = (c.variants[i].at(fwd.exact_n).flops_forward for i in (1, 0))
    assert linear < dense
    linear, dense = (c.variants[i].at(fwd.exact_n - 1).flops_forward for i in (1, 0))
    assert linear >= dense
    # the KV cache: 2 L d n values against linear attention's fixed state, L h hs (hs + 1) x 2
    kv = by["kv_cache_bytes"]
    assert kv.root_exact == "65/2" and kv.exact_n == kv.first_n == 33
    assert kv.cheaper_after == "gpt2_small_linear"


def test_ratios_and_values_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", str(SPECS / "gpt2_small.arch"), str(SPECS / "gpt2_small_linear.arch")]
    assert main([*args, "--seq", "128,1k", "--format", "json"]) == 0
    j = json.loads(capsys.readouterr().out)
    fwd = j["metrics"]["forward"]
    assert fwd["values"]["gpt2_small"] == [
        archdsl.analyze(archdsl.load(SPECS / "gpt2_small.arch"), seq_len=n).flops_forward for n in (128, 1024)
    ]
    assert fwd["ratios"]["gpt2_small"] == [1.0, 1.0]
    assert fwd["ratios"]["gpt2_small_linear"][1] == pytest.approx(
        fwd["values"]["gpt2_small_linear"][1] / fwd["values"]["gpt2_small"][1]
    )
    assert fwd["poly"]["gpt2_small"] == "36864*n**2 + 247064064*n"
    assert j["settings"]["seq_lens"] == [128, 1024]
    assert {c["metric"] for c in j["crossovers"]} >= {"forward", "kv_cache_bytes"}
    # the table says the same in words
    assert main([*args, "--seq", "128,1k"]) == 0
    text = capsys.readouterr().out
    assert "gpt2_small_linear is cheaper than gpt2_small past n = 129.50 (root 259/2)" in text


def test_roots_are_exact_and_positive_only() -> None:
    assert positive_roots((N - 3) * (N + 5)) == [(3.0, "3")]
    [(value, text)] = positive_roots(N * N - 2)
    assert value == pytest.approx(2**0.5) and sympy.sympify(text) == sympy.sqrt(2)
    assert positive_roots(N + 1) == [] and positive_roots(N - N) == []


def test_window_attention_against_dense() -> None:
    """Mistral's window (4096) against the same model with full attention. Within the window both do
    the same work; past it the window's module computes in blocks of w - 1 = 4095 queries, each over
    two blocks of keys, so up to a few windows it does more than dense attention; the polynomials
    (past the window, whole blocks) cross at n = 2 (w - 1) = 8190, and the exact counts a little later."""
    mistral = archdsl.load(SPECS / "mistral_7b.arch")
    full = {"model.block.attention": "mha(heads = n_heads, kv_heads = n_kv_heads, bias = false)"}
    c = compare([mistral, archdsl.load(SPECS / "mistral_7b.arch", full)], [2048, 4096, 8192, 16384])
    window, dense = (v.name for v in c.variants)
    vals = c.values("forward")
    assert vals[window][:2] == vals[dense][:2]  # within the window: the same work
    assert vals[window][2] > vals[dense][2] and vals[window][3] < vals[dense][3]
    [fwd] = [x for x in c.crossovers if x.metric == "forward"]
    assert fwd.root_exact == "8190" and fwd.cheaper_after == window
    assert fwd.exact_n is not None and fwd.exact_n > 8190
    at = c.variants[0].at(fwd.exact_n), c.variants[1].at(fwd.exact_n)
    assert at[0].flops_forward < at[1].flops_forward
