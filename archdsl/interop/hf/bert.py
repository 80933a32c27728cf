"""BERT (Devlin et al. 2019): ``BertModel`` with its pooler."""

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


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(
        c,
        [
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "classifier_dropout",
            "gradient_checkpointing",
        ],
    )
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("max_position_embeddings"))),
        ("d_model", str(f.need("hidden_size"))),
        ("n_heads", str(f.need("num_attention_heads"))),
        ("d_ff", str(f.need("intermediate_size"))),
        ("n_layers", str(f.need("num_hidden_layers"))),
        ("eps", num(float(f.get("layer_norm_eps", 1e-12)))),
    ]
    activation = act(f, "hidden_act", "gelu")
    types = int(f.get("type_vocab_size", 2))
    f.expect("position_embedding_type", ["absolute"])
    f.expect("is_decoder", [False])
    f.expect("add_cross_attention", [False])
    f.used.add("tie_word_embeddings")  # the pooler head has no output embedding
    f.finish()
    body = "\n".join(
        [
            f"model {model_name(c, 'bert')} {{",
            "  type           = encoder",
            "  d_model        = d_model",
            "  vocab          = vocab",
            f"  embedding      = token_embedding(types = {types})",
            "  position       = learned(max_len = context)",
            "  embedding_norm = layernorm(eps = eps)",
            "",
            "  block {",
            "    repeat    = n_layers",
            "    placement = post",
            "    norm      = layernorm(eps = eps)",
            "    attention = mha(heads = n_heads)",
            f"    ffn       = mlp(hidden = d_ff, activation = {activation})",
            "  }",
            "",
            "  head           = pooler()",
            "}",
        ]
    )
    return Text(
        ["BERT (Devlin et al. 2019), imported from a Hugging Face config: BertModel with its pooler."],
        consts,
        body,
    )


def rules(g: Geometry, p: str) -> list[Rule]:
    e = p + "embeddings."
    rules = [
        same(e + "word_embeddings.weight", "wte.weight"),
        same(e + "token_type_embeddings.weight", "wte.types.weight"),
        same(e + "position_embeddings.weight", "wpe.weight"),
        same(e + "LayerNorm.weight", "ln_emb.weight"),
        same(e + "LayerNorm.bias", "ln_emb.bias"),
        same(p + "pooler.dense.weight", "lm_head.dense.weight"),
        same(p + "pooler.dense.bias", "lm_head.dense.bias"),
    ]
    sizes = (g.q, g.kv, g.kv) if g.q else None
    for i in range(g.n_layers):
        h, o = f"{p}encoder.layer.{i}.", f"h.{i}."
        a = h + "attention.self."
        for t in ("weight", "bias"):
            rules += [
                fused([a + f"query.{t}", a + f"key.{t}", a + f"value.{t}"], o + f"attn.c_attn.{t}", sizes),
                same(h + f"attention.output.dense.{t}", o + f"attn.c_proj.{t}"),
                same(h + f"attention.output.LayerNorm.{t}", o + f"ln_1.{t}"),
                same(h + f"intermediate.dense.{t}", o + f"mlp.c_fc.{t}"),
                same(h + f"output.dense.{t}", o + f"mlp.c_proj.{t}"),
                same(h + f"output.LayerNorm.{t}", o + f"ln_2.{t}"),
            ]
    return rules


register(
    Family(
        "bert",
        to_text,
        layout="bert",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "embeddings.word_embeddings.weight"),
        hf_prefix="",
    )
)
