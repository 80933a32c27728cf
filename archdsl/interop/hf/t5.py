"""T5 (Raffel et al. 2020): ``T5ForConditionalGeneration``, with Flan-T5's gated GELU and untied head."""

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
    call,
    fused,
    model_name,
    num,
    parts,
    register,
    same,
)
from archdsl.ir import Spec


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(
        c,
        [
            "dropout_rate",
            "initializer_factor",
            "classifier_dropout",
            "dense_act_fn",
            "is_gated_act",
            "n_positions",
        ],
    )
    d = int(f.need("d_model"))
    heads = int(f.need("num_heads"))
    head_dim = int(f.get("d_kv", d // heads))
    n_layers = int(f.need("num_layers"))
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("d_model", str(d)),
        ("n_heads", str(heads)),
    ]
    attn = [("heads", "n_heads")]
    if head_dim * heads != d:
        consts.append(("head_dim", str(head_dim)))
        attn.append(("head_dim", "head_dim"))
    attn += [("bias", "false"), ("score", "dot")]
    consts += [
        ("d_ff", str(f.need("d_ff"))),
        ("n_layers", str(n_layers)),
        ("n_dec_layers", str(f.get("num_decoder_layers", n_layers))),
        ("buckets", str(f.get("relative_attention_num_buckets", 32))),
        ("max_distance", str(f.get("relative_attention_max_distance", 128))),
        ("eps", num(float(f.get("layer_norm_epsilon", 1e-6)))),
    ]
    proj = f.get("feed_forward_proj", "relu")
    if proj == "relu":
        ffn = "mlp(hidden = d_ff, activation = relu, bias = false)"
    elif proj == "gated-gelu":  # gelu_new: the tanh form
        ffn = "geglu(hidden = d_ff, tanh = true)"
    else:
        f.refuse("feed_forward_proj", f"{json.dumps(proj)} is not supported (relu, gated-gelu)")
        ffn = "mlp(hidden = d_ff)"
    tied = bool(f.get("tie_word_embeddings", True))
    # transformers 5 always ties and says with `scale_decoder_outputs` whether the head rescales (T5
    # 1.0) or not (T5 1.1 / Flan-T5); transformers 4 said both with `tie_word_embeddings`.
    rescale = bool(f.get("scale_decoder_outputs", tied))
    f.expect("is_decoder", [False])
    f.finish()
    a = call("mha", attn)
    stack = [
        "    position   = t5(buckets = buckets, max_distance = max_distance)",
        "",
        "    block {",
        "      repeat    = {n}",
        "      placement = pre",
        "      norm      = rmsnorm(eps = eps)",
        f"      attention = {a}",
    ]
    enc = [s.replace("{n}", "n_layers") for s in stack]
    dec = [s.replace("{n}", "n_dec_layers") for s in stack] + [f"      cross_attention = {a}"]
    end = [f"      ffn       = {ffn}", "    }", "", "    final_norm = rmsnorm(eps = eps)", "  }"]
    body = "\n".join(
        [
            f"model {model_name(c, 't5')} {{",
            "  type      = encoder_decoder",
            "  d_model   = d_model",
            "  vocab     = vocab",
            "  embedding = token_embedding()",
            "",
            "  encoder {",
            *enc,
            *end,
            "",
            "  decoder {",
            *dec,
            *end,
            "",
            f"  head      = lm_head(tied = {num(tied)}, rescale = {num(rescale)})",
            "}",
        ]
    )
    return Text(["T5 (Raffel et al. 2020), imported from a Hugging Face config."], consts, body)


def rules(g: Geometry, p: str = "") -> list[Rule]:
    rules = [same("shared.weight", "wte.weight")]
    for stack, n in (("encoder", g.n_layers), ("decoder", g.n_dec_layers or g.n_layers)):
        rules.append(
            same(
                f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                f"{stack}.pos.relative_attention_bias.weight",
            )
        )
        rules.append(same(f"{stack}.final_layer_norm.weight", f"{stack}.ln_f.weight"))
        for i in range(n):
            b, h = f"{stack}.block.{i}.layer", f"{stack}.h.{i}"
            sa = f"{b}.0.SelfAttention"
            rules.append(
                fused(
                    [f"{sa}.q.weight", f"{sa}.k.weight", f"{sa}.v.weight"],
                    f"{h}.attn.c_attn.weight",
                    (g.q, g.kv, g.kv),
                )
            )
            rules.append(same(f"{sa}.o.weight", f"{h}.attn.c_proj.weight"))
            rules.append(same(f"{b}.0.layer_norm.weight", f"{h}.ln_1.weight"))
            ff = 1
            if stack == "decoder":
                ca = f"{b}.1.EncDecAttention"
                rules.append(same(f"{ca}.q.weight", f"{h}.cross.q_proj.weight"))
                rules.append(
                    fused([f"{ca}.k.weight", f"{ca}.v.weight"], f"{h}.cross.kv_proj.weight", (g.kv, g.kv))
                )
                rules.append(same(f"{ca}.o.weight", f"{h}.cross.c_proj.weight"))
                rules.append(same(f"{b}.1.layer_norm.weight", f"{h}.ln_2.weight"))
                ff = 2
            dr = f"{b}.{ff}.DenseReluDense"
            rules += [
                same(f"{dr}.wi.weight", f"{h}.mlp.c_fc.weight"),
                same(f"{dr}.wo.weight", f"{h}.mlp.c_proj.weight"),
                same(f"{dr}.wi_0.weight", f"{h}.mlp.gate_proj.weight"),
                same(f"{dr}.wi_1.weight", f"{h}.mlp.up_proj.weight"),
                same(f"{dr}.wo.weight", f"{h}.mlp.down_proj.weight"),
                same(f"{b}.{ff}.layer_norm.weight", f"{h}.ln_{ff + 1}.weight"),
            ]
    return rules


def claims(spec: Spec) -> bool:
    """An encoder-decoder with T5 relative positions in both stacks, pre-RMSNorm blocks, bias-free
    unscaled attention, a ReLU MLP or a tanh-GELU GLU, and a tied head (transformers 5 always ties T5's;
    ``rescale`` is T5 1.0's d^-1/2 before it)."""
    m = spec.model
    if m.type != "encoder_decoder" or len(m.stacks) != 2 or m.embedding.kind != "token_embedding":
        return False
    if m.head.kind != "lm_head" or not m.head["tied"] or m.embedding["types"] or m.embedding["width"]:
        return False
    first: tuple[Any, ...] | None = None
    for st in m.stacks:
        if st.position is None or st.position.kind != "t5" or st.embedding_norm is not None:
            return False
        if st.final_norm is None or st.final_norm.kind != "rmsnorm":
            return False
        if any(b != st.layers[0] for b in st.layers):
            return False
        subs = dict(st.layers[0].sublayers)
        a, mlp = subs.get("attn"), subs.get("mlp")
        if a is None or a.kind != "mha" or a["bias"] or a["out_bias"] or a["score"] != "dot":
            return False
        if bool(a["causal"]) != (st.role == "decoder") or (st.role == "decoder") != ("cross" in subs):
            return False
        relu = mlp is not None and mlp.kind == "mlp" and mlp["activation"] == "relu" and not mlp["bias"]
        if not (relu or (mlp is not None and mlp.kind == "geglu" and bool(mlp["tanh"]))):
            return False
        shape = (a["heads"], a["head_dim"], mlp, st.position["buckets"], st.position["max_distance"])
        if first is not None and shape != first:
            return False
        first = shape
    return True


def to_config(spec: Spec) -> dict[str, Any]:
    m = spec.model
    enc, dec = m.stacks
    p = parts(spec)  # the decoder's
    mlp, pos = p.mlp, dec.position
    assert pos is not None and dec.final_norm is not None
    return {
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "vocab_size": m.vocab,
        "d_model": m.d_model,
        "d_kv": p.head_dim,
        "d_ff": mlp["hidden"],
        "num_layers": len(enc.layers),
        "num_decoder_layers": len(dec.layers),
        "num_heads": p.heads,
        "relative_attention_num_buckets": pos["buckets"],
        "relative_attention_max_distance": pos["max_distance"],
        "dropout_rate": 0.0,
        "layer_norm_epsilon": dec.final_norm["eps"],
        "feed_forward_proj": "relu" if mlp.kind == "mlp" else "gated-gelu",
        # transformers 5 reads whether the head rescales from this field (and then ties regardless)
        "tie_word_embeddings": bool(m.head["rescale"]),
        "decoder_start_token_id": 0,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }


register(
    Family(
        "t5",
        to_text,
        layout="t5",
        rules=rules,
        detect=lambda keys: "" if "encoder.block.0.layer.0.SelfAttention.q.weight" in keys else None,
        claims=claims,
        to_config=to_config,
        hf_prefix="",
    )
)
