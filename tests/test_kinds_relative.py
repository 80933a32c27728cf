"""Relative positional schemes (ALiBi, T5 buckets, Shaw et al.) and Transformer-XL attention, each
against its paper's formula written out, against Hugging Face where it has the function, and in specs:
costs equal the module's, the emitted file equals the built module, causal models do not look ahead."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from test_cost_vs_torch import assert_costs_match
from test_lower_emit import emitted_module
from test_registry import VOCAB, spec_text

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.kinds.attention_nn import Attention
from archdsl.kinds.relative_nn import (
    ALiBi,
    ShawRelative,
    T5RelativeBias,
    XLAttention,
    alibi_slopes,
    t5_bucket,
)
from archdsl.measure import count_forward_flops


def load(text: str) -> archdsl.Spec:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "probe.arch"
        p.write_text(text)
        return archdsl.load(p)


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, causal: bool, scale: float
) -> torch.Tensor:
    """softmax(q k^T * scale + bias, masked) v, one (head, query) at a time."""
    B, nh, T, _ = q.shape
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(nh):
            for i in range(T):
                keys = range(i + 1) if causal else range(T)
                s = torch.stack([q[b, h, i] @ k[b, h, j] * scale + bias[h, i, j] for j in keys])
                a = s.softmax(0)
                out[b, h, i] = sum(a[n] * v[b, h, j] for n, j in enumerate(keys))
    return out


def attention_with(
    pos: torch.nn.Module, nh: int, hs: int, causal: bool, scale: float | None = None
) -> Attention:
    return Attention(
        d_model=nh * hs, n_heads=nh, n_kv_heads=nh, head_dim=hs, causal=causal, pos=pos, scale=scale
    ).eval()


def qkv(batch: int, nh: int, n: int, hs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random q, k, v of shape (B, nh, T, hs), in float64."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, nh, n, hs, generator=g, dtype=torch.float64) for _ in range(3))
    return q, k, v


# -- ALiBi -------------------------------------------------------------------------------------------


def test_alibi_slopes_follow_the_paper() -> None:
    """Press et al. 2022, §3: 2^-1 .. 2^-8 for 8 heads; the closest power of 2, then every other slope
    of the sequence for twice as many heads."""
    assert alibi_slopes(8) == pytest.approx([2.0**-h for h in range(1, 9)], rel=1e-12)
    assert alibi_slopes(12) == pytest.approx(
        [2.0**-h for h in range(1, 9)] + [2.0 ** -(h - 0.5) for h in range(1, 5)], rel=1e-12
    )  # 16 heads: 2^-0.5, 2^-1, ..., 2^-8; every other from the first: 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5
    assert alibi_slopes(6) == pytest.approx([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3], rel=1e-12)
    assert alibi_slopes(1) == pytest.approx([2.0**-8])


@pytest.mark.parametrize("heads", [1, 3, 6, 8, 12, 16, 24])
def test_alibi_slopes_equal_hugging_face(heads: int) -> None:
    import transformers.models.bloom.modeling_bloom as bloom

    hf = bloom._get_alibi_slopes(heads, torch.device("cpu"))
    torch.testing.assert_close(torch.tensor(alibi_slopes(heads)), hf)


@pytest.mark.parametrize("causal", [True, False])
def test_alibi_attention_equals_explicit(causal: bool) -> None:
    nh, hs, T = 6, 4, 7
    attn = attention_with(ALiBi(nh), nh, hs, causal).double()
    q, k, v = qkv(2, nh, T, hs)
    m = alibi_slopes(nh)
    bias = torch.tensor([[[-m[h] * abs(i - j) for j in range(T)] for i in range(T)] for h in range(nh)])
    torch.testing.assert_close(attn.attend(q, k, v), explicit_attention(q, k, v, bias, causal, hs**-0.5))


# -- T5 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("buckets", "max_distance"), [(32, 128), (8, 20), (5, 7), (4, 3), (2, 2), (17, 40)])
def test_t5_buckets_equal_hugging_face(bidirectional: bool, buckets: int, max_distance: int) -> None:
    import transformers.models.t5.modeling_t5 as t5

    from archdsl.ir import Node
    from archdsl.kinds import REGISTRY, Ctx

    node = Node(
        "t5", (("buckets", buckets), ("max_distance", max_distance), ("bidirectional", bidirectional))
    )
    if buckets // (2 if bidirectional else 1) // 2 < 1:  # no exact buckets: archdsl refuses the setting
        [problem] = REGISTRY["t5"].validate(node, Ctx(d_model=8, vocab=0))
        assert problem.param == "buckets"
        return
    rel = torch.arange(-300, 301)[:, None] - torch.arange(0, 5)[None, :]
    ours = t5_bucket(rel, bidirectional, buckets, max_distance)
    theirs = t5.T5Attention._relative_position_bucket(rel, bidirectional, buckets, max_distance)
    assert torch.equal(ours, theirs)
    assert int(ours.min()) >= 0 and int(ours.max()) < buckets


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_bias_equals_hugging_face_compute_bias(bidirectional: bool) -> None:
    import transformers.models.t5.modeling_t5 as t5
    from transformers import T5Config

    cfg = T5Config(
        d_model=24,
        d_kv=6,
        num_heads=4,
        relative_attention_num_buckets=10,
        relative_attention_max_distance=20,
        is_decoder=not bidirectional,
    )
    hf = t5.T5Attention(cfg, has_relative_attention_bias=True)
    ours = T5RelativeBias(10, 20, 4, bidirectional)
    ours.relative_attention_bias.weight.data.copy_(hf.relative_attention_bias.weight.data)
    T = 30
    x = torch.zeros(1, 4, T, 6)
    torch.testing.assert_close(ours.bias(x, x)[None], hf.compute_bias(T, T))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_attention_equals_explicit(bidirectional: bool) -> None:
    """T5's attention: unscaled scores (score = dot) plus the bucketed bias of j - i."""
    nh, hs, T, buckets, dist = 3, 4, 9, 8, 6
    pos = T5RelativeBias(buckets, dist, nh, bidirectional).double()
    attn = attention_with(pos, nh, hs, causal=not bidirectional, scale=1.0).double()
    q, k, v = qkv(2, nh, T, hs)
    table = pos.relative_attention_bias.weight  # (buckets, nh)

    def bucket(rel: int) -> int:  # Mesh TensorFlow's rule, scalar form
        n, ret = buckets, 0
        if bidirectional:
            n //= 2
            ret += n if rel > 0 else 0
            rel = abs(rel)
        else:
            rel = max(-rel, 0)
        exact = n // 2
        if rel < exact:
            return ret + rel
        return ret + min(exact + int(math.log(rel / exact) / math.log(dist / exact) * (n - exact)), n - 1)

    bias = torch.stack(
        [
            torch.stack([torch.stack([table[bucket(j - i), h] for j in range(T)]) for i in range(T)])
            for h in range(nh)
        ]
    )
    with torch.no_grad():
        torch.testing.assert_close(
            attn.attend(q, k, v), explicit_attention(q, k, v, bias, not bidirectional, 1.0)
        )


# -- Shaw et al. -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("causal", "values", "clip"), [(True, True, 2), (False, True, 1), (True, False, 3)])
def test_shaw_equals_the_papers_per_pair_formula(causal: bool, values: bool, clip: int) -> None:
    """Shaw et al. 2018, eqs. 3-5: e_ij = x_i W^Q (x_j W^K + a^K_ij)^T / sqrt(d_z), z_i = sum_j
    alpha_ij (x_j W^V + a^V_ij), a_ij = w_clip(j - i, k)."""
    nh, hs, T = 2, 4, 7
    pos = ShawRelative(hs, clip, values=values).double()
    attn = attention_with(pos, nh, hs, causal).double()
    q, k, v = qkv(2, nh, T, hs)
    wk = pos.key_table
    wv = pos.value_table if values else torch.zeros_like(wk)
    out = torch.zeros_like(q)
    for b in range(2):
        for h in range(nh):
            for i in range(T):
                keys = range(i + 1) if causal else range(T)
                a = [max(-clip, min(clip, j - i)) + clip for j in keys]
                e = torch.stack(
                    [q[b, h, i] @ (k[b, h, j] + wk[a[n]]) / math.sqrt(hs) for n, j in enumerate(keys)]
                )
                alpha = e.softmax(0)
                out[b, h, i] = sum(alpha[n] * (v[b, h, j] + wv[a[n]]) for n, j in enumerate(keys))
    with torch.no_grad():
        torch.testing.assert_close(attn.attend(q, k, v), out)


# -- Transformer-XL ----------------------------------------------------------------------------------


def xl_explicit(mod: XLAttention, mem: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Dai et al. 2019, eq. in §3.3, written out per head, query and key over [mem; seg]:
    A_ij = (q_i + u) . k_j + (q_i + v) . W_r R_{i-j}, R_d = [sin(d w), cos(d w)], w_c = 10000^(-2c/C);
    causal from query position L + i; softmax(A / sqrt(hs)) v, then the output projection."""
    B, T, C = seg.shape
    L = mem.size(1)
    nh, hs = mod.n_heads, mod.head_dim
    h = torch.cat([mem, seg], dim=1)
    W, bias = mod.c_attn.weight, mod.c_attn.bias
    wq, wk, wv = W.split(nh * hs)
    bq, bk, bv = bias.split(nh * hs)
    w = torch.tensor([10000 ** (-2 * c / C) for c in range(C // 2)], dtype=seg.dtype)
    u, vv = mod.r_w_bias, mod.r_r_bias
    y = torch.zeros(B, T, nh * hs, dtype=seg.dtype)
    for b in range(B):
        for n in range(nh):
            sl = slice(n * hs, (n + 1) * hs)
            for i in range(T):
                qi = seg[b, i] @ wq[sl].T + bq[sl]
                keys = range(L + i + 1)
                scores = []
                for j in keys:
                    kj = h[b, j] @ wk[sl].T + bk[sl]
                    d = L + i - j
                    R = torch.cat([torch.sin(d * w), torch.cos(d * w)])
                    r = R @ mod.r_net.weight[sl].T
                    scores.append(((qi + u[n]) @ kj + (qi + vv[n]) @ r) / math.sqrt(hs))
                a = torch.stack(scores).softmax(0)
                y[b, i, sl] = sum(a[jj] * (h[b, j] @ wv[sl].T + bv[sl]) for jj, j in enumerate(keys))
    return mod.c_proj(y)


@pytest.mark.parametrize(("mem_len", "t1", "t2"), [(3, 5, 4), (6, 2, 3), (0, 3, 3), (4, 4, 1)])
def test_xl_two_segments_equal_one_explicit_computation(mem_len: int, t1: int, t2: int) -> None:
    torch.manual_seed(0)
    C, nh, hs = 8, 2, 3
    mod = XLAttention(mem_len, d_model=C, n_heads=nh, n_kv_heads=nh, head_dim=hs, causal=True).double().eval()
    s1, s2 = torch.randn(2, t1, C, dtype=torch.float64), torch.randn(2, t2, C, dtype=torch.float64)
    with torch.no_grad():
        y1 = mod(s1)
        y2 = mod(s2)
        torch.testing.assert_close(y1, xl_explicit(mod, s1[:, :0], s1))  # the empty memory is masked out
        mem = s1[:, max(0, t1 - mem_len) :]  # the last mem_len inputs of the first segment
        torch.testing.assert_close(y2, xl_explicit(mod, mem, s2))
    assert mod.filled == min(mem_len, t1 + t2)
    assert "mem" not in mod.state_dict()  # module state, not a parameter or a saved buffer


def test_xl_memory_restarts_when_the_batch_size_changes() -> None:
    torch.manual_seed(1)
    kw = {"d_model": 8, "n_heads": 2, "n_kv_heads": 1, "head_dim": 4, "causal": True}
    mod = XLAttention(5, **kw).eval()
    x = torch.randn(1, 4, 8)
    with torch.no_grad():
        fresh = mod(x)
        mod(torch.randn(2, 3, 8))
        torch.testing.assert_close(mod(x), fresh)  # batch 2 -> 1: an empty memory again
        assert not torch.allclose(mod(x), fresh)  # same batch size: the memory is used
        mod.reset_memory()
        torch.testing.assert_close(mod(x), fresh)


# -- in specs ----------------------------------------------------------------------------------------

POSITIONS = [
    "alibi()",
    "t5()",
    "t5(buckets = 8, max_distance = 16)",
    "shaw(k = 3)",
    "shaw(k = 2, values = false)",
]
XL = "xl(heads = 4, mem_len = 5, bias = false)"


def specs() -> list[tuple[str, str, str]]:
    """(id, text, model type) for each kind in a tiny spec."""
    out = [(f"decoder-{p}", spec_text({"position": p}), "decoder") for p in POSITIONS]
    out += [(f"encoder-{p}", spec_text({"position": p}, "encoder"), "encoder") for p in POSITIONS[:3]]
    cross = {"cross_attention": "mha(heads = 4)"}
    out += [
        (f"encoder_decoder-{p}", spec_text({"position": p, **cross}, "encoder_decoder"), "encoder_decoder")
        for p in POSITIONS
    ]
    out += [("decoder-xl", spec_text({"position": "none", "attention": XL}), "decoder")]
    out += [
        (
            "decoder-xl-learned",
            spec_text({"attention": "xl(heads = 2, kv_heads = 1, mem_len = 0)"}),
            "decoder",
        )
    ]
    return out


def reset_memories(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, XLAttention):
            m.reset_memory()


@pytest.mark.parametrize(("text", "model_type"), [s[1:] for s in specs()], ids=[s[0] for s in specs()])
def test_kind_in_a_spec_costs_builds_and_emits(text: str, model_type: str, tmp_path: Path) -> None:
    from conftest import model_inputs

    spec = load(text)
    for batch, n in [(1, 5), (2, 9)]:
        assert_costs_match(spec, batch, n)
    built = archdsl.build(spec, seed=3).eval()
    reset_memories(built)
    _, _, mod = emitted_module(spec, tmp_path)
    emitted = mod.build_model().eval()
    sd = built.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in emitted.state_dict().items()}
    emitted.load_state_dict(sd)
    inputs = model_inputs(spec, 2, 11)
    with torch.no_grad():
        for _ in range(2):  # XL: the second call reads the memory the first left
            torch.testing.assert_close(emitted(*inputs), built(*inputs), rtol=0, atol=0)


def test_t5_table_is_one_module_for_the_stack() -> None:
    spec = load(spec_text({"position": "t5(buckets = 8, max_distance = 16)"}))
    model = archdsl.build(spec)
    assert model.h[0].attn.pos is model.h[1].attn.pos is model.pos
    assert not model.pos.bidirectional  # a decoder: unidirectional buckets
    assert archdsl.analyze(spec, 1, 4).params_total == sum(p.numel() for p in model.parameters())
    pos_rows = [
        c for layer in archdsl.analyze(spec, 1, 4).layers for c in layer.components if c.module == "pos"
    ]
    assert [c.params for c in pos_rows] == [8 * 4]


def test_t5_in_an_encoder_decoder() -> None:
    spec = load(spec_text({"position": "t5()", "cross_attention": "mha(heads = 4)"}, "encoder_decoder"))
    model = archdsl.build(spec)
    enc, dec = model.encoder, model.decoder
    assert enc.h[0].attn.pos is enc.h[1].attn.pos is enc.pos
    assert dec.h[0].attn.pos is dec.h[1].attn.pos is dec.pos
    assert enc.pos is not dec.pos
    assert enc.pos.bidirectional and not dec.pos.bidirectional
    assert dec.h[0].cross.pos is None  # no relative bias on cross-attention (as T5)
    assert archdsl.analyze(spec, 2, 6).params_total == sum(p.numel() for p in model.parameters())


def test_t5_shipped_spec_shape() -> None:
    """vaswani_base with T5 biases in place of sinusoids: costs equal the module's."""
    src = (Path(__file__).parent.parent / "specs" / "vaswani_base.arch").read_text()
    text = src.replace("sinusoidal(max_len = context)", "t5(buckets = 32, max_distance = 128)")
    spec = load(text.replace("n_layers = 6", "n_layers = 2").replace("d_model  = 512", "d_model  = 32"))
    assert_costs_match(spec, 2, 7)


@pytest.mark.parametrize(
    "slots", [{"position": p} for p in POSITIONS] + [{"position": "none", "attention": XL}]
)
def test_causal_variants_do_not_look_ahead(slots: dict[str, str]) -> None:
    model = archdsl.build(load(spec_text(slots))).eval()
    idx = torch.randint(0, VOCAB, (2, 10))
    idx2 = idx.clone()
    idx2[:, 6:] = (idx2[:, 6:] + 1) % VOCAB
    with torch.no_grad():
        reset_memories(model)
        a = model(idx)
        reset_memories(model)
        b = model(idx2)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_xl_costs_are_stationary() -> None:
    spec = load(spec_text({"position": "none", "attention": XL}))
    model = archdsl.build(spec).eval()
    idx = torch.randint(0, VOCAB, (2, 6))
    counts = [count_forward_flops(model, idx)[0] for _ in range(3)]  # empty memory, then filled
    assert counts == [archdsl.analyze(spec, 2, 6).flops_forward] * 3


def test_xl_with_lora_costs_match() -> None:
    """LoRA on XL's fused projection: it runs over the memory too, and so do its updates."""
    lora = "lora {\n    r = 2\n    targets = [q, k, v, o]\n  }\n  head ="
    spec = load(spec_text({"position": "none", "attention": XL}).replace("head =", lora, 1))
    assert_costs_match(spec, 2, 7)


@pytest.mark.parametrize(
    ("slots", "model_type", "message"),
    [
        ({"attention": "xl(heads = 4, mem_len = 2, causal = false)"}, "decoder", "causal only"),
        ({"attention": "xl(heads = 4, mem_len = 2)"}, "encoder", "causal only"),
        ({"position": "rope()", "attention": "xl(heads = 4, mem_len = 2)"}, "decoder", "own relative"),
        ({"position": "t5(buckets = 3)"}, "encoder", "at least 4 buckets"),
        ({"position": "t5(buckets = 8, max_distance = 2)"}, "decoder", "must exceed"),
    ],
)
def test_invalid_uses_are_rejected(slots: dict[str, str], model_type: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load(spec_text(slots, model_type))


def test_xl_as_cross_attention_is_rejected() -> None:
    text = spec_text({"cross_attention": "xl(heads = 4, mem_len = 2)"}, "encoder_decoder")
    with pytest.raises(SpecError):
        load(text)
