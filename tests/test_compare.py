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
from archdsl.cost.compare import Crossing, compare, metric_value, positive_roots
from archdsl.cost.poly import N


def gpt2_vs_linear() -> archdsl.cost.compare.Comparison:
    specs = [archdsl.load(SPECS / "gpt2_small.arch"), archdsl.load(SPECS / "gpt2_small_linear.arch")]
    return compare(specs, [128, 256, 512, 1024])


def test_linear_attention_crossover_is_solved_exactly() -> None:
    c = gpt2_vs_linear()
    by = {x.metric: x for x in c.crossovers}
    fwd = by["forward"]
    # per layer, softmax attention's core is 4 n² d; causal linear attention's (chunks of c = 64,
    # f = hs = 64 features, e = hs + 1) is 2 n h (c (f + e) + 2 f e): the polynomials cross at
    # n = 259/2, in linear attention's regime (multiples of 64)
    h, hs, d = 12, 64, 768
    per_n = 2 * h * (64 * (hs + hs + 1) + 2 * hs * (hs + 1))
    assert Fraction(per_n, 4 * d) == Fraction(259, 2)
    assert fwd.roots == [(129.5, "259/2")] and fwd.regime.multiple == 64
    # the module pads the sequence to whole chunks, so the exact counts cross a little later: the
    # crossover is where they do, checked on both sides
    assert fwd.crossings == [Crossing(158, "gpt2_small", "gpt2_small_linear")]
    assert fwd.start == "gpt2_small" and fwd.cheaper_after == "gpt2_small_linear"
    linear, dense = (c.variants[i].at(158).flops_forward for i in (1, 0))
    assert linear < dense
    linear, dense = (c.variants[i].at(157).flops_forward for i in (1, 0))
    assert linear >= dense
    # the KV cache: 2 L d n values against linear attention's fixed state, L h hs (hs + 1) x 2
    kv = by["kv_cache_bytes"]
    assert kv.roots == [(32.5, "65/2")] and kv.crossings == [Crossing(33, "gpt2_small", "gpt2_small_linear")]
    assert c.span == (1, 1024)  # GPT-2's learned table


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
    assert (
        "forward FLOPs (dense), gpt2_small vs gpt2_small_linear: gpt2_small is cheaper up to n = 157; "
        "gpt2_small_linear is cheaper from n = 158 on (checked at n = 157 and 158); the polynomials (for n "
        "a multiple of 64) cross at n = 259/2 ≈ 129.50"
    ) in text
    [x] = [x for x in j["crossovers"] if x["metric"] == "forward"]
    assert x["crossings"] == [
        {"n": 158, "cheaper_before": "gpt2_small", "cheaper_after": "gpt2_small_linear"}
    ]
    assert x["polynomial_roots"] == [{"n": 129.5, "n_exact": "259/2"}] and x["text"] in text
    assert fwd["poly_regime"]["gpt2_small_linear"] == {"multiple_of": 64, "above": 0, "batch_at_least": 1}
    assert fwd["poly_exact"]["gpt2_small_linear"] == [True, True]


def test_roots_are_exact_and_positive_only() -> None:
    assert positive_roots((N - 3) * (N + 5)) == [(3.0, "3")]
    [(value, text)] = positive_roots(N * N - 2)
    assert value == pytest.approx(2**0.5) and sympy.sympify(text) == sympy.sqrt(2)
    assert positive_roots(N + 1) == [] and positive_roots(N - N) == []


def test_window_attention_against_dense() -> None:
    """Mistral's window (4096) against the same model with full attention. Within the window both do
    the same work (the window's module attends densely); past it the window's module computes its band
    in blocks (a causal head, blocks of 32 queries over their 32 + 4095 keys), never more than dense:
    its FLOPs, activations and KV cache fall below dense at n = 4097 and stay below (one change of
    order each): past the window the activations lose dense SDPA's copy of its head-major output (with
    RoPE) for the out projection, as the segments write theirs laid out as the projection reads it."""
    mistral = archdsl.load(SPECS / "mistral_7b.arch")
    full = {"model.block.attention": "mha(heads = n_heads, kv_heads = n_kv_heads, bias = false)"}
    c = compare([mistral, archdsl.load(SPECS / "mistral_7b.arch", full)], [2048, 4096, 8192, 16384])
    window, dense = (v.name for v in c.variants)
    vals = c.values("forward")
    assert vals[window][:2] == vals[dense][:2]  # within the window: the same work
    assert vals[window][2] < vals[dense][2] and vals[window][3] < vals[dense][3]
    for metric in ("forward", "forward_mask_aware", "train_step", "activation_bytes", "kv_cache_bytes"):
        [x] = [x for x in c.crossovers if x.metric == metric]
        assert x.crossings == [Crossing(4097, None, window)] and x.cheaper_after == window, metric
        assert x.regime.text() == "n > 4,096 and n a multiple of 32"
    for n in (1, 4096, 4097, 4127, 4128, 5000, 8191):  # each side of the window and of a block
        w, d = (metric_value(v.at(n), "forward") for v in c.variants)
        assert w <= d and (w < d) == (n > 4096), n


def order_name(values: list[int | Fraction], a: str, b: str) -> str | None:
    return a if values[0] < values[1] else b if values[1] < values[0] else None


def test_lengths_past_a_context_are_extrapolated_and_marked() -> None:
    """GPT-2's learned table stops at 1,024: compared at 4k and 16k, its figures there are those of the
    same weights run that long (FLOPs and KV cache as with a longer table), marked † in the table and
    `past_context` in JSON, and the crossovers are searched up to the longest length asked for."""
    specs = [archdsl.load(SPECS / "gpt2_small.arch"), archdsl.load(SPECS / "gpt2_small_linear.arch")]
    c = compare(specs, [1024, 4096, 16384])
    longer = archdsl.load(SPECS / "gpt2_small.arch", {"context": 16384})
    for i, n in enumerate(c.seq_lens):
        r = archdsl.analyze(longer, seq_len=n)
        assert metric_value(c.variants[0].reports[i], "forward") == r.flops_forward
        assert metric_value(c.variants[0].reports[i], "kv_cache_bytes") == r.memory["kv_cache_bytes"]
    assert c.span == (1, 16384)
    d = c.to_dict()
    assert [v["past_context"] for v in d["variants"]] == [[False, True, True]] * 2
    text = c.render()
    assert "† past gpt2_small's context (1,024 positions)" in text
    kv = text.split("KV cache (or recurrent state)")[1].split("\n\n")[0]
    assert "288.00 MiB†" in kv and "72.00 MiB " in kv  # 4k extrapolated, 1k not
    # the report of one spec still refuses a length its tables do not reach
    with pytest.raises(archdsl.SpecError):
        archdsl.analyze(specs[0], seq_len=4096)
