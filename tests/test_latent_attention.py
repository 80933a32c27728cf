"""Multi-head latent attention (``mla``) and DeepSeek-V2-Lite against Hugging Face's DeepSeek models,
random-initialised from tiny odd configs (offline): the attention alone against ``DeepseekV3Attention``
(compressed and direct queries, interleaved and half-split rope dims, YaRN with an attention factor,
biases), the whole model against ``DeepseekV2ForCausalLM`` (MLA, YaRN, first-k-dense, shared experts,
unnormalised softmax routing) and ``DeepseekV3ForCausalLM`` with dense layers; the full-size parameter
count against HF on the meta device; the latent cache's size and the report's comparison with
multi-head attention."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from conftest import SPECS

import archdsl
from archdsl.cost.render import table
from archdsl.diagnostics import SpecError

State = dict[str, torch.Tensor]

# our spec's rope(scaling = yarn, …) settings, as Hugging Face's rope_parameters
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096}


def spec_of(text: str, tmp_path: Path) -> archdsl.Spec:
    p = tmp_path / "m.arch"
    p.write_text(text)
    return archdsl.load(p)


def attention_spec(cfg: Any, layout: str, rope: str) -> str:
    """A one-block decoder whose attention is the config's MLA."""
    q_rank = f"q_rank = {cfg.q_lora_rank}," if cfg.q_lora_rank else ""
    return f"""
model m {{
  type = decoder
  d_model = {cfg.hidden_size}
  vocab = 11
  embedding = token_embedding()
  position = rope(theta = {cfg.rope_parameters["rope_theta"]}, layout = {layout}, max_len = 64, {rope})
  block {{
    repeat = 1
    placement = pre
    norm = rmsnorm()
    attention = mla(
      heads = {cfg.num_attention_heads},
      head_dim = {cfg.qk_nope_head_dim},
      rope_dim = {cfg.qk_rope_head_dim},
      v_dim = {cfg.v_head_dim},
      kv_rank = {cfg.kv_lora_rank},
      {q_rank}
      bias = {"true" if cfg.attention_bias else "false"},
    )
    ffn = swiglu(hidden = 8)
  }}
  final_norm = rmsnorm()
  head = lm_head(tied = false)
}}
"""


def attention_map(hf: State, prefix: str, ours: str) -> State:
    """Hugging Face's DeepSeek attention parameters under our names (the same layout)."""
    names = {
        "q_proj": "q_proj",
        "q_a_proj": "q_a_proj",
        "q_a_layernorm": "q_a_norm",
        "q_b_proj": "q_b_proj",
        "kv_a_proj_with_mqa": "kv_a_proj",
        "kv_a_layernorm": "kv_a_norm",
        "kv_b_proj": "kv_b_proj",
        "o_proj": "c_proj",
    }
    out = {}
    for key, value in hf.items():
        if key.startswith(prefix):
            module, _, leaf = key[len(prefix) :].partition(".")
            out[f"{ours}{names[module]}.{leaf}"] = value
    return out


def randomise(module: torch.nn.Module) -> None:
    """Away from the initialisation (unit norm gains, zero biases), so every parameter matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))


ATTENTION_CASES = [
    # q_lora_rank, heads, nope, rope, v, kv rank, bias, rope layout, YaRN (mscale, mscale_all_dim)
    (None, 3, 7, 6, 5, 13, False, "interleaved", None),
    (11, 5, 3, 4, 9, 7, True, "interleaved", (1.0, 0.707)),
    (6, 2, 5, 2, 5, 9, False, "half", (0.707, 0.707)),
    (None, 1, 4, 8, 3, 5, True, "half", (1.0, 0.0)),
]


@pytest.mark.parametrize(
    ("q_rank", "heads", "nope", "rope", "v", "rank", "bias", "layout", "yarn"), ATTENTION_CASES, ids=str
)
def test_attention_equals_deepseek_v3_attention(
    q_rank: int | None,
    heads: int,
    nope: int,
    rope: int,
    v: int,
    rank: int,
    bias: bool,
    layout: str,
    yarn: tuple[float, float] | None,
    tmp_path: Path,
) -> None:
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as ds

    rope_parameters: dict[str, Any] = {"rope_type": "default", "rope_theta": 500.0}
    rope_text = ""
    if yarn is not None:
        rope_parameters = {**YARN, "factor": 8.0, "original_max_position_embeddings": 16}
        rope_parameters.update(mscale=yarn[0], mscale_all_dim=yarn[1], rope_theta=500.0)
        rope_text = f"scaling = yarn, factor = 8.0, original_max_len = 16, mscale = {yarn[0]}, "
        rope_text += f"mscale_all_dim = {yarn[1]},"
    cfg = transformers.DeepseekV3Config(
        hidden_size=heads * 7,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        q_lora_rank=q_rank,
        kv_lora_rank=rank,
        qk_nope_head_dim=nope,
        qk_rope_head_dim=rope,
        v_head_dim=v,
        attention_bias=bias,
        rope_interleave=layout == "interleaved",
        rope_parameters=rope_parameters,
        max_position_embeddings=64,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = ds.DeepseekV3Attention(cfg, layer_idx=0).eval()
    randomise(hf)
    rotary = ds.DeepseekV3RotaryEmbedding(cfg)

    spec = spec_of(attention_spec(cfg, layout, rope_text), tmp_path)
    ours = archdsl.build(spec).h[0].attn.eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    assert archdsl.analyze(spec).layers[1].components[1].params == sum(p.numel() for p in hf.parameters())
    ours.load_state_dict(attention_map(hf.state_dict(), "", ""))

    B, T = 3, 9
    x = torch.randn(B, T, cfg.hidden_size, generator=torch.Generator().manual_seed(1))
    position_ids = torch.arange(T)[None].expand(B, T)
    causal = torch.full((T, T), float("-inf")).triu(1)[None, None].expand(B, 1, T, T)
    with torch.no_grad():
        expected, _ = hf(x, rotary(x, position_ids), causal)
        got = ours(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert ours.scale == pytest.approx(hf.scaling, rel=1e-12)


# -- whole models -----------------------------------------------------------------------------------


def v2_config(**over: Any) -> transformers.DeepseekV2Config:
    """DeepSeek-V2-Lite's config, with sizes overridden."""
    base: dict[str, Any] = {
        "vocab_size": 102400,
        "hidden_size": 2048,
        "intermediate_size": 10944,
        "moe_intermediate_size": 1408,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "n_routed_experts": 64,
        "n_shared_experts": 2,
        "num_experts_per_tok": 6,
        "first_k_dense_replace": 1,
        "kv_lora_rank": 512,
        "q_lora_rank": None,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "max_position_embeddings": 163840,
        "norm_topk_prob": False,
        "routed_scaling_factor": 1.0,
        "topk_method": "greedy",
        "rope_parameters": {
            **YARN,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 0.707,
            "mscale_all_dim": 0.707,
        },
    }
    cfg = transformers.DeepseekV2Config(**{**base, **over})
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "eager"  # a loop over experts (grouped_mm wants 16-byte strides)
    return cfg


def deepseek_map(cfg: Any, experts_3d: bool = True) -> Any:
    """Hugging Face DeepSeek (V2, or V3 with dense layers) state dicts under our names: dense layers
    are SwiGLU, MoE layers' routed experts come as 3-D gate_up/down tensors, the shared experts as one
    SwiGLU."""

    def m(s: State) -> State:
        out = {
            "wte.weight": s["model.embed_tokens.weight"],
            "ln_f.weight": s["model.norm.weight"],
            "lm_head.weight": s["lm_head.weight"],
        }
        for i in range(cfg.num_hidden_layers):
            p, q = f"model.layers.{i}.", f"h.{i}."
            out[q + "ln_1.weight"] = s[p + "input_layernorm.weight"]
            out[q + "ln_2.weight"] = s[p + "post_attention_layernorm.weight"]
            out.update(attention_map(s, p + "self_attn.", q + "attn."))
            mlp = p + "mlp."
            if i < cfg.first_k_dense_replace:
                for proj in ("gate_proj", "up_proj", "down_proj"):
                    out[q + f"mlp.{proj}.weight"] = s[mlp + f"{proj}.weight"]
                continue
            out[q + "mlp.router.weight"] = s[mlp + "gate.weight"]
            gate_up, down = s[mlp + "experts.gate_up_proj"], s[mlp + "experts.down_proj"]
            for e in range(cfg.n_routed_experts):
                g, u = gate_up[e].chunk(2, dim=0)
                out[q + f"mlp.experts.{e}.gate_proj.weight"] = g
                out[q + f"mlp.experts.{e}.up_proj.weight"] = u
                out[q + f"mlp.experts.{e}.down_proj.weight"] = down[e]
            for proj in ("gate_proj", "up_proj", "down_proj"):
                out[q + f"mlp.shared.0.{proj}.weight"] = s[mlp + f"shared_experts.{proj}.weight"]
        return out

    return m


# odd where Hugging Face's DeepSeek-V2 allows: its complex rotation views the rope dims in pairs, so
# the query-key width (head_dim + rope_dim) and the latent's (kv_rank + rope_dim) must be even
TINY_V2 = {
    "n_layers": 3,
    "d_model": 30,
    "n_heads": 3,
    "head_dim": 8,
    "rope_dim": 6,
    "v_dim": 5,
    "kv_rank": 10,
    "d_ff": 26,
    "experts": 5,
    "top_k": 2,
    "d_expert": 9,
    "vocab": 53,
    "context": 64,
}


def tiny_v2_config() -> transformers.DeepseekV2Config:
    t = TINY_V2
    return v2_config(
        vocab_size=t["vocab"],
        hidden_size=t["d_model"],
        intermediate_size=t["d_ff"],
        moe_intermediate_size=t["d_expert"],
        num_hidden_layers=t["n_layers"],
        num_attention_heads=t["n_heads"],
        num_key_value_heads=t["n_heads"],
        n_routed_experts=t["experts"],
        num_experts_per_tok=t["top_k"],
        kv_lora_rank=t["kv_rank"],
        qk_nope_head_dim=t["head_dim"],
        qk_rope_head_dim=t["rope_dim"],
        v_head_dim=t["v_dim"],
        max_position_embeddings=t["context"],
    )


def load_all(model: torch.nn.Module, state: State) -> None:
    own = model.state_dict()
    assert set(own) == set(state), sorted(set(own) ^ set(state))[:8]
    for k, v in state.items():
        assert own[k].shape == v.shape, (k, own[k].shape, v.shape)
    model.load_state_dict(state)


@pytest.mark.parametrize("routed_scale", [1.0, 2.5])
def test_deepseek_v2_lite_equals_hf_deepseek_v2_for_causal_lm(routed_scale: float) -> None:
    """MLA with YaRN (factor 40, mscale 0.707 on both sides), the first layer dense, then routed
    experts with softmax scores, not renormalised (and scaled: DeepSeek-V2's routed_scaling_factor is
    16), beside two shared experts held as one SwiGLU."""
    cfg = tiny_v2_config()
    cfg.routed_scaling_factor = routed_scale
    torch.manual_seed(0)
    hf = transformers.DeepseekV2ForCausalLM(cfg).eval()
    randomise(hf)
    spec = archdsl.load(SPECS / "deepseek_v2_lite.arch", {**TINY_V2, "moe.ffn.routed_scale": routed_scale})
    ours = archdsl.build(spec).eval()
    n = sum(p.numel() for p in hf.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n == archdsl.analyze(spec).params_total
    load_all(ours, deepseek_map(cfg)(hf.state_dict()))
    idx = torch.randint(0, cfg.vocab_size, (3, 13), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours(idx)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # the cache path (prompt, then one token at a time) gives the same logits
    with torch.no_grad():
        ours.setup_cache(3, 13)
        pieces = [ours(idx[:, :6], pos=torch.arange(6))]
        pieces += [ours(idx[:, t : t + 1], pos=torch.arange(t, t + 1)) for t in range(6, 13)]
        ours.clear_cache()
    torch.testing.assert_close(torch.cat(pieces, dim=1), expected, atol=1e-5, rtol=1e-4)


def test_compressed_queries_equal_hf_deepseek_v3_with_dense_layers(tmp_path: Path) -> None:
    """DeepSeek-V3's attention (compressed queries, rope dims interleaved, YaRN with mscale 1 and
    mscale_all_dim 0.707) in a whole model whose layers are all dense (first_k_dense_replace = L)."""
    L = 2
    cfg = transformers.DeepseekV3Config(
        vocab_size=47,
        hidden_size=26,
        intermediate_size=34,
        num_hidden_layers=L,
        num_attention_heads=2,
        num_key_value_heads=2,
        q_lora_rank=9,
        kv_lora_rank=7,
        qk_nope_head_dim=5,
        qk_rope_head_dim=4,
        v_head_dim=11,
        first_k_dense_replace=L,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        max_position_embeddings=64,
        rope_parameters={
            **YARN,
            "factor": 4.0,
            "original_max_position_embeddings": 16,
            "mscale": 1.0,
            "mscale_all_dim": 0.707,
        },
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = transformers.DeepseekV3ForCausalLM(cfg).eval()
    randomise(hf)
    text = f"""
model v3 {{
  type = decoder
  d_model = 26
  vocab = 47
  embedding = token_embedding()
  position = rope(layout = interleaved, scaling = yarn, factor = 4.0, original_max_len = 16,
                  mscale_all_dim = 0.707, max_len = 64)
  block {{
    repeat = {L}
    placement = pre
    norm = rmsnorm(eps = 1e-6)
    attention = mla(heads = 2, head_dim = 5, rope_dim = 4, v_dim = 11, kv_rank = 7, q_rank = 9, bias = false)
    ffn = swiglu(hidden = 34)
  }}
  final_norm = rmsnorm(eps = 1e-6)
  head = lm_head(tied = false)
}}
"""
    spec = spec_of(text, tmp_path)
    ours = archdsl.build(spec).eval()
    assert archdsl.analyze(spec).params_total == sum(p.numel() for p in hf.parameters())
    cfg.n_routed_experts = 0  # no MoE layers to map
    load_all(ours, deepseek_map(cfg)(hf.state_dict()))
    idx = torch.randint(0, 47, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-5, rtol=1e-4)


# -- full size ----------------------------------------------------------------------------------------


def test_full_size_parameter_count_equals_hf_on_meta() -> None:
    with torch.device("meta"):
        hf = transformers.DeepseekV2ForCausalLM(v2_config())
    total = sum(p.numel() for p in hf.parameters())
    report = archdsl.analyze(archdsl.load(SPECS / "deepseek_v2_lite.arch"), seq_len=4096)
    assert report.params_total == total == 15_706_484_224
    # per token: everything but the routed experts a token does not meet (58 of 64 in 26 layers)
    experts = sum(p.numel() for n, p in hf.named_parameters() if ".mlp.experts." in n)
    assert report.params()["active"] == total - experts // 64 * 58 == 2_661_150_208


def test_latent_cache_and_the_comparison_with_multi_head_attention() -> None:
    """576 elements per position and layer (the 512-wide latent and the 64-wide rope key), against
    16 heads x (192-wide keys + 128-wide values) for multi-head attention with the same heads."""
    spec = archdsl.load(SPECS / "deepseek_v2_lite.arch")
    m = archdsl.analyze(spec, batch=2, seq_len=4096, dtype="bf16").memory
    assert m["kv_cache_bytes"] == 27 * (512 + 64) * 4096 * 2 * 2
    assert m["kv_cache_mha_bytes"] == 27 * 16 * (128 + 64 + 128) * 4096 * 2 * 2
    assert m["kv_cache_mha_ratio"] == pytest.approx(576 / 5120)
    llama = archdsl.analyze(archdsl.load(SPECS / "llama3_8b.arch"), seq_len=1024).memory
    assert llama["kv_cache_mha_ratio"] == pytest.approx(8 / 32)  # grouped heads: 8 key/value heads of 32
    gpt2 = archdsl.analyze(archdsl.load(SPECS / "gpt2_small.arch")).memory
    assert gpt2["kv_cache_mha_bytes"] == gpt2["kv_cache_bytes"] and gpt2["kv_cache_mha_ratio"] == 1.0
    text = table(archdsl.analyze(spec, seq_len=4096))
    assert "multi-head attention with the same heads would cache 2.11 GiB" in text


@pytest.mark.parametrize("causal", [True, False])
def test_mask_aware_flops_count_the_mask(causal: bool, tmp_path: Path) -> None:
    """Mask-aware: ``4 w`` per head for each (query, key) pair the module's own ``visible`` keeps, on
    top of the projections the dense count has too (the core there: every pair)."""
    text = attention_spec(
        transformers.DeepseekV3Config(
            hidden_size=21,
            num_attention_heads=3,
            q_lora_rank=None,
            kv_lora_rank=5,
            qk_nope_head_dim=4,
            qk_rope_head_dim=2,
            v_head_dim=9,
            attention_bias=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4},
        ),
        "half",
        "",
    )
    if not causal:
        text = text.replace("type = decoder", "type = encoder").replace("lm_head(tied = false)", "pooler()")
    spec = spec_of(text, tmp_path)
    attn = archdsl.build(spec).h[0].attn
    for n in (1, 6, 11):
        i = torch.arange(n)
        kept = int(attn.visible(i[:, None], i[None, :]).expand(n, n).sum())
        c = archdsl.analyze(spec, batch=2, seq_len=n).layers[1].components[1]
        w = max(4 + 2, 9)
        assert c.flops_mask_aware == c.flops_forward - 4 * 2 * 3 * w * (n * n - kept)


def test_yarn_softmax_scale() -> None:
    """1 / sqrt(nope + rope), times (0.1 · 0.707 · ln 40 + 1)² (Hugging Face's yarn_apply_mscale)."""
    spec = archdsl.load(SPECS / "deepseek_v2_lite.arch", TINY_V2)
    attn = archdsl.build(spec).h[0].attn
    mscale = 0.1 * 0.707 * math.log(40) + 1
    assert attn.scale == pytest.approx((8 + 6) ** -0.5 * mscale**2, rel=1e-12)


# -- refusals -----------------------------------------------------------------------------------------

REFUSED = [
    ("mla(heads = 4, kv_rank = 8, kv_heads = 2)", "rope()", "E009", "kv_heads (2) must equal heads (4)"),
    ("mla(heads = 4, kv_rank = 8, qk_norm = rmsnorm)", "rope()", "E009", "normalises its latents"),
    ("mla(heads = 4, kv_rank = 8, rope_dim = 0)", "rope()", "E011", "but rope_dim is 0"),
    ("mla(heads = 4, kv_rank = 8)", "alibi()", "E016", "cannot act in it"),
    ("mla(heads = 4)", "rope()", "E007", "kv_rank"),
]


@pytest.mark.parametrize(("attention", "position", "code", "message"), REFUSED, ids=str)
def test_refused_with_a_diagnostic(
    attention: str, position: str, code: str, message: str, tmp_path: Path
) -> None:
    text = f"""
model m {{
  type = decoder
  d_model = 32
  vocab = 11
  embedding = token_embedding()
  position = {position}
  block {{
    repeat = 1
    placement = pre
    norm = rmsnorm()
    attention = {attention}
    ffn = swiglu(hidden = 8)
  }}
  final_norm = rmsnorm()
  head = lm_head(tied = false)
}}
"""
    with pytest.raises(SpecError) as e:
        spec_of(text, tmp_path)
    assert [d.code for d in e.value.diagnostics] == [code]
    assert message in e.value.diagnostics[0].message, e.value.diagnostics[0].message


def test_cross_attention_refused(tmp_path: Path) -> None:
    cross = "cross_attention = mha(heads = n_heads, bias = false, score = dot)"
    text = (SPECS / "t5_base.arch").read_text()
    assert cross in text
    with pytest.raises(SpecError) as e:
        spec_of(text.replace(cross, "cross_attention = mla(heads = n_heads, kv_rank = 64)"), tmp_path)
    assert any("`mla` is self-attention" in d.message for d in e.value.diagnostics)


# -- Hugging Face export: what the Llama-layout families cannot hold is not claimed ---------------------


@pytest.mark.parametrize(
    "override",
    [
        {"model.block.ffn.routed_scale": 2.5},
        {"model.block.ffn.shared": 1},
        {"model.block.ffn.normalize": False},
        {"model.position.scaling": "yarn", "model.position.factor": 4.0},
    ],
    ids=str,
)
def test_not_exported_as_mixtral(override: dict[str, Any]) -> None:
    from archdsl.interop.hf import config_from_spec

    tiny = {"n_layers": 2, "d_model": 32, "n_heads": 4, "n_kv_heads": 2, "d_ff": 48, "experts": 4}
    assert config_from_spec(archdsl.load(SPECS / "mixtral_8x7b.arch", tiny))["model_type"] == "mixtral"
    with pytest.raises(ValueError, match="not in an exportable Hugging Face family"):
        config_from_spec(archdsl.load(SPECS / "mixtral_8x7b.arch", {**tiny, **override}))
