"""Mamba-2 (Dao & Gu 2024): ``Mamba2ForCausalLM``. RMSNorm pre-norm blocks of one ``mamba2`` mixer
each (no feed-forward, no positions), a final norm, an untied head by default. HF's mixer tensors keep
their names (``in_proj``, ``conv1d``, ``dt_bias``, ``A_log``, ``D``, ``norm``, ``out_proj``) under
``h.{i}.mixer``; ``backbone.embeddings`` is ``wte``, ``norm_f`` is ``ln_f``."""

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
    call,
    model_name,
    num,
    register,
    same,
    suffix_prefix,
)
from archdsl.interop.hf.mamba import mixer_decoder, uniform_blocks
from archdsl.ir import Spec

#: fields that change no result: initialisation, Mamba-1's Δ rank (Mamba-2 has no Δ projection),
#: residuals kept in fp32 (a precision choice: in fp32 it changes nothing)
IRRELEVANT = (
    "time_step_rank",
    "time_step_min",
    "time_step_max",
    "time_step_floor",
    "rescale_prenorm_residual",
    "residual_in_fp32",
)


def to_text(c: Mapping[str, Any]) -> Text:
    f = Fields(c, IRRELEVANT)
    d = int(f.need("hidden_size"))
    n_layers = int(f.need("num_hidden_layers"))
    expand = f.get("expand", 2)
    if not isinstance(expand, int) or isinstance(expand, bool):
        f.refuse("expand", f"{json.dumps(expand)} is not supported (archdsl: a whole number)")
        expand = 2
    heads, head_dim = int(f.get("num_heads", 128)), int(f.get("head_dim", 64))
    if heads * head_dim != expand * d:
        f.refuse("num_heads", f"num_heads · head_dim ({heads * head_dim}) is not expand · hidden_size")
    limit = f.get("time_step_limit", (0.0, math.inf))
    if not isinstance(limit, list | tuple) or [_number(v) for v in limit] != [0.0, math.inf]:
        f.refuse(
            "time_step_limit", f"{json.dumps(limit)} is not supported (archdsl: Δ unclamped, [0.0, inf])"
        )
    f.expect("hidden_act", ["silu"], " (the mixer's activations are SiLU)")
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("d_model", str(d)),
        ("n_layers", str(n_layers)),
        ("eps", num(float(f.get("layer_norm_epsilon", 1e-5)))),
    ]
    args = [
        ("heads", str(heads)),
        ("head_dim", str(head_dim)),
        ("expand", str(expand)),
        ("n_groups", str(int(f.get("n_groups", 8)))),
        ("d_state", str(int(f.get("state_size", 128)))),
        ("d_conv", str(int(f.get("conv_kernel", 4)))),
        ("chunk", str(int(f.get("chunk_size", 256)))),
        ("eps", "eps"),
    ]
    if not f.get("use_conv_bias", True):
        args.append(("conv_bias", "false"))
    if f.get("use_bias", False):
        args.append(("bias", "true"))
    tied = bool(f.get("tie_word_embeddings", False))
    f.finish()
    body = mixer_decoder(model_name(c, "mamba2"), call("mamba2", args), tied)
    return Text(["Mamba-2 (Dao & Gu 2024), imported from a Hugging Face config."], consts, body)


def _number(v: Any) -> float | None:
    """A float of a config: a number, or infinity as transformers 5 writes it to JSON
    (``{"__float__": "Infinity"}``) or as Python's JSON does (``Infinity``, read as a float)."""
    if isinstance(v, dict) and set(v) == {"__float__"}:
        v = v["__float__"]
    if isinstance(v, str) and v in ("Infinity", "-Infinity", "inf", "-inf"):
        return float(v.replace("Infinity", "inf"))
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def rules(g: Geometry, p: str) -> list[Rule]:
    out = [same(f"{p}embeddings.weight", "wte.weight"), same(f"{p}norm_f.weight", "ln_f.weight")]
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        out.append(same(h + "norm.weight", o + "ln_1.weight"))
        for name in ("in_proj", "conv1d", "out_proj"):
            out += [same(h + f"mixer.{name}.{t}", o + f"mixer.{name}.{t}") for t in ("weight", "bias")]
        out += [same(h + f"mixer.{t}", o + f"mixer.{t}") for t in ("dt_bias", "A_log", "D", "norm.weight")]
    return out


def claims(spec: Spec) -> bool:
    mixer = uniform_blocks(spec, "mamba2")
    return mixer is not None and mixer["eps"] == spec.model.stacks[0].final_norm["eps"]


def to_config(spec: Spec) -> dict[str, Any]:
    m = spec.model
    st = m.stacks[0]
    mixer = st.layers[0].sublayer("mixer")
    e = mixer["expand"] * m.d_model
    return {
        "model_type": "mamba2",
        "architectures": ["Mamba2ForCausalLM"],
        "vocab_size": m.vocab,
        "hidden_size": m.d_model,
        "num_hidden_layers": len(st.layers),
        "num_heads": mixer["heads"] if mixer["heads"] is not None else e // mixer["head_dim"],
        "head_dim": mixer["head_dim"],
        "expand": mixer["expand"],
        "n_groups": mixer["n_groups"],
        "state_size": mixer["d_state"],
        "conv_kernel": mixer["d_conv"],
        "chunk_size": mixer["chunk"],
        "use_conv_bias": bool(mixer["conv_bias"]),
        "use_bias": bool(mixer["bias"]),
        "hidden_act": "silu",
        "layer_norm_epsilon": st.layers[0].sublayer("ln_1")["eps"],
        "tie_word_embeddings": bool(m.head["tied"]),
    }


register(
    Family(
        "mamba2",
        to_text,
        layout="mamba2",
        rules=rules,
        # Mamba-2's layout: a gated norm and one Δ bias per head in the mixer
        detect=lambda keys: suffix_prefix(keys, "layers.0.mixer.dt_bias"),
        priority=20,
        claims=claims,
        to_config=to_config,
        hf_prefix="backbone.",
        tied=(("lm_head.weight", ("backbone.embeddings.weight",)),),
    )
)
