"""ALBERT (Lan et al. 2020): ``AlbertModel`` with its pooler or ``AlbertForMaskedLM`` — a factorised
embedding (an ``embedding_size``-wide table with its positions, token types and LayerNorm at that
width, then a linear map to ``hidden_size``) and one block every layer shares (one hidden group of one
layer; other groupings are refused by name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archdsl.interop.hf.base import (
    Family,
    Fields,
    Geometry,
    Rule,
    Text,
    act,
    fused,
    model_name,
    num,
    register,
    same,
    suffix_prefix,
)
from archdsl.interop.hf.bert import encoder_config, head_matches, mlm_head, mlm_rule, read_head
from archdsl.ir import Spec


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(
        c,
        ["hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob"],
    )
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("max_position_embeddings"))),
        ("embedding_size", str(f.need("embedding_size"))),
        ("d_model", str(f.need("hidden_size"))),
        ("n_heads", str(f.need("num_attention_heads"))),
        ("d_ff", str(f.need("intermediate_size"))),
        ("n_layers", str(f.need("num_hidden_layers"))),
        ("eps", num(float(f.get("layer_norm_eps", 1e-12)))),
    ]
    activation = act(f, "hidden_act", "gelu_new")
    types = int(f.get("type_vocab_size", 2))
    f.expect("num_hidden_groups", [1], " (one block shared by every layer)")
    f.expect("inner_group_num", [1], " (one layer per group)")
    f.expect("position_embedding_type", ["absolute"])
    f.expect("is_decoder", [False])
    f.expect("add_cross_attention", [False])
    kind = read_head(f, c, "AlbertModel", "AlbertForMaskedLM")
    head = mlm_head(f, activation, kind)
    f.finish()
    body = "\n".join(
        [
            f"model {model_name(c, 'albert')} {{",
            "  type           = encoder",
            "  d_model        = d_model",
            "  vocab          = vocab",
            "  embedding      = token_embedding(",
            "      width = embedding_size,",
            "      project = late,",
            "      project_bias = true,",
            f"      types = {types},",
            "  )",
            "  position       = learned(max_len = context)",
            "  embedding_norm = layernorm(eps = eps)",
            "",
            "  block {",
            "    repeat    = n_layers",
            "    shared    = true",
            "    placement = post",
            "    norm      = layernorm(eps = eps)",
            "    attention = mha(heads = n_heads)",
            f"    ffn       = mlp(hidden = d_ff, activation = {activation})",
            "  }",
            "",
            f"  head           = {head}",
            "}",
        ]
    )
    what = "AlbertModel with its pooler" if kind == "pooler" else "AlbertForMaskedLM"
    return Text([f"ALBERT (Lan et al. 2020), imported from a Hugging Face config: {what}."], consts, body)


def rules(g: Geometry, p: str) -> list[Rule]:
    e = p + "embeddings."
    out = [
        same(e + "word_embeddings.weight", "wte.weight"),
        same(e + "token_type_embeddings.weight", "wte.types.weight"),
        same(e + "position_embeddings.weight", "wpe.weight"),
        same(e + "LayerNorm.weight", "ln_emb.weight"),
        same(e + "LayerNorm.bias", "ln_emb.bias"),
        same(p + "encoder.embedding_hidden_mapping_in.weight", "proj_emb.weight"),
        same(p + "encoder.embedding_hidden_mapping_in.bias", "proj_emb.bias"),
        mlm_rule("predictions.dense", "predictions.LayerNorm", "predictions.bias"),
        same(p + "pooler.weight", "lm_head.dense.weight"),
        same(p + "pooler.bias", "lm_head.dense.bias"),
    ]
    # one shared layer: the other layers' names are aliases of h.0's, so only h.0 is mapped
    h = p + "encoder.albert_layer_groups.0.albert_layers.0."
    a = h + "attention."
    sizes = (g.q, g.kv, g.kv) if g.q else None
    for t in ("weight", "bias"):
        out += [
            fused([a + f"query.{t}", a + f"key.{t}", a + f"value.{t}"], f"h.0.attn.c_attn.{t}", sizes),
            same(a + f"dense.{t}", f"h.0.attn.c_proj.{t}"),
            same(a + f"LayerNorm.{t}", f"h.0.ln_1.{t}"),
            same(h + f"ffn.{t}", f"h.0.mlp.c_fc.{t}"),
            same(h + f"ffn_output.{t}", f"h.0.mlp.c_proj.{t}"),
            same(h + f"full_layer_layer_norm.{t}", f"h.0.ln_2.{t}"),
        ]
    return out


def claims(spec: Spec) -> bool:
    from archdsl.interop.hf.base import placement_of

    m = spec.model
    if m.type != "encoder" or len(m.stacks) != 1 or m.embedding.kind != "token_embedding":
        return False
    emb, st = m.embedding, m.stacks[0]
    if emb["width"] in (None, m.d_model) or emb["project"] != "late" or not emb["project_bias"]:
        return False
    if st.position is None or st.position.kind != "learned" or st.position["offset"]:
        return False
    if st.embedding_norm is None or st.embedding_norm.kind != "layernorm" or st.final_norm is not None:
        return False
    if len(set(st.instances)) != 1 or m.head.kind not in ("pooler", "mlm_head"):
        return False
    subs = dict(st.layers[0].sublayers)
    return (
        set(subs) == {"attn", "mlp", "ln_1", "ln_2"}
        and subs["attn"].kind == "mha"
        and not subs["attn"]["causal"]
        and subs["attn"]["bias"] in (None, True)
        and subs["mlp"].kind == "mlp"
        and subs["mlp"]["activation"] in ("gelu", "gelu_tanh", "relu", "silu")
        and subs["ln_1"].kind == "layernorm"
        and st.embedding_norm["eps"] == subs["ln_1"]["eps"]
        and placement_of(st.layers[0]) == "post"
        and (m.head.kind == "pooler" or head_matches(m.head, subs))
    )


def to_config(spec: Spec) -> dict[str, Any]:
    cfg = encoder_config(spec, "albert", "AlbertModel", "AlbertForMaskedLM")
    cfg.update(
        embedding_size=int(spec.model.embedding["width"]),
        num_hidden_groups=1,
        inner_group_num=1,
        classifier_dropout_prob=0.0,
    )
    return cfg


register(
    Family(
        "albert",
        to_text,
        layout="albert",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "encoder.embedding_hidden_mapping_in.weight"),
        priority=8,
        claims=claims,
        to_config=to_config,
        hf_prefix="albert.",
        tied=(
            ("predictions.decoder.weight", ("albert.embeddings.word_embeddings.weight",)),
            ("predictions.decoder.bias", ("predictions.bias",)),
        ),
    )
)
