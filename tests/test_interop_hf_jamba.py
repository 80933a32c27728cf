"""Hugging Face Jamba (``JambaForCausalLM``, its pure-PyTorch path): a hybrid of attention and Mamba
layers with mixtures of experts, imported from tiny odd configs (config and weights), gives HF's
logits and greedy tokens; export round trip; refusals by name; Jamba-v0.1's count (HF on the meta
device) equals specs/jamba_like.arch, which is what `import-hf` makes of that config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import transformers as T
from hf_cases import check_decoder, check_export, ids, meta_params

import archdsl
from archdsl.interop.hf import UnsupportedConfigError, config_from_spec, load_spec_from_config

SPECS = Path(__file__).resolve().parent.parent / "specs"

MODELS: dict[str, Callable[[], Any]] = {
    # attention in layers 1 and 4 (period 3), experts in odd layers; odd state, Δ rank, conv; five
    # query heads on one key/value head (HF's grouped expert matmul on CPU wants rows of whole 16-byte
    # multiples: widths divisible by 4)
    "odd": lambda: T.JambaForCausalLM(
        T.JambaConfig(
            vocab_size=53,
            hidden_size=20,
            intermediate_size=28,
            num_hidden_layers=5,
            num_attention_heads=5,
            num_key_value_heads=1,
            num_experts=3,
            num_experts_per_tok=2,
            attn_layer_period=3,
            attn_layer_offset=1,
            expert_layer_period=2,
            expert_layer_offset=1,
            mamba_d_state=5,
            mamba_d_conv=3,
            mamba_expand=1,
            mamba_dt_rank=3,
        )
    ),
    # Jamba-v0.1's layout in small: attention at 4 of 8, experts every other layer from 1; biases on
    # the Mamba projections, none on its convolution; eps 1e-5
    "period8": lambda: T.JambaForCausalLM(
        T.JambaConfig(
            vocab_size=53,
            hidden_size=16,
            intermediate_size=24,
            num_hidden_layers=8,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_experts=4,
            num_experts_per_tok=1,
            mamba_d_state=3,
            mamba_conv_bias=False,
            mamba_proj_bias=True,
            rms_norm_eps=1e-5,
        )
    ),
    # no mixture at all (one expert is a dense SwiGLU), attention first
    "dense": lambda: T.JambaForCausalLM(
        T.JambaConfig(
            vocab_size=53,
            hidden_size=12,
            intermediate_size=20,
            num_hidden_layers=4,
            num_attention_heads=3,
            num_key_value_heads=3,
            num_experts=1,
            attn_layer_period=2,
            attn_layer_offset=0,
            mamba_d_state=2,
            mamba_d_conv=2,
        )
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_logits_params_and_greedy(name: str, scale: float) -> None:
    """Batch 2, 13 tokens: logits within 1e-5 of HF's (fp32); the same 8 greedy tokens after a prompt
    of 5 (HF's cached decoding — its KV cache and Mamba states — against ours)."""
    check_decoder(MODELS[name], scale, 53, atol=1e-5)


def test_imported_spec_names_one_block_per_layer_kind() -> None:
    cfg = MODELS["odd"]().config.to_dict()
    spec = load_spec_from_config(cfg)
    st = spec.model.stacks[0]
    kinds = [
        (("mixer" if "mixer" in dict(b.sublayers) else "attn"), b.sublayer("mlp").kind) for b in st.layers
    ]
    assert kinds == [
        ("mixer", "swiglu"),
        ("attn", "moe"),
        ("mixer", "swiglu"),
        ("mixer", "moe"),
        ("attn", "swiglu"),
    ]
    mixer = st.layers[0].sublayer("mixer")
    assert (mixer["d_state"], mixer["d_conv"], mixer["expand"], mixer["dt_rank"]) == (5, 3, 1, 3)
    assert mixer["dt_bc_norm"] is True and st.position is None
    assert [b.label for b in st.layers] == [
        "mamba_mlp",
        "attention_moe",
        "mamba_mlp",
        "mamba_moe",
        "attention_mlp",
    ]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_round_trip(name: str, tmp_path: Path) -> None:
    check_export(MODELS[name], tmp_path, [ids(53)])


def test_export_claims_only_jamba() -> None:
    for name, make in MODELS.items():
        spec = load_spec_from_config(make().config.to_dict())
        assert config_from_spec(spec)["model_type"] == "jamba", name


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"sliding_window": 4}, "sliding_window"),
        ({"mamba_expand": 1.5}, "mamba_expand"),
        ({"attn_layer_offset": 3}, "attn_layer_offset"),
        ({"some_new_field": 1}, "some_new_field"),
    ],
)
def test_refused_by_name(change: dict[str, Any], field: str) -> None:
    cfg = {**MODELS["odd"]().config.to_dict(), **change}
    with pytest.raises(UnsupportedConfigError) as err:
        load_spec_from_config(cfg)
    assert field in err.value.fields


def test_jamba_v0_1_count_equals_the_shipped_spec() -> None:
    """Jamba-v0.1 (JambaConfig's defaults): HF on the meta device, the shipped spec's report and the
    imported config's spec — 51,570,323,328 parameters, 12,110,311,296 active per token (the paper's
    52B and 12B); the imported spec is the shipped spec's IR."""
    cfg = T.JambaConfig()
    n = meta_params(T.JambaForCausalLM, cfg)
    assert n == 51_570_323_328
    shipped = archdsl.load(SPECS / "jamba_like.arch")
    r = archdsl.analyze(shipped, seq_len=4096, dtype="bf16")
    assert r.params_total == n and r.params()["active"] == 12_110_311_296
    imported = load_spec_from_config(cfg.to_dict())
    assert dataclasses.replace(imported.model, name="jamba_like") == shipped.model
    # decoding: 4 attention layers' keys and values (2 x 8 heads x 128 x 2 bytes a position each) and
    # 28 Mamba states of E (k - 1 + N) = 8192 x 19 numbers, whatever the context
    assert r.memory["kv_cache_bytes"] == 4 * 2 * 8 * 128 * 2 * 4096 + 28 * 8192 * 19 * 2


def test_state_and_cache_bytes_equal_what_decoding_allocates() -> None:
    """The hybrid's decoding memory: KV caches for its attention layers, states for its Mamba layers,
    exactly what the report counts."""
    from test_decode import cache_modules

    spec, ours, _ = check_decoder(MODELS["odd"], 1.0, 53, greedy=False, atol=1e-5)
    ours.setup_cache(2, 13)
    allocated = sum(b.numel() * b.element_size() for m in cache_modules(ours) for b in m.buffers())
    assert {type(m).__name__ for m in cache_modules(ours)} == {"KVCache", "MambaState"}
    ours.clear_cache()
    assert allocated == archdsl.analyze(spec, batch=2, seq_len=13).memory["kv_cache_bytes"]
