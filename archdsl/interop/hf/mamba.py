"""Mamba (Gu & Dao 2023): ``MambaForCausalLM``. RMSNorm pre-norm blocks of one ``mamba`` mixer each
(no feed-forward, no positions), a final norm, a head tied to the token table by default. HF's mixer
tensors keep their names (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``,
``out_proj``) under ``h.{i}.mixer``; ``backbone.embeddings`` is ``wte``, ``norm_f`` is ``ln_f``."""

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
    model_name,
    num,
    register,
    same,
    suffix_prefix,
)
from archdsl.ir import Spec

#: fields that change no result: initialisation, kernels and fallbacks, residuals kept in fp32 (a
#: precision choice of HF's blocks: in fp32 it changes nothing)
IRRELEVANT = (
    "time_step_scale",
    "time_step_min",
    "time_step_max",
    "time_step_init_scheme",
    "time_step_floor",
    "rescale_prenorm_residual",
    "residual_in_fp32",
    "use_mambapy",
    "use_associative_scan",
    "fused_add_norm",
    "pad_vocab_size_multiple",
)


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(c, IRRELEVANT)
    d = int(f.need("hidden_size"))
    n_layers = int(f.need("num_hidden_layers"))
    expand = f.get("expand", 2)
    if not isinstance(expand, int) or isinstance(expand, bool):
        f.refuse("expand", f"{json.dumps(expand)} is not supported (archdsl: a whole number)")
        expand = 2
    inner = f.get("intermediate_size", expand * d)
    if inner != expand * d:
        f.refuse("intermediate_size", f"{inner} is not expand * hidden_size ({expand * d})")
    rank = f.get("time_step_rank", "auto")
    rank = -(-d // 16) if rank == "auto" else int(rank)
    for alias, value in (("n_layer", n_layers), ("d_model", d)):  # the original configs' spellings
        if f.get(alias, value) != value:
            f.refuse(alias, f"{f.get(alias)} differs from the transformers field ({value})")
    f.expect("rms_norm", [True], " (Mamba's blocks normalise with RMSNorm)")
    f.expect("hidden_act", ["silu"], " (the mixer's activations are SiLU)")
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("d_model", str(d)),
        ("n_layers", str(n_layers)),
        ("eps", num(float(f.get("layer_norm_epsilon", 1e-5)))),
    ]
    args = [
        ("d_state", str(int(f.get("state_size", 16)))),
        ("d_conv", str(int(f.get("conv_kernel", 4)))),
        ("expand", str(expand)),
        ("dt_rank", str(rank)),
    ]
    if not f.get("use_conv_bias", True):
        args.append(("conv_bias", "false"))
    if f.get("use_bias", False):
        args.append(("bias", "true"))
    tied = bool(f.get("tie_word_embeddings", True))
    f.finish()
    body = mixer_decoder(model_name(c, "mamba"), call("mamba", args), tied)
    return Text(["Mamba (Gu & Dao 2023), imported from a Hugging Face config."], consts, body)


def mixer_decoder(name: str, mixer: str, tied: bool) -> str:
    """A decoder of RMSNorm pre-norm blocks of one ``mixer`` each, without feed-forwards or positions,
    as HF's Mamba and Mamba-2 models are (constants ``vocab``, ``d_model``, ``n_layers``, ``eps``)."""
    body = [
        f"model {name} {{",
        "  type       = decoder",
        "  d_model    = d_model",
        "  vocab      = vocab",
        "  embedding  = token_embedding()",
        "  position   = none",
        "",
        "  block {",
        "    repeat    = n_layers",
        "    placement = pre",
        "    norm      = rmsnorm(eps = eps)",
        f"    mixer     = {mixer}",
        "    ffn       = none",
        "  }",
        "",
        "  final_norm = rmsnorm(eps = eps)",
        f"  head       = lm_head(tied = {num(tied)})",
        "}",
    ]
    return "\n".join(body)


MIXER = ("in_proj", "conv1d", "x_proj", "dt_proj", "out_proj")


def rules(g: Geometry, p: str) -> list[Rule]:
    out = [same(f"{p}embeddings.weight", "wte.weight"), same(f"{p}norm_f.weight", "ln_f.weight")]
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        out.append(same(h + "norm.weight", o + "ln_1.weight"))
        for name in MIXER:
            out += [same(h + f"mixer.{name}.{t}", o + f"mixer.{name}.{t}") for t in ("weight", "bias")]
        out += [same(h + f"mixer.{t}", o + f"mixer.{t}") for t in ("A_log", "D")]
    return out


def _pre_mixer(block: Any, kind: str) -> bool:
    """The block is ``x = x + mixer(ln_1(x))`` with an RMSNorm (gain w) and a ``kind`` mixer."""
    from archdsl.placements import PLACEMENTS

    subs = dict(block.sublayers)
    return (
        sorted(subs) == ["ln_1", "mixer"]
        and list(block.body) == PLACEMENTS["pre"].expand([("mixer", False)], {})[1]
        and subs["ln_1"].kind == "rmsnorm"
        and not subs["ln_1"]["offset"]
        and subs["mixer"].kind == kind
    )


def uniform_blocks(spec: Spec, kind: str) -> Any:
    """The mixer of a decoder of equal RMSNorm + ``kind`` blocks (HF's ``MambaModel`` and
    ``Mamba2Model``: one norm eps, a final RMSNorm with it, a plain token table, an LM head without
    bias or caps), or None for any other spec."""
    m = spec.model
    if m.type != "decoder" or m.lora is not None:
        return None
    st = m.stacks[0]
    blocks = st.layers
    if not blocks or not all(_pre_mixer(b, kind) for b in blocks):
        return None
    mixers = {b.sublayer("mixer").params for b in blocks}
    eps = {b.sublayer("ln_1")["eps"] for b in blocks}
    fin = st.final_norm
    ok = (
        len(mixers) == 1
        and len(eps) == 1
        and st.position is None
        and st.embedding_norm is None
        and not st.dropout
        and not st.layerdrop
        and len(set(st.instances)) == len(blocks)
        and fin is not None
        and fin.kind == "rmsnorm"
        and not fin["offset"]
        and fin["eps"] in eps
        and m.embedding.kind == "token_embedding"
        and not m.embedding["width"]
        and not m.embedding["types"]
        and not m.embedding["scale"]
        and m.head.kind == "lm_head"
        and not m.head["bias"]
        and not m.head["softcap"]
        and not m.head["rescale"]
    )
    return blocks[0].sublayer("mixer") if ok else None


def claims(spec: Spec) -> bool:
    return uniform_blocks(spec, "mamba") is not None


def to_config(spec: Spec) -> dict[str, Any]:
    m = spec.model
    st = m.stacks[0]
    mixer = st.layers[0].sublayer("mixer")
    return {
        "model_type": "mamba",
        "architectures": ["MambaForCausalLM"],
        "vocab_size": m.vocab,
        "hidden_size": m.d_model,
        "num_hidden_layers": len(st.layers),
        "state_size": mixer["d_state"],
        "conv_kernel": mixer["d_conv"],
        "expand": mixer["expand"],
        "intermediate_size": mixer["expand"] * m.d_model,
        "time_step_rank": mixer["dt_rank"],
        "use_conv_bias": bool(mixer["conv_bias"]),
        "use_bias": bool(mixer["bias"]),
        "hidden_act": "silu",
        "layer_norm_epsilon": st.layers[0].sublayer("ln_1")["eps"],
        "tie_word_embeddings": bool(m.head["tied"]),
    }


register(
    Family(
        "mamba",
        to_text,
        layout="mamba",
        rules=rules,
        # Mamba-1's layout (Mamba-2 has no x_proj)
        detect=lambda keys: suffix_prefix(keys, "layers.0.mixer.x_proj.weight"),
        priority=20,
        claims=claims,
        to_config=to_config,
        hf_prefix="backbone.",
        tied=(("lm_head.weight", ("backbone.embeddings.weight",)),),
    )
)
