"""BLOOM and OPT beyond the tiny cases of test_interop_hf_bloom.py / test_interop_hf_opt.py: the
published config.json forms (Megatron switches, n_embed, activation_dropout), OPT without biases but
with LayerNorm parameters, pre-LN OPT with its final norm removed, hub-style unprefixed state dicts,
and export claims that no other family shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hf_cases import T, check_decoder, check_export, ids, meta_params, ours_for, perturb

import archdsl
from archdsl.interop.hf import (
    FAMILIES,
    UnsupportedConfigError,
    load_hf_weights,
    load_spec_from_config,
    spec_from_config,
)

# bigscience/bloom-560m's config.json (Megatron-DeepSpeed switches that BloomModel never reads)
BLOOM_560M: dict[str, Any] = {
    "apply_residual_connection_post_layernorm": False,
    "architectures": ["BloomForCausalLM"],
    "attention_dropout": 0.0,
    "attention_softmax_in_fp32": True,
    "bias_dropout_fusion": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_dropout": 0.0,
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "masked_softmax_fusion": True,
    "model_type": "bloom",
    "n_head": 16,
    "n_inner": None,
    "n_layer": 24,
    "offset_alibi": 100,
    "pad_token_id": 3,
    "pretraining_tp": 1,
    "skip_bias_add": True,
    "skip_bias_add_qkv": False,
    "slow_but_exact": False,
    "unk_token_id": 0,
    "use_cache": True,
    "vocab_size": 250880,
}
# bigscience/bloom (176B) names its width n_embed and its heads num_attention_heads
BLOOM_176B = {
    **{k: v for k, v in BLOOM_560M.items() if k not in ("hidden_size", "n_head")},
    "n_embed": 14336,
    "num_attention_heads": 112,
    "n_layer": 70,
    "pretraining_tp": 4,
}
OPT_125M: dict[str, Any] = {
    "_name_or_path": "facebook/opt-125m",
    "_remove_final_layer_norm": False,
    "activation_dropout": 0.0,
    "activation_function": "relu",
    "architectures": ["OPTForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "do_layer_norm_before": True,
    "dropout": 0.1,
    "eos_token_id": 2,
    "ffn_dim": 3072,
    "hidden_size": 768,
    "init_std": 0.02,
    "layerdrop": 0.0,
    "max_position_embeddings": 2048,
    "model_type": "opt",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "prefix": "</s>",
    "torch_dtype": "float16",
    "transformers_version": "4.21.0.dev0",
    "use_cache": True,
    "vocab_size": 50272,
    "word_embed_proj_dim": 768,
}
OPT_350M = {
    **OPT_125M,
    "_name_or_path": "facebook/opt-350m",
    "hidden_size": 1024,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "ffn_dim": 4096,
    "word_embed_proj_dim": 512,
    "do_layer_norm_before": False,
}

PUBLISHED = [
    ("bloom-560m", BLOOM_560M, T.BloomConfig, T.BloomForCausalLM, 559_214_592),
    ("bloom-176b", BLOOM_176B, T.BloomConfig, T.BloomForCausalLM, 176_247_271_424),
    ("opt-125m", OPT_125M, T.OPTConfig, T.OPTForCausalLM, 125_239_296),
    ("opt-350m", OPT_350M, T.OPTConfig, T.OPTForCausalLM, 331_196_416),
]


@pytest.mark.parametrize(
    ("name", "raw", "cfg_cls", "cls", "published"), PUBLISHED, ids=[p[0] for p in PUBLISHED]
)
def test_published_configs_import_with_published_counts(
    name: str, raw: dict, cfg_cls: type, cls: type, published: int
) -> None:
    cfg = cfg_cls.from_dict(dict(raw))
    for form in (raw, cfg.to_dict()):  # the file as published, and as the config class gives it back
        spec = load_spec_from_config(form)
        assert spec.model.d_model == cfg.hidden_size
        assert archdsl.analyze(spec, seq_len=16).params_total == meta_params(cls, cfg) == published


def test_bloom_n_embed_disagreeing_with_hidden_size_refused() -> None:
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config({**BLOOM_560M, "n_embed": 2048})
    assert "hidden_size" in e.value.fields


def test_bloom_n_inner_other_than_4d_refused() -> None:
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config({**BLOOM_560M, "n_inner": 2048})
    assert e.value.fields == ["n_inner"]


TINY = {"vocab_size": 53, "max_position_embeddings": 64, "num_hidden_layers": 2, "dropout": 0.0}
OPT = {
    # no biases in the projections, but LayerNorm keeps its weight and bias (HF's nn.LayerNorm)
    "no_bias_affine": lambda: T.OPTForCausalLM(
        T.OPTConfig(hidden_size=24, num_attention_heads=3, ffn_dim=40, enable_bias=False, **TINY)
    ),
    "pre_no_final_norm": lambda: T.OPTForCausalLM(
        T.OPTConfig(hidden_size=24, num_attention_heads=3, ffn_dim=40, _remove_final_layer_norm=True, **TINY)
    ),
}


@pytest.mark.parametrize("name", sorted(OPT))
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_opt_variants_logits_params_and_greedy(name: str, scale: float) -> None:
    spec, _, _ = check_decoder(OPT[name], scale, 53, greedy=scale == 1.0)
    assert (spec.model.stacks[0].final_norm is None) == (name == "pre_no_final_norm")


@pytest.mark.parametrize("name", sorted(OPT))
def test_opt_variants_export_round_trip(name: str, tmp_path: Path) -> None:
    check_export(OPT[name], tmp_path, [ids(53)])


HUB = {
    # the hub's checkpoints hold the base model's names, without the task model's prefix
    "bloom": (
        lambda: T.BloomForCausalLM(T.BloomConfig(hidden_size=24, n_layer=2, n_head=6, vocab_size=53)),
        "transformer.",
    ),
    "opt": (
        lambda: T.OPTForCausalLM(
            T.OPTConfig(hidden_size=24, num_attention_heads=3, ffn_dim=40, word_embed_proj_dim=10, **TINY)
        ),
        "model.",
    ),
}


@pytest.mark.parametrize("name", sorted(HUB))
def test_unprefixed_hub_state_dicts_load(name: str) -> None:
    make, prefix = HUB[name]
    torch.manual_seed(0)
    hf = make().eval()
    perturb(hf, 2.0)
    state = {k[len(prefix) :]: v for k, v in hf.state_dict().items() if k.startswith(prefix)}
    spec = load_spec_from_config(hf.config.to_dict())
    ours = archdsl.build(spec).eval()
    load_hf_weights(ours, state)  # tied head: no lm_head.weight in the state
    x = ids(53)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=1e-4)


def gpt2() -> Any:
    return T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=24, n_head=3, vocab_size=53, n_positions=32))


@pytest.mark.parametrize(
    ("family", "make"),
    [
        ("bloom", HUB["bloom"][0]),
        ("opt", HUB["opt"][0]),
        ("opt", OPT["pre_no_final_norm"]),
        ("opt", OPT["no_bias_affine"]),
        ("gpt2", gpt2),
    ],
)
def test_exactly_one_family_claims(family: str, make: Any) -> None:
    spec, _ = ours_for(make().eval())
    claimed = sorted(f.model_type for f in FAMILIES.values() if f.claims is not None and f.claims(spec))
    assert claimed == [family]
