"""RWKV-4 (Peng et al. 2023): ``RwkvForCausalLM``. A LayerNorm after the token table (block 0's
``pre_ln``), pre-norm blocks of time mixing (``attention``) and channel mixing (``feed_forward``), the
final ``ln_out`` (always eps 1e-5: HF builds it without ``layer_norm_epsilon``), an untied ``head`` by
default, no positions.

``rescale_every`` is an inference-time device of HF's for fp16: in eval mode it halves the hidden states
every k layers and divides the output weights of the layers after to match (in place, on the first eval
forward). It leaves the function unchanged up to rounding (and the LayerNorms' eps, which then acts on
smaller numbers), so it is read as irrelevant; export writes 0, under which HF computes exactly our
function. ``context_length`` bounds only HF's CUDA kernel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archdsl.interop.hf.base import (
    Family,
    Fields,
    Geometry,
    Rule,
    Text,
    model_name,
    num,
    placement_of,
    register,
    same,
    suffix_prefix,
)
from archdsl.ir import Spec

#: HF's ln_out is ``nn.LayerNorm(hidden_size)``: torch's default eps whatever the config says
LN_OUT_EPS = 1e-5
MIXER = {"attention": "rwkv_time_mix", "feed_forward": "rwkv_channel_mix"}


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(c, ["context_length", "rescale_every"])
    d = int(f.need("hidden_size"))
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("d_model", str(d)),
        ("n_layers", str(f.need("num_hidden_layers"))),
        ("d_att", str(f.get("attention_hidden_size") or d)),
        ("d_ff", str(f.get("intermediate_size") or 4 * d)),
        ("eps", num(float(f.get("layer_norm_epsilon", 1e-5)))),
    ]
    tied = bool(f.get("tie_word_embeddings", False))
    f.finish()
    body = "\n".join(
        [
            f"model {model_name(c, 'rwkv')} {{",
            "  type           = decoder",
            "  d_model        = d_model",
            "  vocab          = vocab",
            "  embedding      = token_embedding()",
            "  position       = none",
            "  embedding_norm = layernorm(eps = eps)",
            "",
            "  block {",
            "    repeat    = n_layers",
            "    placement = pre",
            "    norm      = layernorm(eps = eps)",
            "    mixer     = rwkv_time_mix(hidden = d_att)",
            "    ffn       = rwkv_channel_mix(hidden = d_ff)",
            "  }",
            "",
            f"  final_norm     = layernorm(eps = {num(LN_OUT_EPS)})",
            f"  head           = lm_head(tied = {num(tied)})",
            "}",
        ]
    )
    return Text(["RWKV-4 (Peng et al. 2023), imported from a Hugging Face config."], consts, body)


def vector(hf: str, ours: str) -> Rule:
    """HF's (1, 1, d) mixing ratios <-> our (d,)."""
    return Rule((hf,), (ours,), lambda t: [t[0].reshape(-1)], lambda t: [t[0].reshape(1, 1, -1)])


def rules(g: Geometry, p: str) -> list[Rule]:
    out = [same(f"{p}embeddings.weight", "wte.weight"), same("head.weight", "lm_head.weight")]
    for t in ("weight", "bias"):
        out += [same(f"{p}blocks.0.pre_ln.{t}", f"ln_emb.{t}"), same(f"{p}ln_out.{t}", f"ln_f.{t}")]
    for i in range(g.n_layers):
        h, o = f"{p}blocks.{i}.", f"h.{i}."
        for t in ("weight", "bias"):
            out += [same(h + f"ln1.{t}", o + f"ln_1.{t}"), same(h + f"ln2.{t}", o + f"ln_2.{t}")]
        for mixer in ("mixer", "attn"):  # the time mixing in the `mixer` slot, or the `attention` one
            a = f"{o}{mixer}."
            out += [same(h + f"attention.{n}", a + n) for n in ("time_decay", "time_first")]
            out += [
                vector(h + f"attention.time_mix_{n}", a + f"time_mix_{n}")
                for n in ("key", "value", "receptance")
            ]
            out += [
                same(h + f"attention.{n}.weight", a + f"{n}.weight")
                for n in ("key", "value", "receptance", "output")
            ]
        out += [
            vector(h + f"feed_forward.time_mix_{n}", o + f"mlp.time_mix_{n}") for n in ("key", "receptance")
        ]
        out += [
            same(h + f"feed_forward.{n}.weight", o + f"mlp.{n}.weight")
            for n in ("key", "receptance", "value")
        ]
    return out


def _norms_fit(spec: Spec) -> bool:
    """Every LayerNorm affine with a bias; one eps for pre_ln, ln1 and ln2, and 1e-5 for ln_out."""
    st = spec.model.stacks[0]
    norms = [n for b in st.layers for k, n in b.sublayers if k in ("ln_1", "ln_2")]
    norms += [st.embedding_norm] if st.embedding_norm is not None else []
    final = st.final_norm
    return (
        final is not None
        and all(
            n.kind == "layernorm" and n["affine"] is not False and bool(n["bias"]) for n in [*norms, final]
        )
        and len({n["eps"] for n in norms}) == 1
        and final["eps"] == LN_OUT_EPS
    )


def _sublayers(block: Any) -> dict[str, Any]:
    subs = dict(block.sublayers)
    return {"mixer": subs.get("mixer", subs.get("attn")), **subs}


def claims(spec: Spec) -> bool:
    m = spec.model
    if m.type != "decoder":
        return False
    st = m.stacks[0]
    blocks = [_sublayers(b) for b in st.layers]
    first = blocks[0]
    return (
        st.position is None
        and st.embedding_norm is not None
        and all(
            set(b) - {"attn"} == {"ln_1", "mixer", "ln_2", "mlp"}
            and b["mixer"] is not None
            and b["mixer"].kind == MIXER["attention"]
            and b["mlp"].kind == MIXER["feed_forward"]
            and b["mixer"]["hidden"] == first["mixer"]["hidden"]
            and b["mlp"]["hidden"] == first["mlp"]["hidden"]
            for b in blocks
        )
        and all(placement_of(b) == "pre" for b in st.layers)
        and m.embedding.kind == "token_embedding"
        and not m.embedding["width"]
        and not m.embedding["types"]
        and not m.embedding["scale"]
        and m.head.kind == "lm_head"
        and not m.head["bias"]
        and not m.head["softcap"]
        and not m.head["rescale"]
        and _norms_fit(spec)
    )


def to_config(spec: Spec) -> dict[str, Any]:
    m = spec.model
    st = m.stacks[0]
    subs = _sublayers(st.layers[0])
    return {
        "model_type": "rwkv",
        "architectures": ["RwkvForCausalLM"],
        "vocab_size": m.vocab,
        "hidden_size": m.d_model,
        "num_hidden_layers": len(st.layers),
        "attention_hidden_size": subs["mixer"]["hidden"],
        "intermediate_size": subs["mlp"]["hidden"],
        "layer_norm_epsilon": subs["ln_1"]["eps"],
        "rescale_every": 0,
        "tie_word_embeddings": bool(m.head["tied"]),
    }


register(
    Family(
        "rwkv",
        to_text,
        layout="rwkv",
        rules=rules,
        detect=lambda keys: suffix_prefix(keys, "blocks.0.attention.time_decay"),
        priority=30,
        claims=claims,
        to_config=to_config,
        hf_prefix="rwkv.",
        tied=(("head.weight", ("rwkv.embeddings.weight",)),),
    )
)
