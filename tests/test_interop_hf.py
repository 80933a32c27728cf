"""archdsl.interop.hf: Hugging Face configs become specs, HF weights load into the built models, and
the logits, parameter counts and greedy tokens agree; decoders export back to HF checkpoints."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from conftest import ROOT
from hf_cases import ids, numel, ours_for, perturb

import archdsl
from archdsl.cli import main
from archdsl.interop.hf import (
    UnsupportedConfigError,
    WeightMismatchError,
    export_hf,
    load_hf_weights,
    load_spec_from_config,
    spec_from_config,
)

T = transformers


def gemma2() -> Any:
    return T.Gemma2ForCausalLM(
        T.Gemma2Config(
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=4,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=10,
            vocab_size=53,
            max_position_embeddings=64,
            sliding_window=4,
            query_pre_attn_scalar=12,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
            attn_implementation="eager",
        )
    )


COMMON = {
    "vocab_size": 53,
    "max_position_embeddings": 64,
    "num_hidden_layers": 2,
    "tie_word_embeddings": False,
}
DECODERS: dict[str, Callable[[], Any]] = {
    "gpt2": lambda: T.GPT2LMHeadModel(
        T.GPT2Config(
            n_layer=2, n_embd=24, n_head=3, vocab_size=53, n_positions=32, bos_token_id=0, eos_token_id=0
        )
    ),
    "llama": lambda: T.LlamaForCausalLM(
        T.LlamaConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=10,
            rope_theta=500000.0,
            **COMMON,
        )
    ),
    "llama_bias": lambda: T.LlamaForCausalLM(
        T.LlamaConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=6,
            num_key_value_heads=3,
            attention_bias=True,
            mlp_bias=True,
            **COMMON,
        )
    ),
    "llama3_scaling": lambda: T.LlamaForCausalLM(
        T.LlamaConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=3,
            **COMMON,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
                "rope_theta": 500000.0,
            },
        )
    ),
    "llama_linear": lambda: T.LlamaForCausalLM(
        T.LlamaConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            **COMMON,
            rope_scaling={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
        )
    ),
    "mistral": lambda: T.MistralForCausalLM(
        T.MistralConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=10,
            sliding_window=4,
            **COMMON,
        )
    ),
    "mixtral": lambda: T.MixtralForCausalLM(
        T.MixtralConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=10,
            num_local_experts=3,
            num_experts_per_tok=2,
            **COMMON,
        )
    ),
    "qwen2": lambda: T.Qwen2ForCausalLM(
        T.Qwen2Config(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            **{**COMMON, "tie_word_embeddings": True},
        )
    ),
    "gemma2": gemma2,
    "qwen3": lambda: T.Qwen3ForCausalLM(
        T.Qwen3Config(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=10,
            **COMMON,
        )
    ),
    "qwen3_window_bias": lambda: T.Qwen3ForCausalLM(
        T.Qwen3Config(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=6,
            num_key_value_heads=3,
            head_dim=6,
            attention_bias=True,
            use_sliding_window=True,
            sliding_window=4,
            max_window_layers=1,
            **{**COMMON, "tie_word_embeddings": True},
        )
    ),
    "olmo2": lambda: T.Olmo2ForCausalLM(
        T.Olmo2Config(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=6,
            num_key_value_heads=3,
            **COMMON,
        )
    ),
    "olmo": lambda: T.OlmoForCausalLM(
        T.OlmoConfig(
            hidden_size=24, intermediate_size=40, num_attention_heads=3, num_key_value_heads=1, **COMMON
        )
    ),
    "gemma": lambda: T.GemmaForCausalLM(
        T.GemmaConfig(
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=10,
            **{**COMMON, "tie_word_embeddings": True},
        )
    ),
}


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_decoder_logits_params_and_greedy(name: str, scale: float) -> None:
    torch.manual_seed(0)
    hf = DECODERS[name]().eval()
    perturb(hf, scale)
    spec, ours = ours_for(hf)
    assert numel(ours) == numel(hf)
    assert archdsl.analyze(spec, seq_len=13).params_total == numel(hf)
    x = ids(53)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=1e-4)
    if scale == 1.0:
        prompt = x[:, :5]
        with torch.no_grad():
            got = ours.generate(prompt, 8, temperature=0)
            want = hf.generate(
                prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0
            )
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_export_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = DECODERS[name]().eval()
    perturb(hf, 2.0)
    spec, ours = ours_for(hf)
    export_hf(ours, spec, tmp_path)
    back = T.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(back) is type(hf)
    x = ids(53)
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, ours(x), atol=1e-4, rtol=1e-4)
    again = load_spec_from_config(back.config.to_dict()).model  # the same IR (named after the folder)
    assert dataclasses.replace(again, name=spec.model.name) == spec.model


def bert() -> Any:
    return T.BertModel(
        T.BertConfig(
            vocab_size=53,
            hidden_size=24,
            num_hidden_layers=2,
            num_attention_heads=3,
            intermediate_size=40,
            max_position_embeddings=32,
        )
    )


def vit() -> Any:
    return T.ViTForImageClassification(
        T.ViTConfig(
            image_size=24,
            patch_size=8,
            hidden_size=24,
            num_hidden_layers=2,
            num_attention_heads=3,
            intermediate_size=40,
            num_labels=7,
        )
    )


def t5(proj: str = "relu", tied: bool = True) -> Any:
    return T.T5ForConditionalGeneration(
        T.T5Config(
            vocab_size=53,
            d_model=24,
            d_kv=10,
            d_ff=40,
            num_layers=2,
            num_decoder_layers=3,
            num_heads=3,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            feed_forward_proj=proj,
            tie_word_embeddings=tied,
            dropout_rate=0.0,
            decoder_start_token_id=0,
        )
    )


ENCODERS: dict[str, tuple[Callable[[], Any], Callable[..., torch.Tensor]]] = {
    "bert": (bert, lambda hf, x: hf(x).pooler_output),
    "vit": (vit, lambda hf, x: hf(x).logits),
    "t5": (t5, lambda hf, s, t: hf(input_ids=s, decoder_input_ids=t).logits),
    "flan_t5": (
        lambda: t5("gated-gelu", tied=False),
        lambda hf, s, t: hf(input_ids=s, decoder_input_ids=t).logits,
    ),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_encoder_families(name: str, scale: float) -> None:
    torch.manual_seed(0)
    make, out = ENCODERS[name]
    hf = make().eval()
    # T5's scores are unscaled (no 1 / sqrt(d)): x2 already makes them peaked; at x8 fp32 rounding
    # of the large logits passes 1e-4
    perturb(hf, min(scale, 2.0) if "t5" in name else scale)
    spec, ours = ours_for(hf)
    assert numel(ours) == numel(hf)
    if name == "vit":
        inputs = [torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))]
        assert archdsl.analyze(spec).params_total == numel(hf)
    elif "t5" in name:
        inputs = [ids(53, t=9), ids(53, t=7)]
        assert archdsl.analyze(spec, seq_len=7, src_len=9).params_total == numel(hf)
    else:
        inputs = [ids(53)]
        assert archdsl.analyze(spec, seq_len=13).params_total == numel(hf)
    with torch.no_grad():
        torch.testing.assert_close(ours(*inputs), out(hf, *inputs), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling.rope_type"),
        ({"qk_norm": True}, "qk_norm"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"model_type": "xlnet"}, "model_type"),
        ({"model_type": "nonesuch"}, "model_type"),
    ],
)
def test_unsupported_fields_are_refused_by_name(change: dict[str, Any], field: str) -> None:
    cfg = {**DECODERS["llama"]().config.to_dict(), **change}
    cfg.pop("rope_parameters") if "rope_scaling" in change else None
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config(cfg)
    assert field in e.value.fields and e.value.diagnostics[0].code == "E021"


def test_mistral_attention_bias_is_refused() -> None:
    cfg = {**DECODERS["mistral"]().config.to_dict(), "attention_bias": True}
    with pytest.raises(UnsupportedConfigError, match="attention_bias"):
        spec_from_config(cfg)


def test_weights_from_files_and_mismatches_listed(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    hf = DECODERS["llama"]().eval()
    spec = load_spec_from_config(hf.config.to_dict())
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    ours = archdsl.build(spec).eval()
    load_hf_weights(ours, tmp_path)  # a folder
    torch.save(state, tmp_path / "pytorch_model.bin")
    load_hf_weights(archdsl.build(spec), tmp_path / "pytorch_model.bin")
    x = ids(53)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=1e-4)
    bad = dict(state)
    del bad["model.layers.1.mlp.up_proj.weight"]
    bad["model.layers.0.extra.weight"] = torch.zeros(1)
    bad["model.norm.weight"] = torch.zeros(7)
    with pytest.raises(WeightMismatchError) as e:
        load_hf_weights(archdsl.build(spec), bad)
    msg = str(e.value)
    assert (
        "model.layers.1.mlp.up_proj.weight" in msg
        and "model.layers.0.extra.weight" in msg
        and "ln_f.weight" in msg
    )


def test_cli_import_hf(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(gemma2().config.to_dict()))
    out = tmp_path / "g.arch"
    assert main(["import-hf", str(cfg), "-o", str(out)]) == 0
    assert "layers     = [local, global] * (n_layers / 2)" in out.read_text()
    assert archdsl.check(out) == []
    assert main(["import-hf", str(cfg), "-o", str(tmp_path / "g.yaml")]) == 0
    assert archdsl.load(tmp_path / "g.yaml").model == archdsl.load(out).model
    cfg.write_text(json.dumps({"model_type": "xlnet"}))
    assert main(["import-hf", str(cfg)]) == 1
    assert main(["import-hf", str(tmp_path / "missing.json")]) == 2
    cfg.write_text("{not json")
    assert main(["import-hf", str(cfg)]) == 2


def test_importing_archdsl_interop_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, archdsl, archdsl.interop.hf as h\n"
        "h.spec_from_config({'model_type': 'gpt2', 'n_embd': 8, 'n_head': 2, 'n_layer': 1, 'vocab_size': 9,"
        " 'n_positions': 8})\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]\n"
        "assert not bad, bad[:5]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


FULL_SIZE = {
    # published configs (transformers config classes, offline); counts from the HF model on meta
    "qwen2_7b": lambda: T.Qwen2Config(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=131072,
        tie_word_embeddings=False,
    ),
    "qwen3_8b": lambda: T.Qwen3Config(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        tie_word_embeddings=False,
    ),
    "gemma_2_2b": lambda: T.Gemma2Config(
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        vocab_size=256000,
        query_pre_attn_scalar=256,
        sliding_window=4096,
    ),
    "gemma_2b": lambda: T.GemmaConfig(
        hidden_size=2048,
        intermediate_size=16384,
        num_hidden_layers=18,
        num_attention_heads=8,
        num_key_value_heads=1,
        head_dim=256,
        vocab_size=256000,
    ),
    "olmo_1b": lambda: T.OlmoConfig(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=16,
        vocab_size=50304,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    ),
}
PUBLISHED = {
    "qwen2_7b": 7_615_616_512,
    "qwen3_8b": 8_190_735_360,
    "gemma_2_2b": 2_614_341_888,
    "gemma_2b": 2_506_172_416,
    "olmo_1b": 1_176_764_416,
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_report_params_equal_hf(name: str) -> None:
    cfg = FULL_SIZE[name]()
    with torch.device("meta"):
        hf = T.AutoModelForCausalLM.from_config(cfg)
    n = numel(hf)
    spec = load_spec_from_config(cfg.to_dict())
    assert archdsl.analyze(spec, seq_len=16).params_total == n == PUBLISHED[name]
