"""Hugging Face Mamba (``MambaForCausalLM``, its pure-PyTorch path): tiny odd random models imported
(config and weights) give HF's logits and greedy tokens; export round trip; refusals by name; the
published sizes' parameter counts (HF built on the meta device) equal to specs/mamba_130m.arch and
specs/mamba_2_8b.arch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as T
from hf_cases import check_decoder, check_export, ids, meta_params, ours_for, perturb

import archdsl
from archdsl.interop.hf import UnsupportedConfigError, config_from_spec, load_spec_from_config

SPECS = Path(__file__).resolve().parent.parent / "specs"

MODELS: dict[str, Callable[[], Any]] = {
    # odd width, expand, state, conv width and Δ rank; several layers
    "odd": lambda: T.MambaForCausalLM(
        T.MambaConfig(
            vocab_size=53,
            hidden_size=15,
            num_hidden_layers=3,
            state_size=5,
            expand=3,
            conv_kernel=3,
            time_step_rank=4,
        )
    ),
    "biased_untied": lambda: T.MambaForCausalLM(
        T.MambaConfig(
            vocab_size=53,
            hidden_size=21,
            num_hidden_layers=2,
            state_size=7,
            expand=1,
            conv_kernel=5,
            time_step_rank="auto",  # ceil(21 / 16) = 2
            use_bias=True,
            use_conv_bias=False,
            tie_word_embeddings=False,
            layer_norm_epsilon=1e-6,
        )
    ),
    "conv1": lambda: T.MambaForCausalLM(
        T.MambaConfig(
            vocab_size=53, hidden_size=9, num_hidden_layers=4, state_size=1, expand=2, conv_kernel=1
        )
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_logits_params_and_greedy(name: str, scale: float) -> None:
    """Batch 2, 13 tokens: logits within 1e-5 of HF's (fp32), and the same 8 greedy tokens after a
    prompt of 5 (HF's cached decoding against ours)."""
    check_decoder(MODELS[name], scale, 53, atol=1e-5)


def test_left_padded_batch_gives_hf_logits() -> None:
    """HF zeroes padding's inputs to the convolution and the scan; ours also sets Δ = 0 there. With
    left padding (the state is still zero) the two agree."""
    torch.manual_seed(0)
    hf = MODELS["odd"]().eval()
    perturb(hf)
    _, ours = ours_for(hf)
    x = ids(53)
    mask = torch.ones_like(x)
    mask[0, :4] = 0
    with torch.no_grad():
        got = ours(x, attention_mask=mask)
        want = hf(x, attention_mask=mask).logits
    torch.testing.assert_close(got[:, 4:], want[:, 4:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-4)


def test_imported_spec() -> None:
    cfg = MODELS["biased_untied"]().config.to_dict()
    text = archdsl.interop.hf.spec_from_config(cfg)
    assert "position   = none" in text and "ffn       = none" in text
    spec = load_spec_from_config(cfg)
    st = spec.model.stacks[0]
    assert [[n for n, _ in b.sublayers] for b in st.layers] == [["ln_1", "mixer"]] * 2
    mixer = st.layers[0].sublayer("mixer")
    assert (mixer["d_state"], mixer["d_conv"], mixer["expand"], mixer["dt_rank"]) == (7, 5, 1, 2)
    assert (mixer["conv_bias"], mixer["bias"]) == (False, True)
    assert st.layers[0].sublayer("ln_1")["eps"] == st.final_norm["eps"] == 1e-6
    assert spec.model.head["tied"] is False


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_round_trip(name: str, tmp_path: Path) -> None:
    check_export(MODELS[name], tmp_path, [ids(53)])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"intermediate_size": 40}, "intermediate_size"),
        ({"rms_norm": False}, "rms_norm"),
        ({"n_layer": 7}, "n_layer"),
        ({"expand": 1.5}, "expand"),
        ({"ssm_cfg": {}}, "ssm_cfg"),
    ],
)
def test_refused_by_name(change: dict[str, Any], field: str) -> None:
    cfg = {**MODELS["odd"]().config.to_dict(), **change}
    with pytest.raises(UnsupportedConfigError) as err:
        load_spec_from_config(cfg)
    assert field in err.value.fields


def test_published_config_fields_are_read() -> None:
    """The Hub's mamba-*-hf config.json files carry the original repository's spellings too."""
    cfg = {**MODELS["odd"]().config.to_dict(), "n_layer": 3, "rms_norm": True, "fused_add_norm": True}
    assert load_spec_from_config(cfg).model == load_spec_from_config(MODELS["odd"]().config.to_dict()).model


def test_export_claims_only_mamba() -> None:
    for name, make in MODELS.items():
        spec = load_spec_from_config(make().config.to_dict())
        assert config_from_spec(spec)["model_type"] == "mamba", name


def test_hybrid_is_not_exported(tmp_path: Path) -> None:
    """Mamba layers mixed with attention layers: no Hugging Face class has that model (Jamba's
    blocks differ), so no family claims it."""
    from test_kinds_ssm import HYBRID

    p = tmp_path / "hybrid.arch"
    p.write_text(HYBRID.format(d=24, position="none"))
    with pytest.raises(ValueError, match="not in an exportable"):
        config_from_spec(archdsl.load(p))


FULL = {
    "mamba_130m": dict(hidden_size=768, num_hidden_layers=24, vocab_size=50280),
    "mamba_2_8b": dict(hidden_size=2560, num_hidden_layers=64, vocab_size=50280),
}
PUBLISHED = {"mamba_130m": 129_135_360, "mamba_2_8b": 2_768_345_600}


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_counts_equal_hf_and_the_shipped_specs(name: str) -> None:
    """HF MambaForCausalLM(MambaConfig(...)) on the meta device, the shipped spec's report, and the
    imported config's spec: the same count; the imported spec is the shipped spec's IR."""
    cfg = T.MambaConfig(**FULL[name])
    n = meta_params(T.MambaForCausalLM, cfg)
    assert n == PUBLISHED[name]
    shipped = archdsl.load(SPECS / f"{name}.arch")
    assert archdsl.analyze(shipped, seq_len=2048).params_total == n
    imported = load_spec_from_config(cfg.to_dict())
    assert imported.model.stacks == shipped.model.stacks
    assert archdsl.analyze(imported, seq_len=16).params_total == n


# -- Mamba-2 (Mamba2ForCausalLM's torch path) -------------------------------------------------------

MODELS2: dict[str, Callable[[], Any]] = {
    # odd width; 5 heads of 6 in 5 groups; 13 tokens in chunks of 4 (several, the last padded)
    "odd": lambda: T.Mamba2ForCausalLM(
        T.Mamba2Config(
            vocab_size=53,
            hidden_size=15,
            num_hidden_layers=3,
            expand=2,
            num_heads=5,
            head_dim=6,
            n_groups=5,
            state_size=3,
            conv_kernel=3,
            chunk_size=4,
        )
    ),
    "grouped_tied_biased": lambda: T.Mamba2ForCausalLM(
        T.Mamba2Config(
            vocab_size=53,
            hidden_size=16,
            num_hidden_layers=2,
            expand=3,
            num_heads=8,
            head_dim=6,
            n_groups=2,
            state_size=7,
            conv_kernel=4,
            chunk_size=5,
            use_bias=True,
            use_conv_bias=False,
            tie_word_embeddings=True,
            layer_norm_epsilon=1e-6,
        )
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS2))
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_mamba2_logits_params_and_greedy(name: str, scale: float) -> None:
    check_decoder(MODELS2[name], scale, 53, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS2))
def test_mamba2_export_round_trip(name: str, tmp_path: Path) -> None:
    check_export(MODELS2[name], tmp_path, [ids(53)])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"time_step_limit": [0.0, 0.1]}, "time_step_limit"),
        ({"num_heads": 4}, "num_heads"),
    ],
)
def test_mamba2_refused_by_name(change: dict[str, Any], field: str) -> None:
    cfg = {**MODELS2["odd"]().config.to_dict(), **change}
    with pytest.raises(UnsupportedConfigError) as err:
        load_spec_from_config(cfg)
    assert field in err.value.fields


def test_mamba2_default_config_is_mamba_codestral() -> None:
    """transformers' default Mamba2Config is Mamba-Codestral-7B's (hidden 4096, 64 layers, 128 heads
    of 64 in 8 groups, state 128, vocab 32768, untied): the same count as HF on the meta device."""
    cfg = T.Mamba2Config()
    n = meta_params(T.Mamba2ForCausalLM, cfg)
    spec = load_spec_from_config(cfg.to_dict())
    assert archdsl.analyze(spec, seq_len=4096).params_total == n == 7_285_403_648
    mixer = spec.model.stacks[0].layers[0].sublayer("mixer")
    assert (mixer["heads"], mixer["head_dim"], mixer["n_groups"], mixer["d_state"]) == (128, 64, 8, 128)


def test_import_hf_reads_transformers_json_files(tmp_path: Path) -> None:
    """``archdsl import-hf`` on the config.json transformers writes (Mamba-2's time_step_limit holds
    infinity as ``{"__float__": "Infinity"}``); the report then counts HF's parameters."""
    from conftest import run_cli

    for name, cfg, cls in [
        ("mamba", T.MambaConfig(**FULL["mamba_130m"]), T.MambaForCausalLM),
        ("mamba2", T.Mamba2Config(), T.Mamba2ForCausalLM),
    ]:
        cfg.to_json_file(str(tmp_path / f"{name}.json"))
        out = tmp_path / f"{name}.arch"
        r = run_cli("import-hf", str(tmp_path / f"{name}.json"), "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert archdsl.analyze(archdsl.load(out), seq_len=512).params_total == meta_params(cls, cfg)
