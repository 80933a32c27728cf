"""The Llama layout: Llama 1–3 (Touvron et al. 2023), Mistral, Mixtral, Qwen 2 and Gemma 2 — RoPE,
RMSNorm, a gated feed-forward, separate q/k/v projections (fused into our ``c_attn``), and for
Mixtral transformers 5's fused experts (split per expert)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archdsl.interop.hf.base import (
    Family,
    Fields,
    Geometry,
    Rule,
    Text,
    call,
    decoder_body,
    fused,
    fused_experts,
    model_name,
    num,
    parts,
    placement_of,
    read_layer_types,
    register,
    rope,
    rope_config,
    same,
    suffix_prefix,
)
from archdsl.ir import Spec

LLAMA_IRRELEVANT = [
    "attention_dropout",
    "pretraining_tp",
    "router_aux_loss_coef",
    "router_jitter_noise",
    "output_router_logits",
    "max_window_layers",
    "cache_implementation",
]


def _llama_like(c: Mapping[str, Any], family: str) -> Text:
    f = Fields(c, LLAMA_IRRELEVANT)
    d = int(f.need("hidden_size"))
    heads = int(f.need("num_attention_heads"))
    kv = int(f.get("num_key_value_heads", heads))
    head_dim = int(f.get("head_dim", 256 if family == "gemma" else d // heads))
    n_layers = int(f.need("num_hidden_layers"))
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("max_position_embeddings"))),
        ("d_model", str(d)),
        ("n_heads", str(heads)),
        ("n_kv_heads", str(kv)),
    ]
    attn = [("heads", "n_heads"), ("kv_heads", "n_kv_heads")]
    if head_dim * heads != d:
        consts.append(("head_dim", str(head_dim)))
        attn.append(("head_dim", "head_dim"))
    consts.append(("d_ff", str(f.need("intermediate_size"))))
    if family == "mixtral":
        consts += [
            ("experts", str(f.need("num_local_experts"))),
            ("top_k", str(f.get("num_experts_per_tok", 2))),
        ]
    consts.append(("n_layers", str(n_layers)))
    if family != "olmo":  # OLMo 1's LayerNorm has no eps field: 1e-5, the layernorm default
        consts.append(("eps", num(float(f.get("rms_norm_eps", 1e-6)))))
    if family == "gemma":
        f.expect("hidden_act", ["gelu_pytorch_tanh", "gelu_new"], " (GeGLU with the tanh GELU)")
        f.expect("hidden_activation", [None, "gelu_pytorch_tanh", "gelu_new"], " (GeGLU, tanh GELU)")
        f.expect("use_bidirectional_attention", [False])
    else:
        f.expect("hidden_act", ["silu"], " (the gated feed-forward is SwiGLU)")
    if family == "olmo" and f.get("clip_qkv") is not None:
        f.refuse("clip_qkv", "clipping q, k and v is not expressed in archdsl")
    if family == "qwen2":
        attn += [("bias", "true"), ("out_bias", "false")]  # q, k, v biases; none on o_proj
        sliding = bool(f.get("use_sliding_window", False))
        window = f.get("sliding_window") if sliding else None
        if not sliding:
            f.used.add("sliding_window")
    elif family == "qwen3":
        attn.append(("bias", num(bool(f.get("attention_bias", False)))))
        attn += [("qk_norm", "rmsnorm"), ("qk_norm_scope", "head"), ("qk_eps", "eps")]
        sliding = bool(f.get("use_sliding_window", False))
        window = f.get("sliding_window") if sliding else None
        if not sliding:
            f.used.add("sliding_window")
    else:
        # Mistral and Mixtral configs have no attention_bias field (an unknown one is refused)
        has_bias = family in ("llama", "olmo", "gemma")
        bias = bool(f.get("attention_bias", False)) if has_bias else False
        attn.append(("bias", num(bias)))
        window = f.get("sliding_window") if family in ("mistral", "mixtral") else None
    layer_types = read_layer_types(f, n_layers, window is not None)
    if "sliding_attention" in layer_types:
        if window is None:
            f.refuse("layer_types", "sliding layers without a sliding_window")
            window = 1
        consts.insert(2, ("window", str(window)))
    mlp_bias = bool(f.get("mlp_bias", False)) if family == "llama" else False
    if family == "mixtral":
        ffn = "moe(experts = experts, top_k = top_k, hidden = d_ff, expert = glu, activation = silu)"
    elif family == "gemma":
        ffn = "geglu(hidden = d_ff, tanh = true)"
    else:
        ffn = "swiglu(hidden = d_ff" + (", bias = true)" if mlp_bias else ")")
    tied = bool(f.get("tie_word_embeddings", family == "gemma"))
    position = rope(f, "context")
    f.finish()
    titles = {
        "llama": "Llama (Touvron et al. 2023)",
        "mistral": "Mistral (Jiang et al. 2023)",
        "mixtral": "Mixtral (Jiang et al. 2024)",
        "qwen2": "Qwen2 (Yang et al. 2024)",
        "qwen3": "Qwen3 (Yang et al. 2025)",
        "olmo": "OLMo (Groeneveld et al. 2024)",
        "gemma": "Gemma (Gemma Team 2024)",
    }
    norm = {"olmo": "layernorm(affine = false)", "gemma": "rmsnorm(eps = eps, offset = true)"}.get(
        family, "rmsnorm(eps = eps)"
    )
    body = decoder_body(
        model_name(c, family),
        embedding="token_embedding(scale = true)" if family == "gemma" else "token_embedding()",
        position=position,
        placement="pre",
        norm=norm,
        attn=attn,
        ffn=ffn,
        final_norm=norm,
        head=f"lm_head(tied = {num(tied)})",
        layer_types=layer_types,
    )
    return Text([f"{titles[family]}, imported from a Hugging Face config."], consts, body)


OLMO2_FLOW = ("h = x + n1(attn(x))", "x = h + n2(mlp(h))")


def _olmo2(c: Mapping[str, Any]) -> Text:
    """OLMo 2 (OLMo et al. 2024): RMSNorm on each sublayer's output inside the residual (no norm on
    the input), q and k RMS-normalised over their full width."""
    f = Fields(c, LLAMA_IRRELEVANT)
    d = int(f.need("hidden_size"))
    heads = int(f.need("num_attention_heads"))
    kv = int(f.get("num_key_value_heads", heads))
    head_dim = int(f.get("head_dim", d // heads))
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("max_position_embeddings"))),
        ("d_model", str(d)),
        ("n_heads", str(heads)),
        ("n_kv_heads", str(kv)),
    ]
    attn = [("heads", "n_heads"), ("kv_heads", "n_kv_heads")]
    if head_dim * heads != d:
        consts.append(("head_dim", str(head_dim)))
        attn.append(("head_dim", "head_dim"))
    consts += [
        ("d_ff", str(f.need("intermediate_size"))),
        ("n_layers", str(f.need("num_hidden_layers"))),
        ("eps", num(float(f.get("rms_norm_eps", 1e-5)))),
    ]
    f.expect("hidden_act", ["silu"], " (the gated feed-forward is SwiGLU)")
    attn += [
        ("bias", num(bool(f.get("attention_bias", False)))),
        ("qk_norm", "rmsnorm"),
        ("qk_norm_scope", "full"),
        ("qk_eps", "eps"),
    ]
    tied = bool(f.get("tie_word_embeddings", False))
    position = rope(f, "context")
    f.finish()
    body = "\n".join(
        [
            "block olmo2 {",
            f"  attn = {call('mha', attn)}",
            "  mlp  = swiglu(hidden = d_ff)",
            "  n1   = rmsnorm(eps = eps)",
            "  n2   = rmsnorm(eps = eps)",
            "",
            "  flow {",
            *(f"    {line}" for line in OLMO2_FLOW),
            "  }",
            "}",
            "",
            f"model {model_name(c, 'olmo2')} {{",
            "  type       = decoder",
            "  d_model    = d_model",
            "  vocab      = vocab",
            "  embedding  = token_embedding()",
            f"  position   = {position}",
            "  layers     = [olmo2] * n_layers",
            "  final_norm = rmsnorm(eps = eps)",
            f"  head       = lm_head(tied = {num(tied)})",
            "}",
        ]
    )
    return Text(["OLMo 2 (OLMo et al. 2024), imported from a Hugging Face config."], consts, body)


def _gemma2(c: Mapping[str, Any]) -> Text:
    f = Fields(c, ["attention_dropout", "cache_implementation"])
    d = int(f.need("hidden_size"))
    heads = int(f.need("num_attention_heads"))
    kv = int(f.get("num_key_value_heads", heads))
    head_dim = int(f.get("head_dim", 256))
    n_layers = int(f.need("num_hidden_layers"))
    window = f.get("sliding_window", 4096)
    layer_types = read_layer_types(f, n_layers, False)
    if "layer_types" not in c:  # transformers 4: every other layer, starting with a local one
        layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("max_position_embeddings"))),
        ("window", str(window)),
        ("d_model", str(d)),
        ("n_heads", str(heads)),
        ("n_kv_heads", str(kv)),
        ("head_dim", str(head_dim)),
        ("d_ff", str(f.need("intermediate_size"))),
        ("n_layers", str(n_layers)),
        ("eps", num(float(f.get("rms_norm_eps", 1e-6)))),
    ]
    if "hidden_activation" in c or "hidden_act" not in c:
        f.expect("hidden_activation", ["gelu_pytorch_tanh", "gelu_new"], " (GeGLU with the tanh GELU)")
        f.used.add("hidden_act")
    else:
        f.expect("hidden_act", ["gelu_pytorch_tanh", "gelu_new"], " (GeGLU with the tanh GELU)")
    attn = [("heads", "n_heads"), ("kv_heads", "n_kv_heads"), ("head_dim", "head_dim")]
    cap = float(f.get("attn_logit_softcapping", 0.0))
    if cap:
        attn.append(("softcap", num(cap)))
    q = f.get("query_pre_attn_scalar", head_dim)
    if q != head_dim:
        attn.append(("scale", repr(float(q) ** -0.5)))
    attn.append(("bias", num(bool(f.get("attention_bias", False)))))
    f.expect("use_bidirectional_attention", [False])
    final_cap = float(f.get("final_logit_softcapping", 0.0))
    tied = bool(f.get("tie_word_embeddings", True))
    position = rope(f, "context")
    f.finish()
    head = [("tied", num(tied))] + ([("softcap", num(final_cap))] if final_cap else [])
    body = decoder_body(
        model_name(c, "gemma2"),
        embedding="token_embedding(scale = true)",
        position=position,
        placement="sandwich",
        norm="rmsnorm(eps = eps, offset = true)",
        attn=attn,
        ffn="geglu(hidden = d_ff, tanh = true)",
        final_norm="rmsnorm(eps = eps, offset = true)",
        head=call("lm_head", head),
        layer_types=layer_types,
    )
    return Text(["Gemma 2 (Gemma Team 2024), imported from a Hugging Face config."], consts, body)


def rules(g: Geometry, p: str) -> list[Rule]:
    """The Llama layout (every model type here but Gemma 2, whose four norms are :func:`gemma2_rules`)."""
    return _rules(g, p, [("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")])


def gemma2_rules(g: Geometry, p: str) -> list[Rule]:
    norms = [
        ("ln_1", "input_layernorm"),
        ("post_ln_1", "post_attention_layernorm"),
        ("ln_2", "pre_feedforward_layernorm"),
        ("post_ln_2", "post_feedforward_layernorm"),
    ]
    return _rules(g, p, norms)


def olmo2_rules(g: Geometry, p: str) -> list[Rule]:
    return _rules(g, p, [("n1", "post_attention_layernorm"), ("n2", "post_feedforward_layernorm")])


def _rules(g: Geometry, p: str, norms: list[tuple[str, str]]) -> list[Rule]:
    sizes = (g.q, g.kv, g.kv)
    out = [same(f"{p}embed_tokens.weight", "wte.weight"), same(f"{p}norm.weight", "ln_f.weight")]
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        a = h + "self_attn."
        for t in ("weight", "bias"):
            out.append(fused([a + f"{x}_proj.{t}" for x in "qkv"], o + f"attn.c_attn.{t}", sizes))
            out.append(same(a + f"o_proj.{t}", o + f"attn.c_proj.{t}"))
        out.append(same(a + "q_norm.weight", o + "attn.q_norm.weight"))  # Qwen 3, OLMo 2
        out.append(same(a + "k_norm.weight", o + "attn.k_norm.weight"))
        if g.experts:
            out.append(same(h + "mlp.gate.weight", o + "mlp.router.weight"))
            out.append(fused_experts(h + "mlp", o + "mlp", g.experts))
        else:
            for proj in ("gate_proj", "up_proj", "down_proj"):
                for t in ("weight", "bias"):
                    out.append(same(h + f"mlp.{proj}.{t}", o + f"mlp.{proj}.{t}"))
        out += [same(h + f"{hf}.weight", o + f"{ours}.weight") for ours, hf in norms]
    return out


# -- export ------------------------------------------------------------------------------------------


def signature(spec: Spec) -> dict[str, Any] | None:
    """What tells the Llama-layout families apart, or None for a spec outside the layout (not a
    RoPE decoder whose blocks share one placement and attention/ffn kinds of the layout)."""
    m = spec.model
    if m.type != "decoder":
        return None
    st = m.stacks[0]
    pos, fin = st.position, st.final_norm
    blocks = [dict(b.sublayers) for b in st.layers]
    placements = {placement_of(b) for b in st.layers}
    if (
        pos is None
        or pos.kind != "rope"
        or pos["fraction"] != 1.0
        or pos["layout"] != "half"
        or pos["scaling"] == "yarn"  # rope_config writes no YaRN parameters
        or fin is None
        or st.embedding_norm is not None
        or len(placements) != 1
        or len({b["mlp"].kind for b in blocks}) != 1
        or any(b["attn"].kind not in ("mha", "sliding_window") for b in blocks)
        or m.embedding.kind != "token_embedding"
        or m.embedding["width"]
        or m.embedding["types"]
        or m.head.kind != "lm_head"
    ):
        return None
    a = blocks[0]["attn"]
    return {
        "placement": placements.pop(),
        "ffn": blocks[0]["mlp"].kind,
        "norm": fin.kind,
        "offset": bool(fin.get("offset")),
        "affine": fin.get("affine", True) is not False,
        "qk_norm": f"{a['qk_norm']}/{a['qk_norm_scope']}" if a["qk_norm"] != "none" else "none",
        "windowed": any(b["attn"].kind == "sliding_window" for b in blocks),
        "bias": bool(a["bias"]),
        "out_bias": bool(a["out_bias"]),
        "scaled": bool(m.embedding["scale"]),
        "softcap": bool(a["softcap"]) or bool(m.head.get("softcap")),
    }


def _is(spec: Spec, **want: Any) -> bool:
    sig = signature(spec)
    base = {
        "placement": "pre",
        "ffn": "swiglu",
        "norm": "rmsnorm",
        "offset": False,
        "affine": True,
        "qk_norm": "none",
        "windowed": False,
        "scaled": False,
        "softcap": False,
    }
    return sig is not None and all(sig[k] == v for k, v in {**base, **want}.items())


def claims_llama(spec: Spec) -> bool:
    sig = signature(spec)
    return _is(spec) and sig is not None and sig["bias"] == sig["out_bias"]


def claims_mistral(spec: Spec) -> bool:
    return _is(spec, windowed=True, bias=False, out_bias=False)


def claims_mixtral(spec: Spec) -> bool:
    ok = _is(spec, ffn="moe", bias=False, out_bias=False) or _is(
        spec, ffn="moe", windowed=True, bias=False, out_bias=False
    )
    return ok and all(_mixtral_moe(dict(b.sublayers)["mlp"]) for b in spec.model.stacks[0].layers)


def _mixtral_moe(moe: Any) -> bool:
    """A mixture Mixtral's config holds: SwiGLU experts without biases, renormalised top-k weights,
    no shared experts, no routed scaling (DeepSeek's)."""
    return (
        moe["expert"] == "glu"
        and moe["activation"] == "silu"
        and not moe["bias"]
        and moe["normalize"]
        and not moe["shared"]
        and moe["routed_scale"] == 1.0
    )


def claims_qwen2(spec: Spec) -> bool:
    return _is(spec, bias=True, out_bias=False) or _is(spec, windowed=True, bias=True, out_bias=False)


def claims_qwen3(spec: Spec) -> bool:
    sig = signature(spec)
    ok = _is(spec, qk_norm="rmsnorm/head") or _is(spec, qk_norm="rmsnorm/head", windowed=True)
    return ok and sig is not None and sig["bias"] == sig["out_bias"]


def claims_olmo(spec: Spec) -> bool:
    sig = signature(spec)
    return _is(spec, norm="layernorm", affine=False) and sig is not None and sig["bias"] == sig["out_bias"]


def claims_gemma(spec: Spec) -> bool:
    sig = signature(spec)
    ok = _is(spec, ffn="geglu", offset=True, scaled=True)
    return ok and sig is not None and sig["bias"] == sig["out_bias"]


def claims_olmo2(spec: Spec) -> bool:
    sig = signature(spec)
    if sig is None or sig["placement"] is not None or sig["qk_norm"] != "rmsnorm/full":
        return False
    blocks = spec.model.stacks[0].layers
    return (
        all(sorted(dict(b.sublayers)) == ["attn", "mlp", "n1", "n2"] for b in blocks)
        and all(b.body == blocks[0].body for b in blocks)
        and _olmo2_flow(blocks[0])
        and sig["ffn"] == "swiglu"
        and sig["norm"] == "rmsnorm"
        and not sig["offset"]
        and sig["bias"] == sig["out_bias"]
        and not sig["windowed"]
        and not sig["scaled"]
    )


def _olmo2_flow(block: Any) -> bool:
    from archdsl.ir import Apply, Ref, Stmt, Sum

    want = (
        Stmt("h", Sum((Ref("x"), Apply("n1", (Apply("attn", (Ref("x"),)),))))),
        Stmt("x", Sum((Ref("h"), Apply("n2", (Apply("mlp", (Ref("h"),)),))))),
    )
    return tuple(block.body) == want


def claims_gemma2(spec: Spec) -> bool:
    sig = signature(spec)
    return (
        sig is not None
        and sig["placement"] == "sandwich"
        and sig["ffn"] == "geglu"
        and sig["offset"]
        and sig["scaled"]
        and sig["qk_norm"] == "none"
    )


CLASSES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "olmo": "OlmoForCausalLM",
    "gemma": "GemmaForCausalLM",
    "olmo2": "Olmo2ForCausalLM",
}


def base_config(spec: Spec, family: str, hf_class: str) -> dict[str, Any]:
    """The fields every Llama-layout config has."""
    p = parts(spec)
    return {
        "model_type": family,
        "architectures": [hf_class],
        "vocab_size": p.model.vocab,
        "hidden_size": p.model.d_model,
        "intermediate_size": p.mlp["hidden"],
        "num_hidden_layers": p.n_layers,
        "num_attention_heads": p.heads,
        "num_key_value_heads": p.kv_heads,
        "head_dim": p.head_dim,
        "max_position_embeddings": p.pos["max_len"],
        "rms_norm_eps": (p.subs.get("ln_1") or p.subs["n1"])["eps"],
        "rope_parameters": rope_config(p.pos),
        "tie_word_embeddings": bool(p.model.head["tied"]),
        "attention_dropout": 0.0,
    }


def to_config(spec: Spec, family: str) -> dict[str, Any]:
    p = parts(spec)
    attn, mlp, pos = p.attn, p.mlp, p.pos
    windows = [b["attn"].get("window") for b in p.blocks()]
    window = next((w for w in windows if w is not None), None)
    cfg = base_config(spec, family, CLASSES[family])
    if family == "llama":
        cfg.update(hidden_act="silu", attention_bias=bool(attn["bias"]), mlp_bias=bool(mlp["bias"]))
    elif family in ("mistral", "mixtral"):
        cfg.update(hidden_act="silu", sliding_window=window)
        if family == "mixtral":
            cfg.update(num_local_experts=mlp["experts"], num_experts_per_tok=mlp["top_k"])
    elif family in ("qwen2", "qwen3"):
        cfg.update(hidden_act="silu", use_sliding_window=window is not None, sliding_window=window)
        cfg["layer_types"] = ["sliding_attention" if w is not None else "full_attention" for w in windows]
        if family == "qwen3":
            cfg["attention_bias"] = bool(attn["bias"])
    elif family == "olmo":
        del cfg["rms_norm_eps"], cfg["head_dim"]
        cfg.update(hidden_act="silu", attention_bias=bool(attn["bias"]), clip_qkv=None)
    elif family == "gemma":
        cfg.update(hidden_act="gelu_pytorch_tanh", attention_bias=bool(attn["bias"]))
    elif family == "olmo2":
        cfg.update(hidden_act="silu", attention_bias=bool(attn["bias"]))
    elif family == "gemma2":
        scale = attn["scale"]
        cfg.update(
            hidden_activation="gelu_pytorch_tanh",
            sliding_window=window or pos["max_len"],
            layer_types=["sliding_attention" if w is not None else "full_attention" for w in windows],
            attn_logit_softcapping=attn["softcap"] or None,
            final_logit_softcapping=p.model.head["softcap"] or None,
            query_pre_attn_scalar=p.head_dim if scale is None else round(float(scale) ** -2, 6),
            attention_bias=bool(attn["bias"]),
        )
        if cfg["query_pre_attn_scalar"] == int(cfg["query_pre_attn_scalar"]):
            cfg["query_pre_attn_scalar"] = int(cfg["query_pre_attn_scalar"])
    return cfg


def _family(name: str, claims: Any, to_text: Any = None) -> Family:
    return Family(
        name,
        to_text or (lambda c: _llama_like(c, name)),
        layout="gemma2" if name == "gemma2" else "llama",
        rules=gemma2_rules if name == "gemma2" else rules,
        claims=claims,
        to_config=lambda spec: to_config(spec, name),
    )


register(
    Family(
        "llama",
        lambda c: _llama_like(c, "llama"),
        layout="llama",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "layers.0.self_attn.q_proj.weight"),
        claims=claims_llama,
        to_config=lambda spec: to_config(spec, "llama"),
    ),
    _family("mistral", claims_mistral),
    _family("mixtral", claims_mixtral),
    _family("qwen2", claims_qwen2),
    _family("qwen3", claims_qwen3),
    _family("olmo", claims_olmo),
    _family("gemma", claims_gemma),
    Family(
        "olmo2",
        _olmo2,
        layout="olmo2",
        rules=olmo2_rules,
        detect=lambda keys: suffix_prefix(keys, "layers.0.post_feedforward_layernorm.weight"),
        priority=15,
        claims=claims_olmo2,
        to_config=lambda spec: to_config(spec, "olmo2"),
    ),
    Family(
        "gemma2",
        _gemma2,
        layout="gemma2",
        rules=gemma2_rules,
        detect=lambda keys: suffix_prefix(keys, "layers.0.pre_feedforward_layernorm.weight"),
        priority=20,
        claims=claims_gemma2,
        to_config=lambda spec: to_config(spec, "gemma2"),
    ),
)
