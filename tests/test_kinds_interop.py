"""Language features Hugging Face models need (issue 11), each held to the matching transformers module:
per-head q/k norm (Qwen 3), LayerNorm without parameters (OLMo 1), a token table narrower than d_model
with projections in and out (OPT-350m) and ALBERT's factorised embedding. Tiny random-initialised HF
models (offline, from config classes), weights mapped by hand, outputs compared; full-size parameter
counts against HF models built on the meta device; costs and saved activations against the modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from conftest import SPECS
from test_cost_vs_torch import assert_costs_match, assert_train_step_matches
from test_hf_equivalence import State, cat, ids, llama_map, load_into
from test_memory import measured, predicted

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.kinds import ActCfg


def hf_params(cls: type, cfg: object) -> int:
    with torch.device("meta"):
        model = cls(cfg)
    return sum(p.numel() for p in model.parameters())


def load(tmp_path: Path, text: str, overrides: dict | None = None) -> archdsl.Spec:
    p = tmp_path / "s.arch"
    p.write_text(text)
    return archdsl.load(p, overrides or {})


def check_numerics(spec: archdsl.Spec, hf: torch.nn.Module, state: State, x: torch.Tensor, got_hf) -> None:  # type: ignore[no-untyped-def]
    ours = archdsl.build(spec).eval()
    hf.eval()
    load_into(ours, state)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), got_hf(x), atol=2e-5, rtol=1e-4)


# -- Qwen 3: q/k RMSNorm over each head --------------------------------------------------------------

QWEN3 = """
vocab      = 151936
context    = 40960
d_model    = 4096
n_heads    = 32
n_kv_heads = 8
head_dim   = 128
d_ff       = 12288
n_layers   = 36

model qwen3 {
  type      = decoder
  d_model   = d_model
  vocab     = vocab
  embedding = token_embedding()
  position  = rope(theta = 1000000.0, max_len = context)
  block {
    repeat    = n_layers
    placement = pre
    norm      = rmsnorm(eps = 1e-6)
    attention = mha(heads = n_heads, kv_heads = n_kv_heads, head_dim = head_dim, bias = false,
                    qk_norm = rmsnorm, qk_norm_scope = head, qk_eps = 1e-6)
    ffn       = swiglu(hidden = d_ff)
  }
  final_norm = rmsnorm(eps = 1e-6)
  head       = lm_head(tied = false)
}
"""


def qwen3_config(**kw: object) -> transformers.Qwen3Config:
    return transformers.Qwen3Config(
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False, attention_bias=False, **kw
    )


def test_qwen3_per_head_qk_norm_matches_hf(tmp_path: Path) -> None:
    """A head size of its own (10, not d / heads = 6), grouped heads; the q/k gains are head_dim wide."""
    tiny = {"vocab": 53, "context": 64, "d_model": 24, "n_heads": 4, "n_kv_heads": 2}
    tiny |= {"head_dim": 10, "d_ff": 40, "n_layers": 2}
    spec = load(tmp_path, QWEN3, tiny)
    hf = transformers.Qwen3ForCausalLM(
        qwen3_config(
            vocab_size=53,
            max_position_embeddings=64,
            hidden_size=24,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=10,
            intermediate_size=40,
            num_hidden_layers=2,
        )
    )
    with torch.no_grad():  # away from the initialisation (unit gains would hide a misplaced norm)
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    assert archdsl.analyze(spec, seq_len=11).params_total == sum(p.numel() for p in hf.parameters())
    state = llama_map(2, qk_norm=True)({k: v.detach().clone() for k, v in hf.state_dict().items()})
    assert state["h.0.attn.q_norm.weight"].shape == (10,)
    check_numerics(spec, hf, state, ids(53), lambda x: hf(x).logits)

    # the cached decode path normalises each head too: step by step equals the full forward
    model = archdsl.build(spec).eval()
    load_into(model, state)
    x = ids(53)
    with torch.no_grad():
        full = model(x)
        model.setup_cache(2, x.size(1))
        steps = [model(x[:, t : t + 1], pos=torch.arange(t, t + 1)) for t in range(x.size(1))]
        model.clear_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_qwen3_8b_parameter_count(tmp_path: Path) -> None:
    cfg = qwen3_config(
        vocab_size=151936,
        max_position_embeddings=40960,
        hidden_size=4096,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=12288,
        num_hidden_layers=36,
    )
    spec = load(tmp_path, QWEN3)
    report = archdsl.analyze(spec, seq_len=16)
    assert report.params_total == hf_params(transformers.Qwen3ForCausalLM, cfg) == 8_190_735_360
    # the q/k norms: two head_dim-wide gains a layer (36 * 256), not the projections' widths
    full = archdsl.analyze(
        load(tmp_path, QWEN3.replace("qk_norm_scope = head", "qk_norm_scope = full")), seq_len=16
    )
    assert full.params_total - report.params_total == 36 * ((32 + 8) * 128 - 2 * 128)


def test_cross_attention_remembers_normalised_keys_per_head(tmp_path: Path) -> None:
    """``remember`` (the decoder's cached cross-attention) normalises the memory's keys per head as the
    uncached forward does."""
    from archdsl.graph import ctx_of
    from archdsl.kinds import REGISTRY
    from archdsl.lower.build import build_module

    spec = load(
        tmp_path,
        """
model t {
  type = encoder_decoder
  d_model = 24
  vocab = 31
  embedding = token_embedding()
  encoder { block { repeat = 1 norm = layernorm()
    attention = mha(heads = 4) ffn = mlp(hidden = 16) } }
  decoder { block { repeat = 1 norm = layernorm()
    attention = mha(heads = 4)
    cross_attention = mha(heads = 4, kv_heads = 2, qk_norm = layernorm, qk_norm_scope = head)
    ffn = mlp(hidden = 16) } }
  head = lm_head()
}
""",
    )
    dec = next(s for s in spec.model.stacks if s.role == "decoder")
    node = next(n for _, n in dec.layers[0].sublayers if n.kind == "mha" and n["cross"])
    attn = build_module(REGISTRY["mha"].ctor(node, ctx_of(spec.model, "decoder")), seed=0).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.2 * torch.randn_like(p))
    assert attn.k_norm.weight.shape == (6,)
    x, memory = torch.randn(2, 5, 24), torch.randn(2, 7, 24)
    with torch.no_grad():
        full = attn(x, memory)
        attn.remember(memory)
        cached = attn(x, memory)
    torch.testing.assert_close(cached, full, atol=1e-6, rtol=0)


# -- OLMo 1: LayerNorm without parameters ------------------------------------------------------------

OLMO = """
vocab    = 50304
context  = 2048
d_model  = 2048
n_heads  = 16
d_ff     = 8192
n_layers = 16

model olmo {
  type      = decoder
  d_model   = d_model
  vocab     = vocab
  embedding = token_embedding()
  position  = rope(theta = 10000.0, max_len = context)
  block {
    repeat    = n_layers
    placement = pre
    norm      = layernorm(affine = false)
    attention = mha(heads = n_heads, bias = false)
    ffn       = swiglu(hidden = d_ff)
  }
  final_norm = layernorm(affine = false)
  head       = lm_head(tied = true)
}
"""


def olmo_config(**kw: object) -> transformers.OlmoConfig:
    return transformers.OlmoConfig(tie_word_embeddings=True, rope_theta=10000.0, **kw)


def test_olmo1_nonparametric_layernorm_matches_hf(tmp_path: Path) -> None:
    spec = load(
        tmp_path, OLMO, {"vocab": 53, "context": 64, "d_model": 24, "n_heads": 4, "d_ff": 36, "n_layers": 2}
    )
    hf = transformers.OlmoForCausalLM(
        olmo_config(
            vocab_size=53,
            max_position_embeddings=64,
            hidden_size=24,
            num_attention_heads=4,
            intermediate_size=36,
            num_hidden_layers=2,
        )
    )
    s = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    state = {"wte.weight": s["model.embed_tokens.weight"]}
    for i in range(2):
        a = f"model.layers.{i}.self_attn."
        state[f"h.{i}.attn.c_attn.weight"] = cat(*(s[a + f"{p}_proj.weight"] for p in "qkv"))
        state[f"h.{i}.attn.c_proj.weight"] = s[a + "o_proj.weight"]
        for proj in ("gate_proj", "up_proj", "down_proj"):
            state[f"h.{i}.mlp.{proj}.weight"] = s[f"model.layers.{i}.mlp.{proj}.weight"]
    model = archdsl.build(spec)
    assert not any("ln" in name for name, _ in model.named_parameters())  # the norms have none
    check_numerics(spec, hf, state, ids(53), lambda x: hf(x).logits)


def test_olmo1_1b_parameter_count(tmp_path: Path) -> None:
    cfg = olmo_config(
        vocab_size=50304,
        max_position_embeddings=2048,
        hidden_size=2048,
        num_attention_heads=16,
        intermediate_size=8192,
        num_hidden_layers=16,
    )
    n = hf_params(transformers.OlmoForCausalLM, cfg)
    assert archdsl.analyze(load(tmp_path, OLMO), seq_len=16).params_total == n == 1_176_764_416


# -- OPT-350m: a 512-wide token table, project_in / project_out --------------------------------------

OPT = """
vocab    = 50272
context  = 2048
width    = 512
d_model  = 1024
n_heads  = 16
d_ff     = 4096
n_layers = 24

model opt {
  type      = decoder
  d_model   = d_model
  vocab     = vocab
  embedding = token_embedding(width = width)
  position  = learned(max_len = context, offset = 2)  # OPT's positions start at row 2
  block {
    repeat    = n_layers
    placement = post
    norm      = layernorm()
    attention = mha(heads = n_heads)
    ffn       = mlp(hidden = d_ff, activation = relu)
  }
  head      = lm_head(tied = true)
}
"""


def opt_config(**kw: object) -> transformers.OPTConfig:
    return transformers.OPTConfig(do_layer_norm_before=False, dropout=0.0, **kw)


def test_opt_projected_embedding_matches_hf(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        OPT,
        {"vocab": 53, "context": 30, "width": 10, "d_model": 24, "n_heads": 4, "d_ff": 40, "n_layers": 2},
    )
    hf = transformers.OPTForCausalLM(
        opt_config(
            vocab_size=53,
            max_position_embeddings=30,
            word_embed_proj_dim=10,
            hidden_size=24,
            num_attention_heads=4,
            ffn_dim=40,
            num_hidden_layers=2,
        )
    )
    assert hf.model.decoder.final_layer_norm is None  # post-LN OPT (350m) has no final norm
    s = {k.removeprefix("model.decoder."): v.detach().clone() for k, v in hf.state_dict().items()}
    state = {
        "wte.weight": s["embed_tokens.weight"],
        "wte.project_in.weight": s["project_in.weight"],
        "lm_head.project_out.weight": s["project_out.weight"],
        "wpe.weight": s["embed_positions.weight"],
    }
    for i in range(2):
        p = f"layers.{i}."
        a = p + "self_attn."
        for part in ("weight", "bias"):
            state[f"h.{i}.attn.c_attn.{part}"] = cat(*(s[a + f"{x}_proj.{part}"] for x in "qkv"))
            state[f"h.{i}.attn.c_proj.{part}"] = s[a + f"out_proj.{part}"]
            state[f"h.{i}.ln_1.{part}"] = s[p + f"self_attn_layer_norm.{part}"]
            state[f"h.{i}.mlp.c_fc.{part}"] = s[p + f"fc1.{part}"]
            state[f"h.{i}.mlp.c_proj.{part}"] = s[p + f"fc2.{part}"]
            state[f"h.{i}.ln_2.{part}"] = s[p + f"final_layer_norm.{part}"]
    assert archdsl.analyze(spec, seq_len=11).params_total == sum(p.numel() for p in hf.parameters())
    check_numerics(spec, hf, state, ids(53), lambda x: hf(x).logits)


def test_opt_350m_parameter_count(tmp_path: Path) -> None:
    cfg = opt_config(
        vocab_size=50272,
        max_position_embeddings=2048,
        word_embed_proj_dim=512,
        hidden_size=1024,
        num_attention_heads=16,
        ffn_dim=4096,
        num_hidden_layers=24,
    )
    n = hf_params(transformers.OPTForCausalLM, cfg)
    assert archdsl.analyze(load(tmp_path, OPT), seq_len=16).params_total == n == 331_196_416


# -- ALBERT: the factorised embedding ----------------------------------------------------------------

ALBERT_TINY = {"vocab": 53, "context": 32, "embedding_size": 10, "d_model": 24, "n_heads": 4, "n_layers": 3}


def albert_config(**kw: object) -> transformers.AlbertConfig:
    return transformers.AlbertConfig(
        hidden_act="gelu_new",
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **kw,
    )


def test_albert_factorised_embedding_matches_hf() -> None:
    spec = archdsl.load(SPECS / "albert_like.arch", ALBERT_TINY)
    hf = transformers.AlbertForMaskedLM(
        albert_config(
            vocab_size=53,
            max_position_embeddings=32,
            embedding_size=10,
            hidden_size=24,
            num_attention_heads=4,
            intermediate_size=96,
            num_hidden_layers=3,
        )
    )
    s = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    e, g = "albert.embeddings.", "albert.encoder.albert_layer_groups.0.albert_layers.0."
    state = {
        "wte.weight": s[e + "word_embeddings.weight"],
        "wte.types.weight": s[e + "token_type_embeddings.weight"],
        "wpe.weight": s[e + "position_embeddings.weight"],
        "ln_emb.weight": s[e + "LayerNorm.weight"],
        "ln_emb.bias": s[e + "LayerNorm.bias"],
        "proj_emb.weight": s["albert.encoder.embedding_hidden_mapping_in.weight"],
        "proj_emb.bias": s["albert.encoder.embedding_hidden_mapping_in.bias"],
        "lm_head.dense.weight": s["predictions.dense.weight"],
        "lm_head.dense.bias": s["predictions.dense.bias"],
        "lm_head.norm.weight": s["predictions.LayerNorm.weight"],
        "lm_head.norm.bias": s["predictions.LayerNorm.bias"],
        "lm_head.bias": s["predictions.bias"],
    }
    for i in range(3):  # one shared block: every layer's names map to the same tensors
        for part in ("weight", "bias"):
            qkv = (s[g + f"attention.{x}.{part}"] for x in ("query", "key", "value"))
            state[f"h.{i}.attn.c_attn.{part}"] = cat(*qkv)
            state[f"h.{i}.attn.c_proj.{part}"] = s[g + f"attention.dense.{part}"]
            state[f"h.{i}.ln_1.{part}"] = s[g + f"attention.LayerNorm.{part}"]
            state[f"h.{i}.mlp.c_fc.{part}"] = s[g + f"ffn.{part}"]
            state[f"h.{i}.mlp.c_proj.{part}"] = s[g + f"ffn_output.{part}"]
            state[f"h.{i}.ln_2.{part}"] = s[g + f"full_layer_layer_norm.{part}"]
    assert archdsl.analyze(spec, seq_len=11).params_total == sum(p.numel() for p in hf.parameters())
    check_numerics(spec, hf, state, ids(53), lambda x: hf(x).logits)


def test_albert_base_v2_parameter_counts() -> None:
    cfg = albert_config(
        vocab_size=30000,
        max_position_embeddings=512,
        embedding_size=128,
        hidden_size=768,
        num_attention_heads=12,
        intermediate_size=3072,
        num_hidden_layers=12,
    )
    mlm = archdsl.analyze(archdsl.load(SPECS / "albert_like.arch"), seq_len=16).params_total
    assert mlm == hf_params(transformers.AlbertForMaskedLM, cfg) == 11_221_680
    base = archdsl.load(SPECS / "albert_like.arch", {"model.head": "pooler()"})
    assert (
        archdsl.analyze(base, seq_len=16).params_total
        == hf_params(transformers.AlbertModel, cfg)
        == 11_683_584
    )


# -- costs and saved activations against the modules ---------------------------------------------------

VARIANTS = {
    "opt": (
        OPT,
        {"vocab": 37, "context": 30, "width": 10, "d_model": 24, "n_heads": 4, "d_ff": 40, "n_layers": 2},
    ),
    "opt_untied": (
        OPT.replace(
            "lm_head(tied = true)", "lm_head(tied = false, bias = true, softcap = 4.0, rescale = true)"
        ).replace(
            "token_embedding(width = width)", "token_embedding(width = width, types = 2, project_bias = true)"
        ),
        {"vocab": 37, "context": 30, "width": 10, "d_model": 24, "n_heads": 4, "d_ff": 40, "n_layers": 2},
    ),
    "albert": ((SPECS / "albert_like.arch").read_text(), ALBERT_TINY),
    "qwen3": (
        QWEN3,
        {
            "vocab": 37,
            "context": 64,
            "d_model": 24,
            "n_heads": 4,
            "n_kv_heads": 2,
            "head_dim": 7,
            "d_ff": 40,
            "n_layers": 2,
        },
    ),
    "olmo": (OLMO, {"vocab": 37, "context": 64, "d_model": 24, "n_heads": 4, "d_ff": 36, "n_layers": 2}),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_costs_and_saved_activations_match_the_modules(name: str, tmp_path: Path) -> None:
    text, tiny = VARIANTS[name]
    spec = load(tmp_path, text, tiny)
    for batch, n in [(2, 9), (1, 5)]:
        assert_costs_match(spec, batch, n)
        assert_train_step_matches(spec, batch, n)
        total, per = measured(spec, batch, n)
        assert predicted(spec, batch, n, ActCfg()) == total, per


def test_projection_settings_need_a_narrower_table(tmp_path: Path) -> None:
    for call in ("token_embedding(project = late)", "token_embedding(project_bias = true)"):
        with pytest.raises(SpecError, match="no projection"):
            load(tmp_path, OPT.replace("token_embedding(width = width)", call))
