"""Symbolic costs: the polynomial type, and every shipped spec's polynomials equal to its exact counts at
lengths in their regime (long, a multiple of every block)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import sympy
from conftest import all_specs

import archdsl
from archdsl.cost.poly import B, M, N, Poly
from archdsl.pipeline import default_seq_len


def test_arithmetic_is_exact() -> None:
    p = 3 * B * N * N + 5 * N - 7
    assert p(b=2, n=10) == 3 * 2 * 100 + 50 - 7
    assert (p - p) == 0 and not (p - p)
    assert (N + 1) * (N - 1) == N**2 - 1
    assert N * (N + 1) // 2 == Poly({(0, 2, 0): Fraction(1, 2), (0, 1, 0): Fraction(1, 2)})
    assert (N * (N + 1) // 2)(n=7) == 28
    assert (2 * N) / 4 == N / 2 and (N / 2)(n=3) == Fraction(3, 2)
    assert (B * N + M).degree("n") == 1 and (N**3).degree("n") == 3 and B.degree("m") == 0
    assert 2 + N == N + 2 and 2 - N == -(N - 2)


def test_floor_division_takes_lengths_as_multiples_of_the_divisor() -> None:
    # a padded count: ceil(n / 64) * 64 is n for n a multiple of 64
    assert (N + 63) // 64 * 64 == N
    assert -(-N // 64) * 64 == N
    assert N % 8 == 0 and (N - 1) % 8 == 7 and (N + 9) // 4 == N / 4 + 2
    for n in (64, 128, 4096):
        assert ((N + 63) // 64 * 64)(n=n) == (n + 63) // 64 * 64


def test_symbolic_sizes_refuse_comparison_and_floats() -> None:
    with pytest.raises(TypeError, match="compared"):
        min(N, 4)
    with pytest.raises(TypeError, match="integers"):
        N * 0.5
    with pytest.raises(TypeError):
        4 // N


def test_printing_and_sympy_agree() -> None:
    p = 36864 * B * N**2 + 247064064 * B * N
    assert str(p) == "36864·b·n² + 247064064·b·n"
    assert p.expr() == "36864*b*n**2 + 247064064*b*n"
    assert str(N * (N + 1) // 2 - 3) == "(1/2)·n² + (1/2)·n - 3"
    b, n, m = sympy.symbols("b n m", positive=True, integer=True)
    assert sympy.simplify(sympy.sympify(p.expr(), locals={"b": b, "n": n}) - p.to_sympy()) == 0
    q = N * (N + 1) // 2 - 3 * B * M
    assert sympy.simplify(sympy.sympify(q.expr(), locals={"b": b, "n": n, "m": m}) - q.to_sympy()) == 0


def test_growth_keeps_the_dominant_terms() -> None:
    assert (N**2 + 5 * N + 3).growth() == [(2, 0)]
    assert (N * M + M**2 + N).growth() == [(1, 1), (0, 2)]


def _regime(spec: archdsl.Spec) -> list[int]:
    """Two long lengths in the polynomials' regime (multiples of every block, past every window)
    within the model's context."""
    multiple, above = archdsl.analyze(spec, seq_len=1).regime
    top = default_seq_len(spec) // multiple * multiple
    return [n for n in (top // 2 // multiple * multiple, top) if n > above and n >= 512] or [top]


@pytest.mark.parametrize("path", all_specs(), ids=lambda p: p.name)
def test_polynomials_equal_exact_counts_in_their_regime(path: Path) -> None:
    spec = archdsl.load(path)
    for n in _regime(spec):
        for batch in (1, 3):
            r = archdsl.analyze(spec, batch=batch, seq_len=n)
            f, mem = r.flops(), r.memory
            sizes = r.sizes()
            assert f["poly_exact"], (n, batch)
            assert f["forward_poly"](**sizes) == f["forward"]
            assert f["train_step_poly"](**sizes) == f["train_step"]
            # BigBird's random blocks sometimes repeat a window or global block: its polynomial counts
            # every block as distinct (nominal), and the report says so
            nominal = path.stem == "bigbird"
            assert (f["forward_mask_aware_poly"](**sizes) == f["forward_mask_aware"]) != nominal
            assert f["mask_aware_poly_exact"] != nominal
            assert mem["kv_cache_poly"](**sizes) == mem["kv_cache_bytes"]
            for layer in r.layers:
                assert layer.total("forward_poly")(**sizes) == layer.flops_forward, layer.name
            # activations: the polynomial holds for b >= 2 (a batch of one lets batched matmuls keep
            # views instead of copies), and the report says when it does not
            exact = mem["activation_poly"](**sizes) == mem["activation_bytes"]
            assert exact == mem["activation_poly_exact"]
            if batch > 1:
                assert exact
                for layer in r.layers:
                    assert layer.activation_poly(**sizes) == layer.activation_bytes, layer.name


def test_encoder_decoder_polynomials_are_in_n_and_m() -> None:
    spec = archdsl.load(Path(__file__).parent.parent / "specs" / "t5_base.arch")
    r = archdsl.analyze(spec, batch=2, seq_len=64, src_len=256)
    f = r.flops()
    p = f["forward_poly"]
    assert p.degree("n") == 2 and p.degree("m") == 2  # encoder and decoder self-attention
    assert (0, 1, 1) in {(k[0] > 0 and 0, k[1], k[2]) for k in p.terms}  # cross-attention's n·m
    assert p(b=2, n=256, m=64) == f["forward"]
    assert r.legend == {"b": "batch", "n": "encoder (source) length", "m": "decoder (target) length"}
    dec = next(layer for layer in r.layers if layer.name == "decoder.h.0")
    assert "m²·d" in dec.big_o and "m·n·d" in dec.big_o
