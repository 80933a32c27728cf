"""What every family module shares: reading a config field by field (:class:`Fields`, refusing what is
left by name), writing spec text (:class:`Text` and small builders), weight-mapping rules
(:class:`Rule`), the model's head geometry (:class:`Geometry`) and the family registry
(:class:`Family`, :func:`register`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archdsl.diagnostics import Diagnostic, SpecError
from archdsl.ir import Spec

if TYPE_CHECKING:
    import torch
    from torch import nn

    Tensor = torch.Tensor
else:
    Tensor = Any

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


def diag(field: str, message: str, help: str | None = None) -> Diagnostic:
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
            self.errors.append(diag(key, "is required for this model type"))
            return 1
        return self.config[key]

    def expect(self, key: str, allowed: Sequence[Any], why: str = "") -> Any:
        """A field whose only supported values are ``allowed`` (None, absent, counts as the first)."""
        v = self.get(key, allowed[0])
        if v not in allowed:
            choices = ", ".join(json.dumps(a) for a in allowed)
            self.errors.append(
                diag(key, f"{json.dumps(v)} is not supported (archdsl expresses {choices}){why}")
            )
        return v

    def refuse(self, key: str, message: str) -> None:
        self.errors.append(diag(key, message))

    def finish(self) -> None:
        for key in sorted(set(self.config) - self.used):
            self.errors.append(
                diag(key, "is not known to archdsl's importer for this model type", "no spec value says it")
            )
        if self.errors:
            raise UnsupportedConfigError(self.errors)


# -- spec text ---------------------------------------------------------------------------------------


def num(v: float | int) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    f = float(v)
    if f == int(f) and abs(f) < 1e15:
        return f"{f:.1f}"
    return repr(f)


def call(kind: str, args: Sequence[tuple[str, str]]) -> str:
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


def act(f: Fields, key: str, default: str) -> str:
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


def model_name(config: Mapping[str, Any], default: str) -> str:
    raw = str(config.get("_name_or_path") or "").rstrip("/").split("/")[-1]
    name = re.sub(r"[^0-9A-Za-z_]", "_", raw).strip("_").lower() or default
    if not re.match(r"[A-Za-z_]", name):
        name = "m_" + name
    return name


def rope(f: Fields, max_len: str, partial: bool = False, layout: str = "half") -> str:
    """``rope(...)`` from ``rope_theta`` / ``rope_scaling`` (transformers 4) or ``rope_parameters`` (5).
    ``partial``: the family rotates a share of each head (``partial_rotary_factor``, in
    ``rope_parameters`` or at the top level); otherwise a factor other than 1 is refused."""
    params = f.get("rope_parameters")
    key = "rope_parameters"
    if not params:
        params, key = f.get("rope_scaling"), "rope_scaling"
    params = dict(params or {})
    theta = params.pop("rope_theta", None)
    theta = f.get("rope_theta", 10000.0) if theta is None else theta
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    fraction = params.pop("partial_rotary_factor", None)
    fraction = float(f.get("partial_rotary_factor", 1.0) if fraction is None else fraction)
    args = [("theta", num(float(theta)))]
    if fraction != 1.0:
        if partial:
            args.append(("fraction", num(fraction)))
        else:
            f.refuse("partial_rotary_factor", "partial rotary is not part of this model type")
    if layout != "half":
        args.append(("layout", layout))
    if kind == "linear":
        args += [("scaling", "linear"), ("factor", num(float(params.pop("factor"))))]
    elif kind == "llama3":
        args += [
            ("scaling", "llama3"),
            ("factor", num(float(params.pop("factor")))),
            ("low_freq_factor", num(float(params.pop("low_freq_factor", 1.0)))),
            ("high_freq_factor", num(float(params.pop("high_freq_factor", 4.0)))),
            ("original_max_len", str(int(params.pop("original_max_position_embeddings", 8192)))),
        ]
    elif kind != "default":
        f.refuse(
            f"{key}.rope_type", f"RoPE scaling {json.dumps(kind)} is not supported (default, linear, llama3)"
        )
    for extra in sorted(params):
        f.refuse(f"{key}.{extra}", f"is not supported for RoPE type {json.dumps(kind)}")
    return call("rope", [*args, ("max_len", max_len)])


def pattern(layer_types: list[str]) -> tuple[list[str], int]:
    """The shortest period of a layer pattern, and how many times it repeats."""
    n = len(layer_types)
    for p in range(1, n + 1):
        if n % p == 0 and layer_types[:p] * (n // p) == layer_types:
            return layer_types[:p], n // p
    return layer_types, 1


def read_layer_types(f: Fields, n_layers: int, sliding: bool) -> list[str]:
    types = f.get("layer_types")
    if types is None:
        return ["sliding_attention" if sliding else "full_attention"] * n_layers
    if len(types) != n_layers or set(types) - {"sliding_attention", "full_attention"}:
        f.refuse("layer_types", "expected one of sliding_attention / full_attention per layer")
        return ["full_attention"] * n_layers
    return list(types)


def decoder_body(
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
    full = call("mha", attn)
    local = call("sliding_window", [*attn, ("window", "window")])
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
    period, times = pattern(["local" if t == "sliding_attention" else "global" for t in layer_types])
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


# -- weights -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """HF tensors <-> archdsl tensors: ``fwd`` maps the HF ones to ours, ``back`` ours to HF's."""

    hf: tuple[str, ...]
    ours: tuple[str, ...]
    fwd: Callable[[list[Tensor]], list[Tensor]]
    back: Callable[[list[Tensor]], list[Tensor]]


def same(hf: str, ours: str) -> Rule:
    return Rule((hf,), (ours,), lambda t: t, lambda t: t)


def transposed(hf: str, ours: str) -> Rule:  # GPT-2's Conv1D holds (in, out)
    return Rule((hf,), (ours,), lambda t: [t[0].t()], lambda t: [t[0].t()])


def fused(hf: Sequence[str], ours: str, sizes: Sequence[int] | None) -> Rule:
    import torch

    def back(t: list[Tensor]) -> list[Tensor]:
        if sizes is None:
            raise ValueError(f"splitting {ours} needs the spec's head sizes")
        return list(torch.split(t[0], list(sizes), dim=0))

    return Rule(tuple(hf), (ours,), lambda t: [torch.cat(t, dim=0)], back)


def fused_experts(p: str, o: str, n: int) -> Rule:
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
    """Sizes the weight rules need: layers per stack, and the head layout of the (first) attention,
    for fused q/k/v projections that are split or interleaved per head."""

    n_layers: int
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    d_model: int = 0
    experts: int = 0
    n_dec_layers: int = 0

    @property
    def q(self) -> int:  # rows of q in a fused projection
        return self.heads * self.head_dim

    @property
    def kv(self) -> int:  # rows of k (and of v)
        return self.kv_heads * self.head_dim


def count_layers(keys: Sequence[str], prefix: str = "h.") -> int:
    idx = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def geometry(model: nn.Module) -> Geometry:
    """The geometry of a built archdsl model, read from its state-dict names and its first attention."""
    own = list(model.state_dict())
    heads = kv_heads = head_dim = 0
    for m in model.modules():
        if isinstance(getattr(m, "n_heads", None), int) and isinstance(getattr(m, "head_dim", None), int):
            heads, head_dim = m.n_heads, m.head_dim
            kv_heads = getattr(m, "n_kv_heads", heads)
            break
    wte = model.state_dict().get("wte.weight")
    return Geometry(
        n_layers=count_layers(own) or count_layers(own, "encoder.h."),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        d_model=int(getattr(getattr(model, "config", None), "d_model", 0) or 0)
        or (int(wte.shape[1]) if wte is not None else 0),
        # the experts of the first layer that has a mixture (Jamba's and DeepSeek's first are dense)
        experts=max((count_layers(own, f"h.{i}.mlp.experts.") for i in range(count_layers(own))), default=0),
        n_dec_layers=count_layers(own, "decoder.h."),
    )


# -- the registry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One Hugging Face ``model_type``: its config as spec text, and (where it has them) its weight
    rules and its export.

    ``layout`` names the state-dict layout the weight rules read (several model types share one: the
    Llama layout serves Mistral, Qwen 2 and 3, OLMo …); the layout's ``detect`` tells it from a state
    dict's names and returns the prefix in front of them (``"model."``), or None. Layouts are tried in
    descending ``priority``, so a more specific one (Gemma 2's four norms) goes before a general one.
    ``claims`` says whether an archdsl spec is this family's (for :func:`export_hf`), ``to_config``
    writes its ``config.json``; ``hf_prefix`` is the prefix of the exported tensor names. ``ignored``
    (regular expressions) names the layout's buffers that are not weights (cached masks, rotary
    tables); ``tied`` an HF name that holds the same tensor as one of others (consumed when equal)."""

    model_type: str
    to_text: Callable[[Mapping[str, Any]], Text]
    layout: str | None = None
    rules: Callable[[Geometry, str], list[Rule]] | None = None
    detect: Callable[[set[str]], str | None] | None = None
    priority: int = 0
    claims: Callable[[Spec], bool] | None = None
    to_config: Callable[[Spec], dict[str, Any]] | None = None
    hf_prefix: str = "model."
    ignored: tuple[str, ...] = ()
    tied: tuple[tuple[str, tuple[str, ...]], ...] = ()


FAMILIES: dict[str, Family] = {}


def register(*families: Family) -> None:
    for fam in families:
        if fam.model_type in FAMILIES:
            raise ValueError(f"family {fam.model_type} registered twice")
        FAMILIES[fam.model_type] = fam


def suffix_prefix(keys: set[str], suffix: str) -> str | None:
    """The prefix in front of ``suffix`` in some name of ``keys`` (``"model."``), or None."""
    for k in keys:
        if k.endswith(suffix):
            return k[: -len(suffix)]
    return None


def placement_of(block: Any) -> str | None:
    """The preset a block's dataflow is (``pre``, ``post``, ``sandwich``, ``parallel``,
    ``parallel_shared``), or None for a hand-written flow."""
    from archdsl.placements import PLACEMENTS

    names = [n for n, _ in block.sublayers]
    subs = [(n, n == "cross") for n in ("attn", "mixer", "cross", "mlp") if n in names]
    body = list(block.body)
    for name in ("pre", "post", "sandwich", "parallel"):
        if PLACEMENTS[name].expand(subs, {})[1] == body:
            return name
    if PLACEMENTS["parallel"].expand(subs, {"shared_norm": True})[1] == body:
        return "parallel_shared"
    return None


# -- export helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parts:
    """A one-stack spec's pieces, as the export functions read them."""

    spec: Spec
    subs: dict[str, Any]  # the first block's sublayers by name
    heads: int
    kv_heads: int
    head_dim: int
    n_layers: int

    @property
    def model(self) -> Any:
        return self.spec.model

    @property
    def stack(self) -> Any:
        return self.spec.model.stacks[-1]

    @property
    def attn(self) -> Any:
        return self.subs["attn"]

    @property
    def mlp(self) -> Any:
        return self.subs.get("mlp")

    @property
    def pos(self) -> Any:
        return self.stack.position

    def blocks(self) -> list[dict[str, Any]]:
        return [dict(b.sublayers) for b in self.stack.layers]


def parts(spec: Spec) -> Parts:
    st = spec.model.stacks[-1]
    subs = dict(st.layers[0].sublayers)
    attn = subs.get("attn")
    heads = int(attn["heads"]) if attn is not None else 0
    head_dim = int(attn["head_dim"] or spec.model.d_model // heads) if attn is not None else 0
    kv = int(attn["kv_heads"] or heads) if attn is not None else 0
    return Parts(spec, subs, heads, kv, head_dim, len(st.layers))


def rope_config(pos: Any) -> dict[str, Any]:
    """transformers 5's ``rope_parameters`` for a ``rope(...)`` node."""
    out: dict[str, Any] = {"rope_type": "default", "rope_theta": pos["theta"]}
    if pos["scaling"] == "linear":
        out = {"rope_type": "linear", "rope_theta": pos["theta"], "factor": pos["factor"]}
    elif pos["scaling"] == "llama3":
        out = {
            "rope_type": "llama3",
            "rope_theta": pos["theta"],
            "factor": pos["factor"],
            "low_freq_factor": pos["low_freq_factor"],
            "high_freq_factor": pos["high_freq_factor"],
            "original_max_position_embeddings": pos["original_max_len"],
        }
    if pos["fraction"] != 1.0:
        out["partial_rotary_factor"] = pos["fraction"]
    return out
