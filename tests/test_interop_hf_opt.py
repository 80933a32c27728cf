"""OPT: positions from row 2, pre-LN with a final norm or post-LN without (350m), a narrower token
table with project_in / project_out, LayerNorm without parameters — equal to OPTForCausalLM."""

from __future__ import annotations

from pathlib import Path

import pytest
from hf_cases import T, check_decoder, check_export, ids, meta_params

import archdsl
from archdsl.interop.hf import UnsupportedConfigError, load_spec_from_config, spec_from_config

TINY = {"vocab_size": 53, "max_position_embeddings": 64, "num_hidden_layers": 2, "dropout": 0.0}
CASES = {
    "pre": lambda: T.OPTForCausalLM(T.OPTConfig(hidden_size=24, num_attention_heads=3, ffn_dim=40, **TINY)),
    "post_projected": lambda: T.OPTForCausalLM(
        T.OPTConfig(
            hidden_size=24,
            num_attention_heads=6,
            ffn_dim=40,
            word_embed_proj_dim=10,
            do_layer_norm_before=False,
            **TINY,
        )
    ),
    "no_affine_no_bias": lambda: T.OPTForCausalLM(
        T.OPTConfig(
            hidden_size=24,
            num_attention_heads=3,
            ffn_dim=40,
            layer_norm_elementwise_affine=False,
            enable_bias=False,
            tie_word_embeddings=False,
            **TINY,
        )
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_opt_logits_params_and_greedy(name: str, scale: float) -> None:
    check_decoder(CASES[name], scale, 53, greedy=scale == 1.0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_opt_export_round_trip(name: str, tmp_path: Path) -> None:
    check_export(CASES[name], tmp_path, [ids(53)])


@pytest.mark.parametrize(
    ("name", "kw", "published"),
    [
        (
            "opt-350m",
            {
                "hidden_size": 1024,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "ffn_dim": 4096,
                "word_embed_proj_dim": 512,
                "do_layer_norm_before": False,
            },
            331_196_416,
        ),
        (
            "opt-125m",
            {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "ffn_dim": 3072},
            125_239_296,
        ),
    ],
)
def test_opt_full_size_parameter_counts(name: str, kw: dict, published: int) -> None:
    cfg = T.OPTConfig(vocab_size=50272, max_position_embeddings=2048, **kw)
    spec = load_spec_from_config(cfg.to_dict())
    assert archdsl.analyze(spec, seq_len=16).params_total == meta_params(T.OPTForCausalLM, cfg) == published


def test_opt_positions_start_at_row_two() -> None:
    text = spec_from_config(CASES["pre"]().config.to_dict())
    assert "learned(max_len = context, offset = 2)" in text


def test_opt_unknown_field_refused() -> None:
    cfg = {**CASES["pre"]().config.to_dict(), "some_new_switch": True}
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config(cfg)
    assert "some_new_switch" in e.value.fields
