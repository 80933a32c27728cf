"""BERT (Devlin et al. 2019): ``BertModel`` with its pooler, or ``BertForMaskedLM`` with its masked-LM
head — chosen by the config's ``architectures`` (absent: ``BertModel``). RoBERTa (roberta.py) shares
the layout under its own prefix and head names."""

from __future__ import annotations

import json
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
    parts,
    placement_of,
    register,
    same,
    suffix_prefix,
)
from archdsl.ir import Spec

BERT_IRRELEVANT = [
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "gradient_checkpointing",
]


def read_head(f: Fields, c: Mapping[str, Any], base: str, mlm: str) -> str:
    """``pooler`` or ``mlm`` from the config's ``architectures`` (absent: the base model's pooler)."""
    archs = list(c.get("architectures") or [])
    if not archs:
        return "pooler"
    heads = {base: "pooler", mlm: "mlm"}
    if len(archs) != 1 or archs[0] not in heads:
        f.refuse(
            "architectures",
            f"{json.dumps(archs)} is not supported (archdsl expresses [{json.dumps(base)}] with its pooler,"
            f" [{json.dumps(mlm)}])",
        )
        return "pooler"
    return heads[archs[0]]


def mlm_head(f: Fields, activation: str, head: str) -> str:
    """The head's spec text; the masked-LM transform applies ``hidden_act`` (GELU, exact or tanh)."""
    if head == "pooler":
        f.used.add("tie_word_embeddings")  # the pooler head has no output embedding
        return "pooler()"
    f.expect("tie_word_embeddings", [True], " (the masked-LM decoder is the token table)")
    if activation not in ("gelu", "gelu_tanh"):
        f.refuse("hidden_act", "the masked-LM head's transform is GELU (exact or tanh) in archdsl")
    tanh = ", tanh = true" if activation == "gelu_tanh" else ""
    return f"mlm_head(eps = eps{tanh})"


def encoder_text(
    c: Mapping[str, Any],
    *,
    family: str,
    title: str,
    base: str,
    mlm: str,
    position: str,
    extra_irrelevant: tuple[str, ...] = (),
    consts_extra: tuple[tuple[str, str], ...] = (),
) -> Text:
    f = Fields(c, [*BERT_IRRELEVANT, *extra_irrelevant])
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("max_position_embeddings"))),
        *consts_extra,
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
    kind = read_head(f, c, base, mlm)
    head = mlm_head(f, activation, kind)
    f.finish()
    body = "\n".join(
        [
            f"model {model_name(c, family)} {{",
            "  type           = encoder",
            "  d_model        = d_model",
            "  vocab          = vocab",
            f"  embedding      = token_embedding(types = {types})",
            f"  position       = {position}",
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
            f"  head           = {head}",
            "}",
        ]
    )
    what = f"{base} with its pooler" if kind == "pooler" else mlm
    return Text([f"{title}, imported from a Hugging Face config: {what}."], consts, body)


def to_text(c: Mapping[str, Any]) -> Text:
    return encoder_text(
        c,
        family="bert",
        title="BERT (Devlin et al. 2019)",
        base="BertModel",
        mlm="BertForMaskedLM",
        position="learned(max_len = context)",
    )


def layer_rules(g: Geometry, p: str) -> list[Rule]:
    """The encoder layers (``{p}encoder.layer.{i}``), BERT and RoBERTa alike."""
    rules: list[Rule] = []
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


def embedding_rules(p: str) -> list[Rule]:
    e = p + "embeddings."
    return [
        same(e + "word_embeddings.weight", "wte.weight"),
        same(e + "token_type_embeddings.weight", "wte.types.weight"),
        same(e + "position_embeddings.weight", "wpe.weight"),
        same(e + "LayerNorm.weight", "ln_emb.weight"),
        same(e + "LayerNorm.bias", "ln_emb.bias"),
    ]


def mlm_rule(dense: str, norm: str, bias: str) -> Rule:
    """The masked-LM head as one rule: it names ``lm_head.norm`` (which a pooler lacks), so it goes only
    to a model with an ``mlm_head``, and it comes before the pooler's rule, which then finds its tensor
    taken."""
    hf = (f"{dense}.weight", f"{dense}.bias", f"{norm}.weight", f"{norm}.bias", bias)
    ours = ("lm_head.dense.weight", "lm_head.dense.bias", "lm_head.norm.weight", "lm_head.norm.bias")
    return Rule(hf, (*ours, "lm_head.bias"), lambda t: t, lambda t: t)


def pooler_rules(p: str) -> list[Rule]:
    return [
        same(p + "pooler.dense.weight", "lm_head.dense.weight"),
        same(p + "pooler.dense.bias", "lm_head.dense.bias"),
    ]


def rules(g: Geometry, p: str) -> list[Rule]:
    t = "cls.predictions.transform."
    return [
        *embedding_rules(p),
        mlm_rule(t + "dense", t + "LayerNorm", "cls.predictions.bias"),
        *pooler_rules(p),
        *layer_rules(g, p),
    ]


# -- export ------------------------------------------------------------------------------------------

ACTS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def is_bert_like(spec: Spec) -> bool:
    """A post-LN encoder with a full-width token table, learned positions, an embedding LayerNorm, one
    ``mha`` and one ``mlp`` per layer (no sharing), and a pooler or a tied masked-LM head."""
    m = spec.model
    if m.type != "encoder" or len(m.stacks) != 1 or m.embedding.kind != "token_embedding":
        return False
    st = m.stacks[0]
    if st.position is None or st.position.kind != "learned" or st.final_norm is not None:
        return False
    if st.embedding_norm is None or st.embedding_norm.kind != "layernorm":
        return False
    if m.head.kind not in ("pooler", "mlm_head"):
        return False
    if len(set(st.instances)) != len(st.layers):  # shared layers: ALBERT
        return False
    subs = dict(st.layers[0].sublayers)
    return (
        set(subs) == {"attn", "mlp", "ln_1", "ln_2"}
        and subs["attn"].kind == "mha"
        and not subs["attn"]["causal"]
        and subs["attn"]["bias"] in (None, True)
        and subs["mlp"].kind == "mlp"
        and subs["mlp"]["activation"] in ACTS
        and subs["ln_1"].kind == "layernorm"
        and st.embedding_norm["eps"] == subs["ln_1"]["eps"]
        and placement_of(st.layers[0]) == "post"
        and all(b == st.layers[0] for b in st.layers)
        and (m.head.kind == "pooler" or head_matches(m.head, subs))
    )


def head_matches(head: Any, subs: dict[str, Any]) -> bool:
    """A masked-LM head as HF's: tied, its LayerNorm eps the layers', its GELU the feed-forward's."""
    return (
        bool(head["tied"])
        and head["eps"] == subs["ln_1"]["eps"]
        and subs["mlp"]["activation"] == ("gelu_tanh" if head["tanh"] else "gelu")
    )


def claims(spec: Spec) -> bool:
    return (
        is_bert_like(spec)
        and spec.model.embedding["width"] in (None, spec.model.d_model)
        and not spec.model.stacks[0].position["offset"]  # type: ignore[index]
    )


def encoder_config(spec: Spec, model_type: str, base: str, mlm: str) -> dict[str, Any]:
    """The config fields BERT, RoBERTa and ALBERT share."""
    p = parts(spec)
    m = spec.model
    st = p.stack
    assert st.position is not None
    head_mlm = m.head.kind == "mlm_head"
    return {
        "model_type": model_type,
        "architectures": [mlm if head_mlm else base],
        "vocab_size": m.vocab,
        "hidden_size": m.d_model,
        "num_hidden_layers": p.n_layers,
        "num_attention_heads": p.heads,
        "intermediate_size": p.mlp["hidden"],
        "hidden_act": ACTS[str(p.mlp["activation"])],
        "max_position_embeddings": int(st.position["max_len"]) + int(st.position["offset"] or 0),
        "type_vocab_size": int(m.embedding["types"] or 0),
        "layer_norm_eps": p.subs["ln_1"]["eps"],
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "tie_word_embeddings": True,
    }


register(
    Family(
        "bert",
        to_text,
        layout="bert",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "embeddings.word_embeddings.weight"),
        claims=claims,
        to_config=lambda spec: encoder_config(spec, "bert", "BertModel", "BertForMaskedLM"),
        hf_prefix="bert.",
        tied=(
            ("cls.predictions.decoder.weight", ("bert.embeddings.word_embeddings.weight",)),
            ("cls.predictions.decoder.bias", ("cls.predictions.bias",)),
        ),
    )
)
