"""Checkpoints in transformers 4's tensor names (most of the Hub) load too: Mixtral's per-expert
w1/w2/w3 under block_sparse_moe, ViT's encoder.layer.*.attention.attention.query, LayerNorm gamma/beta.
Each legacy state dict is checked twice: transformers 5 itself loads it (so the names are the ones it
converts), and load_hf_weights gives the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hf_cases import T, ids, perturb
from safetensors.torch import save_file

import archdsl
from archdsl.interop.hf import load_hf_weights, load_spec_from_config


def v4_mixtral(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            p = k.removesuffix("mlp.experts.gate_up_proj") + "block_sparse_moe.experts."
            for e in range(v.size(0)):
                w1, w3 = v[e].chunk(2, dim=0)
                out[f"{p}{e}.w1.weight"], out[f"{p}{e}.w3.weight"] = w1.clone(), w3.clone()
        elif k.endswith("mlp.experts.down_proj"):
            p = k.removesuffix("mlp.experts.down_proj") + "block_sparse_moe.experts."
            for e in range(v.size(0)):
                out[f"{p}{e}.w2.weight"] = v[e].clone()
        else:
            out[k.replace(".mlp.gate.", ".block_sparse_moe.gate.")] = v.clone()
    return out


def v4_vit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renames = [
        ("attention.q_proj", "attention.attention.query"),
        ("attention.k_proj", "attention.attention.key"),
        ("attention.v_proj", "attention.attention.value"),
        ("attention.o_proj", "attention.output.dense"),
        ("mlp.fc1", "intermediate.dense"),
        ("mlp.fc2", "output.dense"),
    ]
    out = {}
    for k, v in state.items():
        k = k.replace("vit.layers.", "vit.encoder.layer.")
        for new, old in renames:
            k = k.replace(new, old)
        out[k] = v.clone()
    return out


def roundtrip(hf: torch.nn.Module, legacy: dict[str, torch.Tensor], tmp_path: Path, x: torch.Tensor) -> None:
    with torch.no_grad():
        want = hf(x).logits
    cfg = hf.config.to_dict()
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in legacy.items()}, str(tmp_path / "model.safetensors"))
    back = type(hf).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, want, atol=1e-5, rtol=1e-5)  # transformers reads it
    ours = archdsl.build(load_spec_from_config(cfg)).eval()
    load_hf_weights(ours, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), want, atol=1e-4, rtol=1e-4)


def test_mixtral_per_expert_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = T.MixtralForCausalLM(
        T.MixtralConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=10,
            num_local_experts=3,
            num_experts_per_tok=2,
            vocab_size=53,
            max_position_embeddings=64,
            num_hidden_layers=2,
        )
    ).eval()
    perturb(hf, 4.0)
    legacy = v4_mixtral(hf.state_dict())
    assert "model.layers.1.block_sparse_moe.experts.2.w3.weight" in legacy
    roundtrip(hf, legacy, tmp_path, ids(53))


def test_vit_encoder_layer_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = T.ViTForImageClassification(
        T.ViTConfig(
            image_size=24,
            patch_size=8,
            hidden_size=24,
            num_hidden_layers=2,
            num_attention_heads=3,
            intermediate_size=40,
            num_labels=7,
        )
    ).eval()
    perturb(hf, 4.0)
    legacy = v4_vit(hf.state_dict())
    assert "vit.encoder.layer.1.attention.attention.query.weight" in legacy
    roundtrip(hf, legacy, tmp_path, torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)))


def test_layernorm_gamma_beta() -> None:
    from archdsl.interop.hf.legacy import modernise

    t = torch.ones(3)
    got = modernise({"bert.embeddings.LayerNorm.gamma": t, "bert.embeddings.LayerNorm.beta": t, "a.b": t})
    assert set(got) == {"bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias", "a.b"}


def test_neox_embed_out(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = T.GPTNeoXForCausalLM(
        T.GPTNeoXConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_hidden_layers=2,
            vocab_size=53,
            max_position_embeddings=64,
            tie_word_embeddings=False,
        )
    ).eval()
    perturb(hf, 4.0)
    legacy = {
        ("embed_out." + k[8:] if k.startswith("lm_head.") else k): v for k, v in hf.state_dict().items()
    }
    assert "embed_out.weight" in legacy
    roundtrip(hf, legacy, tmp_path, ids(53))
