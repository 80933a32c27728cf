"""LayerNorm + RoPE decoders, most with a parallel block (attention and feed-forward read the same
input): GPT-NeoX / Pythia (Black et al. 2022), GPT-J (Wang & Komatsuzaki 2021), Phi (phi-1.5, phi-2)
and Falcon (Almazrouei et al. 2023).

Layout quirks: GPT-NeoX's ``query_key_value`` holds q, k, v interleaved per head, viewed
(heads, 3, head_dim, d); Falcon's holds them per key/value group, viewed (kv, heads/kv + 2, head_dim, d)
— the query heads of the group, then its key, then its value (multi-query, kv = 1, is
[q heads…, k, v]; kv = heads is NeoX's layout). Both are re-ordered into our ``c_attn`` rows
[q (heads·hd), k (kv·hd), v (kv·hd)] and back. GPT-J's rotary pairs neighbours (``rotate_every_two``:
``layout = interleaved``) on the first ``rotary_dim`` channels of each head; NeoX and Phi rotate the
first ``int(head_dim · fraction)`` channels in two halves."""

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
    call,
    decoder_body,
    fused,
    model_name,
    num,
    parts,
    placement_of,
    register,
    rope,
    rope_config,
    same,
    suffix_prefix,
)
from archdsl.ir import Spec

TITLES = {
    "gpt_neox": "GPT-NeoX (Black et al. 2022)",
    "gptj": "GPT-J (Wang & Komatsuzaki 2021)",
    "phi": "Phi (Li et al. 2023)",
    "falcon": "Falcon (Almazrouei et al. 2023)",
}
PLACEMENT = {"pre": "pre", "parallel": "parallel", "parallel_shared": "parallel(shared_norm = true)"}


def _body(
    f: Fields,
    c: Mapping[str, Any],
    family: str,
    *,
    d: int,
    heads: int,
    kv: int,
    d_ff: int,
    n_layers: int,
    vocab: int,
    context: int,
    eps: float,
    placement: str,
    attn_bias: bool,
    out_bias: bool,
    activation: str,
    mlp_bias: bool,
    position: str,
    tied: bool,
    head_bias: bool,
) -> Text:
    consts = [
        ("vocab", str(vocab)),
        ("context", str(context)),
        ("d_model", str(d)),
        ("n_heads", str(heads)),
    ]
    attn = [("heads", "n_heads")]
    if kv != heads:
        consts.append(("n_kv_heads", str(kv)))
        attn.append(("kv_heads", "n_kv_heads"))
    attn.append(("bias", num(attn_bias)))
    if out_bias != attn_bias:
        attn.append(("out_bias", num(out_bias)))
    consts += [("d_ff", str(d_ff)), ("n_layers", str(n_layers)), ("eps", num(eps))]
    mlp = [("hidden", "d_ff"), ("activation", activation), ("bias", num(mlp_bias))]
    head = [("tied", num(tied))] + ([("bias", "true")] if head_bias else [])
    f.finish()
    body = decoder_body(
        model_name(c, family),
        embedding="token_embedding()",
        position=position,
        placement=PLACEMENT[placement],
        norm="layernorm(eps = eps)",
        attn=attn,
        ffn=call("mlp", mlp),
        final_norm="layernorm(eps = eps)",
        head=call("lm_head", head),
        layer_types=["full_attention"] * n_layers,
    )
    return Text([f"{TITLES[family]}, imported from a Hugging Face config."], [*consts], body)


def _gpt_neox(c: Mapping[str, Any]) -> Text:
    c = dict(c)
    # transformers 4 spelled the rotary share and base at the top level
    if "rotary_pct" in c:
        c.setdefault("partial_rotary_factor", c.pop("rotary_pct"))
    if "rotary_emb_base" in c:
        c.setdefault("rope_theta", c.pop("rotary_emb_base"))
    if not c.get("rope_parameters") and c.get("partial_rotary_factor") is None:
        c["partial_rotary_factor"] = 0.25  # GPTNeoXConfig's default rotary_pct
    f = Fields(c, ["attention_dropout", "hidden_dropout", "classifier_dropout"])
    d, heads = int(f.need("hidden_size")), int(f.need("num_attention_heads"))
    parallel = bool(f.get("use_parallel_residual", True))
    bias = bool(f.get("attention_bias", True))
    return _body(
        f,
        c,
        "gpt_neox",
        d=d,
        heads=heads,
        kv=heads,
        d_ff=int(f.need("intermediate_size")),
        n_layers=int(f.need("num_hidden_layers")),
        vocab=int(f.need("vocab_size")),
        context=int(f.need("max_position_embeddings")),
        eps=float(f.get("layer_norm_eps", 1e-5)),
        placement="parallel" if parallel else "pre",
        attn_bias=bias,
        out_bias=bias,
        activation=act(f, "hidden_act", "gelu"),
        mlp_bias=True,
        position=rope(f, "context", partial=True),
        tied=bool(f.get("tie_word_embeddings", False)),
        head_bias=False,
    )


def _gptj(c: Mapping[str, Any]) -> Text:
    f = Fields(
        c,
        [
            "resid_pdrop",
            "embd_pdrop",
            "attn_pdrop",
            "n_ctx",
            "scale_attn_weights",  # GPT-J always scales by head_dim^-0.5
            "summary_type",
            "summary_use_proj",
            "summary_activation",
            "summary_proj_to_labels",
            "summary_first_dropout",
        ],
    )
    d, heads = int(f.need("n_embd")), int(f.need("n_head"))
    head_dim = d // heads
    f.expect("rotary", [True])  # transformers 4 era configs
    rotary_dim = f.get("rotary_dim") or head_dim
    if rotary_dim > head_dim or rotary_dim % 2:
        f.refuse("rotary_dim", f"{rotary_dim} is not an even number of channels within a head ({head_dim})")
        rotary_dim = head_dim
    context = int(f.need("n_positions"))
    args = [("theta", "10000.0")]
    if rotary_dim != head_dim:
        args.append(("fraction", num(rotary_dim / head_dim)))
    position = call("rope", [*args, ("layout", "interleaved"), ("max_len", "context")])
    return _body(
        f,
        c,
        "gptj",
        d=d,
        heads=heads,
        kv=heads,
        d_ff=int(f.get("n_inner") or 4 * d),
        n_layers=int(f.need("n_layer")),
        vocab=int(f.need("vocab_size")),
        context=context,
        eps=float(f.get("layer_norm_epsilon", 1e-5)),
        placement="parallel_shared",
        attn_bias=False,
        out_bias=False,
        activation=act(f, "activation_function", "gelu_new"),
        mlp_bias=True,
        position=position,
        tied=bool(f.get("tie_word_embeddings", False)),
        head_bias=True,
    )


def _phi(c: Mapping[str, Any]) -> Text:
    f = Fields(c, ["resid_pdrop", "embd_pdrop", "attention_dropout"])
    d, heads = int(f.need("hidden_size")), int(f.need("num_attention_heads"))
    if f.get("qk_layernorm", False):
        f.refuse("qk_layernorm", "per-head LayerNorm on q and k is not supported")
    return _body(
        f,
        c,
        "phi",
        d=d,
        heads=heads,
        kv=int(f.get("num_key_value_heads", heads)),
        d_ff=int(f.need("intermediate_size")),
        n_layers=int(f.need("num_hidden_layers")),
        vocab=int(f.need("vocab_size")),
        context=int(f.need("max_position_embeddings")),
        eps=float(f.get("layer_norm_eps", 1e-5)),
        placement="parallel_shared",
        attn_bias=True,
        out_bias=True,
        activation=act(f, "hidden_act", "gelu_new"),
        mlp_bias=True,
        position=rope(f, "context", partial=True),
        tied=bool(f.get("tie_word_embeddings", False)),
        head_bias=True,
    )


def _falcon(c: Mapping[str, Any]) -> Text:
    c = dict(c)
    for old, new in (
        ("n_head", "num_attention_heads"),
        ("n_layer", "num_hidden_layers"),
        ("n_embed", "hidden_size"),
    ):
        if old in c:
            c.setdefault(new, c.pop(old))
    f = Fields(c, ["attention_dropout", "hidden_dropout"])
    d, heads = int(f.need("hidden_size")), int(f.need("num_attention_heads"))
    if f.get("alibi", False):
        f.refuse("alibi", "Falcon's ALiBi variant is not supported (rotary Falcon is)")
    f.expect("apply_residual_connection_post_layernorm", [False])
    new = bool(f.get("new_decoder_architecture", False))
    multi_query = bool(f.get("multi_query", True))
    parallel = bool(f.get("parallel_attn", True))
    n_ln = f.get("num_ln_in_parallel_attn")
    if new:
        kv = int(f.get("num_kv_heads", heads))
        n_ln = 2 if n_ln is None else int(n_ln)
        if not parallel:
            f.refuse("parallel_attn", "false with new_decoder_architecture (transformers cannot run it)")
        if n_ln not in (1, 2):
            f.refuse("num_ln_in_parallel_attn", f"{n_ln} is not 1 or 2")
        placement = "parallel" if n_ln == 2 else "parallel_shared"
    else:
        f.used.add("num_kv_heads")  # read only by the new decoder architecture
        kv = 1 if multi_query else heads
        if n_ln not in (None, 1):
            f.refuse("num_ln_in_parallel_attn", "two norms need new_decoder_architecture")
        placement = "parallel_shared" if parallel else "pre"
    # transformers 5.x writes the key/value heads the attention produces as a derived field
    derived = f.get("num_key_value_heads")
    if derived is not None and int(derived) != kv:
        f.refuse(
            "num_key_value_heads", f"{derived}, but the attention's other fields give {kv} key/value heads"
        )
    bias = bool(f.get("bias", False))
    return _body(
        f,
        c,
        "falcon",
        d=d,
        heads=heads,
        kv=kv,
        d_ff=int(f.get("ffn_hidden_size") or 4 * d),
        n_layers=int(f.need("num_hidden_layers")),
        vocab=int(f.need("vocab_size")),
        context=int(f.get("max_position_embeddings", 2048)),
        eps=float(f.get("layer_norm_epsilon", 1e-5)),
        placement=placement,
        attn_bias=bias,
        out_bias=bias,
        activation=act(f, "activation", "gelu"),
        mlp_bias=bias,
        position=rope(f, "context"),
        tied=bool(f.get("tie_word_embeddings", True)),
        head_bias=False,
    )


# -- weights -----------------------------------------------------------------------------------------


def grouped(hf: str, ours: str, g: Geometry) -> Rule:
    """A fused projection grouped per key/value head, (kv, heads/kv + 2, head_dim, …): each group's
    query heads, then its key, then its value (NeoX: kv = heads; Falcon multi-query: kv = 1)."""
    import torch

    def fwd(t: list[Any]) -> list[Any]:
        w = t[0]
        rest = w.shape[1:]
        groups = g.heads // g.kv_heads
        x = w.reshape(g.kv_heads, groups + 2, g.head_dim, -1)
        q = x[:, :groups].reshape(g.q, -1)
        k = x[:, groups].reshape(g.kv, -1)
        v = x[:, groups + 1].reshape(g.kv, -1)
        return [torch.cat([q, k, v], dim=0).reshape(-1, *rest)]

    def back(t: list[Any]) -> list[Any]:
        w = t[0]
        rest = w.shape[1:]
        groups = g.heads // g.kv_heads
        q, k, v = torch.split(w.reshape(w.shape[0], -1), [g.q, g.kv, g.kv], dim=0)
        x = torch.cat(
            [
                q.reshape(g.kv_heads, groups, g.head_dim, -1),
                k.reshape(g.kv_heads, 1, g.head_dim, -1),
                v.reshape(g.kv_heads, 1, g.head_dim, -1),
            ],
            dim=1,
        )
        return [x.reshape(-1, *rest)]

    return Rule((hf,), (ours,), fwd, back)


def _head() -> list[Rule]:  # the head's weight is load_hf_weights' own; a bias (GPT-J, Phi) is not
    return [same("lm_head.bias", "lm_head.bias")]


def _both(h: str, o: str) -> list[Rule]:
    return [same(f"{h}.{t}", f"{o}.{t}") for t in ("weight", "bias")]


def neox_rules(g: Geometry, p: str) -> list[Rule]:
    out = [same(f"{p}embed_in.weight", "wte.weight"), *_both(f"{p}final_layer_norm", "ln_f")]
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        out += [
            grouped(h + f"attention.query_key_value.{t}", o + f"attn.c_attn.{t}", g)
            for t in ("weight", "bias")
        ]
        out += _both(h + "attention.dense", o + "attn.c_proj")
        out += _both(h + "mlp.dense_h_to_4h", o + "mlp.c_fc") + _both(
            h + "mlp.dense_4h_to_h", o + "mlp.c_proj"
        )
        out += _both(h + "input_layernorm", o + "ln_1") + _both(h + "post_attention_layernorm", o + "ln_2")
    return out + _head()


def gptj_rules(g: Geometry, p: str) -> list[Rule]:
    sizes = (g.q, g.kv, g.kv)
    out = [same(f"{p}wte.weight", "wte.weight"), *_both(f"{p}ln_f", "ln_f")]
    for i in range(g.n_layers):
        h, o = f"{p}h.{i}.", f"h.{i}."
        out.append(fused([h + f"attn.{x}_proj.weight" for x in "qkv"], o + "attn.c_attn.weight", sizes))
        out.append(same(h + "attn.out_proj.weight", o + "attn.c_proj.weight"))
        out += _both(h + "mlp.fc_in", o + "mlp.c_fc") + _both(h + "mlp.fc_out", o + "mlp.c_proj")
        out += _both(h + "ln_1", o + "ln_1")
    return out + _head()


def phi_rules(g: Geometry, p: str) -> list[Rule]:
    sizes = (g.q, g.kv, g.kv)
    out = [same(f"{p}embed_tokens.weight", "wte.weight"), *_both(f"{p}final_layernorm", "ln_f")]
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        for t in ("weight", "bias"):
            out.append(fused([h + f"self_attn.{x}_proj.{t}" for x in "qkv"], o + f"attn.c_attn.{t}", sizes))
        out += _both(h + "self_attn.dense", o + "attn.c_proj")
        out += _both(h + "mlp.fc1", o + "mlp.c_fc") + _both(h + "mlp.fc2", o + "mlp.c_proj")
        out += _both(h + "input_layernorm", o + "ln_1")
    return out + _head()


def falcon_rules(g: Geometry, p: str, two: bool = False, sequential: bool = False) -> list[Rule]:
    """Falcon's tensors. Its norms' names depend on the block: two parallel norms ``ln_attn`` /
    ``ln_mlp`` (``two``); one shared ``input_layernorm``; sequential (``sequential``)
    ``input_layernorm`` + ``post_attention_layernorm``."""
    out = [same(f"{p}word_embeddings.weight", "wte.weight"), *_both(f"{p}ln_f", "ln_f")]
    for i in range(g.n_layers):
        h, o = f"{p}h.{i}.", f"h.{i}."
        a = h + "self_attention."
        out += [grouped(a + f"query_key_value.{t}", o + f"attn.c_attn.{t}", g) for t in ("weight", "bias")]
        out += _both(a + "dense", o + "attn.c_proj")
        out += _both(h + "mlp.dense_h_to_4h", o + "mlp.c_fc") + _both(
            h + "mlp.dense_4h_to_h", o + "mlp.c_proj"
        )
        if two:
            out += _both(h + "ln_attn", o + "ln_1") + _both(h + "ln_mlp", o + "ln_2")
        else:
            out += _both(h + "input_layernorm", o + "ln_1")
            if sequential:
                out += _both(h + "post_attention_layernorm", o + "ln_2")
    return out + _head()


# -- export ------------------------------------------------------------------------------------------


def _shape(spec: Spec) -> dict[str, Any] | None:
    """The features the four families are told apart by, or None for a spec none of them has."""
    m = spec.model
    if m.type != "decoder" or len(m.stacks) != 1:
        return None
    st = m.stacks[0]
    pos, fin = st.position, st.final_norm
    if pos is None or pos.kind != "rope" or fin is None or fin.kind != "layernorm" or st.embedding_norm:
        return None
    if pos["scaling"] != "none":
        return None
    places = {placement_of(b) for b in st.layers}
    if len(places) != 1 or None in places:
        return None
    p = parts(spec)
    for b in p.blocks():
        if set(b) - {"ln_1", "ln_2", "attn", "mlp"} or b["attn"].kind != "mha" or b["mlp"].kind != "mlp":
            return None
        if b["attn"] != p.attn or b["mlp"] != p.mlp:
            return None
    a = p.attn
    if a["head_dim"] not in (None, m.d_model // p.heads) or p.heads * p.head_dim != m.d_model:
        return None
    if a["causal"] is False or a.get("scale") not in (None,) or a.get("softcap") not in (None, 0, 0.0):
        return None
    out_bias = a["bias"] if a["out_bias"] is None else a["out_bias"]
    return {
        "placement": places.pop(),
        "layout": pos["layout"],
        "fraction": pos["fraction"],
        "theta": float(pos["theta"]),
        "attn_bias": bool(a["bias"]),
        "out_bias": bool(out_bias),
        "mlp_bias": bool(p.mlp["bias"]),
        "head_bias": bool(m.head["bias"]),
        "kv": p.kv_heads,
        "heads": p.heads,
        "activation": str(p.mlp["activation"]),
    }


def claims_neox(spec: Spec) -> bool:
    s = _shape(spec)
    return (
        s is not None
        and s["layout"] == "half"
        and s["placement"] in ("pre", "parallel")
        and s["attn_bias"] == s["out_bias"]
        and s["mlp_bias"]
        and not s["head_bias"]
        and s["kv"] == s["heads"]
    )


def claims_gptj(spec: Spec) -> bool:
    s = _shape(spec)
    return (
        s is not None
        and s["layout"] == "interleaved"
        and s["theta"] == 10000.0  # GPT-J's rotary base is fixed
        and s["placement"] == "parallel_shared"
        and not s["attn_bias"]
        and not s["out_bias"]
        and s["mlp_bias"]
        and s["head_bias"]
        and s["kv"] == s["heads"]
    )


def claims_phi(spec: Spec) -> bool:
    s = _shape(spec)
    return (
        s is not None
        and s["layout"] == "half"
        and s["placement"] == "parallel_shared"
        and s["attn_bias"]
        and s["out_bias"]
        and s["mlp_bias"]
        and s["head_bias"]
    )


def claims_falcon(spec: Spec) -> bool:
    s = _shape(spec)
    if s is None or claims_neox(spec):
        return False
    bias = s["attn_bias"]
    kv_ok = s["kv"] in (1, s["heads"]) or s["placement"] != "pre"
    return (
        s["layout"] == "half"
        and s["fraction"] == 1.0
        and s["out_bias"] == bias
        and s["mlp_bias"] == bias
        and not s["head_bias"]
        and kv_ok
    )


ACTS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


def _common(spec: Spec) -> tuple[Any, dict[str, Any]]:
    p = parts(spec)
    s = _shape(spec)
    assert s is not None
    return p, s


def neox_config(spec: Spec) -> dict[str, Any]:
    p, s = _common(spec)
    return {
        "model_type": "gpt_neox",
        "architectures": ["GPTNeoXForCausalLM"],
        "vocab_size": p.model.vocab,
        "hidden_size": p.model.d_model,
        "num_hidden_layers": p.n_layers,
        "num_attention_heads": p.heads,
        "intermediate_size": p.mlp["hidden"],
        "hidden_act": ACTS[s["activation"]],
        "max_position_embeddings": p.pos["max_len"],
        "layer_norm_eps": p.subs["ln_1"]["eps"],
        "use_parallel_residual": s["placement"] == "parallel",
        "attention_bias": s["attn_bias"],
        "rope_parameters": {**rope_config(p.pos), "partial_rotary_factor": p.pos["fraction"]},
        "tie_word_embeddings": bool(p.model.head["tied"]),
        "attention_dropout": 0.0,
        "hidden_dropout": 0.0,
    }


def gptj_config(spec: Spec) -> dict[str, Any]:
    p, s = _common(spec)
    rot = int(p.head_dim * p.pos["fraction"]) // 2 * 2
    return {
        "model_type": "gptj",
        "architectures": ["GPTJForCausalLM"],
        "vocab_size": p.model.vocab,
        "n_positions": p.pos["max_len"],
        "n_embd": p.model.d_model,
        "n_layer": p.n_layers,
        "n_head": p.heads,
        "rotary_dim": rot,
        "n_inner": p.mlp["hidden"],
        "activation_function": ACTS[s["activation"]],
        "layer_norm_epsilon": p.subs["ln_1"]["eps"],
        "tie_word_embeddings": bool(p.model.head["tied"]),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    }


def phi_config(spec: Spec) -> dict[str, Any]:
    p, s = _common(spec)
    return {
        "model_type": "phi",
        "architectures": ["PhiForCausalLM"],
        "vocab_size": p.model.vocab,
        "hidden_size": p.model.d_model,
        "intermediate_size": p.mlp["hidden"],
        "num_hidden_layers": p.n_layers,
        "num_attention_heads": p.heads,
        "num_key_value_heads": p.kv_heads,
        "hidden_act": ACTS[s["activation"]],
        "max_position_embeddings": p.pos["max_len"],
        "layer_norm_eps": p.subs["ln_1"]["eps"],
        "rope_parameters": {**rope_config(p.pos), "partial_rotary_factor": p.pos["fraction"]},
        "qk_layernorm": False,
        "tie_word_embeddings": bool(p.model.head["tied"]),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attention_dropout": 0.0,
    }


def falcon_config(spec: Spec) -> dict[str, Any]:
    p, s = _common(spec)
    place, kv, heads = s["placement"], s["kv"], p.heads
    new = place == "parallel" or kv not in (1, heads)
    cfg = {
        "model_type": "falcon",
        "architectures": ["FalconForCausalLM"],
        "vocab_size": p.model.vocab,
        "hidden_size": p.model.d_model,
        "num_hidden_layers": p.n_layers,
        "num_attention_heads": heads,
        "num_kv_heads": kv,
        "new_decoder_architecture": new,
        "multi_query": kv == 1,
        "parallel_attn": place != "pre",
        "num_ln_in_parallel_attn": (2 if place == "parallel" else 1) if new else None,
        "bias": s["attn_bias"],
        "alibi": False,
        "ffn_hidden_size": p.mlp["hidden"],
        "activation": ACTS[s["activation"]],
        "max_position_embeddings": p.pos["max_len"],
        "layer_norm_epsilon": p.subs["ln_1"]["eps"],
        "rope_parameters": rope_config(p.pos),
        "tie_word_embeddings": bool(p.model.head["tied"]),
        "attention_dropout": 0.0,
        "hidden_dropout": 0.0,
    }
    _FALCON_NORMS["transformer."] = (new and place == "parallel", place == "pre")
    return cfg


# Rules see only the geometry and the prefix, not the block, so which names Falcon's norms have is
# noted here: by detect from the checkpoint (just before load_hf_weights asks for the rules), and by
# falcon_config from the spec (just before export_hf asks for them).
_FALCON_NORMS: dict[str, tuple[bool, bool]] = {}


def _falcon_any(g: Geometry, p: str) -> list[Rule]:
    return falcon_rules(g, p, *_FALCON_NORMS.get(p, (False, False)))


def _falcon_detect(keys: set[str]) -> str | None:
    p = suffix_prefix(keys, "h.0.self_attention.query_key_value.weight")
    if p is not None:
        _FALCON_NORMS[p] = (
            f"{p}h.0.ln_attn.weight" in keys,
            f"{p}h.0.post_attention_layernorm.weight" in keys,
        )
    return p


register(
    Family(
        "gpt_neox",
        _gpt_neox,
        layout="gpt_neox",
        rules=neox_rules,
        detect=lambda keys: suffix_prefix(keys, "layers.0.attention.query_key_value.weight"),
        priority=10,
        claims=claims_neox,
        to_config=neox_config,
        hf_prefix="gpt_neox.",
        ignored=(r"(^|\.)layers\.\d+\.attention\.(masked_)?bias$",),
        tied=(("lm_head.weight", ("gpt_neox.embed_in.weight", "embed_in.weight")),),
    ),
    Family(
        "gptj",
        _gptj,
        layout="gptj",
        rules=gptj_rules,
        detect=lambda keys: suffix_prefix(keys, "h.0.mlp.fc_in.weight"),
        priority=10,
        claims=claims_gptj,
        to_config=gptj_config,
        hf_prefix="transformer.",
        ignored=(r"(^|\.)h\.\d+\.attn\.(masked_)?bias$", r"(^|\.)embed_positions$"),
    ),
    Family(
        "phi",
        _phi,
        layout="phi",
        rules=phi_rules,
        detect=lambda keys: suffix_prefix(keys, "layers.0.self_attn.dense.weight"),
        priority=10,
        claims=claims_phi,
        to_config=phi_config,
        hf_prefix="model.",
    ),
    Family(
        "falcon",
        _falcon,
        layout="falcon",
        rules=_falcon_any,
        detect=_falcon_detect,
        priority=12,
        claims=claims_falcon,
        to_config=falcon_config,
        hf_prefix="transformer.",
        tied=(("lm_head.weight", ("transformer.word_embeddings.weight", "word_embeddings.weight")),),
    ),
)
