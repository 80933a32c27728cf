"""Windowed and sparse attention (sliding_window, sparse, longformer, bigbird), held to explicit masks:
each module's output equals dense attention under the boolean mask written out here, ``pairs`` counts
that mask, ``core_flops`` equals FlopCounterMode for every length (padding included), causal modules do
not look ahead, memory grows linearly in n, and each kind runs through load, analyze, build and emit."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import model_inputs
from test_cost_vs_torch import assert_costs_match
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.ir import Node
from archdsl.kinds import REGISTRY, ActCfg, Ctx
from archdsl.kinds.local import random_blocks, window_block, window_segments
from archdsl.lower.build import instantiate
from archdsl.measure import flop_counter_mode

CTX = Ctx(d_model=24, vocab=37)


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """These tensors are tiny: intra-op threads only contend (10x slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# (kind, parameters): windows and blocks both larger and smaller than the lengths tried
CASES: list[tuple[str, dict[str, Any]]] = [
    ("sliding_window", {"window": 1}),
    ("sliding_window", {"window": 2}),
    ("sliding_window", {"window": 5}),
    ("sliding_window", {"window": 8}),
    ("sliding_window", {"window": 16}),  # blocks of 2 queries past 16 (causal) or 17 positions
    ("longformer", {"window": 4, "global_tokens": 2}),
    ("longformer", {"window": 3, "global_tokens": 0}),
    ("longformer", {"window": 1, "global_tokens": 3}),
    ("longformer", {"window": 7, "global_tokens": 1}),
    ("sparse", {"pattern": "strided", "stride": 3}),
    ("sparse", {"pattern": "strided", "stride": 1}),
    ("sparse", {"pattern": "fixed", "stride": 4, "summary": 2}),
    ("sparse", {"pattern": "fixed", "stride": 3, "summary": 3}),
    ("sparse", {"pattern": "fixed", "stride": 5, "summary": 1}),
    ("bigbird", {"block": 2, "window_blocks": 3, "global_blocks": 1, "random_blocks": 2, "seed": 3}),
    ("bigbird", {"block": 3, "window_blocks": 1, "global_blocks": 0, "random_blocks": 3, "seed": 1}),
    ("bigbird", {"block": 1, "window_blocks": 5, "global_blocks": 2, "random_blocks": 1, "seed": 0}),
    ("bigbird", {"block": 2, "window_blocks": 2, "global_blocks": 1, "random_blocks": 2, "seed": 5}),
]


def valid(name: str, p: dict[str, Any], causal: bool) -> bool:
    return not (name == "bigbird" and not causal and p["window_blocks"] % 2 == 0)


CAUSAL_CASES = [
    pytest.param(
        name, p, causal, id=f"{name}-{'-'.join(map(str, p.values()))}-{'causal' if causal else 'bidir'}"
    )
    for (name, p), causal in itertools.product(CASES, (True, False))
    if valid(name, p, causal)
]


def make(name: str, causal: bool, heads: int = 4, kv_heads: int = 2, **params: Any) -> tuple[Any, Node, Any]:
    """The kind, a fully resolved node, and its module (float64, eval mode)."""
    kind = REGISTRY[name]
    values = {p.name: params.get(p.name, p.default) for p in kind.params}
    values.update(heads=heads, kv_heads=kv_heads, causal=causal, cross=False)
    if name == "bigbird" and "max_len" not in params:
        values["max_len"] = 64  # a short random table
    node = Node(name, tuple(kind.resolve(values).items()))
    assert kind.validate(node, CTX, 1) == []
    module = instantiate(kind.ctor(node, CTX)).double().eval()
    return kind, node, module


# -- the patterns, written out as explicit n x n masks ------------------------------------------------


def sparse_heads(h: int, kv: int) -> list[int]:
    """Which of the two Sparse Transformer masks each query head uses (first half of the kv groups)."""
    h1 = (h // kv) * -(-kv // 2) if kv > 1 else -(-h // 2)
    return [0] * h1 + [1] * (h - h1)


def reference_mask(name: str, p: dict[str, Any], n: int, causal: bool, h: int, kv: int, table: Any) -> Any:
    """(h, n, n) boolean: which keys j each query i of each head sees."""
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    past = (j <= i) if causal else torch.ones(n, n, dtype=torch.bool)
    if name == "sliding_window":
        w = p["window"]
        band = (i - j < w) if causal else (i - j).abs() <= w // 2
        return (band & past).expand(h, n, n)
    if name == "longformer":
        w, g = p["window"], p["global_tokens"]
        band = (i - j < w) if causal else (i - j).abs() <= w // 2
        return ((band | (j < g) | ((i < g) & (not causal))) & past).expand(h, n, n)
    if name == "sparse":
        L, c = p["stride"], p.get("summary", 1)
        if p["pattern"] == "strided":
            a1 = (i - j <= L) if causal else (i - j).abs() <= L  # the previous L (Child et al. eq. A1)
            a2 = (i - j) % L == 0  # every L-th
        else:
            a1 = i // L == j // L  # own block
            a2 = (j % L >= L - c) | (i == j)  # summaries, and itself
        masks = [a1 & past, a2 & past]
        return torch.stack([masks[t] for t in sparse_heads(h, kv)])
    assert name == "bigbird"
    b, w, g, r = p["block"], p["window_blocks"], p["global_blocks"], p["random_blocks"]
    nb = -(-n // b)
    blocks = torch.zeros(nb, nb, dtype=torch.bool)
    for qb, kb in itertools.product(range(nb), range(nb)):
        glob = kb < g or (qb < g and not causal)
        near = (qb - w < kb <= qb) if causal else abs(qb - kb) <= (w - 1) // 2
        blocks[qb, kb] = glob or near
    for qb, t in itertools.product(range(nb), range(r)):
        blocks[qb, int(table[qb][t]) % (qb + 1 if causal else nb)] = True
    return (blocks[i // b, j // b] & past).expand(h, n, n)


def dense_attention(q: Any, k: Any, v: Any, mask: Any, scale: float, softcap: float = 0.0) -> Any:
    g = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    att = (q @ k.transpose(-2, -1)) * scale
    if softcap:
        att = softcap * torch.tanh(att / softcap)
    return att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v


def qkv(b: int, h: int, kv: int, n: int, hs: int, seed: int = 0) -> tuple[Any, Any, Any]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, heads, n, hs, generator=gen, dtype=torch.float64) for heads in (h, kv, kv))  # type: ignore[return-value]


# -- outputs, pairs and FLOPs against the masks --------------------------------------------------------


@pytest.mark.parametrize(("name", "p", "causal"), CAUSAL_CASES)
def test_output_equals_dense_attention_under_the_mask(name: str, p: dict[str, Any], causal: bool) -> None:
    for (h, kv), softcap in [((4, 2), 0.0), ((3, 1), 0.7), ((4, 4), 0.0)]:
        _, _, mod = make(name, causal, heads=h, kv_heads=kv, softcap=softcap, **p)
        table = getattr(mod, "rand_blocks", None)
        for n in (1, 2, 3, 5, 8, 13, 21, 30):
            q, k, v = qkv(2, h, kv, n, 24 // h, seed=n)
            mask = reference_mask(name, p, n, causal, h, kv, table)
            expected = dense_attention(q, k, v, mask, mod.scale, softcap)
            torch.testing.assert_close(mod.attend(q, k, v), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("name", "p", "causal"), CAUSAL_CASES)
def test_pairs_count_the_mask(name: str, p: dict[str, Any], causal: bool) -> None:
    for h, kv in [(4, 2), (3, 1), (6, 3)]:
        kind, node, mod = make(name, causal, heads=h, kv_heads=kv, **p)
        table = getattr(mod, "rand_blocks", None)
        for n in range(1, 45):
            kept = int(reference_mask(name, p, n, causal, h, kv, table).sum())
            assert kind.pairs(node, n, n) * h == kept, (n, h, kv)  # pairs: the mean over heads
            hs = 24 // h
            projections = kind.projection_flops(node, CTX, [(2, n, 24)])
            assert kind.flops_mask_aware(node, CTX, [(2, n, 24)]) == projections + 4 * 2 * hs * kept


@pytest.mark.parametrize(("name", "p", "causal"), CAUSAL_CASES)
def test_core_flops_equal_flop_counter_at_every_length(name: str, p: dict[str, Any], causal: bool) -> None:
    every = [*range(1, 14), 15, 16, 17, 22, 24, 25, 31, 37]  # each side of every window, block, stride
    for (h, kv), lengths in [((4, 2), every), ((2, 1), [3, 9, 26])]:
        kind, node, mod = make(name, causal, heads=h, kv_heads=kv, **p)
        mod.float()
        for n in lengths:
            q, k, v = (x.float() for x in qkv(1, h, kv, n, 24 // h))
            with torch.no_grad(), flop_counter_mode() as fc:
                mod.attend(q, k, v)
            assert fc.get_total_flops() == kind.core_flops(node, CTX, 1, n, n), n


@pytest.mark.parametrize(("name", "p", "causal"), [c for c in CAUSAL_CASES if c.values[2]])
def test_causal_modules_do_not_look_ahead(name: str, p: dict[str, Any], causal: bool) -> None:
    _, _, mod = make(name, causal, **p)
    n = 23
    q, k, v = qkv(1, 4, 2, n, 6)
    y = mod.attend(q, k, v)
    for t in (1, 6, 11, 17):
        q2, k2, v2 = q.clone(), k.clone(), v.clone()
        for x in (q2, k2, v2):
            x[:, :, t:] += torch.randn_like(x[:, :, t:])
        y2 = mod.attend(q2, k2, v2)
        torch.testing.assert_close(y2[:, :, :t], y[:, :, :t], rtol=0, atol=1e-12)
        assert not torch.allclose(y2[:, :, t:], y[:, :, t:])


def test_gradients_are_finite_through_padding_and_masks() -> None:
    """No row is fully masked (padded rows included), so softmax never yields NaN forward or back."""
    for name, p in CASES:
        for causal in (True, False):
            if not valid(name, p, causal):
                continue
            _, _, mod = make(name, causal, dropout=0.2, **p)
            mod.train()
            q, k, v = (x.requires_grad_() for x in qkv(2, 4, 2, 19, 6))
            mod.attend(q, k, v).sum().backward()
            assert all(torch.isfinite(x.grad).all() for x in (q, k, v)), (name, p, causal)


# -- the sliding window's kernel: segments chosen by length -------------------------------------------


def _reaches() -> list[tuple[int, int, int, bool]]:
    """(window, before, after, explicit) for causal and bidirectional windows, both block sizes."""
    out = []
    for w, causal, explicit in itertools.product((1, 2, 3, 5, 8, 16, 33, 100), (True, False), (False, True)):
        before, after = (w - 1, 0) if causal else (w // 2, w // 2)
        out.append((w, before, after, explicit))
    return out


@pytest.mark.parametrize(("w", "before", "after", "explicit"), _reaches())
def test_window_segments_cover_every_query_once_within_the_sequence(
    w: int, before: int, after: int, explicit: bool
) -> None:
    """Each query is in exactly one segment, whose keys hold its whole band and lie within the sequence;
    the segments never compute more score entries than dense attention, and fewer once they block."""
    s = window_block(before, after, explicit)
    for n in [*range(1, 3 * w + 3 * s + 8), 4 * w + 101]:
        segments = window_segments(n, before, after, s)
        owner = [0] * n
        for q0, k0, lq, lk, count in segments:
            for j in range(count):
                qa, ka = q0 + j * lq, k0 + j * lq
                assert 0 <= ka and ka + lk <= n, (n, segments)
                for i in range(qa, qa + lq):
                    owner[i] += 1
                    assert ka <= max(0, i - before) and min(n, i + after + 1) <= ka + lk, (n, i, segments)
        assert owner == [1] * n, (n, segments)
        cells = sum(count * lq * lk for _, _, lq, lk, count in segments)
        assert cells <= n * n
        if n > before + after + 1 + s:
            assert cells < n * n, (n, segments)


@pytest.mark.parametrize("causal", [True, False])
def test_window_costs_are_a_polynomial_in_their_regime(causal: bool) -> None:
    from archdsl.cost.poly import N, Poly

    for w in (1, 5, 16, 33, 100, 512):
        for p in ({}, {"softcap": 5.0}):
            kind, node, _ = make("sliding_window", causal, window=w, **p)
            multiple, above = kind.regime(node)
            poly = Poly.lift(kind.cells(node, N))
            lengths = [n for n in range(above + 1, above + 12 * multiple + 2) if n % multiple == 0]
            for n in lengths:
                assert poly(n=n) == kind.cells(node, n), (w, p, n)


def test_window_never_costs_more_than_dense_attention() -> None:
    """FLOPs and (fused) saved activations at most those of dense causal or bidirectional SDPA, for
    every length: the kernel is dense until blocks cost less."""
    for causal, w, rope, (h, kv) in itertools.product(
        (True, False), (4, 16, 512), (False, True), ((4, 4), (4, 2))
    ):
        stack = "decoder" if causal else "encoder"
        ctx = Ctx(d_model=64, vocab=37, stack=stack)
        if rope:
            rope_kind = REGISTRY["rope"]
            values = {q.name: q.default for q in rope_kind.params if not q.required}
            ctx = Ctx(
                d_model=64,
                vocab=37,
                stack=stack,
                position=Node("rope", tuple(rope_kind.resolve(values).items())),
            )
        window = Node(
            "sliding_window",
            tuple(
                _resolved(
                    "sliding_window", heads=h, kv_heads=kv, causal=causal, cross=False, window=w
                ).items()
            ),
        )
        dense = Node("mha", tuple(_resolved("mha", heads=h, kv_heads=kv, causal=causal, cross=False).items()))
        for n in [*range(1, 3 * w + 40), 1024, 4096, 32768]:
            for b in (1, 2):
                shape = [(b, n, 64)]
                sw, mha = REGISTRY["sliding_window"], REGISTRY["mha"]
                assert sw.flops(window, ctx, shape) <= mha.flops(dense, ctx, shape), (causal, w, n)
                act = ActCfg()
                assert (
                    sw.saved(window, ctx, shape, act).internal <= mha.saved(dense, ctx, shape, act).internal
                )
                assert sw.recompute_flops(window, ctx, shape, act, False) <= mha.recompute_flops(
                    dense, ctx, shape, act, False
                )


def _resolved(name: str, **values: Any) -> dict[str, Any]:
    kind = REGISTRY[name]
    full = {p.name: p.default for p in kind.params if not p.required}
    full.update(values)
    return kind.resolve(full)


@pytest.mark.parametrize("causal", [True, False])
def test_fused_window_gradients_equal_the_explicit_products(causal: bool) -> None:
    """SDPA's kernel over the segments (forward and its own backward) against the explicit products
    over the same segments, in float64; and the per-segment SDPA other devices use."""
    for w, (h, kv), n, b in [
        (16, (4, 2), 45, 2),
        (5, (3, 1), 23, 3),
        (16, (2, 2), 12, 1),
        (33, (4, 1), 90, 2),
    ]:
        _, _, mod = make("sliding_window", causal, heads=h, kv_heads=kv, window=w)
        q, k, v = (x.requires_grad_() for x in qkv(b, h, kv, n, 24 // h, seed=n))
        g = torch.randn(b, h, n, 24 // h, dtype=torch.float64)
        y = mod.attend(q, k, v)
        grads = torch.autograd.grad(y, (q, k, v), g)
        mod.materialize = True
        y2 = mod.attend(q, k, v)
        grads2 = torch.autograd.grad(y2, (q, k, v), g)
        torch.testing.assert_close(y, y2, rtol=1e-10, atol=1e-10)
        for a, e in zip(grads, grads2, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
        segments = window_segments(n, *mod.reach, mod.block)
        other = torch.cat([mod.sdpa(q, k, v, seg) for seg in segments], dim=2)
        torch.testing.assert_close(other, y2, rtol=1e-10, atol=1e-10)


def test_fused_window_training_step_flops_equal_flop_counter() -> None:
    """Forward and backward FLOPs of a whole layer, fused and explicit, as the analysis predicts them."""
    for causal, w, n in [(True, 16, 45), (False, 16, 45), (True, 5, 5), (False, 33, 90)]:
        stack = "decoder" if causal else "encoder"
        ctx = Ctx(d_model=24, vocab=37, stack=stack)
        kind = REGISTRY["sliding_window"]
        node = Node(
            "sliding_window",
            tuple(
                _resolved("sliding_window", heads=4, kv_heads=2, causal=causal, cross=False, window=w).items()
            ),
        )
        for flash in (True, False):
            module = instantiate(kind.ctor(node, ctx)).train()
            module.materialize = not flash
            x = torch.randn(2, n, 24, requires_grad=True)
            with flop_counter_mode() as fc:
                module(x).sum().backward()
            shape, act = [(2, n, 24)], ActCfg(flash=flash)
            expected = (
                kind.flops(node, ctx, shape)
                + kind.backward_flops(node, ctx, shape, act)
                + kind.recompute_flops(node, ctx, shape, act, False)
            )
            assert fc.get_total_flops() == expected, (causal, w, n, flash)


# -- sub-quadratic memory --------------------------------------------------------------------------


class LargestTensor(TorchDispatchMode):
    """The largest tensor (in elements) any op produces, views of other tensors aside (they allocate
    nothing: the sliding window reads its blocks as overlapping views of k and v)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        given = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in given:
                self.largest = max(self.largest, t.numel())
        return out


def largest_intermediate(name: str, n: int, **params: Any) -> int:
    _, _, mod = make(name, name != "bigbird", **params)
    q, k, v = (x.float() for x in qkv(1, 4, 2, n, 6))
    mod.float()
    with torch.no_grad(), LargestTensor() as probe:
        mod.attend(q, k, v)
    return probe.largest


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("sliding_window", {"window": 32}),
        ("longformer", {"window": 32, "global_tokens": 4}),
        (
            "bigbird",
            {"block": 16, "window_blocks": 3, "global_blocks": 1, "random_blocks": 2, "max_len": 1024},
        ),
    ],
)
def test_memory_grows_linearly_in_n(name: str, params: dict[str, Any]) -> None:
    small, large = largest_intermediate(name, 256, **params), largest_intermediate(name, 1024, **params)
    assert 3.5 <= large / small <= 4.5, (small, large)  # linear: 4x, not 16x
    assert large < 4 * 1024 * 1024 / 8  # far below the dense (heads, n, n) scores


def test_sparse_memory_grows_as_n_sqrt_n_with_stride_sqrt_n() -> None:
    small = largest_intermediate("sparse", 256, pattern="strided", stride=16)
    large = largest_intermediate("sparse", 1024, pattern="strided", stride=32)
    assert 7 <= large / small <= 9, (small, large)  # n^1.5: 8x


# -- the kinds in specs --------------------------------------------------------------------------------


def spec(attention: str, model_type: str = "decoder", position: str = "learned(max_len = 64)") -> str:
    stack = f"""
    position = {position}
    block {{
      repeat = 2
      placement = pre
      norm = layernorm(eps = 1e-5)
      attention = {attention}
      ffn = mlp(hidden = 40)
    }}
    final_norm = layernorm(eps = 1e-5)"""
    return f"""
model probe {{
  type = {model_type}
  d_model = 24
  vocab = 37
  embedding = token_embedding()
  {stack}
  head = lm_head(tied = false)
}}
"""


def load(tmp_path: Path, text: str) -> archdsl.Spec:
    path = tmp_path / "probe.arch"
    path.write_text(text)
    return archdsl.load(path)


SPEC_CALLS = [
    "sliding_window(heads = 4, kv_heads = 2, window = 8)",
    "sparse(heads = 4, kv_heads = 2, pattern = fixed, stride = 4, summary = 2)",
    "sparse(heads = 4, kv_heads = 1, stride = 3)",
    "longformer(heads = 4, window = 6, global_tokens = 2)",
    "bigbird(heads = 4, kv_heads = 2, block = 4, window_blocks = 3, global_blocks = 1, random_blocks = 2, "
    "max_len = 64)",
]


@pytest.mark.parametrize("call", SPEC_CALLS)
@pytest.mark.parametrize("model_type", ["decoder", "encoder"])
def test_kind_in_a_spec_analyses_builds_and_emits(call: str, model_type: str, tmp_path: Path) -> None:
    s = load(tmp_path, spec(call, model_type))
    assert archdsl.check(s) == []
    for batch, n in [(1, 5), (2, 37)]:  # dense and blocked
        assert_costs_match(s, batch, n)

    src = archdsl.emit_source(s)
    path = tmp_path / "emitted_local.py"
    path.write_text(src)
    mod_spec = importlib.util.spec_from_file_location("emitted_local", path)
    assert mod_spec and mod_spec.loader
    emitted_mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(emitted_mod)
    built = archdsl.build(s, seed=3).eval()
    emitted = emitted_mod.build_model().eval()
    emitted.load_state_dict(built.state_dict())
    inputs = model_inputs(s, 2, 29)
    with torch.no_grad():
        torch.testing.assert_close(emitted(*inputs), built(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize("call", SPEC_CALLS)
def test_causal_model_does_not_look_ahead(call: str, tmp_path: Path) -> None:
    model = archdsl.build(load(tmp_path, spec(call))).eval()
    idx = torch.randint(0, 37, (1, 30), generator=torch.Generator().manual_seed(0))
    idx2 = idx.clone()
    idx2[0, 13:] = (idx2[0, 13:] + 1) % 37
    with torch.no_grad():
        a, b = model(idx), model(idx2)
    torch.testing.assert_close(a[:, :13], b[:, :13])
    assert not torch.allclose(a[:, 13:], b[:, 13:])


def test_gemma2_style_local_layer_with_rope_softcap_and_dropout(tmp_path: Path) -> None:
    call = "sliding_window(heads = 4, kv_heads = 2, window = 8, softcap = 50.0, dropout = 0.1, bias = false)"
    s = load(tmp_path, spec(call, position="rope(max_len = 64)"))
    assert_costs_match(s, 2, 29)
    model = archdsl.build(s).train()
    idx = torch.randint(0, 37, (2, 29))
    model(idx).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def diagnostics(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        load(tmp_path, text)
    return [(d.code, d.message) for d in err.value.diagnostics]


def test_invalid_uses_are_diagnosed(tmp_path: Path) -> None:
    assert ("E009", "`sparse` splits its heads between two patterns and needs at least 2") in diagnostics(
        tmp_path, spec("sparse(heads = 1, stride = 4)")
    )
    codes = diagnostics(tmp_path, spec("sparse(heads = 2, pattern = fixed, stride = 4, summary = 5)"))
    assert [c for c, _ in codes] == ["E009"] and "summary (5)" in codes[0][1]
    codes = diagnostics(tmp_path, spec("bigbird(heads = 2, window_blocks = 2)", "encoder"))
    assert [c for c, _ in codes] == ["E009"] and "odd" in codes[0][1]
    load(tmp_path, spec("bigbird(heads = 2, window_blocks = 2)", "decoder"))  # causal: own + 1 before
    for name in ("alibi", "t5", "shaw"):  # positional schemes that add a bias to the scores
        if name in REGISTRY:
            codes = diagnostics(tmp_path, spec("sliding_window(heads = 2, window = 4)", position=f"{name}()"))
            assert ("E016", f"`sliding_window` cannot take the stack's `{name}` positions") in codes


def test_cross_attention_is_rejected(tmp_path: Path) -> None:
    stack = """
    position = learned(max_len = 64)
    block {
      repeat = 1
      norm = layernorm(eps = 1e-5)
      attention = mha(heads = 2)
      %s
      ffn = mlp(hidden = 40)
    }
    final_norm = layernorm(eps = 1e-5)"""
    text = f"""
model probe {{
  type = encoder_decoder
  d_model = 24
  vocab = 37
  embedding = token_embedding()
  encoder {{ {stack % ""} }}
  decoder {{ {stack % "cross_attention = longformer(heads = 2, window = 4)"} }}
  head = lm_head(tied = false)
}}
"""
    assert ("E016", "`longformer` is self-attention only") in diagnostics(tmp_path, text)


# -- KV cache, big-O, BigBird's random blocks, symbolic lengths ------------------------------------------


def test_kv_cache_is_capped_by_the_window() -> None:
    kind, node, _ = make("sliding_window", True, window=8)
    assert kind.kv_cache(node, CTX, 100) == 2 * 2 * 6 * 8
    assert kind.kv_cache(node, CTX, 5) == 2 * 2 * 6 * 5
    kind, node, _ = make("sliding_window", False, window=8)
    assert kind.kv_cache(node, CTX, 100) == 2 * 2 * 6 * 100
    kind, node, _ = make("longformer", True, window=8, global_tokens=2)
    assert kind.kv_cache(node, CTX, 100) == 2 * 2 * 6 * 10
    # what the lowered decoder allocates (tests/test_decode.py): A1's kv head a rolling window, A2's all
    kind, node, _ = make("sparse", True, pattern="strided", stride=4)  # kv heads: 1 local, 1 strided
    assert kind.kv_cache(node, CTX, 100) == 2 * 6 * (5 + 100)
    kind, node, _ = make("sparse", True, pattern="fixed", stride=10, summary=2)
    assert kind.kv_cache(node, CTX, 105) == 2 * 6 * (10 + 105)  # the query's block; every key
    assert kind.big_o(node, CTX) == ("n·d²", "n·l·d", "n²·c·d/l")
    kind, node, _ = make("sliding_window", True, window=8)
    assert kind.big_o(node, CTX) == ("n·d²", "n·w·d")


def test_bigbird_random_blocks_are_fixed_at_construction() -> None:
    p = {"block": 4, "window_blocks": 3, "global_blocks": 1, "random_blocks": 3, "max_len": 60}
    kind, node, a = make("bigbird", False, seed=7, **p)
    _, _, b = make("bigbird", False, seed=7, **p)
    _, _, c = make("bigbird", False, seed=8, **p)
    assert a.rand_blocks.shape == (15, 3)
    assert a.rand_blocks.tolist() == [list(row) for row in random_blocks(7, 15, 3)]  # the kind counts these
    assert torch.equal(a.rand_blocks, b.rand_blocks) and not torch.equal(a.rand_blocks, c.rand_blocks)
    assert "rand_blocks" in a.state_dict()
    assert kind.max_seq_len(node, CTX) == 60
    with pytest.raises(ValueError, match="max_len"):
        a.attend(*qkv(1, 4, 2, 61, 6))


def test_costs_accept_a_symbolic_length() -> None:
    """With n a symbol, the costs are the blocked formulas; at an n past the dense threshold and a
    multiple of the block they equal the concrete counts."""
    import sympy

    n = sympy.Symbol("n", positive=True, integer=True)
    for name, p in CASES:
        for causal in (True, False):
            if not valid(name, p, causal):
                continue
            kind, node, _ = make(name, causal, **p)
            flops = kind.core_flops(node, CTX, 1, n, n)
            pairs = kind.pairs(node, n, n)
            kind.kv_cache(node, CTX, n)
            at = 2 * 3 * 4 * 5 * 7 * 6  # a multiple of every block and stride here
            assert flops.subs(n, at) == kind.core_flops(node, CTX, 1, at, at), (name, p)
            if name != "bigbird":  # bigbird's symbolic pairs are nominal (every block distinct)
                assert pairs.subs(n, at) == kind.pairs(node, at, at), (name, p)
