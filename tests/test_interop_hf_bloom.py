"""BLOOM: ALiBi (slopes for head counts that are not powers of 2 too), the embedding LayerNorm and
the per-head interleaved query_key_value — equal to BloomForCausalLM."""

from __future__ import annotations

from pathlib import Path

import pytest
from hf_cases import T, check_decoder, check_export, ids, meta_params

import archdsl
from archdsl.interop.hf import UnsupportedConfigError, load_spec_from_config, spec_from_config

CASES = {
    "heads3": lambda: T.BloomForCausalLM(T.BloomConfig(hidden_size=24, n_layer=2, n_head=3, vocab_size=53)),
    "heads6_untied": lambda: T.BloomForCausalLM(
        T.BloomConfig(hidden_size=24, n_layer=2, n_head=6, vocab_size=53, tie_word_embeddings=False)
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_bloom_logits_params_and_greedy(name: str, scale: float) -> None:
    check_decoder(CASES[name], scale, 53, greedy=scale == 1.0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bloom_export_round_trip(name: str, tmp_path: Path) -> None:
    check_export(CASES[name], tmp_path, [ids(53)])


def test_bloom_560m_parameter_count() -> None:
    cfg = T.BloomConfig(hidden_size=1024, n_layer=24, n_head=16, vocab_size=250880)
    spec = load_spec_from_config(cfg.to_dict())
    assert (
        archdsl.analyze(spec, seq_len=16).params_total == meta_params(T.BloomForCausalLM, cfg) == 559_214_592
    )


def test_bloom_post_layernorm_residual_refused() -> None:
    cfg = {**CASES["heads3"]().config.to_dict(), "apply_residual_connection_post_layernorm": True}
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config(cfg)
    assert "apply_residual_connection_post_layernorm" in e.value.fields
