"""BLOOM (BigScience 2022): ``BloomForCausalLM``. ALiBi instead of position embeddings, a LayerNorm
right after the token table (``word_embeddings_layernorm``), and q/k/v fused and interleaved per head
(``query_key_value`` is (heads, 3, head_dim, d): the GPT-NeoX layout)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archdsl.interop.hf.base import (
    Family,
    Fields,
    Geometry,
    Rule,
    Text,
    diag,
    model_name,
    num,
    parts,
    placement_of,
    register,
    same,
    suffix_prefix,
)
from archdsl.interop.hf.parallel import grouped
from archdsl.ir import Spec

# Megatron-DeepSpeed training switches that the published BLOOM config.json files carry (bloom-560m …)
# and that BloomModel never reads: fused kernels, fp32 softmax, where a bias is added — same function
MEGATRON_IRRELEVANT = [
    "attention_softmax_in_fp32",
    "bias_dropout_fusion",
    "masked_softmax_fusion",
    "skip_bias_add",
    "skip_bias_add_qkv",
    "offset_alibi",  # BloomModel's ALiBi has no offset
    "unk_token_id",
]


def aliased(f: Fields, names: tuple[str, ...]) -> int:
    """A size a raw config.json may give under any of ``names`` (BloomConfig maps them onto one): the
    first present wins, as in BloomConfig; differing values are refused by name."""
    given = [(n, f.get(n)) for n in names]
    given = [(n, v) for n, v in given if v is not None]
    if not given:
        f.errors.append(diag(names[0], "is required for this model type"))
        return 1
    for n, v in given[1:]:
        if v != given[0][1]:
            f.refuse(n, f"{v} disagrees with {given[0][0]} = {given[0][1]}")
    return int(given[0][1])


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(
        c, ["attention_dropout", "hidden_dropout", "pretraining_tp", "slow_but_exact", *MEGATRON_IRRELEVANT]
    )
    d = aliased(f, ("n_embed", "hidden_size"))  # BloomConfig: n_embed, when given, replaces hidden_size
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("d_model", str(d)),
        ("n_heads", str(aliased(f, ("n_head", "num_attention_heads")))),
        ("n_layers", str(aliased(f, ("n_layer", "num_hidden_layers")))),
        ("eps", num(float(f.get("layer_norm_epsilon", 1e-5)))),
    ]
    f.expect("apply_residual_connection_post_layernorm", [False])
    # BloomMLP is always 4 * hidden_size wide; n_inner (null in the published configs) is never read
    f.expect("n_inner", [None, 4 * d], " (BloomMLP is 4 * hidden_size wide whatever n_inner says)")
    tied = bool(f.get("tie_word_embeddings", True))
    f.finish()
    body = "\n".join(
        [
            f"model {model_name(c, 'bloom')} {{",
            "  type           = decoder",
            "  d_model        = d_model",
            "  vocab          = vocab",
            "  embedding      = token_embedding()",
            "  position       = alibi()",
            "  embedding_norm = layernorm(eps = eps)",
            "",
            "  block {",
            "    repeat    = n_layers",
            "    placement = pre",
            "    norm      = layernorm(eps = eps)",
            "    attention = mha(heads = n_heads, causal = true, bias = true)",
            "    ffn       = mlp(hidden = 4 * d_model, activation = gelu_tanh, bias = true)",
            "  }",
            "",
            "  final_norm     = layernorm(eps = eps)",
            f"  head           = lm_head(tied = {num(tied)})",
            "}",
        ]
    )
    return Text(["BLOOM (BigScience 2022), imported from a Hugging Face config."], consts, body)


def rules(g: Geometry, p: str) -> list[Rule]:
    out = [same(f"{p}word_embeddings.weight", "wte.weight")]
    for t in ("weight", "bias"):
        out += [same(f"{p}word_embeddings_layernorm.{t}", f"ln_emb.{t}"), same(f"{p}ln_f.{t}", f"ln_f.{t}")]
    for i in range(g.n_layers):
        h, o = f"{p}h.{i}.", f"h.{i}."
        for t in ("weight", "bias"):
            out += [
                grouped(h + f"self_attention.query_key_value.{t}", o + f"attn.c_attn.{t}", g),
                same(h + f"self_attention.dense.{t}", o + f"attn.c_proj.{t}"),
                same(h + f"input_layernorm.{t}", o + f"ln_1.{t}"),
                same(h + f"post_attention_layernorm.{t}", o + f"ln_2.{t}"),
                same(h + f"mlp.dense_h_to_4h.{t}", o + f"mlp.c_fc.{t}"),
                same(h + f"mlp.dense_4h_to_h.{t}", o + f"mlp.c_proj.{t}"),
            ]
    return out


def claims(spec: Spec) -> bool:
    m = spec.model
    if m.type != "decoder":
        return False
    st = m.stacks[0]
    p = parts(spec)
    return (
        st.position is not None
        and st.position.kind == "alibi"
        and st.embedding_norm is not None
        and st.embedding_norm.kind == "layernorm"
        and st.final_norm is not None
        and st.final_norm.kind == "layernorm"
        and all(placement_of(b) == "pre" for b in st.layers)
        and p.attn.kind == "mha"
        and p.heads == p.kv_heads
        and p.head_dim * p.heads == m.d_model
        and bool(p.attn["bias"])
        and bool(p.attn["out_bias"])
        and p.mlp.kind == "mlp"
        and p.mlp["hidden"] == 4 * m.d_model
        and str(p.mlp["activation"]) == "gelu_tanh"
        and bool(p.mlp["bias"])
        and m.embedding.kind == "token_embedding"
        and not m.embedding["width"]
        and not m.embedding["types"]
        and not m.embedding["scale"]
        and m.head.kind == "lm_head"
        and not m.head["bias"]
        and _norms_fit(spec)
    )


def _norms_fit(spec: Spec) -> bool:
    """Every LayerNorm as BLOOM's: affine with a bias, one ``layer_norm_epsilon`` throughout."""
    st = spec.model.stacks[0]
    norms = [n for b in st.layers for k, n in b.sublayers if k in ("ln_1", "ln_2")]
    norms += [n for n in (st.embedding_norm, st.final_norm) if n is not None]
    return (
        all(n.kind == "layernorm" and n["affine"] is not False and bool(n["bias"]) for n in norms)
        and len({n["eps"] for n in norms}) == 1
    )


def to_config(spec: Spec) -> dict[str, Any]:
    p = parts(spec)
    return {
        "model_type": "bloom",
        "architectures": ["BloomForCausalLM"],
        "vocab_size": p.model.vocab,
        "hidden_size": p.model.d_model,
        "n_head": p.heads,
        "n_layer": p.n_layers,
        "layer_norm_epsilon": p.subs["ln_1"]["eps"],
        "apply_residual_connection_post_layernorm": False,
        "tie_word_embeddings": bool(p.model.head["tied"]),
        "attention_dropout": 0.0,
        "hidden_dropout": 0.0,
    }


register(
    Family(
        "bloom",
        to_text,
        layout="bloom",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "word_embeddings_layernorm.weight"),
        priority=30,
        claims=claims,
        to_config=to_config,
        hf_prefix="transformer.",
        tied=(("lm_head.weight", ("transformer.word_embeddings.weight",)),),
    )
)
