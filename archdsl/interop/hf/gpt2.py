"""GPT-2 (Radford et al. 2019): ``GPT2LMHeadModel``. Its Conv1D layers hold (in, out) weights, so
every projection is transposed on the way in and out; q, k and v are already fused (``c_attn``)."""

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
    model_name,
    num,
    placement_of,
    register,
    same,
    suffix_prefix,
    transposed,
)
from archdsl.ir import Spec


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(
        c,
        [
            "resid_pdrop",
            "embd_pdrop",
            "attn_pdrop",
            "summary_type",
            "summary_use_proj",
            "summary_activation",
            "summary_proj_to_labels",
            "summary_first_dropout",
            "reorder_and_upcast_attn",  # numerics (fp32 softmax), same function
            "n_ctx",
        ],
    )
    d = int(f.need("n_embd"))
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("n_positions"))),
        ("d_model", str(d)),
        ("n_heads", str(f.need("n_head"))),
        ("d_ff", str(f.get("n_inner") or 4 * d)),
        ("n_layers", str(f.need("n_layer"))),
        ("eps", num(float(f.get("layer_norm_epsilon", 1e-5)))),
    ]
    activation = act(f, "activation_function", "gelu_new")
    f.expect("scale_attn_weights", [True])
    f.expect("scale_attn_by_inverse_layer_idx", [False])
    f.expect("add_cross_attention", [False])
    tied = bool(f.get("tie_word_embeddings", True))
    f.finish()
    name = model_name(c, "gpt2")
    body = "\n".join(
        [
            f"model {name} {{",
            "  type       = decoder",
            "  d_model    = d_model",
            "  vocab      = vocab",
            "  embedding  = token_embedding()",
            "  position   = learned(max_len = context)",
            "",
            "  block {",
            "    repeat    = n_layers",
            "    placement = pre",
            "    norm      = layernorm(eps = eps)",
            "    attention = mha(heads = n_heads, causal = true, bias = true)",
            f"    ffn       = mlp(hidden = d_ff, activation = {activation}, bias = true)",
            "  }",
            "",
            "  final_norm = layernorm(eps = eps)",
            f"  head       = lm_head(tied = {num(tied)})",
            "}",
        ]
    )
    return Text(["GPT-2 (Radford et al. 2019), imported from a Hugging Face config."], consts, body)


def rules(g: Geometry, p: str) -> list[Rule]:
    out = [same(f"{p}wte.weight", "wte.weight"), same(f"{p}wpe.weight", "wpe.weight")]
    for i in range(g.n_layers):
        h = f"{p}h.{i}."
        for t in ("weight", "bias"):
            out += [same(h + f"ln_1.{t}", f"h.{i}.ln_1.{t}"), same(h + f"ln_2.{t}", f"h.{i}.ln_2.{t}")]
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            out += [
                transposed(h + name + ".weight", f"h.{i}.{name}.weight"),
                same(h + name + ".bias", f"h.{i}.{name}.bias"),
            ]
    out += [same(f"{p}ln_f.weight", "ln_f.weight"), same(f"{p}ln_f.bias", "ln_f.bias")]
    return out


def claims(spec: Spec) -> bool:
    m = spec.model
    st = m.stacks[0]
    subs = dict(st.layers[0].sublayers)
    return (
        m.type == "decoder"
        and st.position is not None
        and st.position.kind == "learned"
        and not st.position["offset"]
        and st.final_norm is not None
        and st.final_norm.kind == "layernorm"
        and subs["attn"].kind == "mha"
        and subs["mlp"].kind == "mlp"
        and "wte" not in subs
        and placement_of(st.layers[0]) == "pre"
    )


def to_config(spec: Spec) -> dict[str, Any]:
    m = spec.model
    st = m.stacks[0]
    subs = dict(st.layers[0].sublayers)
    attn, mlp, pos = subs["attn"], subs["mlp"], st.position
    assert pos is not None
    acts = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": m.vocab,
        "n_positions": pos["max_len"],
        "n_embd": m.d_model,
        "n_layer": len(st.layers),
        "n_head": int(attn["heads"]),
        "n_inner": mlp["hidden"],
        "activation_function": acts[str(mlp["activation"])],
        "layer_norm_epsilon": subs["ln_1"]["eps"],
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": bool(m.head["tied"]),
    }


register(
    Family(
        "gpt2",
        to_text,
        layout="gpt2",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "h.0.attn.c_attn.weight"),
        priority=10,
        claims=claims,
        to_config=to_config,
        hf_prefix="transformer.",
    )
)
