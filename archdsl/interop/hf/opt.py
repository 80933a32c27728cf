"""OPT (Zhang et al. 2022): ``OPTForCausalLM``. Learned positions that start at row 2 (HF's
``OPTLearnedPositionalEmbedding`` offset), pre-LN (``do_layer_norm_before``, with a final norm) or
post-LN without one (OPT-350m), and a token table narrower than the model (``word_embed_proj_dim``)
with ``project_in`` / ``project_out``."""

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

OFFSET = 2  # OPT's positions read rows 2, 3, … of its table


def to_text(c: Mapping[str, Any]) -> Text:
    # activation_dropout: in the published config.json files (opt-125m …), no longer an OPTConfig field
    f = Fields(c, ["dropout", "attention_dropout", "activation_dropout", "layerdrop", "init_std"])
    d = int(f.need("hidden_size"))
    width = int(f.get("word_embed_proj_dim", d))
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("max_position_embeddings"))),
        ("d_model", str(d)),
    ]
    if width != d:
        consts.append(("width", str(width)))
    consts += [
        ("n_heads", str(f.need("num_attention_heads"))),
        ("d_ff", str(f.need("ffn_dim"))),
        ("n_layers", str(f.need("num_hidden_layers"))),
    ]
    activation = act(f, "activation_function", "relu")
    pre = bool(f.get("do_layer_norm_before", True))
    removed = bool(f.get("_remove_final_layer_norm", False))
    final = pre and not removed  # post-LN OPT has no final norm
    bias = num(bool(f.get("enable_bias", True)))
    affine = bool(f.get("layer_norm_elementwise_affine", True))
    tied = bool(f.get("tie_word_embeddings", True))
    f.finish()
    norm = "layernorm()" if affine else "layernorm(affine = false)"
    embedding = "token_embedding(width = width)" if width != d else "token_embedding()"
    body = [
        f"model {model_name(c, 'opt')} {{",
        "  type      = decoder",
        "  d_model   = d_model",
        "  vocab     = vocab",
        f"  embedding = {embedding}",
        f"  position  = learned(max_len = context, offset = {OFFSET})",
        "",
        "  block {",
        "    repeat    = n_layers",
        f"    placement = {'pre' if pre else 'post'}",
        f"    norm      = {norm}",
        f"    attention = mha(heads = n_heads, causal = true, bias = {bias})",
        f"    ffn       = mlp(hidden = d_ff, activation = {activation}, bias = {bias})",
        "  }",
        "",
    ]
    if final:
        body.append(f"  final_norm = {norm}")
    body += [f"  head      = lm_head(tied = {num(tied)})", "}"]
    return Text(["OPT (Zhang et al. 2022), imported from a Hugging Face config."], consts, "\n".join(body))


def rules(g: Geometry, p: str) -> list[Rule]:
    out = [
        same(f"{p}embed_tokens.weight", "wte.weight"),
        same(f"{p}embed_positions.weight", "wpe.weight"),
        same(f"{p}project_in.weight", "wte.project_in.weight"),
        same(f"{p}project_out.weight", "lm_head.project_out.weight"),
    ]
    for t in ("weight", "bias"):
        out.append(same(f"{p}final_layer_norm.{t}", f"ln_f.{t}"))
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        a = h + "self_attn."
        for t in ("weight", "bias"):
            out += [
                fused([a + f"{x}_proj.{t}" for x in "qkv"], o + f"attn.c_attn.{t}", (g.q, g.kv, g.kv)),
                same(a + f"out_proj.{t}", o + f"attn.c_proj.{t}"),
                same(h + f"self_attn_layer_norm.{t}", o + f"ln_1.{t}"),
                same(h + f"fc1.{t}", o + f"mlp.c_fc.{t}"),
                same(h + f"fc2.{t}", o + f"mlp.c_proj.{t}"),
                same(h + f"final_layer_norm.{t}", o + f"ln_2.{t}"),
            ]
    return out


def claims(spec: Spec) -> bool:
    m = spec.model
    if m.type != "decoder":
        return False
    st = m.stacks[0]
    p = parts(spec)
    place = {placement_of(b) for b in st.layers}
    return (
        st.position is not None
        and st.position.kind == "learned"
        and st.position["offset"] == OFFSET
        and st.embedding_norm is None
        and place in ({"pre"}, {"post"})
        # post-LN OPT has no final norm; pre-LN has one unless _remove_final_layer_norm
        and (place == {"pre"} or st.final_norm is None)
        and (st.final_norm is None or st.final_norm.kind == "layernorm")
        and m.embedding.kind == "token_embedding"
        and m.embedding["project"] in (None, "early")
        and not m.embedding["project_bias"]
        and not m.embedding["types"]
        and not m.embedding["scale"]
        and p.attn.kind == "mha"
        and p.mlp.kind == "mlp"
        and p.heads == p.kv_heads
        and bool(p.attn["bias"]) == bool(p.attn["out_bias"]) == bool(p.mlp["bias"])
        and m.head.kind == "lm_head"
        and not m.head["bias"]
        and _norms_fit(spec)
    )


def _norms_fit(spec: Spec) -> bool:
    """Every LayerNorm as OPT's: eps 1e-5 (OPT configs have no eps), a bias wherever there is a weight,
    the same ``layer_norm_elementwise_affine`` throughout."""
    st = spec.model.stacks[0]
    norms = [n for b in st.layers for k, n in b.sublayers if k in ("ln_1", "ln_2")]
    norms += [st.final_norm] if st.final_norm is not None else []
    return (
        len(norms) >= 2
        and all(n.kind == "layernorm" and n["eps"] == 1e-5 for n in norms)
        and len({(bool(n["affine"]), bool(n["bias"]) or not n["affine"]) for n in norms}) == 1
        and all(bool(n["bias"]) or not n["affine"] for n in norms)
    )


def to_config(spec: Spec) -> dict[str, Any]:
    p = parts(spec)
    m, st = p.model, p.stack
    acts = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new", "silu": "silu"}
    return {
        "model_type": "opt",
        "architectures": ["OPTForCausalLM"],
        "vocab_size": m.vocab,
        "hidden_size": m.d_model,
        "word_embed_proj_dim": int(m.embedding["width"] or m.d_model),
        "num_attention_heads": p.heads,
        "ffn_dim": p.mlp["hidden"],
        "num_hidden_layers": p.n_layers,
        "max_position_embeddings": p.pos["max_len"],
        "activation_function": acts[str(p.mlp["activation"])],
        "do_layer_norm_before": placement_of(st.layers[0]) == "pre",
        "_remove_final_layer_norm": placement_of(st.layers[0]) == "pre" and st.final_norm is None,
        "enable_bias": bool(p.attn["bias"]),
        "layer_norm_elementwise_affine": p.subs["ln_1"]["affine"] is not False,
        "tie_word_embeddings": bool(m.head["tied"]),
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "layerdrop": 0.0,
    }


register(
    Family(
        "opt",
        to_text,
        layout="opt",
        rules=rules,
        detect=lambda keys: (
            suffix_prefix(keys, "layers.0.fc1.weight")
            if any(k.endswith("decoder.embed_positions.weight") for k in keys)
            else None
        ),
        priority=25,
        claims=claims,
        to_config=to_config,
        hf_prefix="model.decoder.",
        tied=(("lm_head.weight", ("model.decoder.embed_tokens.weight",)),),
    )
)
