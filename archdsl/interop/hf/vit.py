"""ViT (Dosovitskiy et al. 2021): ``ViTForImageClassification``; its position table is (1, n, d)."""

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
    parts,
    placement_of,
    register,
    same,
    suffix_prefix,
)
from archdsl.ir import Spec


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(
        c,
        [
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "encoder_stride",
            "pooler_output_size",
            "pooler_act",
        ],
    )
    consts = [
        ("image", str(f.need("image_size"))),
        ("patch", str(f.need("patch_size"))),
        ("channels", str(f.get("num_channels", 3))),
        ("d_model", str(f.need("hidden_size"))),
        ("n_heads", str(f.need("num_attention_heads"))),
        ("d_ff", str(f.need("intermediate_size"))),
        ("n_layers", str(f.need("num_hidden_layers"))),
        ("classes", str(len(c.get("id2label") or {}) or int(c.get("num_labels") or 2))),
        ("eps", num(float(f.get("layer_norm_eps", 1e-12)))),
    ]
    activation = act(f, "hidden_act", "gelu")
    qkv_bias = bool(f.get("qkv_bias", True))
    attn = (
        "mha(heads = n_heads, bias = true)"
        if qkv_bias
        else "mha(heads = n_heads, bias = false, out_bias = true)"
    )
    f.finish()
    body = "\n".join(
        [
            f"model {model_name(c, 'vit')} {{",
            "  type       = encoder",
            "  d_model    = d_model",
            "  embedding  = patch_embedding(image = image, patch = patch, channels = channels,"
            " cls_token = true)",
            "  position   = learned(max_len = (image / patch) ** 2 + 1)",
            "",
            "  block {",
            "    repeat    = n_layers",
            "    placement = pre",
            "    norm      = layernorm(eps = eps)",
            f"    attention = {attn}",
            f"    ffn       = mlp(hidden = d_ff, activation = {activation})",
            "  }",
            "",
            "  final_norm = layernorm(eps = eps)",
            "  head       = classifier(classes = classes, pool = cls)",
            "}",
        ]
    )
    return Text(
        ["ViT (Dosovitskiy et al. 2021), imported from a Hugging Face config: ViTForImageClassification."],
        consts,
        body,
    )


def rules(g: Geometry, p: str) -> list[Rule]:
    e = p + "embeddings."
    rules = [
        same(e + "patch_embeddings.projection.weight", "wte.proj.weight"),
        same(e + "patch_embeddings.projection.bias", "wte.proj.bias"),
        same(e + "cls_token", "wte.cls_token"),
        Rule((e + "position_embeddings",), ("wpe.weight",), lambda t: [t[0][0]], lambda t: [t[0][None]]),
        same(p + "layernorm.weight", "ln_f.weight"),
        same(p + "layernorm.bias", "ln_f.bias"),
        same("classifier.weight", "lm_head.proj.weight"),
        same("classifier.bias", "lm_head.proj.bias"),
    ]
    sizes = (g.q, g.kv, g.kv) if g.q else None
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        a = h + "attention."
        for t in ("weight", "bias"):
            rules += [
                fused([a + f"{x}_proj.{t}" for x in "qkv"], o + f"attn.c_attn.{t}", sizes),
                same(a + f"o_proj.{t}", o + f"attn.c_proj.{t}"),
                same(h + f"layernorm_before.{t}", o + f"ln_1.{t}"),
                same(h + f"layernorm_after.{t}", o + f"ln_2.{t}"),
                same(h + f"mlp.fc1.{t}", o + f"mlp.c_fc.{t}"),
                same(h + f"mlp.fc2.{t}", o + f"mlp.c_proj.{t}"),
            ]
    return rules


ACTS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def claims(spec: Spec) -> bool:
    """A pre-LN encoder over a patch embedding with a class token, learned positions for every patch
    and the class token, a final LayerNorm and a classifier on the class token."""
    m = spec.model
    if m.type != "encoder" or len(m.stacks) != 1 or m.embedding.kind != "patch_embedding":
        return False
    st, e = m.stacks[0], m.embedding
    if not e["cls_token"] or st.position is None or st.position.kind != "learned" or st.position["offset"]:
        return False
    if int(st.position["max_len"]) != (int(e["image"]) // int(e["patch"])) ** 2 + 1:
        return False
    if st.final_norm is None or st.final_norm.kind != "layernorm" or st.embedding_norm is not None:
        return False
    if m.head.kind != "classifier" or m.head["pool"] != "cls" or any(b != st.layers[0] for b in st.layers):
        return False
    subs = dict(st.layers[0].sublayers)
    a = subs.get("attn")
    return (
        set(subs) == {"attn", "mlp", "ln_1", "ln_2"}
        and a.kind == "mha"
        and not a["causal"]
        and (a["bias"] is not False or a["out_bias"] is True)
        and subs["mlp"].kind == "mlp"
        and subs["mlp"]["activation"] in ACTS
        and placement_of(st.layers[0]) == "pre"
    )


def to_config(spec: Spec) -> dict[str, Any]:
    m = spec.model
    p = parts(spec)
    e, classes = m.embedding, int(m.head["classes"])
    assert p.stack.final_norm is not None
    return {
        "model_type": "vit",
        "architectures": ["ViTForImageClassification"],
        "image_size": e["image"],
        "patch_size": e["patch"],
        "num_channels": e["channels"],
        "hidden_size": m.d_model,
        "num_hidden_layers": p.n_layers,
        "num_attention_heads": p.heads,
        "intermediate_size": p.mlp["hidden"],
        "hidden_act": ACTS[str(p.mlp["activation"])],
        "layer_norm_eps": p.stack.final_norm["eps"],
        "qkv_bias": p.attn["bias"] is not False,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "id2label": {str(i): f"LABEL_{i}" for i in range(classes)},
        "label2id": {f"LABEL_{i}": i for i in range(classes)},
    }


register(
    Family(
        "vit",
        to_text,
        layout="vit",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "embeddings.patch_embeddings.projection.weight"),
        priority=5,
        claims=claims,
        to_config=to_config,
        hf_prefix="vit.",
    )
)
