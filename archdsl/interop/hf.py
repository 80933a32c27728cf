"""Hugging Face transformers interop: a config as spec text, HF weights into a built model, and a built
decoder back out as an HF checkpoint.

    text = spec_from_config(json.load(open("config.json")))    # idiomatic .arch text
    spec = load_spec_from_config(config)                        # the loaded Spec
    model = archdsl.build(spec)
    load_hf_weights(model, "path/to/checkpoint")                # state dict, .safetensors, or a folder
    export_hf(model, spec, "out/")                              # config.json + model.safetensors

Every config field is accounted for: the ones that shape the model become spec values, a per-family
list names the ones that do not (ids, dropout, initialisation, dtype, …), and any other field — or a
value archdsl cannot express — raises :class:`UnsupportedConfigError` (E021) naming it. Nothing is
silently dropped. The families handled and their quirks are in docs/interop.md.

Torch (and safetensors) are imported only by the weight functions; transformers never.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archdsl.diagnostics import Diagnostic, SpecError
from archdsl.ir import Spec

if TYPE_CHECKING:
    import torch
    from torch import nn

    Tensor = torch.Tensor
else:
    Tensor = Any

SUPPORTED = ("gpt2", "llama", "mistral", "mixtral", "qwen2", "gemma2", "bert", "t5", "vit")
# model types that need language features still being added (docs/interop.md, "pending")
PENDING = {
    "qwen3": "per-head q/k RMSNorm",
    "olmo": "LayerNorm without parameters",
    "opt": "an embedding projection (word_embed_proj_dim) and OPT's learned-position offset",
    "albert": "a factorised embedding",
    "gpt_neox": "parallel attention and feed-forward with partial rotary",
    "gptj": "parallel attention and feed-forward with interleaved partial rotary",
    "phi": "parallel blocks with partial rotary",
    "falcon": "parallel blocks and multi-query fused projections",
    "bloom": "ALiBi with an embedding LayerNorm and fused interleaved qkv",
}

# fields of every PretrainedConfig that never change the architecture
COMMON_IRRELEVANT = frozenset(
    {
        "_name_or_path",
        "_attn_implementation_autoset",
        "_commit_hash",
        "architectures",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "use_return_dict",
        "torchscript",
        "chunk_size_feed_forward",
        "is_encoder_decoder",
        "id2label",
        "label2id",
        "problem_type",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "sep_token_id",
        "decoder_start_token_id",
        "use_cache",
        "initializer_range",
        "tokenizer_class",
        "prefix",
        "task_specific_params",
        "finetuning_task",
        "model_type",
        "tf_legacy_loss",
        "pruned_heads",
        "cross_attention_hidden_size",
        "add_cross_attention",  # checked to be false per family where it exists
        "is_decoder",
        "tie_encoder_decoder",
        "num_labels",
        "max_length",
        "min_length",
        "do_sample",
        "early_stopping",
        "num_beams",
        "temperature",
        "top_k",
        "top_p",
        "repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
        "bad_words_ids",
        "num_return_sequences",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "remove_invalid_values",
        "exponential_decay_length_penalty",
        "suppress_tokens",
        "begin_suppress_tokens",
        "typical_p",
        "diversity_penalty",
        "num_beam_groups",
        "encoder_no_repeat_ngram_size",
        "output_scores",
        "return_dict_in_generate",
        "gradient_checkpointing",
        "quantization_config",
    }
)


class UnsupportedConfigError(SpecError):
    """A config that archdsl cannot express exactly: each diagnostic (E021) names the field."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics)
        self.fields = [d.message.split("`")[1] if "`" in d.message else "" for d in self.diagnostics]


def _diag(field: str, message: str, help: str | None = None) -> Diagnostic:
    return Diagnostic("E021", f"config field `{field}`: {message}", None, help)


class Fields:
    """A config being read: records every field consumed, so the rest can be refused by name."""

    def __init__(self, config: Mapping[str, Any], irrelevant: Sequence[str]) -> None:
        self.config = dict(config)
        self.used: set[str] = set(COMMON_IRRELEVANT) | set(irrelevant)
        self.errors: list[Diagnostic] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        v = self.config.get(key, default)
        return default if v is None else v

    def need(self, key: str) -> Any:
        self.used.add(key)
        if self.config.get(key) is None:
            self.errors.append(_diag(key, "is required for this model type"))
            return 1
        return self.config[key]

    def expect(self, key: str, allowed: Sequence[Any], why: str = "") -> Any:
        """A field whose only supported values are ``allowed`` (None, absent, counts as the first)."""
        v = self.get(key, allowed[0])
        if v not in allowed:
            choices = ", ".join(json.dumps(a) for a in allowed)
            self.errors.append(
                _diag(key, f"{json.dumps(v)} is not supported (archdsl expresses {choices}){why}")
            )
        return v

    def refuse(self, key: str, message: str) -> None:
        self.errors.append(_diag(key, message))

    def finish(self) -> None:
        for key in sorted(set(self.config) - self.used):
            self.errors.append(
                _diag(key, "is not known to archdsl's importer for this model type", "no spec value says it")
            )
        if self.errors:
            raise UnsupportedConfigError(self.errors)


# -- spec text ---------------------------------------------------------------------------------------


def _num(v: float | int) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    f = float(v)
    if f == int(f) and abs(f) < 1e15:
        return f"{f:.1f}"
    return repr(f)


def _call(kind: str, args: Sequence[tuple[str, str]]) -> str:
    return f"{kind}({', '.join(f'{k} = {v}' for k, v in args)})"


ACT = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": None,
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def _act(f: Fields, key: str, default: str) -> str:
    v = f.get(key, default)
    ours = ACT.get(v)
    if ours is None:
        f.refuse(
            key,
            f"activation {json.dumps(v)} is not supported (archdsl: {', '.join(a for a in ACT if ACT[a])})",
        )
        return "gelu"
    return ours


@dataclass
class Text:
    """A spec being written: a header comment, constants in order, then the sections."""

    header: list[str]
    consts: list[tuple[str, str]]
    body: str

    def render(self) -> str:
        from archdsl.fmt import to_text
        from archdsl.frontend import parse_source

        lines = [f"# {h}" if h else "#" for h in self.header] + [""]
        lines += [f"{k} = {v}" for k, v in self.consts] + ["", self.body]
        raw = "\n".join(lines) + "\n"
        return to_text(parse_source(raw, "<import-hf>.arch"))


def _name(config: Mapping[str, Any], default: str) -> str:
    raw = str(config.get("_name_or_path") or "").rstrip("/").split("/")[-1]
    name = re.sub(r"[^0-9A-Za-z_]", "_", raw).strip("_").lower() or default
    if not re.match(r"[A-Za-z_]", name):
        name = "m_" + name
    return name


def _rope(f: Fields, max_len: str) -> str:
    """``rope(...)`` from ``rope_theta`` / ``rope_scaling`` (transformers 4) or ``rope_parameters`` (5)."""
    params = f.get("rope_parameters")
    key = "rope_parameters"
    if not params:
        params, key = f.get("rope_scaling"), "rope_scaling"
    params = dict(params or {})
    theta = params.pop("rope_theta", None)
    theta = f.get("rope_theta", 10000.0) if theta is None else theta
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    args = [("theta", _num(float(theta)))]
    if kind == "linear":
        args += [("scaling", "linear"), ("factor", _num(float(params.pop("factor"))))]
    elif kind == "llama3":
        args += [
            ("scaling", "llama3"),
            ("factor", _num(float(params.pop("factor")))),
            ("low_freq_factor", _num(float(params.pop("low_freq_factor", 1.0)))),
            ("high_freq_factor", _num(float(params.pop("high_freq_factor", 4.0)))),
            ("original_max_len", str(int(params.pop("original_max_position_embeddings", 8192)))),
        ]
    elif kind != "default":
        f.refuse(
            f"{key}.rope_type", f"RoPE scaling {json.dumps(kind)} is not supported (default, linear, llama3)"
        )
    for extra in sorted(params):
        f.refuse(f"{key}.{extra}", f"is not supported for RoPE type {json.dumps(kind)}")
    if f.get("partial_rotary_factor", 1.0) != 1.0:
        f.refuse("partial_rotary_factor", "partial rotary is not imported for this model type")
    return _call("rope", [*args, ("max_len", max_len)])


def _pattern(layer_types: list[str]) -> tuple[list[str], int]:
    """The shortest period of a layer pattern, and how many times it repeats."""
    n = len(layer_types)
    for p in range(1, n + 1):
        if n % p == 0 and layer_types[:p] * (n // p) == layer_types:
            return layer_types[:p], n // p
    return layer_types, 1


def _layer_types(f: Fields, n_layers: int, sliding: bool) -> list[str]:
    types = f.get("layer_types")
    if types is None:
        return ["sliding_attention" if sliding else "full_attention"] * n_layers
    if len(types) != n_layers or set(types) - {"sliding_attention", "full_attention"}:
        f.refuse("layer_types", "expected one of sliding_attention / full_attention per layer")
        return ["full_attention"] * n_layers
    return list(types)


def _decoder_body(
    name: str,
    *,
    embedding: str,
    position: str,
    placement: str,
    norm: str,
    attn: list[tuple[str, str]],
    ffn: str,
    final_norm: str,
    head: str,
    layer_types: list[str],
) -> str:
    """A decoder's sections: one block repeated, or named local/global blocks in a layer pattern."""
    full = _call("mha", attn)
    local = _call("sliding_window", [*attn, ("window", "window")])
    top = [
        "  type       = decoder",
        "  d_model    = d_model",
        "  vocab      = vocab",
        f"  embedding  = {embedding}",
        f"  position   = {position}",
    ]
    tail = [f"  final_norm = {final_norm}", f"  head       = {head}", "}"]
    kinds = set(layer_types)
    if len(kinds) == 1:
        attention = local if kinds == {"sliding_attention"} else full
        block = [
            "  block {",
            "    repeat    = n_layers",
            f"    placement = {placement}",
            f"    norm      = {norm}",
            f"    attention = {attention}",
            f"    ffn       = {ffn}",
            "  }",
        ]
        return "\n".join([f"model {name} {{", *top, "", *block, "", *tail])
    period, times = _pattern(["local" if t == "sliding_attention" else "global" for t in layer_types])
    first = period[0]
    other = "global" if first == "local" else "local"
    blocks = [
        f"block {first} {{",
        f"  placement = {placement}",
        f"  norm      = {norm}",
        f"  attention = {local if first == 'local' else full}",
        f"  ffn       = {ffn}",
        "}",
        "",
        f"block {other} {{",
        f"  base      = {first}",
        f"  attention = {full if first == 'local' else local}",
        "}",
        "",
    ]
    items = f"[{', '.join(period)}]"
    layers = items if times == 1 else f"{items} * (n_layers / {len(period)})"
    return "\n".join([*blocks, f"model {name} {{", *top, f"  layers     = {layers}", *tail])


def _gpt2(c: Mapping[str, Any]) -> Text:
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
        ("eps", _num(float(f.get("layer_norm_epsilon", 1e-5)))),
    ]
    act = _act(f, "activation_function", "gelu_new")
    f.expect("scale_attn_weights", [True])
    f.expect("scale_attn_by_inverse_layer_idx", [False])
    f.expect("add_cross_attention", [False])
    tied = bool(f.get("tie_word_embeddings", True))
    f.finish()
    name = _name(c, "gpt2")
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
            f"    ffn       = mlp(hidden = d_ff, activation = {act}, bias = true)",
            "  }",
            "",
            "  final_norm = layernorm(eps = eps)",
            f"  head       = lm_head(tied = {_num(tied)})",
            "}",
        ]
    )
    return Text(["GPT-2 (Radford et al. 2019), imported from a Hugging Face config."], consts, body)


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
    head_dim = int(f.get("head_dim", d // heads))
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
    consts.append(("eps", _num(float(f.get("rms_norm_eps", 1e-6)))))
    f.expect("hidden_act", ["silu"], " (the gated feed-forward is SwiGLU)")
    if family == "qwen2":
        attn += [("bias", "true"), ("out_bias", "false")]  # q, k, v biases; none on o_proj
        sliding = bool(f.get("use_sliding_window", False))
        window = f.get("sliding_window") if sliding else None
        if not sliding:
            f.used.add("sliding_window")
    else:
        bias = bool(f.get("attention_bias", False)) if family == "llama" else False
        attn.append(("bias", _num(bias)))
        window = f.get("sliding_window") if family in ("mistral", "mixtral") else None
    layer_types = _layer_types(f, n_layers, window is not None)
    if "sliding_attention" in layer_types:
        if window is None:
            f.refuse("layer_types", "sliding layers without a sliding_window")
            window = 1
        consts.insert(2, ("window", str(window)))
    mlp_bias = bool(f.get("mlp_bias", False)) if family == "llama" else False
    if family == "mixtral":
        ffn = "moe(experts = experts, top_k = top_k, hidden = d_ff, expert = glu, activation = silu)"
    else:
        ffn = "swiglu(hidden = d_ff" + (", bias = true)" if mlp_bias else ")")
    tied = bool(f.get("tie_word_embeddings", False))
    position = _rope(f, "context")
    f.finish()
    titles = {
        "llama": "Llama (Touvron et al. 2023)",
        "mistral": "Mistral (Jiang et al. 2023)",
        "mixtral": "Mixtral (Jiang et al. 2024)",
        "qwen2": "Qwen2 (Yang et al. 2024)",
    }
    body = _decoder_body(
        _name(c, family),
        embedding="token_embedding()",
        position=position,
        placement="pre",
        norm="rmsnorm(eps = eps)",
        attn=attn,
        ffn=ffn,
        final_norm="rmsnorm(eps = eps)",
        head=f"lm_head(tied = {_num(tied)})",
        layer_types=layer_types,
    )
    return Text([f"{titles[family]}, imported from a Hugging Face config."], consts, body)


def _gemma2(c: Mapping[str, Any]) -> Text:
    f = Fields(c, ["attention_dropout", "cache_implementation"])
    d = int(f.need("hidden_size"))
    heads = int(f.need("num_attention_heads"))
    kv = int(f.get("num_key_value_heads", heads))
    head_dim = int(f.get("head_dim", 256))
    n_layers = int(f.need("num_hidden_layers"))
    window = f.get("sliding_window", 4096)
    layer_types = _layer_types(f, n_layers, False)
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
        ("eps", _num(float(f.get("rms_norm_eps", 1e-6)))),
    ]
    if "hidden_activation" in c or "hidden_act" not in c:
        f.expect("hidden_activation", ["gelu_pytorch_tanh", "gelu_new"], " (GeGLU with the tanh GELU)")
        f.used.add("hidden_act")
    else:
        f.expect("hidden_act", ["gelu_pytorch_tanh", "gelu_new"], " (GeGLU with the tanh GELU)")
    attn = [("heads", "n_heads"), ("kv_heads", "n_kv_heads"), ("head_dim", "head_dim")]
    cap = float(f.get("attn_logit_softcapping", 0.0))
    if cap:
        attn.append(("softcap", _num(cap)))
    q = f.get("query_pre_attn_scalar", head_dim)
    if q != head_dim:
        attn.append(("scale", repr(float(q) ** -0.5)))
    attn.append(("bias", _num(bool(f.get("attention_bias", False)))))
    f.expect("use_bidirectional_attention", [False])
    final_cap = float(f.get("final_logit_softcapping", 0.0))
    tied = bool(f.get("tie_word_embeddings", True))
    position = _rope(f, "context")
    f.finish()
    head = [("tied", _num(tied))] + ([("softcap", _num(final_cap))] if final_cap else [])
    body = _decoder_body(
        _name(c, "gemma2"),
        embedding="token_embedding(scale = true)",
        position=position,
        placement="sandwich",
        norm="rmsnorm(eps = eps, offset = true)",
        attn=attn,
        ffn="geglu(hidden = d_ff, tanh = true)",
        final_norm="rmsnorm(eps = eps, offset = true)",
        head=_call("lm_head", head),
        layer_types=layer_types,
    )
    return Text(["Gemma 2 (Gemma Team 2024), imported from a Hugging Face config."], consts, body)


def _bert(c: Mapping[str, Any]) -> Text:
    f = Fields(
        c,
        [
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "classifier_dropout",
            "gradient_checkpointing",
        ],
    )
    consts = [
        ("vocab", str(f.need("vocab_size"))),
        ("context", str(f.need("max_position_embeddings"))),
        ("d_model", str(f.need("hidden_size"))),
        ("n_heads", str(f.need("num_attention_heads"))),
        ("d_ff", str(f.need("intermediate_size"))),
        ("n_layers", str(f.need("num_hidden_layers"))),
        ("eps", _num(float(f.get("layer_norm_eps", 1e-12)))),
    ]
    act = _act(f, "hidden_act", "gelu")
    types = int(f.get("type_vocab_size", 2))
    f.expect("position_embedding_type", ["absolute"])
    f.expect("is_decoder", [False])
    f.expect("add_cross_attention", [False])
    f.used.add("tie_word_embeddings")  # the pooler head has no output embedding
    f.finish()
    body = "\n".join(
        [
            f"model {_name(c, 'bert')} {{",
            "  type           = encoder",
            "  d_model        = d_model",
            "  vocab          = vocab",
            f"  embedding      = token_embedding(types = {types})",
            "  position       = learned(max_len = context)",
            "  embedding_norm = layernorm(eps = eps)",
            "",
            "  block {",
            "    repeat    = n_layers",
            "    placement = post",
            "    norm      = layernorm(eps = eps)",
            "    attention = mha(heads = n_heads)",
            f"    ffn       = mlp(hidden = d_ff, activation = {act})",
            "  }",
            "",
            "  head           = pooler()",
            "}",
        ]
    )
    return Text(
        ["BERT (Devlin et al. 2019), imported from a Hugging Face config: BertModel with its pooler."],
        consts,
        body,
    )


def _vit(c: Mapping[str, Any]) -> Text:
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
        ("eps", _num(float(f.get("layer_norm_eps", 1e-12)))),
    ]
    act = _act(f, "hidden_act", "gelu")
    qkv_bias = bool(f.get("qkv_bias", True))
    attn = (
        "mha(heads = n_heads, bias = true)"
        if qkv_bias
        else "mha(heads = n_heads, bias = false, out_bias = true)"
    )
    f.finish()
    body = "\n".join(
        [
            f"model {_name(c, 'vit')} {{",
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
            f"    ffn       = mlp(hidden = d_ff, activation = {act})",
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


def _t5(c: Mapping[str, Any]) -> Text:
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
        ("eps", _num(float(f.get("layer_norm_epsilon", 1e-6)))),
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
    a = _call("mha", attn)
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
            f"model {_name(c, 't5')} {{",
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
            f"  head      = lm_head(tied = {_num(tied)}, rescale = {_num(rescale)})",
            "}",
        ]
    )
    return Text(["T5 (Raffel et al. 2020), imported from a Hugging Face config."], consts, body)


FAMILIES: dict[str, Callable[[Mapping[str, Any]], Text]] = {
    "gpt2": _gpt2,
    "llama": lambda c: _llama_like(c, "llama"),
    "mistral": lambda c: _llama_like(c, "mistral"),
    "mixtral": lambda c: _llama_like(c, "mixtral"),
    "qwen2": lambda c: _llama_like(c, "qwen2"),
    "gemma2": _gemma2,
    "bert": _bert,
    "t5": _t5,
    "vit": _vit,
}


def spec_from_config(config: Mapping[str, Any]) -> str:
    """A Hugging Face config (``config.json`` as a dict, or ``PretrainedConfig.to_dict()``) as the text
    of an equivalent spec. Raises :class:`UnsupportedConfigError` (E021) naming every field archdsl
    cannot express (or does not know) — none is ignored silently."""
    if not isinstance(config, Mapping):
        raise UnsupportedConfigError([_diag("model_type", "the config is not a JSON object")])
    mt = config.get("model_type")
    if mt not in FAMILIES:
        if mt in PENDING:
            msg = f"{json.dumps(mt)} needs {PENDING[mt]}, not yet in the language (see docs/interop.md)"
        else:
            msg = f"{json.dumps(mt)} is not supported (supported: {', '.join(SUPPORTED)})"
        raise UnsupportedConfigError([_diag("model_type", msg)])
    return FAMILIES[mt](config).render()


def load_spec_from_config(config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Spec:
    """:func:`spec_from_config`, loaded (through a temporary ``.arch`` file) as a :class:`Spec`."""
    from archdsl.pipeline import load

    text = spec_from_config(config)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{config.get('model_type')}.arch"
        path.write_text(text, encoding="utf-8")
        return load(path, overrides)


# -- weights -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """HF tensors <-> archdsl tensors: ``fwd`` maps the HF ones to ours, ``back`` ours to HF's."""

    hf: tuple[str, ...]
    ours: tuple[str, ...]
    fwd: Callable[[list[Tensor]], list[Tensor]]
    back: Callable[[list[Tensor]], list[Tensor]]


def _same(hf: str, ours: str) -> Rule:
    return Rule((hf,), (ours,), lambda t: t, lambda t: t)


def _t(hf: str, ours: str) -> Rule:  # GPT-2's Conv1D holds (in, out)
    return Rule((hf,), (ours,), lambda t: [t[0].t()], lambda t: [t[0].t()])


def _cat(hf: Sequence[str], ours: str, sizes: Sequence[int] | None) -> Rule:
    import torch

    def back(t: list[Tensor]) -> list[Tensor]:
        if sizes is None:
            raise ValueError(f"splitting {ours} needs the spec's head sizes")
        return list(torch.split(t[0], list(sizes), dim=0))

    return Rule(tuple(hf), (ours,), lambda t: [torch.cat(t, dim=0)], back)


def _experts(p: str, o: str, n: int) -> Rule:
    """transformers 5's fused experts: gate_up_proj (E, 2f, d), down_proj (E, d, f)."""
    import torch

    ours = tuple(
        f"{o}.experts.{e}.{w}.weight" for e in range(n) for w in ("gate_proj", "up_proj", "down_proj")
    )

    def fwd(t: list[Tensor]) -> list[Tensor]:
        out = []
        for e in range(n):
            g, u = t[0][e].chunk(2, dim=0)
            out += [g, u, t[1][e]]
        return out

    def back(t: list[Tensor]) -> list[Tensor]:
        gu = torch.stack([torch.cat([t[3 * e], t[3 * e + 1]], dim=0) for e in range(n)])
        return [gu, torch.stack([t[3 * e + 2] for e in range(n)])]

    return Rule((f"{p}.experts.gate_up_proj", f"{p}.experts.down_proj"), ours, fwd, back)


@dataclass(frozen=True)
class Geometry:
    n_layers: int
    q: int = 0  # rows of q, k, v in a fused projection (for export)
    kv: int = 0
    experts: int = 0
    n_dec_layers: int = 0


def _layers(keys: Sequence[str], prefix: str = "h.") -> int:
    idx = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _decoder_rules(family: str, g: Geometry, p: str) -> list[Rule]:
    sizes = (g.q, g.kv, g.kv) if g.q else None
    if family == "gpt2":
        rules = [_same(f"{p}wte.weight", "wte.weight"), _same(f"{p}wpe.weight", "wpe.weight")]
        for i in range(g.n_layers):
            h = f"{p}h.{i}."
            for t in ("weight", "bias"):
                rules += [
                    _same(h + f"ln_1.{t}", f"h.{i}.ln_1.{t}"),
                    _same(h + f"ln_2.{t}", f"h.{i}.ln_2.{t}"),
                ]
            for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                rules += [
                    _t(h + name + ".weight", f"h.{i}.{name}.weight"),
                    _same(h + name + ".bias", f"h.{i}.{name}.bias"),
                ]
        rules += [_same(f"{p}ln_f.weight", "ln_f.weight"), _same(f"{p}ln_f.bias", "ln_f.bias")]
        return rules
    rules = [_same(f"{p}embed_tokens.weight", "wte.weight"), _same(f"{p}norm.weight", "ln_f.weight")]
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        a = h + "self_attn."
        for t in ("weight", "bias"):
            rules.append(_cat([a + f"{x}_proj.{t}" for x in "qkv"], o + f"attn.c_attn.{t}", sizes))
            rules.append(_same(a + f"o_proj.{t}", o + f"attn.c_proj.{t}"))
        if family == "mixtral":
            rules.append(_same(h + "mlp.gate.weight", o + "mlp.router.weight"))
            rules.append(_experts(h + "mlp", o + "mlp", g.experts))
        else:
            for proj in ("gate_proj", "up_proj", "down_proj"):
                for t in ("weight", "bias"):
                    rules.append(_same(h + f"mlp.{proj}.{t}", o + f"mlp.{proj}.{t}"))
        norms = [("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")]
        if family == "gemma2":
            norms = [
                ("ln_1", "input_layernorm"),
                ("post_ln_1", "post_attention_layernorm"),
                ("ln_2", "pre_feedforward_layernorm"),
                ("post_ln_2", "post_feedforward_layernorm"),
            ]
        rules += [_same(h + f"{hf}.weight", o + f"{ours}.weight") for ours, hf in norms]
    return rules


def _bert_rules(g: Geometry, p: str) -> list[Rule]:
    e = p + "embeddings."
    rules = [
        _same(e + "word_embeddings.weight", "wte.weight"),
        _same(e + "token_type_embeddings.weight", "wte.types.weight"),
        _same(e + "position_embeddings.weight", "wpe.weight"),
        _same(e + "LayerNorm.weight", "ln_emb.weight"),
        _same(e + "LayerNorm.bias", "ln_emb.bias"),
        _same(p + "pooler.dense.weight", "lm_head.dense.weight"),
        _same(p + "pooler.dense.bias", "lm_head.dense.bias"),
    ]
    sizes = (g.q, g.kv, g.kv) if g.q else None
    for i in range(g.n_layers):
        h, o = f"{p}encoder.layer.{i}.", f"h.{i}."
        a = h + "attention.self."
        for t in ("weight", "bias"):
            rules += [
                _cat([a + f"query.{t}", a + f"key.{t}", a + f"value.{t}"], o + f"attn.c_attn.{t}", sizes),
                _same(h + f"attention.output.dense.{t}", o + f"attn.c_proj.{t}"),
                _same(h + f"attention.output.LayerNorm.{t}", o + f"ln_1.{t}"),
                _same(h + f"intermediate.dense.{t}", o + f"mlp.c_fc.{t}"),
                _same(h + f"output.dense.{t}", o + f"mlp.c_proj.{t}"),
                _same(h + f"output.LayerNorm.{t}", o + f"ln_2.{t}"),
            ]
    return rules


def _vit_rules(g: Geometry, p: str) -> list[Rule]:
    e = p + "embeddings."
    rules = [
        _same(e + "patch_embeddings.projection.weight", "wte.proj.weight"),
        _same(e + "patch_embeddings.projection.bias", "wte.proj.bias"),
        _same(e + "cls_token", "wte.cls_token"),
        Rule((e + "position_embeddings",), ("wpe.weight",), lambda t: [t[0][0]], lambda t: [t[0][None]]),
        _same(p + "layernorm.weight", "ln_f.weight"),
        _same(p + "layernorm.bias", "ln_f.bias"),
        _same("classifier.weight", "lm_head.proj.weight"),
        _same("classifier.bias", "lm_head.proj.bias"),
    ]
    sizes = (g.q, g.kv, g.kv) if g.q else None
    for i in range(g.n_layers):
        h, o = f"{p}layers.{i}.", f"h.{i}."
        a = h + "attention."
        for t in ("weight", "bias"):
            rules += [
                _cat([a + f"{x}_proj.{t}" for x in "qkv"], o + f"attn.c_attn.{t}", sizes),
                _same(a + f"o_proj.{t}", o + f"attn.c_proj.{t}"),
                _same(h + f"layernorm_before.{t}", o + f"ln_1.{t}"),
                _same(h + f"layernorm_after.{t}", o + f"ln_2.{t}"),
                _same(h + f"mlp.fc1.{t}", o + f"mlp.c_fc.{t}"),
                _same(h + f"mlp.fc2.{t}", o + f"mlp.c_proj.{t}"),
            ]
    return rules


def _t5_rules(g: Geometry) -> list[Rule]:
    rules = [_same("shared.weight", "wte.weight")]
    for stack, n in (("encoder", g.n_layers), ("decoder", g.n_dec_layers or g.n_layers)):
        rules.append(
            _same(
                f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                f"{stack}.pos.relative_attention_bias.weight",
            )
        )
        rules.append(_same(f"{stack}.final_layer_norm.weight", f"{stack}.ln_f.weight"))
        for i in range(n):
            b, h = f"{stack}.block.{i}.layer", f"{stack}.h.{i}"
            sa = f"{b}.0.SelfAttention"
            rules.append(
                _cat(
                    [f"{sa}.q.weight", f"{sa}.k.weight", f"{sa}.v.weight"],
                    f"{h}.attn.c_attn.weight",
                    (g.q, g.kv, g.kv),
                )
            )
            rules.append(_same(f"{sa}.o.weight", f"{h}.attn.c_proj.weight"))
            rules.append(_same(f"{b}.0.layer_norm.weight", f"{h}.ln_1.weight"))
            ff = 1
            if stack == "decoder":
                ca = f"{b}.1.EncDecAttention"
                rules.append(_same(f"{ca}.q.weight", f"{h}.cross.q_proj.weight"))
                rules.append(
                    _cat([f"{ca}.k.weight", f"{ca}.v.weight"], f"{h}.cross.kv_proj.weight", (g.kv, g.kv))
                )
                rules.append(_same(f"{ca}.o.weight", f"{h}.cross.c_proj.weight"))
                rules.append(_same(f"{b}.1.layer_norm.weight", f"{h}.ln_2.weight"))
                ff = 2
            dr = f"{b}.{ff}.DenseReluDense"
            rules += [
                _same(f"{dr}.wi.weight", f"{h}.mlp.c_fc.weight"),
                _same(f"{dr}.wo.weight", f"{h}.mlp.c_proj.weight"),
                _same(f"{dr}.wi_0.weight", f"{h}.mlp.gate_proj.weight"),
                _same(f"{dr}.wi_1.weight", f"{h}.mlp.up_proj.weight"),
                _same(f"{dr}.wo.weight", f"{h}.mlp.down_proj.weight"),
                _same(f"{b}.{ff}.layer_norm.weight", f"{h}.ln_{ff + 1}.weight"),
            ]
    return rules


# HF tensors that are buffers or tied copies, never weights of their own
HF_IGNORED = (
    re.compile(r"(^|\.)rotary_emb\.inv_freq$"),
    re.compile(r"(^|\.)h\.\d+\.attn\.(masked_)?bias$"),  # GPT-2's old causal-mask buffers
    re.compile(r"(^|\.)position_ids$"),
    re.compile(r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$"),
)
# HF names that hold the same tensor as another (tied): consumed when they equal it
HF_TIED = {
    "lm_head.weight": ("model.embed_tokens.weight", "transformer.wte.weight", "shared.weight"),
    "encoder.embed_tokens.weight": ("shared.weight",),
    "decoder.embed_tokens.weight": ("shared.weight",),
}


def _family_of_state(keys: set[str]) -> tuple[str, str]:
    """(family, prefix) from a Hugging Face state dict's names."""

    def has(suffix: str) -> str | None:
        for k in keys:
            if k.endswith(suffix):
                return k[: -len(suffix)]
        return None

    if (p := has("h.0.attn.c_attn.weight")) is not None:
        return "gpt2", p
    if (p := has("layers.0.pre_feedforward_layernorm.weight")) is not None:
        return "gemma2", p
    if (p := has("layers.0.mlp.experts.gate_up_proj")) is not None:
        return "mixtral", p
    if (p := has("layers.0.self_attn.q_proj.weight")) is not None:
        return "llama", p
    if "encoder.block.0.layer.0.SelfAttention.q.weight" in keys:
        return "t5", ""
    if (p := has("embeddings.patch_embeddings.projection.weight")) is not None:
        return "vit", p
    if (p := has("embeddings.word_embeddings.weight")) is not None:
        return "bert", p
    raise ValueError(
        "not a Hugging Face state dict of a supported family (gpt2, llama, mistral, mixtral, "
        "qwen2, gemma2, bert, t5, vit)"
    )


def _rules(family: str, g: Geometry, prefix: str) -> list[Rule]:
    if family in ("gpt2", "llama", "mistral", "mixtral", "qwen2", "gemma2"):
        return _decoder_rules(family, g, prefix)
    if family == "bert":
        return _bert_rules(g, prefix)
    if family == "vit":
        return _vit_rules(g, prefix)
    return _t5_rules(g)


def read_state(source: Any) -> dict[str, Tensor]:
    """A state dict from a mapping, a ``.safetensors`` file, a ``.bin`` file (``torch.load`` with
    ``weights_only=True``) or a folder of ``*.safetensors`` (else ``pytorch_model*.bin``)."""
    import torch

    if isinstance(source, Mapping):
        return {str(k): v for k, v in source.items()}
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise FileNotFoundError(f"{path}: no *.safetensors or pytorch_model*.bin")
    elif path.exists():
        files = [path]
    else:
        raise FileNotFoundError(f"{path}: no such file or directory")
    state: dict[str, Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(f)))
        else:
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return state


class WeightMismatchError(ValueError):
    """A checkpoint that does not fit the model: every missing, unexpected and mis-shaped name."""


def _aliases(model: nn.Module) -> dict[str, str]:
    """Each state-dict name whose tensor another name already holds (tied or shared), to that name."""
    seen: dict[int, str] = {}
    out: dict[str, str] = {}
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) in seen:
            out[k] = seen[id(v)]
        else:
            seen[id(v)] = k
    return out


def load_hf_weights(model: nn.Module, source: Any) -> dict[str, Tensor]:
    """Copy a Hugging Face checkpoint's weights into ``model`` (built by archdsl from the matching spec):
    names and layouts mapped per family (GPT-2's Conv1D transposed, q/k/v fused, fused experts split,
    ViT's position table unbatched), tied weights checked. Raises :class:`WeightMismatchError` listing
    every missing, unexpected or mis-shaped tensor; nothing is loaded then. Returns the mapped state."""
    import torch

    hf = read_state(source)
    family, prefix = _family_of_state(set(hf))
    own = model.state_dict()
    aliases = _aliases(model)
    g = Geometry(
        n_layers=_layers(list(own)) or _layers(list(own), "encoder.h."),
        experts=_layers(list(own), "h.0.mlp.experts."),
        n_dec_layers=_layers(list(own), "decoder.h."),
    )
    ours: dict[str, Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for r in _rules(family, g, prefix):
        if not all(o in own for o in r.ours):
            continue
        if any(o in aliases for o in r.ours):
            continue
        absent = [h for h in r.hf if h not in hf]
        if absent:
            missing += absent
            continue
        used.update(r.hf)
        for o, t in zip(r.ours, r.fwd([hf[h] for h in r.hf]), strict=True):
            ours[o] = t
    head_tied = "lm_head.weight" in aliases
    if "lm_head.weight" in own and not head_tied:
        if "lm_head.weight" in hf:
            ours["lm_head.weight"] = hf["lm_head.weight"]
            used.add("lm_head.weight")
        else:
            missing.append("lm_head.weight")
    problems: list[str] = []
    for k, others in HF_TIED.items():
        if k in hf and k not in used:
            base = next((o for o in others if o in hf), None)
            if base is not None and torch.equal(hf[k], hf[base]):
                used.add(k)
            elif k == "lm_head.weight" and head_tied:
                problems.append(f"{k}: the checkpoint's output head is untied, the model's is tied")
                used.add(k)
    unexpected = sorted(k for k in hf if k not in used and not any(p.search(k) for p in HF_IGNORED))
    not_filled = sorted(k for k in own if k not in ours and k not in aliases)
    shapes = [
        f"{k}: model {tuple(own[k].shape)}, checkpoint gives {tuple(v.shape)}"
        for k, v in ours.items()
        if tuple(own[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes or problems or (not_filled and not missing):
        lines = [f"the {family} checkpoint does not fit the model:"]
        if missing:
            lines.append(f"  missing in the checkpoint ({len(missing)}): {', '.join(sorted(missing))}")
        if not_filled and not missing:
            lines.append(
                f"  model tensors with no checkpoint tensor ({len(not_filled)}): {', '.join(not_filled)}"
            )
        if unexpected:
            lines.append(f"  unexpected in the checkpoint ({len(unexpected)}): {', '.join(unexpected)}")
        if shapes:
            lines.append(f"  mis-shaped ({len(shapes)}): " + "; ".join(shapes))
        lines += [f"  {p}" for p in problems]
        raise WeightMismatchError("\n".join(lines))
    with torch.no_grad():
        params = model.state_dict(keep_vars=True)
        for k, v in ours.items():
            params[k].copy_(v.to(params[k].dtype))
    return ours


# -- export ------------------------------------------------------------------------------------------


def _family_of_spec(spec: Spec) -> str:
    m = spec.model
    if m.type != "decoder":
        raise ValueError(f"export_hf writes decoder models; {m.name} is an {m.type.replace('_', '-')}")
    st = m.stacks[0]
    block = st.layers[0]
    subs = dict(block.sublayers)
    attn, mlp = subs.get("attn"), subs.get("mlp")
    if attn is None or mlp is None or st.position is None:
        raise ValueError(
            f"export_hf: {m.name} is not one of the decoder families "
            "gpt2, llama, mistral, mixtral, qwen2, gemma2"
        )
    if st.position.kind == "learned" and st.final_norm is not None and st.final_norm.kind == "layernorm":
        return "gpt2"
    if "post_ln_1" in subs:
        return "gemma2"
    if mlp.kind == "moe":
        return "mixtral"
    if attn["bias"] and not attn["out_bias"]:
        return "qwen2"
    if any(dict(b.sublayers)["attn"].kind == "sliding_window" for b in st.layers):
        return "mistral"
    return "llama"


def config_from_spec(spec: Spec) -> dict[str, Any]:
    """The Hugging Face config (as a dict for ``config.json``) of a decoder spec in a supported family."""
    family = _family_of_spec(spec)
    m = spec.model
    st = m.stacks[0]
    subs = dict(st.layers[0].sublayers)
    attn, mlp, pos = subs["attn"], subs["mlp"], st.position
    assert pos is not None
    heads = int(attn["heads"])
    head_dim = int(attn["head_dim"] or m.d_model // heads)
    n = len(st.layers)
    tied = bool(m.head["tied"])
    if family == "gpt2":
        acts = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}
        return {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": m.vocab,
            "n_positions": pos["max_len"],
            "n_embd": m.d_model,
            "n_layer": n,
            "n_head": heads,
            "n_inner": mlp["hidden"],
            "activation_function": acts[str(mlp["activation"])],
            "layer_norm_epsilon": subs["ln_1"]["eps"],
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "tie_word_embeddings": tied,
        }
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": pos["theta"]}
    if pos["scaling"] == "linear":
        rope = {"rope_type": "linear", "rope_theta": pos["theta"], "factor": pos["factor"]}
    elif pos["scaling"] == "llama3":
        rope = {
            "rope_type": "llama3",
            "rope_theta": pos["theta"],
            "factor": pos["factor"],
            "low_freq_factor": pos["low_freq_factor"],
            "high_freq_factor": pos["high_freq_factor"],
            "original_max_position_embeddings": pos["original_max_len"],
        }
    windows = [dict(b.sublayers)["attn"].get("window") for b in st.layers]
    window = next((w for w in windows if w is not None), None)
    classes = {
        "llama": "LlamaForCausalLM",
        "mistral": "MistralForCausalLM",
        "mixtral": "MixtralForCausalLM",
        "qwen2": "Qwen2ForCausalLM",
        "gemma2": "Gemma2ForCausalLM",
    }
    cfg: dict[str, Any] = {
        "model_type": family,
        "architectures": [classes[family]],
        "vocab_size": m.vocab,
        "hidden_size": m.d_model,
        "intermediate_size": mlp["hidden"],
        "num_hidden_layers": n,
        "num_attention_heads": heads,
        "num_key_value_heads": int(attn["kv_heads"] or heads),
        "head_dim": head_dim,
        "max_position_embeddings": pos["max_len"],
        "rms_norm_eps": subs["ln_1"]["eps"],
        "rope_parameters": rope,
        "tie_word_embeddings": tied,
        "attention_dropout": 0.0,
    }
    if family == "llama":
        cfg.update(hidden_act="silu", attention_bias=bool(attn["bias"]), mlp_bias=bool(mlp["bias"]))
    elif family in ("mistral", "mixtral"):
        cfg.update(hidden_act="silu", sliding_window=window)
        if family == "mixtral":
            cfg.update(num_local_experts=mlp["experts"], num_experts_per_tok=mlp["top_k"])
    elif family == "qwen2":
        cfg.update(hidden_act="silu", use_sliding_window=window is not None, sliding_window=window)
        cfg["layer_types"] = ["sliding_attention" if w is not None else "full_attention" for w in windows]
    elif family == "gemma2":
        scale = attn["scale"]
        cfg.update(
            hidden_activation="gelu_pytorch_tanh",
            sliding_window=window or pos["max_len"],
            layer_types=["sliding_attention" if w is not None else "full_attention" for w in windows],
            attn_logit_softcapping=attn["softcap"] or None,
            final_logit_softcapping=m.head["softcap"] or None,
            query_pre_attn_scalar=head_dim if scale is None else round(float(scale) ** -2, 6),
            attention_bias=bool(attn["bias"]),
        )
        if cfg["query_pre_attn_scalar"] == int(cfg["query_pre_attn_scalar"]):
            cfg["query_pre_attn_scalar"] = int(cfg["query_pre_attn_scalar"])
    return cfg


def export_hf(model: nn.Module, spec: Spec, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` in ``directory`` that the matching Hugging Face
    class loads (``AutoModelForCausalLM.from_pretrained(directory)``), for the decoder families gpt2,
    llama, mistral, mixtral, qwen2 and gemma2. Returns the directory."""
    from safetensors.torch import save_file

    cfg = config_from_spec(spec)
    family = cfg["model_type"]
    subs = dict(spec.model.stacks[0].layers[0].sublayers)
    attn = subs["attn"]
    heads = int(attn["heads"])
    head_dim = int(attn["head_dim"] or spec.model.d_model // heads)
    kv = int(attn["kv_heads"] or heads)
    own = {k: v.detach() for k, v in model.state_dict().items()}
    aliases = _aliases(model)
    g = Geometry(
        n_layers=len(spec.model.stacks[0].layers),
        q=heads * head_dim,
        kv=kv * head_dim,
        experts=int(subs["mlp"].get("experts") or 0),
    )
    prefix = "transformer." if family == "gpt2" else "model."
    out: dict[str, Tensor] = {}
    for r in _rules(family, g, prefix):
        if not all(o in own for o in r.ours):
            continue
        for h, t in zip(r.hf, r.back([own[o] for o in r.ours]), strict=True):
            out[h] = t.contiguous().clone()
    if "lm_head.weight" in own and "lm_head.weight" not in aliases:
        out["lm_head.weight"] = own["lm_head.weight"].contiguous().clone()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    save_file(out, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d
