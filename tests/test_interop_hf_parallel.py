"""archdsl.interop.hf for the LayerNorm + RoPE decoders with parallel blocks: GPT-NeoX (Pythia), GPT-J,
Phi and Falcon — tiny odd random models agree with ours (logits, parameters, greedy tokens, export),
and full-size configs count the same parameters as the HF classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import transformers
from hf_cases import check_decoder, check_export, ids, meta_params

import archdsl
from archdsl.interop.hf import UnsupportedConfigError, load_spec_from_config

T = transformers
SMALL = {"vocab_size": 53, "num_hidden_layers": 2, "hidden_size": 24}


def neox(parallel: bool) -> Callable[[], Any]:
    return lambda: T.GPTNeoXForCausalLM(
        T.GPTNeoXConfig(
            **SMALL,
            num_attention_heads=3,
            intermediate_size=40,
            max_position_embeddings=64,
            use_parallel_residual=parallel,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        )
    )


def falcon(**kw: Any) -> Callable[[], Any]:
    return lambda: T.FalconForCausalLM(
        T.FalconConfig(**SMALL, max_position_embeddings=64, ffn_hidden_size=40, **kw)
    )


CASES: dict[str, Callable[[], Any]] = {
    "neox_parallel": neox(True),
    "neox_sequential": neox(False),
    "gptj": lambda: T.GPTJForCausalLM(
        T.GPTJConfig(n_embd=24, n_head=3, n_layer=2, vocab_size=53, n_positions=64, rotary_dim=4, n_inner=40)
    ),
    "phi": lambda: T.PhiForCausalLM(
        T.PhiConfig(
            **SMALL,
            num_attention_heads=3,
            intermediate_size=40,
            max_position_embeddings=64,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        )
    ),
    "phi_gqa": lambda: T.PhiForCausalLM(
        T.PhiConfig(
            **SMALL,
            num_attention_heads=6,
            num_key_value_heads=3,
            intermediate_size=40,
            max_position_embeddings=64,
            tie_word_embeddings=True,
        )
    ),
    "falcon_mq_parallel": falcon(num_attention_heads=3, multi_query=True, parallel_attn=True),
    "falcon_new": falcon(
        num_attention_heads=6,
        num_kv_heads=3,
        new_decoder_architecture=True,
        bias=True,
        tie_word_embeddings=False,
    ),
    "falcon_new_one_norm": falcon(
        num_attention_heads=6, num_kv_heads=3, new_decoder_architecture=True, num_ln_in_parallel_attn=1
    ),
    # with bias = true this block is GPT-NeoX's sequential one, which export writes as gpt_neox
    "falcon_sequential": falcon(num_attention_heads=3, multi_query=False, parallel_attn=False),
    "falcon_mq_sequential": falcon(num_attention_heads=3, multi_query=True, parallel_attn=False, bias=True),
}


@pytest.mark.parametrize("scale", [1.0, 8.0])
@pytest.mark.parametrize("name", list(CASES))
def test_decoder(name: str, scale: float) -> None:
    check_decoder(CASES[name], scale, 53)


@pytest.mark.parametrize("name", list(CASES))
def test_export(name: str, tmp_path: Path) -> None:
    check_export(CASES[name], tmp_path, [ids(53)])


def test_placements() -> None:
    def placement(name: str) -> str:
        from archdsl.interop.hf.base import placement_of

        spec = load_spec_from_config(CASES[name]().config.to_dict())
        return str(placement_of(spec.model.stacks[0].layers[0]))

    assert placement("neox_parallel") == "parallel"
    assert placement("neox_sequential") == "pre"
    assert placement("gptj") == "parallel_shared"
    assert placement("phi") == "parallel_shared"
    assert placement("falcon_mq_parallel") == "parallel_shared"
    assert placement("falcon_new") == "parallel"
    assert placement("falcon_sequential") == "pre"


FULL: dict[str, tuple[type, Callable[[], Any]]] = {
    "gpt-neox-20b": (
        T.GPTNeoXForCausalLM,
        lambda: T.GPTNeoXConfig(
            hidden_size=6144,
            num_hidden_layers=44,
            num_attention_heads=64,
            intermediate_size=24576,
            vocab_size=50432,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        ),
    ),
    "pythia-160m": (
        T.GPTNeoXForCausalLM,
        lambda: T.GPTNeoXConfig(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            vocab_size=50304,
            max_position_embeddings=2048,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        ),
    ),
    "gpt-j-6b": (T.GPTJForCausalLM, lambda: T.GPTJConfig()),
    "phi-2": (
        T.PhiForCausalLM,
        lambda: T.PhiConfig(
            hidden_size=2560,
            intermediate_size=10240,
            num_hidden_layers=32,
            num_attention_heads=32,
            vocab_size=51200,
            max_position_embeddings=2048,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.4},
        ),
    ),
    "falcon-7b": (
        T.FalconForCausalLM,
        lambda: T.FalconConfig(
            hidden_size=4544,
            num_attention_heads=71,
            num_hidden_layers=32,
            vocab_size=65024,
            multi_query=True,
            parallel_attn=True,
            new_decoder_architecture=False,
            bias=False,
        ),
    ),
}


@pytest.mark.parametrize("name", list(FULL))
def test_full_size_params(name: str) -> None:
    cls, make = FULL[name]
    cfg = make()
    spec = load_spec_from_config(cfg.to_dict())
    assert archdsl.analyze(spec, seq_len=16).params_total == meta_params(cls, cfg)


def test_partial_rotary_channels() -> None:
    """Ours rotates the first int(head_dim * fraction) // 2 * 2 channels of each head, as HF does."""
    spec = load_spec_from_config(CASES["gptj"]().config.to_dict())
    model = archdsl.build(spec)
    rot = next(m for m in model.modules() if type(m).__name__ == "RotaryEmbedding")
    assert rot.rot == 4 and rot.interleaved
    spec = load_spec_from_config(CASES["phi"]().config.to_dict())
    rot = next(m for m in archdsl.build(spec).modules() if type(m).__name__ == "RotaryEmbedding")
    assert rot.rot == 4 and not rot.interleaved


def test_refusals() -> None:
    cfg = T.FalconConfig(**SMALL, num_attention_heads=3, alibi=True).to_dict()
    with pytest.raises(UnsupportedConfigError) as e:
        load_spec_from_config(cfg)
    assert "alibi" in e.value.fields
    cfg = T.PhiConfig(**SMALL, num_attention_heads=3, intermediate_size=40, qk_layernorm=True).to_dict()
    with pytest.raises(UnsupportedConfigError) as e:
        load_spec_from_config(cfg)
    assert "qk_layernorm" in e.value.fields


LEGACY = {  # config.json as the Hub has them (transformers 4 spellings)
    "pythia-160m": {
        "architectures": ["GPTNeoXForCausalLM"],
        "bos_token_id": 0,
        "eos_token_id": 0,
        "hidden_act": "gelu",
        "hidden_size": 768,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 2048,
        "model_type": "gpt_neox",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "rotary_emb_base": 10000,
        "rotary_pct": 0.25,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.24.0",
        "use_cache": True,
        "use_parallel_residual": True,
        "vocab_size": 50304,
    },
    "gpt-j-6b": {
        "activation_function": "gelu_new",
        "architectures": ["GPTJForCausalLM"],
        "attn_pdrop": 0.0,
        "bos_token_id": 50256,
        "embd_pdrop": 0.0,
        "eos_token_id": 50256,
        "gradient_checkpointing": False,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gptj",
        "n_embd": 4096,
        "n_head": 16,
        "n_inner": None,
        "n_layer": 28,
        "n_positions": 2048,
        "resid_pdrop": 0.0,
        "rotary": True,
        "rotary_dim": 64,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "tie_word_embeddings": False,
        "tokenizer_class": "GPT2Tokenizer",
        "transformers_version": "4.18.0.dev0",
        "use_cache": True,
        "vocab_size": 50400,
    },
    "phi-2": {
        "architectures": ["PhiForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 50256,
        "embd_pdrop": 0.0,
        "eos_token_id": 50256,
        "hidden_act": "gelu_new",
        "hidden_size": 2560,
        "initializer_range": 0.02,
        "intermediate_size": 10240,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 2048,
        "model_type": "phi",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "partial_rotary_factor": 0.4,
        "qk_layernorm": False,
        "resid_pdrop": 0.1,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.37.0",
        "use_cache": True,
        "vocab_size": 51200,
    },
    "falcon-7b": {
        "alibi": False,
        "apply_residual_connection_post_layernorm": False,
        "architectures": ["FalconForCausalLM"],
        "attention_dropout": 0.0,
        "bias": False,
        "bos_token_id": 11,
        "eos_token_id": 11,
        "hidden_dropout": 0.0,
        "hidden_size": 4544,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "falcon",
        "multi_query": True,
        "new_decoder_architecture": False,
        "num_attention_heads": 71,
        "num_hidden_layers": 32,
        "parallel_attn": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.27.4",
        "use_cache": True,
        "vocab_size": 65024,
    },
}


@pytest.mark.parametrize("name", list(LEGACY))
def test_legacy_configs(name: str) -> None:
    """transformers 4 config.json files read as the same model as transformers 5's configs."""
    cls, make = FULL[name]
    spec = load_spec_from_config(LEGACY[name])
    assert spec.model == load_spec_from_config(make().to_dict()).model
    assert archdsl.analyze(spec, seq_len=16).params_total == meta_params(cls, make())


@pytest.mark.parametrize("name", list(CASES))
def test_one_family_claims(name: str) -> None:
    from archdsl.interop.hf import FAMILIES

    spec = load_spec_from_config(CASES[name]().config.to_dict())
    claimed = [f.model_type for f in FAMILIES.values() if f.claims is not None and f.claims(spec)]
    assert len(claimed) == 1, claimed
