"""Numerically equal to the reference implementations people trust: Hugging Face transformers models,
random-initialised from configs (offline), their weights copied into the module archdsl builds from the
matching spec at a tiny size; the outputs must agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers
from conftest import SPECS

import archdsl

State = dict[str, torch.Tensor]


def cat(*ts: torch.Tensor) -> torch.Tensor:
    return torch.cat(ts, dim=0)


def load_into(model: torch.nn.Module, state: State) -> None:
    """Load every parameter of ``model`` from ``state`` (shapes checked, nothing left over)."""
    own = model.state_dict()
    missing = {k for k in own if k not in state and not _tied(model, k)}
    assert not missing, f"not mapped: {sorted(missing)[:8]}"
    extra = set(state) - set(own)
    assert not extra, f"mapped to nothing: {sorted(extra)[:8]}"
    for k, v in state.items():
        assert own[k].shape == v.shape, (k, own[k].shape, v.shape)
    model.load_state_dict(state, strict=False)


def _tied(model: torch.nn.Module, key: str) -> bool:
    return key == "lm_head.weight" and model.lm_head.weight is model.wte.weight


def compare(
    spec_name: str,
    overrides: dict,
    hf: torch.nn.Module,
    mapping: Callable[[State], State],
    inputs: list[torch.Tensor],
    hf_out: Callable[..., torch.Tensor],
    atol: float = 2e-5,
) -> None:
    spec = archdsl.load(SPECS / spec_name, overrides)
    ours = archdsl.build(spec).eval()
    hf.eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    assert archdsl.analyze(
        spec, seq_len=inputs[0].shape[-1] if inputs[0].dim() == 2 else None
    ).params_total == sum(p.numel() for p in hf.parameters())
    load_into(ours, mapping({k: v.detach().clone() for k, v in hf.state_dict().items()}))
    with torch.no_grad():
        expected = hf_out(*inputs)
        got = ours(*inputs)
    torch.testing.assert_close(got, expected, atol=atol, rtol=1e-4)


def ids(vocab: int, b: int = 2, t: int = 11) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(0))


# -- GPT-2 ------------------------------------------------------------------------------------------


def gpt2_map(n_layers: int) -> Callable[[State], State]:
    def m(s: State) -> State:
        out = {"wte.weight": s["transformer.wte.weight"], "wpe.weight": s["transformer.wpe.weight"]}
        for i in range(n_layers):
            p = f"transformer.h.{i}."
            for ln in ("ln_1", "ln_2"):
                out[f"h.{i}.{ln}.weight"] = s[p + f"{ln}.weight"]
                out[f"h.{i}.{ln}.bias"] = s[p + f"{ln}.bias"]
            for name, hf_name in (
                ("attn.c_attn", "attn.c_attn"),
                ("attn.c_proj", "attn.c_proj"),
                ("mlp.c_fc", "mlp.c_fc"),
                ("mlp.c_proj", "mlp.c_proj"),
            ):
                out[f"h.{i}.{name}.weight"] = s[p + hf_name + ".weight"].t()  # GPT-2's Conv1D is (in, out)
                out[f"h.{i}.{name}.bias"] = s[p + hf_name + ".bias"]
        out["ln_f.weight"], out["ln_f.bias"] = s["transformer.ln_f.weight"], s["transformer.ln_f.bias"]
        return out

    return m


def test_gpt2() -> None:
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=101, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    hf = transformers.GPT2LMHeadModel(cfg)
    compare(
        "gpt2_small.arch",
        {"n_layers": 2, "d_model": 64, "n_heads": 4, "vocab": 101, "context": 32},
        hf,
        gpt2_map(2),
        [ids(101)],
        lambda x: hf(x).logits,
    )


# -- Llama, Mistral-style GQA, OLMo 2 ----------------------------------------------------------------


def llama_map(n_layers: int, post_norms: bool = False, qk_norm: bool = False) -> Callable[[State], State]:
    def m(s: State) -> State:
        out = {
            "wte.weight": s["model.embed_tokens.weight"],
            "ln_f.weight": s["model.norm.weight"],
            "lm_head.weight": s["lm_head.weight"],
        }
        for i in range(n_layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            out[f"h.{i}.attn.c_attn.weight"] = cat(
                s[a + "q_proj.weight"], s[a + "k_proj.weight"], s[a + "v_proj.weight"]
            )
            out[f"h.{i}.attn.c_proj.weight"] = s[a + "o_proj.weight"]
            if qk_norm:
                out[f"h.{i}.attn.q_norm.weight"] = s[a + "q_norm.weight"]
                out[f"h.{i}.attn.k_norm.weight"] = s[a + "k_norm.weight"]
            for proj in ("gate_proj", "up_proj", "down_proj"):
                out[f"h.{i}.mlp.{proj}.weight"] = s[p + f"mlp.{proj}.weight"]
            if post_norms:  # OLMo 2: norms on the sublayer outputs
                out[f"h.{i}.n1.weight"] = s[p + "post_attention_layernorm.weight"]
                out[f"h.{i}.n2.weight"] = s[p + "post_feedforward_layernorm.weight"]
            else:
                out[f"h.{i}.ln_1.weight"] = s[p + "input_layernorm.weight"]
                out[f"h.{i}.ln_2.weight"] = s[p + "post_attention_layernorm.weight"]
        return out

    return m


LLAMA_TINY = {
    "n_layers": 2,
    "d_model": 32,
    "n_heads": 4,
    "n_kv_heads": 2,
    "d_ff": 48,
    "vocab": 50,
    "context": 64,
}


def test_llama_gqa_rope_swiglu_rmsnorm() -> None:
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    hf = transformers.LlamaForCausalLM(cfg)
    compare("llama2_7b.arch", LLAMA_TINY, hf, llama_map(2), [ids(50)], lambda x: hf(x).logits)


def test_llama3_rope_base() -> None:
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    )
    hf = transformers.LlamaForCausalLM(cfg)
    compare("llama3_8b.arch", LLAMA_TINY, hf, llama_map(2), [ids(50)], lambda x: hf(x).logits)


def test_olmo2_post_norms_and_qk_norm() -> None:
    cfg = transformers.Olmo2Config(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=50,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    )
    hf = transformers.Olmo2ForCausalLM(cfg)
    compare(
        "olmo2_7b.arch",
        {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 48, "vocab": 50, "context": 64},
        hf,
        llama_map(2, post_norms=True, qk_norm=True),
        [ids(50)],
        lambda x: hf(x).logits,
    )


def test_mixtral_moe() -> None:
    cfg = transformers.MixtralConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        max_position_embeddings=64,
        num_local_experts=4,
        num_experts_per_tok=2,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    hf = transformers.MixtralForCausalLM(cfg)

    base = llama_map(2)

    def mixtral(s: State) -> State:
        out = {}
        for i in range(2):
            p = f"model.layers.{i}.mlp."
            out[f"h.{i}.mlp.router.weight"] = s.pop(p + "gate.weight")
            gate_up, down = s.pop(p + "experts.gate_up_proj"), s.pop(p + "experts.down_proj")
            for e in range(4):
                g, u = gate_up[e].chunk(2, dim=0)
                out[f"h.{i}.mlp.experts.{e}.gate_proj.weight"] = g
                out[f"h.{i}.mlp.experts.{e}.up_proj.weight"] = u
                out[f"h.{i}.mlp.experts.{e}.down_proj.weight"] = down[e]
            for proj in ("gate_proj", "up_proj", "down_proj"):
                s[p + f"{proj}.weight"] = torch.empty(0)  # let the dense mapping run; dropped below
        dense = base(s)
        dense = {k: v for k, v in dense.items() if ".mlp." not in k}
        return {**dense, **out}

    compare("mixtral_8x7b.arch", {**LLAMA_TINY, "experts": 4}, hf, mixtral, [ids(50)], lambda x: hf(x).logits)


# -- BERT ---------------------------------------------------------------------------------------------


def test_bert_with_pooler() -> None:
    cfg = transformers.BertConfig(
        vocab_size=89,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=96,
        max_position_embeddings=32,
    )
    hf = transformers.BertModel(cfg)

    def m(s: State) -> State:
        e = "embeddings."
        out = {
            "wte.weight": s[e + "word_embeddings.weight"],
            "wte.types.weight": s[e + "token_type_embeddings.weight"],
            "wpe.weight": s[e + "position_embeddings.weight"],
            "ln_emb.weight": s[e + "LayerNorm.weight"],
            "ln_emb.bias": s[e + "LayerNorm.bias"],
            "lm_head.dense.weight": s["pooler.dense.weight"],
            "lm_head.dense.bias": s["pooler.dense.bias"],
        }
        for i in range(2):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            for t in ("weight", "bias"):
                out[f"h.{i}.attn.c_attn.{t}"] = cat(
                    s[a + f"query.{t}"], s[a + f"key.{t}"], s[a + f"value.{t}"]
                )
                out[f"h.{i}.attn.c_proj.{t}"] = s[p + f"attention.output.dense.{t}"]
                out[f"h.{i}.ln_1.{t}"] = s[p + f"attention.output.LayerNorm.{t}"]
                out[f"h.{i}.mlp.c_fc.{t}"] = s[p + f"intermediate.dense.{t}"]
                out[f"h.{i}.mlp.c_proj.{t}"] = s[p + f"output.dense.{t}"]
                out[f"h.{i}.ln_2.{t}"] = s[p + f"output.LayerNorm.{t}"]
        return out

    compare(
        "bert_base.arch",
        {"n_layers": 2, "d_model": 48, "n_heads": 3, "d_ff": 96, "vocab": 89, "context": 32},
        hf,
        m,
        [ids(89)],
        lambda x: hf(x).pooler_output,
    )


# -- ViT ----------------------------------------------------------------------------------------------


def test_vit_classifier() -> None:
    cfg = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=10,
    )
    hf = transformers.ViTForImageClassification(cfg)

    def m(s: State) -> State:
        e = "vit.embeddings."
        out = {
            "wte.proj.weight": s[e + "patch_embeddings.projection.weight"],
            "wte.proj.bias": s[e + "patch_embeddings.projection.bias"],
            "wte.cls_token": s[e + "cls_token"],
            "wpe.weight": s[e + "position_embeddings"][0],
            "ln_f.weight": s["vit.layernorm.weight"],
            "ln_f.bias": s["vit.layernorm.bias"],
            "lm_head.proj.weight": s["classifier.weight"],
            "lm_head.proj.bias": s["classifier.bias"],
        }
        for i in range(2):
            p = f"vit.layers.{i}."
            a = p + "attention."
            for t in ("weight", "bias"):
                out[f"h.{i}.attn.c_attn.{t}"] = cat(
                    s[a + f"q_proj.{t}"], s[a + f"k_proj.{t}"], s[a + f"v_proj.{t}"]
                )
                out[f"h.{i}.attn.c_proj.{t}"] = s[a + f"o_proj.{t}"]
                out[f"h.{i}.ln_1.{t}"] = s[p + f"layernorm_before.{t}"]
                out[f"h.{i}.ln_2.{t}"] = s[p + f"layernorm_after.{t}"]
                out[f"h.{i}.mlp.c_fc.{t}"] = s[p + f"mlp.fc1.{t}"]
                out[f"h.{i}.mlp.c_proj.{t}"] = s[p + f"mlp.fc2.{t}"]
        return out

    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    compare(
        "vit_b16.arch",
        {"image": 32, "patch": 8, "d_model": 32, "n_heads": 4, "n_layers": 2, "classes": 10},
        hf,
        m,
        [pixels],
        lambda x: hf(x).logits,
    )


# -- full-size parameter counts, on the meta device ----------------------------------------------------


FULL = {
    "olmo2_7b.arch": lambda: transformers.Olmo2ForCausalLM(
        transformers.Olmo2Config(
            vocab_size=100352,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            tie_word_embeddings=False,
        )
    ),
}


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_parameter_counts_match_hugging_face(name: str) -> None:
    with torch.device("meta"):
        hf = FULL[name]()
    assert archdsl.analyze(archdsl.load(SPECS / name), seq_len=8).params_total == sum(
        p.numel() for p in hf.parameters()
    )


def test_specs_exist() -> None:
    assert all((SPECS / n).exists() for n in FULL)
    assert Path(SPECS / "gpt2_small.arch").exists()


def test_mistral_sliding_window() -> None:
    cfg = transformers.MistralConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        max_position_embeddings=64,
        sliding_window=4,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    hf = transformers.MistralForCausalLM(cfg)
    compare(
        "mistral_7b.arch",
        {**LLAMA_TINY, "window": 4},
        hf,
        llama_map(2),
        [ids(50, t=13)],
        lambda x: hf(x).logits,
    )


def test_gemma2_sandwich_softcaps_local_global() -> None:
    cfg = transformers.Gemma2Config(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=50,
        max_position_embeddings=64,
        sliding_window=4,
        query_pre_attn_scalar=16,
        rms_norm_eps=1e-6,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        attn_implementation="eager",
    )
    hf = transformers.Gemma2ForCausalLM(cfg)
    with torch.no_grad():  # Gemma's (1 + w) norms start at w = 0; give them something to carry
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.normal_(0, 0.1)

    def m(s: State) -> State:
        out = {"wte.weight": s["model.embed_tokens.weight"], "ln_f.weight": s["model.norm.weight"]}
        for i in range(2):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            out[f"h.{i}.attn.c_attn.weight"] = cat(
                s[a + "q_proj.weight"], s[a + "k_proj.weight"], s[a + "v_proj.weight"]
            )
            out[f"h.{i}.attn.c_proj.weight"] = s[a + "o_proj.weight"]
            for proj in ("gate_proj", "up_proj", "down_proj"):
                out[f"h.{i}.mlp.{proj}.weight"] = s[p + f"mlp.{proj}.weight"]
            for ours_name, hf_name in (
                ("ln_1", "input_layernorm"),
                ("post_ln_1", "post_attention_layernorm"),
                ("ln_2", "pre_feedforward_layernorm"),
                ("post_ln_2", "post_feedforward_layernorm"),
            ):
                out[f"h.{i}.{ours_name}.weight"] = s[p + f"{hf_name}.weight"]
        return out

    tiny = {
        "n_layers": 2,
        "d_model": 32,
        "n_heads": 4,
        "n_kv_heads": 2,
        "head_dim": 16,
        "d_ff": 48,
        "vocab": 50,
        "context": 64,
        "window": 4,
    }
    compare("gemma2_9b.arch", tiny, hf, m, [ids(50, t=13)], lambda x: hf(x).logits, atol=5e-5)


def test_t5_relative_buckets_encoder_decoder() -> None:
    cfg = transformers.T5Config(
        vocab_size=50,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    hf = transformers.T5ForConditionalGeneration(cfg)

    def attn(s: State, hf_prefix: str, ours: str, cross: bool) -> State:
        q, k, v, o = (s[f"{hf_prefix}.{p}.weight"] for p in ("q", "k", "v", "o"))
        if cross:
            return {
                f"{ours}.q_proj.weight": q,
                f"{ours}.kv_proj.weight": cat(k, v),
                f"{ours}.c_proj.weight": o,
            }
        return {f"{ours}.c_attn.weight": cat(q, k, v), f"{ours}.c_proj.weight": o}

    def m(s: State) -> State:
        out = {"wte.weight": s["shared.weight"]}
        for stack in ("encoder", "decoder"):
            table = s[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
            out[f"{stack}.pos.relative_attention_bias.weight"] = table
            out[f"{stack}.ln_f.weight"] = s[f"{stack}.final_layer_norm.weight"]
            for i in range(2):
                b, h = f"{stack}.block.{i}.layer", f"{stack}.h.{i}"
                out[f"{h}.attn.pos.relative_attention_bias.weight"] = table  # the same module in every layer
                out.update(attn(s, f"{b}.0.SelfAttention", f"{h}.attn", cross=False))
                out[f"{h}.ln_1.weight"] = s[f"{b}.0.layer_norm.weight"]
                ff = 1
                if stack == "decoder":
                    out.update(attn(s, f"{b}.1.EncDecAttention", f"{h}.cross", cross=True))
                    out[f"{h}.ln_2.weight"] = s[f"{b}.1.layer_norm.weight"]
                    ff = 2
                out[f"{h}.mlp.c_fc.weight"] = s[f"{b}.{ff}.DenseReluDense.wi.weight"]
                out[f"{h}.mlp.c_proj.weight"] = s[f"{b}.{ff}.DenseReluDense.wo.weight"]
                out[f"{h}.ln_{ff + 1}.weight"] = s[f"{b}.{ff}.layer_norm.weight"]
        return out

    src, tgt = ids(50, t=9), ids(50, t=7)
    compare(
        "t5_base.arch",
        {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "vocab": 50},
        hf,
        m,
        [src, tgt],
        lambda s_, t_: hf(input_ids=s_, decoder_input_ids=t_).logits,
    )
