"""Jamba (Lieber et al. 2024, "Jamba: A Hybrid Transformer-Mamba Language Model"): ``JambaForCausalLM``.
A hybrid decoder: layer i attends where ``i % attn_layer_period == attn_layer_offset`` (grouped-query
attention without positions or biases) and is a Mamba mixer elsewhere (with RMSNorms on Δ, B and C);
its feed-forward is a mixture of SwiGLU experts where ``i % expert_layer_period ==
expert_layer_offset`` (top-k of a softmax, not renormalised) and a SwiGLU elsewhere. Each layer is
pre-norm (RMSNorm) around both; a final RMSNorm; an untied head.

The spec names one block per (mixer, feed-forward) pair the config uses and stacks them in the
shortest layer pattern that repeats. HF's tensors: ``layers.{i}.mamba.*`` (our ``h.{i}.mixer.*``, the
same names), ``layers.{i}.self_attn.{q,k,v,o}_proj`` (our fused ``attn.c_attn``), ``feed_forward``
(``mlp``: its router, its fused experts, or a SwiGLU's projections), ``input_layernorm`` (``ln_1``),
``pre_ff_layernorm`` (``ln_2``), ``final_layernorm`` (``ln_f``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from archdsl.interop.hf.base import (
    Family,
    Fields,
    Geometry,
    Rule,
    Text,
    fused,
    fused_experts,
    model_name,
    num,
    pattern,
    register,
    same,
    suffix_prefix,
)
from archdsl.interop.hf.mamba import MIXER
from archdsl.ir import Spec

#: fields that change no result: initialisation, kernels, cache and routing-loss switches, the
#: positions bound (Jamba has no positional scheme), token ids
IRRELEVANT = (
    "initializer_range",
    "use_mamba_kernels",
    "use_mambapy",
    "use_associative_scan",
    "num_logits_to_keep",
    "max_position_embeddings",
    "output_router_logits",
    "router_aux_loss_coef",
    "attention_dropout",
)

#: a layer's (mixer, feed-forward), as a block name
BLOCKS = {
    ("mamba", "mlp"): "mamba_mlp",
    ("mamba", "moe"): "mamba_moe",
    ("attention", "mlp"): "attention_mlp",
    ("attention", "moe"): "attention_moe",
}


def layer_kinds(c: Mapping[str, Any], n_layers: int) -> list[tuple[str, str]]:
    """Each layer's (mixer, feed-forward), as ``JambaConfig.layers_block_type`` and
    ``layers_num_experts`` give them."""
    ap, ao = int(c.get("attn_layer_period", 8)), int(c.get("attn_layer_offset", 4))
    ep, eo = int(c.get("expert_layer_period", 2)), int(c.get("expert_layer_offset", 1))
    experts = int(c.get("num_experts", 16))
    return [
        (
            "attention" if i % ap == ao else "mamba",
            "moe" if experts > 1 and i % ep == eo else "mlp",
        )
        for i in range(n_layers)
    ]


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(c, list(IRRELEVANT))
    d = int(f.need("hidden_size"))
    n_layers = int(f.need("num_hidden_layers"))
    for key, default in (("attn_layer_period", 8), ("expert_layer_period", 2)):
        if int(f.get(key, default)) < 1:
            f.refuse(key, "must be at least 1")
    for key, period, default in (
        ("attn_layer_offset", "attn_layer_period", 4),
        ("expert_layer_offset", "expert_layer_period", 1),
    ):
        if not 0 <= int(f.get(key, default)) < max(1, int(f.get(period, 1) or 1)):
            f.refuse(key, f"must lie in [0, {period})")
    kinds = layer_kinds(c, n_layers)
    f.expect("hidden_act", ["silu"], " (the feed-forwards are SwiGLU)")
    f.expect("sliding_window", [None], " (Jamba's attention layers see every position)")
    expand = f.get("mamba_expand", 2)
    if not isinstance(expand, int) or isinstance(expand, bool):
        f.refuse("mamba_expand", f"{json.dumps(expand)} is not supported (archdsl: a whole number)")
        expand = 2
    rank = f.get("mamba_dt_rank", "auto")
    rank = math.ceil(d / 16) if rank == "auto" else int(rank)
    heads = int(f.need("num_attention_heads"))
    kv = int(f.get("num_key_value_heads", heads))
    experts = int(f.get("num_experts", 16))
    top_k = int(f.get("num_experts_per_tok", 2))  # read whether or not a layer has experts
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("d_model", str(d)),
        ("n_heads", str(heads)),
        ("n_kv_heads", str(kv)),
        ("d_ff", str(f.need("intermediate_size"))),
        ("n_layers", str(n_layers)),
        ("eps", num(float(f.get("rms_norm_eps", 1e-6)))),
    ]
    if any(ffn == "moe" for _, ffn in kinds):
        consts[4:4] = [("experts", str(experts)), ("top_k", str(top_k))]
    mamba = [
        ("d_state", str(int(f.get("mamba_d_state", 16)))),
        ("d_conv", str(int(f.get("mamba_d_conv", 4)))),
        ("expand", str(expand)),
        *([] if rank == math.ceil(d / 16) else [("dt_rank", str(rank))]),  # the default: ceil(d / 16)
        ("dt_bc_norm", "true"),
        ("norm_eps", "eps"),
    ]
    if not f.get("mamba_conv_bias", True):
        mamba.append(("conv_bias", "false"))
    if f.get("mamba_proj_bias", False):
        mamba.append(("bias", "true"))
    tied = bool(f.get("tie_word_embeddings", False))
    f.finish()
    mixers = {
        "mamba": "mixer     = mamba(" + ", ".join(f"{k} = {v}" for k, v in mamba) + ")",
        "attention": "attention = mha(heads = n_heads, kv_heads = n_kv_heads, bias = false)",
    }
    ffns = {
        "mlp": "ffn       = swiglu(hidden = d_ff)",
        "moe": "ffn       = moe(experts = experts, top_k = top_k, hidden = d_ff, expert = glu, "
        "activation = silu, normalize = false)",
    }
    # the first layer's block in full; the others built on it, with what differs
    first = kinds[0]
    blocks = [
        f"block {BLOCKS[first]} {{",
        "  placement = pre",
        "  norm      = rmsnorm(eps = eps)",
        f"  {mixers[first[0]]}",
        f"  {ffns[first[1]]}",
        "}",
        "",
    ]
    for mixer, ffn in [b for b in BLOCKS if b in set(kinds) and b != first]:
        lines = [f"  base      = {BLOCKS[first]}"]
        if mixer != first[0]:
            lines += [
                "  mixer     = none" if first[0] == "mamba" else "  attention = none",
                f"  {mixers[mixer]}",
            ]
        if ffn != first[1]:
            lines.append(f"  {ffns[ffn]}")
        blocks += [f"block {BLOCKS[mixer, ffn]} {{", *lines, "}", ""]
    period, times = pattern([BLOCKS[k] for k in kinds])
    items = f"[{', '.join(period)}]"
    layers = items if times == 1 else f"{items} * (n_layers / {len(period)})"
    body = [
        *blocks,
        f"model {model_name(c, 'jamba')} {{",
        "  type       = decoder",
        "  d_model    = d_model",
        "  vocab      = vocab",
        "  embedding  = token_embedding()",
        "  position   = none",
        f"  layers     = {layers}",
        "  final_norm = rmsnorm(eps = eps)",
        f"  head       = lm_head(tied = {num(tied)})",
        "}",
    ]
    header = ["Jamba (Lieber et al. 2024), imported from a Hugging Face config."]
    return Text(header, consts, "\n".join(body))


def rules(g: Geometry, p: str) -> list[Rule]:
    """Every layer's tensors of both kinds: the rules whose tensors a layer lacks (the attention's in a
    Mamba layer, the experts' in a dense one) are skipped."""
    sizes = (g.q, g.kv, g.kv)
    out = [same(f"{p}embed_tokens.weight", "wte.weight"), same(f"{p}final_layernorm.weight", "ln_f.weight")]
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        out += [same(h + "input_layernorm.weight", o + "ln_1.weight")]
        out += [same(h + "pre_ff_layernorm.weight", o + "ln_2.weight")]
        for name in (*MIXER, "dt_layernorm", "b_layernorm", "c_layernorm"):
            out += [same(h + f"mamba.{name}.{t}", o + f"mixer.{name}.{t}") for t in ("weight", "bias")]
        out += [same(h + f"mamba.{t}", o + f"mixer.{t}") for t in ("A_log", "D")]
        a = h + "self_attn."
        out.append(fused([a + f"{x}_proj.weight" for x in "qkv"], o + "attn.c_attn.weight", sizes))
        out.append(same(a + "o_proj.weight", o + "attn.c_proj.weight"))
        out.append(same(h + "feed_forward.router.weight", o + "mlp.router.weight"))
        if g.experts:
            out.append(fused_experts(h + "feed_forward", o + "mlp", g.experts))
        for proj in ("gate_proj", "up_proj", "down_proj"):
            out.append(same(h + f"feed_forward.{proj}.weight", o + f"mlp.{proj}.weight"))
    return out


def claims(spec: Spec) -> bool:
    """A decoder of RMSNorm pre-norm blocks whose mixers are Jamba's (``mamba`` with the norms on Δ, B
    and C; ``mha`` without positions or biases) and whose feed-forwards are SwiGLUs or Jamba's
    mixture, in the layer layout a Jamba config gives."""
    try:
        return to_config(spec) is not None
    except (KeyError, ValueError, TypeError):
        return False


def _layer(block: Any) -> tuple[str, str] | None:
    """A block's (mixer, feed-forward) as Jamba holds them, or None."""
    from archdsl.placements import PLACEMENTS

    subs = dict(block.sublayers)
    mix = "mixer" if "mixer" in subs else "attn"
    if sorted(subs) != sorted(["ln_1", mix, "ln_2", "mlp"]):
        return None
    if list(block.body) != PLACEMENTS["pre"].expand([(mix, False), ("mlp", False)], {})[1]:
        return None
    m, ffn = subs[mix], subs["mlp"]
    if mix == "mixer" and not (m.kind == "mamba" and m["dt_bc_norm"]):
        return None
    if mix == "attn" and not (
        m.kind == "mha"
        and not m["bias"]
        and not m["out_bias"]
        and m["head_dim"] is None
        and m["score"] == "scaled"
        and m["scale"] is None
        and not m["softcap"]
        and m["qk_norm"] == "none"
        and not m["prefix"]
    ):
        return None
    if ffn.kind == "swiglu" and not ffn["bias"]:
        return ("mamba" if mix == "mixer" else "attention", "mlp")
    if (
        ffn.kind == "moe"
        and ffn["expert"] == "glu"
        and ffn["activation"] == "silu"
        and not ffn["normalize"]
        and not ffn["shared"]
        and not ffn.get("routed_scale", 1.0) != 1.0
    ):
        return ("mamba" if mix == "mixer" else "attention", "moe")
    return None


def to_config(spec: Spec) -> dict[str, Any] | None:
    """The ``JambaConfig`` of a spec laid out as Jamba (None where it is not)."""
    m = spec.model
    if m.type != "decoder" or m.lora is not None or len(m.stacks) != 1:
        return None
    st = m.stacks[0]
    kinds = [_layer(b) for b in st.layers]
    if not kinds or None in kinds or len(set(st.instances)) != len(st.layers):
        return None
    n = len(kinds)
    attn_at = [i for i, (mix, _) in enumerate(kinds) if mix == "attention"]
    moe_at = [i for i, (_, ffn) in enumerate(kinds) if ffn == "moe"]
    periods = {}
    for name, where in (("attn", attn_at), ("expert", moe_at)):
        found = None
        for period in range(1, n + 1):
            offset = where[0] % period if where else period
            if where and offset < period and where == list(range(offset, n, period)):
                found = (period, offset)
                break
        if found is None:
            if where:
                return None
            found = (n + 1, n)  # none of this kind: an offset no layer reaches
        periods[name] = found
    mixers = [b.sublayer("mixer") for b in st.layers if "mixer" in dict(b.sublayers)]
    attns = [b.sublayer("attn") for b in st.layers if "attn" in dict(b.sublayers)]
    moes = [b.sublayer("mlp") for b in st.layers if b.sublayer("mlp").kind == "moe"]
    dense = [b.sublayer("mlp") for b in st.layers if b.sublayer("mlp").kind == "swiglu"]
    norms = {b.sublayer(k)["eps"] for b in st.layers for k in ("ln_1", "ln_2")}
    norms |= {x["norm_eps"] for x in mixers}
    hidden = {x["hidden"] for x in moes + dense}
    if (
        len({x.params for x in mixers}) > 1
        or len({x.params for x in attns}) > 1
        or len({(x["experts"], x["top_k"]) for x in moes}) > 1
        or len(hidden) != 1
        or len(norms) != 1
        or any(
            b.sublayer(k).kind != "rmsnorm" or b.sublayer(k)["offset"]
            for b in st.layers
            for k in ("ln_1", "ln_2")
        )
        or st.position is not None
        or st.embedding_norm is not None
        or st.final_norm is None
        or st.final_norm.kind != "rmsnorm"
        or st.final_norm["offset"]
        or st.final_norm["eps"] not in norms
        or st.dropout
        or st.layerdrop
        or m.embedding.kind != "token_embedding"
        or m.embedding["width"]
        or m.embedding["types"]
        or m.embedding["scale"]
        or m.head.kind != "lm_head"
        or m.head["bias"]
        or m.head["softcap"]
        or m.head["rescale"]
    ):
        return None
    cfg: dict[str, Any] = {
        "model_type": "jamba",
        "architectures": ["JambaForCausalLM"],
        "vocab_size": m.vocab,
        "hidden_size": m.d_model,
        "intermediate_size": hidden.pop(),
        "num_hidden_layers": n,
        "hidden_act": "silu",
        "rms_norm_eps": norms.pop(),
        "tie_word_embeddings": bool(m.head["tied"]),
        "attn_layer_period": periods["attn"][0],
        "attn_layer_offset": periods["attn"][1],
        "expert_layer_period": periods["expert"][0],
        "expert_layer_offset": periods["expert"][1],
        "num_experts": moes[0]["experts"] if moes else 1,
        "num_experts_per_tok": moes[0]["top_k"] if moes else 1,
    }
    if attns:
        cfg.update(num_attention_heads=attns[0]["heads"], num_key_value_heads=attns[0]["kv_heads"])
    else:
        return None  # a Jamba config always has attention heads; a pure Mamba stack is `mamba`'s
    if mixers:
        x = mixers[0]
        cfg.update(
            mamba_d_state=x["d_state"],
            mamba_d_conv=x["d_conv"],
            mamba_expand=x["expand"],
            mamba_dt_rank=x["dt_rank"],
            mamba_conv_bias=bool(x["conv_bias"]),
            mamba_proj_bias=bool(x["bias"]),
        )
    return cfg


register(
    Family(
        "jamba",
        to_text,
        layout="jamba",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "layers.0.pre_ff_layernorm.weight"),
        priority=25,
        claims=claims,
        to_config=lambda spec: to_config(spec) or {},
        tied=(("lm_head.weight", ("model.embed_tokens.weight",)),),
    )
)
