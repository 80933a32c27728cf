"""Hugging Face import/export of the Llama-layout families Qwen 3, OLMo 1, OLMo 2 and Gemma 1: tiny odd
random models (logits, parameters, greedy tokens, export round trip), refusals by name, and the
parameter counts of the published sizes against HF built on the meta device."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import transformers as T
from hf_cases import check_decoder, check_export, ids, meta_params

import archdsl
from archdsl.interop.hf import UnsupportedConfigError, config_from_spec, load_spec_from_config

TINY = {"vocab_size": 53, "num_hidden_layers": 2, "max_position_embeddings": 64, "hidden_size": 24}

MODELS: dict[str, Callable[[], Any]] = {
    "qwen3": lambda: T.Qwen3ForCausalLM(
        T.Qwen3Config(intermediate_size=40, num_attention_heads=3, num_key_value_heads=1, head_dim=10, **TINY)
    ),
    "qwen3_tied_bias": lambda: T.Qwen3ForCausalLM(
        T.Qwen3Config(
            intermediate_size=36,
            num_attention_heads=6,
            num_key_value_heads=3,
            head_dim=6,
            attention_bias=True,
            tie_word_embeddings=True,
            **TINY,
        )
    ),
    "olmo": lambda: T.OlmoForCausalLM(
        T.OlmoConfig(intermediate_size=40, num_attention_heads=3, num_key_value_heads=1, **TINY)
    ),
    "olmo_tied": lambda: T.OlmoForCausalLM(
        T.OlmoConfig(
            intermediate_size=36,
            num_attention_heads=6,
            num_key_value_heads=3,
            tie_word_embeddings=True,
            **TINY,
        )
    ),
    "olmo2": lambda: T.Olmo2ForCausalLM(
        T.Olmo2Config(intermediate_size=40, num_attention_heads=6, num_key_value_heads=3, **TINY)
    ),
    "olmo2_odd": lambda: T.Olmo2ForCausalLM(
        T.Olmo2Config(
            intermediate_size=36,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=10,
            tie_word_embeddings=True,
            **TINY,
        )
    ),
    "gemma": lambda: T.GemmaForCausalLM(
        T.GemmaConfig(intermediate_size=40, num_attention_heads=3, num_key_value_heads=1, head_dim=10, **TINY)
    ),
    "gemma_untied": lambda: T.GemmaForCausalLM(
        T.GemmaConfig(
            intermediate_size=36,
            num_attention_heads=6,
            num_key_value_heads=3,
            head_dim=10,
            tie_word_embeddings=False,
            **TINY,
        )
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_logits_params_and_greedy(name: str, scale: float) -> None:
    check_decoder(MODELS[name], scale, 53)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_round_trip(name: str, tmp_path: Path) -> None:
    check_export(MODELS[name], tmp_path, [ids(53)])


def test_export_claims_are_exclusive() -> None:
    for name, make in MODELS.items():
        cfg = make().config.to_dict()
        assert config_from_spec(load_spec_from_config(cfg))["model_type"] == cfg["model_type"], name


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: T.OlmoConfig(clip_qkv=8.0, **TINY), "clip_qkv"),
        (lambda: T.Qwen3Config(hidden_act="gelu", **TINY), "hidden_act"),
        (lambda: T.Olmo2Config(hidden_act="gelu", **TINY), "hidden_act"),
        (lambda: T.GemmaConfig(hidden_act="silu", **TINY), "hidden_act"),
    ],
)
def test_refused_by_name(make: Callable[[], Any], field: str) -> None:
    with pytest.raises(UnsupportedConfigError) as err:
        load_spec_from_config(make().to_dict())
    assert field in err.value.fields


FULL: dict[str, tuple[type, Callable[[], Any]]] = {
    "qwen3_8b": (
        T.Qwen3ForCausalLM,
        lambda: T.Qwen3Config(
            vocab_size=151936,
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=36,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=40960,
            tie_word_embeddings=False,
        ),
    ),
    "olmo_1b": (
        T.OlmoForCausalLM,
        lambda: T.OlmoConfig(
            vocab_size=50304,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=16,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        ),
    ),
    "olmo2_7b": (
        T.Olmo2ForCausalLM,
        lambda: T.Olmo2Config(
            vocab_size=100352,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            max_position_embeddings=4096,
            tie_word_embeddings=False,
        ),
    ),
    "gemma_7b": (
        T.GemmaForCausalLM,
        lambda: T.GemmaConfig(
            vocab_size=256000,
            hidden_size=3072,
            intermediate_size=24576,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=16,
            head_dim=256,
        ),
    ),
    "gemma_2b": (
        T.GemmaForCausalLM,
        lambda: T.GemmaConfig(
            vocab_size=256000,
            hidden_size=2048,
            intermediate_size=16384,
            num_hidden_layers=18,
            num_attention_heads=8,
            num_key_value_heads=1,
            head_dim=256,
        ),
    ),
    "qwen2_7b": (
        T.Qwen2ForCausalLM,
        lambda: T.Qwen2Config(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            tie_word_embeddings=False,
        ),
    ),
    "gemma2_2b": (
        T.Gemma2ForCausalLM,
        lambda: T.Gemma2Config(
            vocab_size=256000,
            hidden_size=2304,
            intermediate_size=9216,
            num_hidden_layers=26,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=256,
            query_pre_attn_scalar=256,
            sliding_window=4096,
        ),
    ),
}
KNOWN = {"qwen3_8b": 8_190_735_360, "olmo_1b": 1_176_764_416}


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_params_equal_hf(name: str) -> None:
    cls, make = FULL[name]
    cfg = make()
    n = meta_params(cls, cfg)
    assert archdsl.analyze(load_spec_from_config(cfg.to_dict()), seq_len=16).params_total == n
    if name in KNOWN:
        assert n == KNOWN[name]
