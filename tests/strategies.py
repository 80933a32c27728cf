"""Hypothesis strategies that generate *valid* archdsl specs, as text, with what a test needs to run them.

``specs()`` draws a whole spec file (constants, top-level block definitions, one model) at tiny sizes —
``d_model <= 64``, at most 3 layers a stack, ``vocab <= 64``, sequences of at most 32 — together with a
batch, the lengths to analyse and run it at, and the shape its forward returns. Everything the language
offers is in reach: every registered kind of every role (the kinds are read from
``archdsl.kinds.REGISTRY`` when a spec is drawn, so a new kind is generated as soon as it is registered),
decoders, encoders, encoder-decoders, image models (patch embeddings) and towers models (two towers, each
an encoder with its own input, width, stack and projection head, combined by a contrastive head), every
placement preset of
``archdsl.placements.PLACEMENTS``, explicit ``flow { }`` blocks with named sublayers, layer patterns
over top-level block definitions (with ``base =``), per-layer overrides, shared blocks, LoRA and
adapters. Values are written as literals (with ``_`` digit separators now and then), named constants
or small exact expressions (``2 * c1``, ``max(…)``, ``(v * k) / k``, ``2 ** e``) that evaluate to the
intended number; enum words sometimes through a constant; sections on one line or many; calls with a
trailing comma. In about one spec in four, flow sublayers and tensors, blocks and the model get awkward
names (``TRICKY_NAMES``: Python keywords and builtins, nn.Module attributes, names the emitted code
uses) — those archdsl accepts in that place, found by asking it (``accepted_names``), so the spec stays
valid whatever the naming rules, and the generated Python has to cope with them.

The strategies respect every cross-parameter rule the kinds' ``validate`` methods enforce — heads divide
``d_model`` (or ``head_dim`` is given), ``kv_heads`` divides ``heads``, ``sparse`` needs two heads and
``summary <= stride``, BigBird's bidirectional window is odd, LSH buckets are 1 or even, ``linear`` takes
no softcap or weight dropout, ``xl`` is causal self-attention without an attention-acting position,
retention's heads leave an even key width (``chunk`` only with ``form = chunkwise``), ``mla`` is
self-attention with ``kv_heads = heads``, no qk-norm and rope dims for the stack's RoPE, block-sparse and
kernelised attention only take RoPE among attention-acting positions, T5 needs one head count per stack
and enough buckets, sinusoids need an even width, ``top_k <= experts``, the patch
divides the image, positional tables cover the lengths the spec is run at, a decoder of an
encoder-decoder reads the encoder output. So a spec that ``archdsl.check`` refuses, or that fails to
build or run, is either a bug in these strategies or in archdsl; the tests say which spec.

Kinds with a generator of their own are listed in ``COVERED_KINDS``; a registered kind that is not there
still gets drawn, with arguments made up from its parameter schema (``Param`` types and bounds), and
``tests/test_fuzz_valid.py::test_every_kind_has_a_strategy`` fails naming it, so that someone writes
its constraints down here. Parameters of covered kinds that a generator does not set explicitly are
drawn the same schema-driven way, so a parameter added to an existing kind is exercised at once.

``specs(require=NAME)`` forces a spec to contain a kind, a placement or a feature (``FEATURES``), so a
test can be parametrised over the registry and every kind is exercised deterministically.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from archdsl.kinds import REGISTRY, Param, kinds_for
from archdsl.kinds.peft import LORA_TARGETS
from archdsl.placements import PLACEMENTS

MAX_D = 64
MAX_LAYERS = 3
MAX_VOCAB = 64
MAX_LEN = 32

#: Features ``specs(require=…)`` can force (besides kind and placement names).
FEATURES = (
    "decoder",
    "encoder",
    "encoder_decoder",
    "image",
    "flow",
    "pattern",
    "override",
    "shared",
    "base",
    "lora",
    "adapter",
    "checkpoint",
    "constants",
    "stages",
    "towers",
)

# Plain names for flow sublayers and tensors, and for blocks and models.
SUBLAYER_NAMES = ("attn", "mlp", "ffn", "ln", "n1", "n2", "norm_a", "att2", "conv", "ff_b", "sub", "adapt")
TENSOR_NAMES = ("h", "y", "z", "t1", "t2", "u")
BLOCK_NAMES = ("b0", "b1", "b2", "dense", "local", "global_", "moe_block")
MODEL_NAMES = ("m", "tiny", "fuzz_model", "net2")
# Names that are awkward in generated Python: words of the language, Python keywords, builtins, modules
# generated code uses, nn.Module attributes, names archdsl derives (``PreNormBlock``, ``build_model``),
# the emitted forward's own locals. Only those archdsl *accepts* in a role are drawn for it (see
# ``accepted_names``): a name it refuses makes the spec invalid, and one it accepts must work.
TRICKY_NAMES = (
    "B", "T", "C", "idx", "src", "tgt", "out", "logits", "mask", "q", "k", "v", "att", "scale", "bias",
    "weight", "n", "ln_f", "wte", "wpe", "drop", "lm_head", "h_0", "embedding", "head", "position",
    "encoder", "decoder", "stack", "layers", "blocks", "model", "block", "flow", "layer", "config", "cfg",
    "build_model", "main", "args", "kwargs", "loss", "dtype", "device", "shape", "size", "view", "Module",
    "Tensor", "Linear", "LayerNorm", "Block", "GPT", "Model", "pre_norm", "post_norm", "sandwich",
    "parallel", "deepnorm", "flow_block", "FlowBlock", "PreNormBlock", "global", "local", "d_model",
    "vocab", "c1", "x1", "memory_", "self", "torch", "nn", "F", "math", "print", "super", "class", "def",
    "lambda", "None", "True", "type", "match", "forward", "training", "x", "memory", "none", "__init__",
    "_", "__class__", "__import__", "eval", "exec", "input", "sum", "max", "min", "len", "range", "id",
)  # fmt: skip


def _divisors(n: int, most: int = 64) -> list[int]:
    return [k for k in range(1, min(n, most) + 1) if n % k == 0]


# -- values ---------------------------------------------------------------------------------------------


class Gen:
    """One spec being drawn: its constants, its top-level block definitions, and a record of what it
    uses (kinds, features) so that a requirement can be checked and reported."""

    def __init__(self, draw: Callable[..., Any], require: str | None) -> None:
        self.draw = draw
        self.need = require
        self.consts: list[str] = []
        self.n_consts = 0
        self.blocks: list[str] = []
        self.block_names: set[str] = set()
        self.kinds: set[str] = set()
        self.features: set[str] = set()
        self.sep = " "  # separator between the entries of a one-line section
        self.tricky = False  # draw awkward names (see TRICKY_NAMES)

    # -- requirements --------------------------------------------------------------------------------

    def wants(self, name: str) -> bool:
        return self.need == name

    def take(self, name: str) -> bool:
        """Whether the requirement is ``name``; it is then met (the caller honours it)."""
        if self.need == name:
            self.need = None
            return True
        return False

    def choose(self, options: Sequence[str]) -> str:
        """One of ``options``; the required one when it is among them."""
        if self.need in options:
            chosen = self.need
            self.need = None
            return chosen
        return str(self.draw(st.sampled_from(list(options))))

    def flag(self, p: float = 0.5) -> bool:
        """A coin with bias ``p``; hypothesis shrinks integers towards 0, so towards False (a shrunk
        spec has as few optional entries as it can)."""
        return bool(self.draw(st.integers(0, 99)) >= 100 - int(p * 100))

    def int_in(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, max(lo, hi))))

    # -- expressions ---------------------------------------------------------------------------------

    def const(self, text: str) -> str:
        """Define a constant holding ``text`` (an expression) and return its name."""
        self.n_consts += 1
        name = f"c{self.n_consts}"
        self.consts.append(f"{name} = {text}")
        self.features.add("constants")
        return name

    def int_(self, v: int, depth: int = 0) -> str:
        """An expression that evaluates to the integer ``v`` exactly: a literal (sometimes with ``_``
        digit separators), a constant, or a sum, product, exact division, floor division, power, ``%``,
        ``min``/``max``, or negation, nested at most twice. Exactness matters: ``/`` on integers must
        divide (E004), and the elaborated IR must hold ``v`` itself."""
        if depth == 0 and self.take("constants"):
            return self.const(self.int_(v, 1))
        choice = self.draw(st.integers(0, 11)) if depth < 2 else 0
        if choice <= 4:
            if v >= 10 and self.flag(0.1):
                s = str(v)
                return s[0] + "_" + s[1:]
            return str(v)
        if choice == 5:
            return self.const(self.int_(v, depth + 1))
        if choice == 6:
            a = self.int_in(0, v) if v > 0 else 0
            return f"{self._paren(self.int_(a, depth + 1))} + {self._paren(self.int_(v - a, depth + 1))}"
        if choice == 7 and v > 0:
            ds = _divisors(v)
            k = ds[self.int_in(0, len(ds) - 1)]
            return f"{self._paren(self.int_(k, depth + 1))} * {self._paren(self.int_(v // k, depth + 1))}"
        if choice == 8:
            k = self.int_in(1, 4)
            return f"({self.int_(v * k, depth + 1)}) / {k}"
        if choice == 9:
            k = self.int_in(1, 4)
            r = self.int_in(0, k - 1)
            return f"({self.int_(v * k + r, depth + 1)}) // {k}"
        if choice == 10 and v > 0 and v & (v - 1) == 0:
            return f"2 ** {int(math.log2(v))}"
        if choice == 10:
            return f"{v} % {v + self.int_in(1, 3)}"
        if choice == 11:
            other = self.int_in(0, v) if self.flag() else v + self.int_in(0, 3)
            fn = "max" if other <= v else "min"
            return f"{fn}({self.int_(v, depth + 1)}, {other})"
        return f"-(-{v})" if v > 0 else str(v)

    @staticmethod
    def _paren(text: str) -> str:
        return text if text.replace("_", "").isalnum() else f"({text})"

    def float_(self, v: float) -> str:
        """``v`` as the text form spells floats: ``1e-05`` style, plain decimals, or an integer where
        ``v`` is whole (an int is accepted where a float is expected)."""
        if v == int(v) and abs(v) < 1e6 and self.flag(0.3):
            return str(int(v))
        if self.flag(0.2):
            return f"{v:e}"
        return repr(float(v))

    def bool_(self, b: bool) -> str:
        return "true" if b else "false"

    def word(self, w: str) -> str:
        """An enum value: the bare word, or now and then a constant holding it."""
        if self.flag(0.1):
            return self.const(w)
        return w

    def call(self, kind: str, args: dict[str, str]) -> str:
        """``kind(a = 1, b = x)``; records the kind. A trailing comma now and then (the grammar allows
        it)."""
        self.kinds.add(kind)
        inner = ", ".join(f"{k} = {v}" for k, v in args.items())
        if inner and self.flag(0.05):
            inner += ","
        return f"{kind}({inner})"

    # -- schema-driven values ------------------------------------------------------------------------

    def param_value(self, p: Param) -> str:
        """A value for ``p`` from its schema alone: a bool, one of its choices, a small int or a float
        within its bounds."""
        if p.type == "bool":
            return self.bool_(self.flag())
        if p.type == "enum":
            return self.word(self.draw(st.sampled_from(p.choices)))
        if p.type == "int":
            lo = int(p.min if p.min is not None else (p.gt + 1 if p.gt is not None else 0))
            hi = int(p.max if p.max is not None else (p.lt - 1 if p.lt is not None else lo + 4))
            return self.int_(self.int_in(lo, min(hi, lo + 4)))
        values = [0.0, 1e-6, 1e-5, 0.001, 0.1, 0.5, 0.9, 1.0, 1.5, 2.0, 4.0, 16.0, 30.0, 10000.0]
        ok = [
            v
            for v in values
            if (p.min is None or v >= p.min)
            and (p.gt is None or v > p.gt)
            and (p.max is None or v <= p.max)
            and (p.lt is None or v < p.lt)
        ]
        return self.float_(self.draw(st.sampled_from(ok)))

    def free_args(self, kind: str, handled: set[str], p_each: float = 0.3) -> dict[str, str]:
        """Optional parameters of ``kind`` not in ``handled``, each set with probability ``p_each`` to a
        schema-drawn value (required ones always)."""
        out = {}
        for p in REGISTRY[kind].params:
            if p.name in handled:
                continue
            settable = p.default is not None or p.type == "bool"  # context defaults: bools only
            if p.required or (settable and self.flag(p_each)):
                out[p.name] = self.param_value(p)
        return out


# -- where a component goes -------------------------------------------------------------------------------


@dataclass
class Env:
    """What a component's generator knows of its place: the model's width and vocabulary, the stack
    (``decoder`` / ``encoder``), the longest length that stack is run at, the stack's positional scheme,
    the head count every self-attention must have (T5's shared table), whether the stack reads an
    encoder's output (``memory``), whether the block is checkpointed, and the grid its tokens lie on
    (an image without a class token; a stage's own)."""

    d_model: int
    vocab: int
    stack: str
    seq_len: int
    position: str | None = None
    heads: int | None = None
    memory: bool = False
    checkpoint: bool = False
    grid: tuple[int, int] | None = None


@dataclass(frozen=True)
class AttnTraits:
    """The constraints an attention kind puts on its surroundings. ``positions``: the attention-acting
    positional schemes it takes (``None``: all); ``cross``: usable as cross-attention; ``causal_only``;
    ``stateful``: keeps state across forwards (cannot be checkpointed); ``even_d``: needs an even width;
    ``min_heads``; ``grid``: reads the token grid (an image without a class token); ``encoder_only``."""

    positions: frozenset[str] | None = None
    cross: bool = True
    causal_only: bool = False
    stateful: bool = False
    even_d: bool = False
    min_heads: int = 1
    grid: bool = False
    encoder_only: bool = False


ROPE_ONLY = frozenset({"rope"})
IMAGE_EMBEDDINGS = ("patch_embedding", "conv_stem")
ATTN_TRAITS: dict[str, AttnTraits] = {
    "mha": AttnTraits(),
    "sliding_window": AttnTraits(positions=ROPE_ONLY, cross=False),
    "sparse": AttnTraits(positions=ROPE_ONLY, cross=False, min_heads=2),
    "longformer": AttnTraits(positions=ROPE_ONLY, cross=False),
    "bigbird": AttnTraits(positions=ROPE_ONLY, cross=False),
    "lsh": AttnTraits(positions=ROPE_ONLY, cross=False),
    "linear": AttnTraits(positions=ROPE_ONLY, cross=True),
    "xl": AttnTraits(positions=frozenset(), cross=False, causal_only=True, stateful=True, even_d=True),
    "retention": AttnTraits(positions=frozenset(), cross=False, even_d=True),
    "mla": AttnTraits(positions=ROPE_ONLY, cross=False),
    # sequence mixers: no positional scheme acts in them (a stack of them takes none acting in attention)
    "rwkv_time_mix": AttnTraits(positions=frozenset(), cross=False),
    "swin": AttnTraits(positions=frozenset(), cross=False, grid=True, encoder_only=True),
    # recurrent sequence mixers: self only, and no positional scheme acts in them
    "mamba": AttnTraits(positions=frozenset(), cross=False),
    "mamba2": AttnTraits(positions=frozenset(), cross=False),
}
#: an attention kind registered after these strategies were written: assumed self-attention only, with
#: no attention-acting position (the test that lists uncovered kinds fails for it anyway)
UNKNOWN_ATTN = AttnTraits(positions=frozenset(), cross=False)


def attn_traits(kind: str) -> AttnTraits:
    return ATTN_TRAITS.get(kind, UNKNOWN_ATTN)


def attn_fits(kind: str, env: Env, cross: bool = False) -> bool:
    """Whether attention ``kind`` can sit in ``env`` (as cross-attention when ``cross``)."""
    t = attn_traits(kind)
    if cross:
        return t.cross and 2 in REGISTRY[kind].arities
    pos = env.position
    acting = pos is not None and REGISTRY[pos].applies == "attention"
    if acting and t.positions is not None and pos not in t.positions:
        return False
    if t.stateful and env.checkpoint:
        return False
    if t.even_d and env.d_model % 2:
        return False
    if (t.grid and env.grid is None) or (t.encoder_only and env.stack != "encoder"):
        return False
    return not (env.heads is not None and env.heads < t.min_heads)


COMMON_ATTN = {"heads", "kv_heads", "head_dim", "causal", "cross", "softcap", "dropout", "scale"}


def _attn_heads(g: Gen, env: Env, kind: str, cross: bool) -> dict[str, str]:
    """``heads`` (and ``kv_heads``, ``head_dim``): heads dividing d_model, or any head count with an
    explicit head size; kv_heads divides heads. T5 stacks fix the self-attentions' head count."""
    t = attn_traits(kind)
    d = env.d_model
    args: dict[str, str] = {}
    fixed = env.heads if not cross else None
    if fixed is not None:
        h = fixed
        hd = None if d % h == 0 and not g.flag(0.2) else g.draw(st.sampled_from([2, 4, 8]))
    else:
        divs = [k for k in _divisors(d, 8) if k >= t.min_heads]
        if divs and not g.flag(0.2):
            h, hd = g.draw(st.sampled_from(divs)), None
        else:
            h, hd = g.int_in(max(1, t.min_heads), 4), g.draw(st.sampled_from([2, 4, 8, 16]))
    args["heads"] = g.int_(h)
    if hd is not None:
        args["head_dim"] = g.int_(hd)
    if g.flag(0.5):
        args["kv_heads"] = g.int_(g.draw(st.sampled_from(_divisors(h))))
    return args


def retention(g: Gen, env: Env) -> str:
    """RetNet's retention: heads that leave an even key width d_model / heads (its rotation turns
    pairs), a chunk length only for the chunkwise form (often shorter than the sequence, so that
    several chunks and a partial last one occur); the rest schema-drawn."""
    d = env.d_model
    args = {"heads": g.int_(g.draw(st.sampled_from([h for h in _divisors(d) if (d // h) % 2 == 0])))}
    if g.flag(0.5):
        args["form"] = g.word("chunkwise")
        if g.flag(0.7):
            args["chunk"] = g.int_(g.int_in(1, env.seq_len + 2))
    elif g.flag(0.2):
        args["form"] = g.word("parallel")
    return g.call("retention", {**args, **g.free_args("retention", {"heads", "form", "chunk"}, 0.3)})


def attention(g: Gen, env: Env, kind: str, cross: bool = False) -> str:
    """An attention call of ``kind`` for ``env``: shared projection settings (biases, qk-norm,
    soft-capping, scale, dropout; ``causal`` and ``cross`` only where they agree with the use), then the
    kind's own constrained parameters; anything else schema-drawn."""
    if kind == "retention":
        return retention(g, env)
    if kind == "mamba":
        return mamba(g, env)
    if kind == "mamba2":
        return mamba2(g, env)
    if not REGISTRY[kind].attends:  # a recurrent sequence mixer: only its own parameters, schema-drawn
        args: dict[str, str] = {}
        if kind == "rwkv_time_mix" and g.flag(0.6):
            args["hidden"] = g.int_(g.int_in(1, 24))  # k, v, r any width (a context default otherwise)
        return g.call(kind, {**args, **g.free_args(kind, set(args), 0.3)})
    if kind == "swin":
        return swin(g, env)
    t = attn_traits(kind)
    args = _attn_heads(g, env, kind, cross)
    causal = env.stack == "decoder" and not cross
    if cross:
        if g.flag(0.2):
            args["cross"] = "true"
        if g.flag(0.2):
            args["causal"] = "false"
    else:
        if t.causal_only:
            if env.stack != "decoder" or g.flag(0.3):
                args["causal"] = "true"
            causal = True
        elif g.flag(0.3):
            causal = g.flag()
            args["causal"] = g.bool_(causal)
        if g.flag(0.1):
            args["cross"] = "false"
    no_weights = kind == "linear"  # linear attention forms no weights: no softcap or weight dropout
    if not no_weights and g.flag(0.2):
        args["softcap"] = g.float_(g.draw(st.sampled_from([0.0, 5.0, 30.0, 50.0])))
    if not no_weights and g.flag(0.2):
        args["dropout"] = g.float_(g.draw(st.sampled_from([0.0, 0.1, 0.5])))
    if g.flag(0.15):
        args["scale"] = g.float_(g.draw(st.sampled_from([0.125, 0.5, 1.0, 2.0])))
    n = env.seq_len
    handled = set(COMMON_ATTN)
    if kind == "mha":
        if g.flag(0.3):
            args["score"] = g.word(g.draw(st.sampled_from(["scaled", "dot", "additive", "bilinear"])))
        if causal and not cross and g.flag(0.2):  # a prefix-LM is causal after its prefix
            args["prefix"] = g.int_(g.int_in(0, n + 2))
        handled |= {"score", "prefix"}
    elif kind in ("sliding_window", "longformer"):
        args["window"] = g.int_(g.int_in(1, n + 3))
        if kind == "longformer" and g.flag(0.5):
            args["global_tokens"] = g.int_(g.int_in(0, 4))
        handled |= {"window", "global_tokens"}
    elif kind == "sparse":
        stride = g.int_in(1, 8)
        args["stride"] = g.int_(stride)
        if g.flag(0.5):
            args["pattern"] = g.word(g.draw(st.sampled_from(["strided", "fixed"])))
        if g.flag(0.4):
            args["summary"] = g.int_(g.int_in(1, stride))
        handled |= {"stride", "pattern", "summary"}
    elif kind == "bigbird":
        args["block"] = g.int_(g.int_in(1, 8))
        if g.flag(0.7):
            w = g.int_in(1, 5)
            if not causal and w % 2 == 0:
                w -= 1
            args["window_blocks"] = g.int_(w)
        if g.flag(0.6):
            args["global_blocks"] = g.int_(g.int_in(0, 2))
        if g.flag(0.6):
            args["random_blocks"] = g.int_(g.int_in(0, 3))
        if g.flag(0.3):
            args["seed"] = g.int_(g.int_in(0, 5))
        args["max_len"] = g.int_(g.int_in(n, MAX_LEN))
        handled |= {"block", "window_blocks", "global_blocks", "random_blocks", "seed", "max_len"}
    elif kind == "lsh":
        if g.flag(0.7):
            args["bucket_size"] = g.int_(g.int_in(1, 8))
        if g.flag(0.7):
            args["buckets"] = g.int_(g.draw(st.sampled_from([1, 2, 4, 6, 8])))
        if g.flag(0.5):
            args["n_hashes"] = g.int_(g.int_in(1, 3))
        if g.flag(0.3):
            args["seed"] = g.int_(g.int_in(0, 5))
        handled |= {"bucket_size", "buckets", "n_hashes", "seed"}
    elif kind == "linear":
        fmap = g.draw(st.sampled_from(["elu", "favor"]))
        if fmap == "favor" or g.flag(0.3):
            args["feature_map"] = g.word(fmap)
        if fmap == "favor" and g.flag(0.5):
            args["features"] = g.int_(g.int_in(1, 16))
        if g.flag(0.5):
            args["chunk"] = g.int_(g.int_in(1, 8))
        if g.flag(0.3):
            args["seed"] = g.int_(g.int_in(0, 5))
        handled |= {"feature_map", "features", "chunk", "seed"}
    elif kind == "xl":
        args["mem_len"] = g.int_(g.int_in(0, 8))
        handled |= {"mem_len"}
    elif kind == "mla":  # every head its own keys and values; latents normalised instead of q and k
        if "kv_heads" in args:
            args["kv_heads"] = args["heads"]
        args["kv_rank"] = g.int_(g.int_in(1, 9))
        if g.flag(0.4):
            args["q_rank"] = g.int_(g.int_in(0, 7))
        rope = env.position == "rope"  # something for the stack's rope to turn
        args["rope_dim"] = g.int_(g.int_in(2 if rope else 0, 6))
        if g.flag(0.5):
            args["v_dim"] = g.int_(g.int_in(1, 9))
        handled |= {"kv_rank", "q_rank", "rope_dim", "v_dim", "qk_norm", "qk_norm_scope", "qk_eps"}
    args.update(g.free_args(kind, handled | set(args), 0.25))
    return g.call(kind, args)


def swin(g: Gen, env: Env) -> str:
    """Window attention on the stack's grid: heads dividing the width (or an explicit head size, and
    with a T5-like fixed head count none: it takes no attention-acting position), a window from 1 to
    past the grid, ``pad = false`` only where the windows tile it; the shift as the layer decides, or
    set."""
    assert env.grid is not None
    d, (rows, cols) = env.d_model, env.grid
    args: dict[str, str] = {}
    divs = _divisors(d, 8)
    if g.flag(0.8):
        args["heads"] = g.int_(g.draw(st.sampled_from(divs)))
    else:
        args["heads"] = g.int_(g.int_in(1, 4))
        args["head_dim"] = g.int_(g.draw(st.sampled_from([2, 4, 8])))
    window = g.int_in(1, max(rows, cols) + 2)
    if window != 7 or g.flag(0.5):
        args["window"] = g.int_(window)
    m = min(rows, cols, window)
    if rows % m == 0 and cols % m == 0 and g.flag(0.3):
        args["pad"] = "false"
    if g.flag(0.3):
        args["shift"] = g.bool_(g.flag())
    for name in ("bias", "out_bias"):
        if g.flag(0.2):
            args[name] = g.bool_(g.flag())
    if g.flag(0.15):
        args["scale"] = g.float_(g.draw(st.sampled_from([0.125, 0.5, 1.0])))
    for name in ("dropout", "out_dropout"):
        if g.flag(0.15):
            args[name] = g.float_(g.draw(st.sampled_from([0.0, 0.1])))
    return g.call("swin", args)


def transition(g: Gen, env: Env) -> str:
    """A transition between stages on ``env``'s grid: patch merging (``pad = false`` only on an even
    grid), or any transition kind registered later, with schema-drawn arguments."""
    kind = g.choose(kinds_for("transition"))
    assert env.grid is not None
    args: dict[str, str] = {}
    handled = {"pad"}
    if kind == "patch_merging" and env.grid[0] % 2 == 0 and env.grid[1] % 2 == 0 and g.flag(0.3):
        args["pad"] = "false"
    args.update(g.free_args(kind, handled | set(args), 0.3))
    return g.call(kind, args)


def merged(grid: tuple[int, int]) -> tuple[int, int]:
    return (grid[0] + 1) // 2, (grid[1] + 1) // 2


def conv_stem(g: Gen, d: int) -> tuple[str, int]:
    """A convolutional stem and the side of the grid it gives (1 to 4): 1 to 3 convolutions whose
    widths (d / growth ** k) divide, an image the kernels, strides and paddings fit."""
    layers = g.int_in(1, 3)
    growths = [k for k in (1, 2, 3) if d % k ** (layers - 1) == 0]
    growth = g.draw(st.sampled_from(growths))
    kernel, stride = g.int_in(1, 4), g.int_in(1, 3)
    padding = g.int_in(0, 2) if g.flag(0.5) else None
    p = kernel // 2 if padding is None else padding

    def side(image: int) -> int:
        for _ in range(layers):
            image = (image + 2 * p - kernel) // stride + 1
        return image

    images = [i for i in range(1, 33) if 1 <= side(i) <= 4]
    if not images:  # no image fits these convolutions: one 1 x 1 convolution, stride 1
        layers, kernel, stride, padding, p, growth = 1, 1, 1, None, 0, 1
        images = [1, 2, 3, 4]
    image = g.draw(st.sampled_from(images))
    args = {
        "image": g.int_(image),
        "layers": g.int_(layers),
        "kernel": g.int_(kernel),
        "stride": g.int_(stride),
    }
    if padding is not None:
        args["padding"] = g.int_(padding)
    if growth != 2 or g.flag(0.3):
        args["growth"] = g.int_(growth)
    if g.flag(0.5):
        args["channels"] = g.int_(g.int_in(1, 3))
    if g.flag(0.6):
        args["norm"] = g.word(g.draw(st.sampled_from(["batchnorm", "layernorm", "none"])))
    if g.flag(0.5):
        args["activation"] = g.word(g.draw(st.sampled_from(["none", "hardswish", "relu", "gelu", "silu"])))
    if g.flag(0.3):
        args["bias"] = g.bool_(g.flag())
    return g.call("conv_stem", args), side(image)


def mamba(g: Gen, env: Env) -> str:
    """Mamba with small sizes (any positive values are valid), often a chunk shorter than the sequence,
    so the training scan carries its state from chunk to chunk; Jamba's norms on Δ, B and C now and
    then (their eps only with them)."""
    args = {"d_state": g.int_(g.int_in(1, 6)), "d_conv": g.int_(g.int_in(1, 5))}
    if g.flag(0.5):
        args["expand"] = g.int_(g.int_in(1, 3))
    if g.flag(0.5):
        args["dt_rank"] = g.int_(g.int_in(1, 6))
    if g.flag(0.7):
        args["chunk"] = g.int_(g.int_in(1, max(1, env.seq_len)))
    if g.flag(0.3):
        args["dt_bc_norm"] = "true"
        if g.flag(0.5):
            args["norm_eps"] = g.float_(g.draw(st.sampled_from([1e-5, 1e-6, 0.1])))
    args.update(g.free_args("mamba", {*args, "dt_bc_norm", "norm_eps"}, 0.3))
    return g.call("mamba", args)


def mamba2(g: Gen, env: Env) -> str:
    """Mamba-2: heads · head_dim = expand · d_model (head_dim a divisor of it, heads then implied or
    written out), n_groups a divisor of heads; small states; often a chunk shorter than the sequence."""
    expand = g.int_in(1, 2)
    e = expand * env.d_model
    p = int(g.draw(st.sampled_from(_divisors(e, 16))))
    args = {"head_dim": g.int_(p)}
    if expand != 2:
        args["expand"] = g.int_(expand)
    if g.flag(0.3):
        args["heads"] = g.int_(e // p)
    args["n_groups"] = g.int_(g.draw(st.sampled_from(_divisors(e // p, 4))))
    args["d_state"] = g.int_(g.int_in(1, 6))
    if g.flag(0.5):
        args["d_conv"] = g.int_(g.int_in(1, 5))
    if g.flag(0.7):
        args["chunk"] = g.int_(g.int_in(1, max(1, env.seq_len)))
    args.update(g.free_args("mamba2", {*args, "expand", "heads"}, 0.3))  # those two fixed by head_dim
    return g.call("mamba2", args)


# -- the other roles -------------------------------------------------------------------------------------


def norm(g: Gen, env: Env, kind: str | None = None) -> str:
    """``layernorm`` / ``rmsnorm`` (or any registered norm) with schema-drawn eps, bias, offset."""
    kind = kind or g.choose(kinds_for("norm"))
    return g.call(kind, g.free_args(kind, set(), 0.4))


def ffn(g: Gen, env: Env, kind: str | None = None) -> str:
    """A feed-forward: an MLP or a GLU variant with a small hidden width, a mixture of at most 4 experts
    (``top_k <= experts``), or the Conformer convolution module (kernel 1..7)."""
    kind = kind or g.choose(kinds_for("ffn"))
    args: dict[str, str] = {}
    handled: set[str] = set()
    if kind == "moe":
        e = g.int_in(1, 4)
        args["experts"] = g.int_(e)
        if g.flag(0.7):
            args["top_k"] = g.int_(g.int_in(1, e))
        elif e < 2:
            args["top_k"] = g.int_(1)  # the default, 2, would exceed the experts
        args["hidden"] = g.int_(g.int_in(1, 32))
        if g.flag(0.3):
            args["shared"] = g.int_(g.int_in(0, 2))
        handled = {"experts", "top_k", "hidden", "shared"}
    elif kind == "conformer_conv":
        if g.flag(0.8):
            args["kernel"] = g.int_(g.int_in(1, 7))
        handled = {"kernel"}
    elif any(p.name == "hidden" for p in REGISTRY[kind].params):
        args["hidden"] = g.int_(g.int_in(1, 64))
        handled = {"hidden"}
    args.update(g.free_args(kind, handled, 0.35))
    return g.call(kind, args)


def adapter(g: Gen, env: Env, kind: str | None = None) -> str:
    """A bottleneck adapter, 1..16 wide."""
    kind = kind or g.choose(kinds_for("adapter"))
    args = {}
    if any(p.name == "hidden" for p in REGISTRY[kind].params) and g.flag(0.8):
        args["hidden"] = g.int_(g.int_in(1, 16))
    args.update(g.free_args(kind, set(args), 0.4))
    g.features.add("adapter")
    return g.call(kind, args)


def position(g: Gen, env: Env, kind: str) -> str:
    """A positional scheme whose table (``max_len``) covers the stack's length; RoPE's scaling knobs
    within bounds; T5's buckets and max_distance so that each direction has an exact bucket and the
    logarithmic ones span past it; Shaw's clipping distance."""
    n = env.seq_len
    args: dict[str, str] = {}
    handled: set[str] = set()
    if kind in ("learned", "sinusoidal"):
        if kind == "learned" or g.flag(0.6):
            args["max_len"] = g.int_(g.int_in(n, MAX_LEN))
        handled = {"max_len"}
    elif kind == "rope":
        if g.flag(0.7):
            args["max_len"] = g.int_(g.int_in(n, MAX_LEN))
        if g.flag(0.3):
            args["theta"] = g.float_(g.draw(st.sampled_from([10.0, 500.0, 10000.0, 500000.0])))
        if g.flag(0.3):
            args["fraction"] = g.float_(g.draw(st.sampled_from([0.25, 0.5, 1.0])))
        if g.flag(0.3):
            scaling = g.draw(st.sampled_from(["none", "linear", "llama3", "yarn"]))
            args["scaling"] = g.word(scaling)
            if scaling != "none" and g.flag(0.6):
                args["factor"] = g.float_(g.draw(st.sampled_from([1.0, 2.0, 8.0])))
            if scaling == "llama3" and g.flag(0.5):
                args["low_freq_factor"] = g.float_(g.draw(st.sampled_from([1.0, 2.0])))
                args["high_freq_factor"] = g.float_(g.draw(st.sampled_from([4.0, 8.0])))
                args["original_max_len"] = g.int_(g.int_in(1, 64))
            if scaling == "yarn" and g.flag(0.5):
                args["original_max_len"] = g.int_(g.int_in(8, 64))
                args["mscale"] = g.float_(g.draw(st.sampled_from([0.707, 1.0])))
                args["mscale_all_dim"] = g.float_(g.draw(st.sampled_from([0.0, 0.707, 1.0])))
        handled = {
            "max_len",
            "theta",
            "fraction",
            "scaling",
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_len",
            "mscale",
            "mscale_all_dim",
        }
    elif kind == "t5":
        bid = env.stack == "encoder"
        if g.flag(0.3):
            bid = g.flag()
            args["bidirectional"] = g.bool_(bid)
        buckets = g.int_in(4 if bid else 2, 16)
        exact = (buckets // 2 if bid else buckets) // 2
        args["buckets"] = g.int_(buckets)
        args["max_distance"] = g.int_(g.int_in(exact + 1, exact + 40))
        handled = {"buckets", "max_distance", "bidirectional"}
    elif kind == "shaw":
        if g.flag(0.7):
            args["k"] = g.int_(g.int_in(1, 8))
        handled = {"k"}
    args.update(g.free_args(kind, handled | set(args), 0.3))
    return g.call(kind, args)


def _position_fits(kind: str, d_model: int) -> bool:
    return not (kind == "sinusoidal" and d_model % 2)


# -- blocks ---------------------------------------------------------------------------------------------


@dataclass
class BlockDraw:
    """A drawn block: its entries (text lines, without ``repeat``) and whether it is a flow block."""

    entries: list[str]
    flow: bool
    sublayers: dict[str, tuple[str, int]] = field(default_factory=dict)  # flow: name -> (role, arity)
    checkpoint: bool = False


def _self_attn_kind(g: Gen, env: Env) -> str:
    options = [k for k in kinds_for("attention") if attn_fits(k, env)]
    return g.choose(options)


def _cross_attn_kind(g: Gen, env: Env) -> str:
    options = [k for k in kinds_for("attention") if attn_fits(k, env, cross=True)]
    # a required attention kind that can only be self-attention is met elsewhere
    if g.need in options:
        return g.choose(options)
    return str(g.draw(st.sampled_from(options)))


def component(g: Gen, env: Env, role: str, arity: int = 1) -> str:
    """A component of ``role`` for a block slot or a flow sublayer."""
    if role == "attention":
        kind = _cross_attn_kind(g, env) if arity == 2 else _self_attn_kind(g, env)
        return attention(g, env, kind, cross=arity == 2)
    if role == "norm":
        return norm(g, env)
    if role == "ffn":
        return ffn(g, env)
    if role == "adapter":
        return adapter(g, env)
    if role == "position":  # a flow sublayer: a table added to its input
        kinds = [k for k in kinds_for("position") if REGISTRY[k].applies == "embedding"]
        return position(
            g, env, str(g.draw(st.sampled_from([k for k in kinds if _position_fits(k, env.d_model)])))
        )
    raise AssertionError(role)


def placement(g: Gen) -> str:
    """A placement preset, bare or called with its parameters (``parallel(shared_norm = …)``,
    ``deepnorm(alpha = …)``); parameters of a preset added later are schema-drawn."""
    name = g.choose(list(PLACEMENTS))
    g.kinds.add(f"placement:{name}")
    preset = PLACEMENTS[name]
    if preset.params and g.flag(0.6):
        args = {}
        for p in preset.params:
            if g.flag(0.7):
                if p.name == "alpha":
                    args[p.name] = g.float_(g.draw(st.sampled_from([0.5, 1.0, 1.5, 2.0])))
                else:
                    args[p.name] = g.param_value(p)
        inner = ", ".join(f"{k} = {v}" for k, v in args.items())
        return f"{name}({inner})"
    if name != "pre" or g.flag(0.5):
        return g.word(name) if name != "pre" else name
    return ""


def preset_block(g: Gen, env: Env) -> BlockDraw:
    """A preset block: placement, norm, attention, cross-attention (in a decoder that reads an
    encoder), feed-forward, maybe an adapter."""
    entries = []
    pl = placement(g)
    if pl:
        entries.append(f"placement = {pl}")
    entries.append(f"norm = {component(g, env, 'norm')}")
    entries.append(f"attention = {component(g, env, 'attention')}")
    if env.memory:
        entries.append(f"cross_attention = {component(g, env, 'attention', 2)}")
    entries.append(f"ffn = {component(g, env, 'ffn')}")
    if g.take("adapter") or g.flag(0.1):
        entries.append(f"adapter = {component(g, env, 'adapter')}")
    return BlockDraw(entries, flow=False)


def flow_block(g: Gen, env: Env) -> BlockDraw:
    """An explicit flow: 1..4 statements over the block input ``x`` (and ``memory``), each a sum of
    1..3 terms — a tensor, or a chain of up to three sublayer applications to a tensor or a sum, maybe
    scaled by a number. Every statement applies a sublayer; targets are new names or rebind ``x``;
    the last statement also sums every tensor not used yet, so nothing is left dangling (E013). In a
    decoder that reads an encoder, a cross-attention sublayer is applied to ``(t, memory)`` at least
    once. A sublayer may be applied several times (shared weights); sublayers are declared for the
    names used, with components of their role."""
    g.features.add("flow")
    subs: dict[str, tuple[str, int]] = {}
    names = name_pool(g, "sublayer", SUBLAYER_NAMES)[::-1]
    tensor_names = [
        t for t in name_pool(g, "tensor", TENSOR_NAMES) if t not in names and t not in ("x", "memory")
    ]

    def new_sub(role: str, arity: int = 1) -> str:
        reuse = [n for n, (r, a) in subs.items() if r == role and a == arity]
        if reuse and g.flag(0.25):
            return str(g.draw(st.sampled_from(reuse)))
        free = [n for n in names if n not in subs]
        name = free[-1] if free else f"s{len(subs)}"
        if free and g.flag(0.5):
            name = str(g.draw(st.sampled_from(free)))
        subs[name] = (role, arity)
        return name

    tensors = ["x"]
    unused = {"x"}
    body: list[str] = []
    n_stmts = g.int_in(1, 4)
    need_cross = env.memory

    # a required kind of a sublayer role is applied first (as self-attention, for attention kinds); a
    # positional scheme acting in attention needs some self-attention to act in (E016): one is applied
    role_needed = REGISTRY[g.need].role if g.need in REGISTRY else None
    forced = [r for r in [role_needed] if r in ("norm", "attention", "ffn", "adapter")]
    if (
        env.position is not None
        and REGISTRY[env.position].applies == "attention"
        and "attention" not in forced
    ):
        forced.append("attention")

    def apply_chain(inner: str) -> str:
        nonlocal need_cross
        depth = max(g.int_in(1, 3), len(forced))  # the forced roles, in the first chain
        out = inner
        for _ in range(depth):
            roles = ["norm", "attention", "ffn", "adapter"]
            if g.flag(0.05) and env.d_model % 2 == 0:
                roles = ["position"]  # a positional table as a sublayer (it adds to its input)
            if forced:
                out = f"{new_sub(forced.pop(0))}({out})"
                continue
            role = str(g.draw(st.sampled_from(roles)))
            if role == "attention" and env.memory and (need_cross or g.flag(0.3)):
                out = f"{new_sub('attention', 2)}({out}, memory)"
                need_cross = False
            else:
                out = f"{new_sub(role)}({out})"
        return out

    def tensor() -> str:
        pool = sorted(unused) if unused and g.flag(0.7) else tensors
        t = str(g.draw(st.sampled_from(pool)))
        unused.discard(t)
        return t

    for i in range(n_stmts):
        last = i == n_stmts - 1
        terms = []
        n_terms = g.int_in(1, 3)
        for j in range(n_terms):
            if j == 0 or g.flag(0.6):
                inner = tensor()
                if g.flag(0.15) and len(tensors) > 0:
                    inner = f"{inner} + {tensor()}"
                term = apply_chain(inner)
            else:
                term = tensor()
            if g.flag(0.15):
                k = g.float_(g.draw(st.sampled_from([0.5, 2.0, 1.0, 0.25])))
                term = f"{k} * {term}" if g.flag() else f"{term} * {k}"
            terms.append(term)
        if last:
            if need_cross:
                terms.append(f"{new_sub('attention', 2)}({tensor()}, memory)")
                need_cross = False
            terms.extend(sorted(unused))
            unused.clear()
        target = "x" if last or g.flag(0.4) else str(g.draw(st.sampled_from(tensor_names)))
        if target in unused:  # its value is still unread: read it here, or it would dangle (E013)
            terms.append(target)
        body.append(f"{target} = {' + '.join(terms)}")
        if target not in tensors:
            tensors.append(target)
        unused.add(target)
    entries = []
    for name, (role, arity) in subs.items():
        entries.append(f"{name} = {component(g, env, role, arity)}")
    sep = "\n    " if g.sep == "\n" else " "
    entries.append("flow {" + sep + sep.join(body) + (sep[:-2] if sep != " " else " ") + "}")
    return BlockDraw(entries, flow=True, sublayers=subs)


def block_body(g: Gen, env: Env) -> BlockDraw:
    if g.take("flow"):
        return flow_block(g, env)
    forced_preset = g.need in PLACEMENTS or g.need == "adapter"
    if not forced_preset and g.flag(0.3):
        return flow_block(g, env)
    return preset_block(g, env)


def override(g: Gen, env: Env, blk: BlockDraw) -> list[str]:
    """Entries laid over a block (``layer N { … }``, or a child block's ``base = parent``): replace a
    component (preset slot or flow sublayer) by another of the same role and arity, or a preset's
    placement."""
    out = []
    if blk.flow:
        names = sorted(blk.sublayers)
        name = str(g.draw(st.sampled_from(names)))
        role, arity = blk.sublayers[name]
        out.append(f"{name} = {component(g, env, role, arity)}")
    else:
        slot = g.draw(st.sampled_from(["attention", "ffn", "norm", "placement"]))
        if slot == "placement":
            pl = placement(g)
            out.append(f"placement = {pl or 'pre'}")
        else:
            out.append(f"{slot} = {component(g, env, slot)}")
    return out


def section(g: Gen, head: str, entries: list[str], indent: int) -> str:
    """``head { entries }``, one entry a line (indented) or, now and then, all on one line — newlines
    carry no meaning in the text form."""
    if g.sep == " ":
        return head + " { " + " ".join(entries) + " }"
    pad = "  " * (indent + 1)
    lines = [head + " {"] + [pad + e.replace("\n", "\n" + pad) for e in entries] + ["  " * indent + "}"]
    return "\n".join(lines)


# -- stacks -----------------------------------------------------------------------------------------------


def _pattern_text(g: Gen, names: list[str]) -> str:
    """A layer pattern giving exactly ``names`` in order: runs of one name as ``[a] * k`` (or
    ``k * [a]``), joined with ``+``, or a plain list."""
    if g.flag(0.3):
        return "[" + ", ".join(names) + "]"
    runs: list[tuple[str, int]] = []
    for n in names:
        if runs and runs[-1][0] == n:
            runs[-1] = (n, runs[-1][1] + 1)
        else:
            runs.append((n, 1))
    parts = []
    for n, k in runs:
        if k == 1 and g.flag(0.5):
            parts.append(f"[{n}]")
        elif g.flag(0.2):
            parts.append(f"{g._paren(g.int_(k))} * [{n}]")
        else:
            parts.append(f"[{n}] * {g._paren(g.int_(k))}")
    return " + ".join(parts)


def stack(g: Gen, env: Env, indent: int, prefix: str, staged: bool = False) -> list[str]:
    """The entries of one stack: position, embedding/final norms, stack dropout settings, the layers
    (an inline ``block { repeat = N }`` or ``layers = pattern`` over 1..3 top-level block definitions,
    one maybe ``base = `` another), per-layer overrides — or, ``staged``, 1..3 stages each with its
    layers (``stages``); ``env`` is then left at the last stage's width, grid and length.

    The positional scheme is chosen first and the attention kinds fitted to it (or, when a kind is
    required, the scheme fitted to the kind)."""
    entries: list[str] = []
    need = g.need
    positions = [k for k in kinds_for("position") if _position_fits(k, env.d_model)]
    if need in ATTN_TRAITS or (need in REGISTRY and REGISTRY[need].role == "attention"):
        t = attn_traits(need)  # type: ignore[arg-type]
        positions = [
            k
            for k in positions
            if REGISTRY[k].applies != "attention" or t.positions is None or k in t.positions
        ]
        if t.even_d and env.d_model % 2:
            raise AssertionError("the model width was drawn for this requirement")
    pos_choice: str | None
    if need in positions:
        pos_choice = g.choose(positions)
    else:
        pos_choice = g.draw(st.sampled_from([None, *positions]))
    env.position = pos_choice
    if pos_choice is not None:
        entries.append(f"position = {position(g, env, pos_choice)}")
    elif g.flag(0.1):
        entries.append("position = none")
    if pos_choice is not None and REGISTRY[pos_choice].shared_table(_dummy_node(pos_choice)):
        divs = _divisors(env.d_model, 8)
        env.heads = int(g.draw(st.sampled_from(divs)))
    if g.flag(0.15):
        entries.append(f"embedding_norm = {norm(g, env)}")
    if g.flag(0.5):
        entries.append(f"final_norm = {norm(g, env)}")
    elif g.flag(0.1):
        entries.append("final_norm = none")
    if g.flag(0.15):
        entries.append(f"dropout = {g.float_(g.draw(st.sampled_from([0.0, 0.1])))}")
    if g.flag(0.1) and not staged:  # LayerDrop could skip a stage's transition
        entries.append(f"layerdrop = {g.float_(g.draw(st.sampled_from([0.0, 0.1])))}")
    if staged:
        return entries + stages(g, env, indent, prefix)
    return entries + layer_entries(g, env, indent, prefix)


def stages(g: Gen, env: Env, indent: int, prefix: str) -> list[str]:
    """1..3 stages (two at least for a required transition kind): after the first, each may enter
    through a transition (merging the grid) at the same or twice the width — twice only where it stays
    within MAX_D; every stage lists its own layers (at most 2) for its width and grid."""
    g.features.add("stages")
    assert env.grid is not None
    out = []
    need_t = g.need in REGISTRY and REGISTRY[g.need].role == "transition"
    for k in range(g.int_in(2 if need_t else 1, 3)):
        ents: list[str] = []
        if k > 0:
            width = env.d_model
            if need_t or g.flag(0.7):
                ents.append(f"transition = {transition(g, env)}")
                need_t = False
                env.grid = merged(env.grid)
                env.seq_len = env.grid[0] * env.grid[1]
                if 2 * width <= MAX_D and g.flag(0.6):
                    width *= 2
            if width != env.d_model or g.flag(0.3):
                ents.append(f"d_model = {g.int_(width)}")
            env.d_model = width
        # the first layer of a stage with a transition has a module of its own: no shared blocks
        shareable = not any(e.startswith("transition") for e in ents)
        ents += layer_entries(g, env, indent + 1, f"{prefix}s{k}_", most=2, shareable=shareable)
        label = f"s{k}" if g.flag(0.7) else str(k)
        out.append(section(g, f"stage {label}", ents, indent))
    return out


def layer_entries(
    g: Gen, env: Env, indent: int, prefix: str, most: int = MAX_LAYERS, shareable: bool = True
) -> list[str]:
    """A stack's (or a stage's) layers: an inline block or a pattern, and maybe a per-layer override."""
    entries: list[str] = []
    stateful_needed = g.need in REGISTRY and attn_traits(g.need).stateful
    n_layers = g.int_in(2 if g.wants("base") else 1, most)
    use_pattern = g.take("pattern") or g.wants("base") or g.flag(0.35)
    layer_blocks: list[BlockDraw] = []

    def checkpointed() -> bool:
        if stateful_needed:
            return False  # a stateful kind (xl) cannot sit in a checkpointed block
        if g.take("checkpoint") or g.flag(0.1):
            g.features.add("checkpoint")
            return True
        return False

    def settings(ckpt: bool) -> list[str]:
        out = ["checkpoint = true"] if ckpt else []
        if shareable and (g.take("shared") or g.flag(0.15)):
            out.append("shared = true")
            g.features.add("shared")
        return out

    if use_pattern:
        g.features.add("pattern")
        n_defs = 2 if g.wants("base") else g.int_in(1, n_layers)
        defs: list[tuple[str, BlockDraw]] = []
        pool = [n for n in name_pool(g, "block", BLOCK_NAMES) if n not in g.block_names]
        for i in range(n_defs):
            name = str(g.draw(st.sampled_from(pool))) if g.flag(0.5) else f"{prefix}b{i}"
            while name in g.block_names:
                name += "_2"
            g.block_names.add(name)
            if i > 0 and (g.take("base") or g.flag(0.2)):
                # a child of an earlier definition: its entries over the parent's (and its checkpoint
                # flag: the override is drawn for it)
                parent_name, parent = defs[g.int_in(0, len(defs) - 1)]
                g.features.add("base")
                benv = replace(env, checkpoint=parent.checkpoint)
                ents = [f"base = {parent_name}", *override(g, benv, parent)]
                g.blocks.append(section(g, f"block {name}", ents, 0))
                defs.append((name, parent))
                continue
            ckpt = checkpointed()
            blk = block_body(g, replace(env, checkpoint=ckpt))
            blk.checkpoint = ckpt
            g.blocks.append(section(g, f"block {name}", [*settings(ckpt), *blk.entries], 0))
            defs.append((name, blk))
        names = [d[0] for d in defs]
        order = [names[g.int_in(0, len(names) - 1)] for _ in range(n_layers)]
        if g.flag(0.5) or (len(names) == 2 and "base" in g.features):
            order = (names + order)[:n_layers]  # every definition used
        entries.append(f"layers = {_pattern_text(g, order)}")
        layer_blocks = [dict(defs)[n] for n in order]
    else:
        ckpt = checkpointed()
        blk = block_body(g, replace(env, checkpoint=ckpt))
        blk.checkpoint = ckpt
        ents = [f"repeat = {g.int_(n_layers)}", *settings(ckpt), *blk.entries]
        entries.append(section(g, "block", ents, indent))
        layer_blocks = [blk] * n_layers
    if g.take("override") or g.flag(0.2):
        i = g.int_in(0, n_layers - 1)
        oenv = replace(env, checkpoint=layer_blocks[i].checkpoint)
        entries.append(section(g, f"layer {i}", override(g, oenv, layer_blocks[i]), indent))
        g.features.add("override")
    return entries


def _dummy_node(kind: str) -> Any:
    from archdsl.ir import Node

    return Node(kind, tuple((p.name, p.default) for p in REGISTRY[kind].params))


# -- models -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedSpec:
    """A drawn spec: its text, the batch and lengths to analyse and run it at (``src_len`` for an
    encoder-decoder's encoder), the shape its forward returns, and what it uses (``kinds`` holds kind
    names and ``placement:NAME``; ``features`` the entries of ``FEATURES`` it has)."""

    text: str
    name: str
    model_type: str
    batch: int
    seq_len: int
    src_len: int | None
    out_shape: tuple[int, ...]
    kinds: frozenset[str]
    features: frozenset[str]
    image: bool

    def __repr__(self) -> str:
        return (
            f"GeneratedSpec(batch={self.batch}, seq_len={self.seq_len}, src_len={self.src_len}) of\n"
            + self.text
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """Hypothesis prints a falsifying example with this: the spec as it would be in a file."""
        p.text(repr(self))


#: what only a towers model has: its heads, and the feature itself
TOWERS_ONLY = ("towers", "projection", "contrastive")


def _model_type(g: Gen) -> str:
    """decoder, encoder or encoder_decoder (image models are any of them: patches feed both stacks) or,
    now and then, towers (when nothing else is required: its stacks are encoders)."""
    if g.need in TOWERS_ONLY or (g.need is None and g.flag(0.1)):
        g.take("towers")
        return "towers"
    if g.need == "latent_array":
        return "encoder"
    return g.choose(["decoder", "encoder", "encoder_decoder"])


def _image_embedding(g: Gen) -> tuple[str, int]:
    """A patch embedding (its call) and the length it gives: patches that tile the image, and maybe a
    class token."""
    patch = g.int_in(1, 8)
    k = g.int_in(1, 4)
    cls = g.flag(0.7)
    emb_args = {"image": g.int_(patch * k), "patch": g.int_(patch)}
    if g.flag(0.5):
        emb_args["channels"] = g.int_(g.int_in(1, 3))
    if not cls or g.flag(0.3):
        emb_args["cls_token"] = g.bool_(cls)
    if g.flag(0.3):
        emb_args["bias"] = g.bool_(g.flag())
    if g.need == "patch_embedding":
        g.need = None
    g.features.add("image")
    return g.call("patch_embedding", emb_args), k * k + int(cls)


def _tower(g: Gen, label: str, image: bool, seq_len: int, width: int) -> tuple[str, int]:
    """``tower LABEL { … }``: an encoder of its own width over an image or token ids, its projection
    head pooling it into the shared ``width`` (now and then said explicitly); and its vocabulary."""
    d = _d_model(g)
    ents = [f"d_model = {g.int_(d)}"]
    if image:
        embedding, length = _image_embedding(g)
        vocab, pools = 0, ["cls", "mean"]
    else:
        emb_args = g.free_args("token_embedding", {"width", "project", "project_bias", "types"}, 0.3)
        embedding, length = g.call("token_embedding", emb_args), seq_len
        vocab, pools = g.int_in(2, MAX_VOCAB), ["cls", "mean", "eos", "argmax"]
        ents.append(f"vocab = {g.int_(vocab)}")
    ents.append(f"embedding = {embedding}")
    ents.extend(stack(g, Env(d, vocab, "encoder", length), 2, f"{label}_"))
    pool = str(g.draw(st.sampled_from(pools)))
    args = {"pool": pool}
    if pool == "eos":
        args["eos_id"] = g.int_(g.int_in(0, vocab - 1))
    if g.flag(0.3):
        args["width"] = g.int_(width)
    if g.flag(0.3):
        args["bias"] = g.bool_(g.flag())
    g.take("projection")
    ents.append(f"head = {g.call('projection', args)}")
    return section(g, f"tower {label}", ents, 1), vocab


def _towers_model(g: Gen, name: str, batch: int) -> tuple[list[str], int]:
    """A towers model's entries (an image or token tower, then a token tower; a contrastive head) and
    the length of its token towers."""
    width = _d_model(g)
    seq_len = g.int_in(1, MAX_LEN if g.flag(0.1) else 12)
    model = ["type = towers", f"d_model = {g.int_(width)}"]
    g.take("contrastive")
    args = {"logit_scale": g.float_(g.draw(st.sampled_from([2.6592, 1.0, 0.0])))} if g.flag(0.3) else {}
    model.append(f"head = {g.call('contrastive', args)}")
    if g.take("lora") or g.flag(0.1):
        model.append(_lora(g))
    labels = g.draw(st.sampled_from([("vision", "text"), ("image", "caption"), ("a", "b")]))
    image = g.take("image") or g.flag(0.5)
    for label, is_image in zip(labels, (image, False), strict=True):
        tower, _ = _tower(g, label, is_image, seq_len, width)
        model.append(tower)
    return model, seq_len


def _d_model(g: Gen) -> int:
    """The width: mostly even (sinusoids and ``xl`` need it), now and then odd (5, 9, 15: few head
    counts divide it, so ``head_dim`` comes into play)."""
    need = g.need
    evens = [4, 6, 8, 12, 16, 24, 32, 48, 64]
    odds = [5, 9, 15]
    must_even = need in ("sinusoidal", "xl") or (
        need in REGISTRY and attn_traits(need).even_d and REGISTRY[need].role == "attention"
    )
    pool = evens if must_even or g.flag(0.85) else odds
    return int(g.draw(st.sampled_from([d for d in pool if d <= MAX_D])))


def _head(g: Gen, vocab: int, table: bool, pooled: bool = False) -> tuple[str, str]:
    """A head (its call and kind): any, but those that project to the vocabulary only with one, and
    untied where the embedding has no token table to share (``table``: it has one); one that pools
    the sequence where the blocks run over latents (``pooled``)."""
    heads = [h for h in kinds_for("head") if h not in TOWERS_ONLY]  # a towers model's heads are its own
    needs_vocab = {"lm_head", "mlm_head"}
    options = [h for h in heads if (vocab >= 1 or h not in needs_vocab) and not (pooled and h in needs_vocab)]
    kind = g.choose(options)
    args: dict[str, str] = {}
    if kind == "classifier":
        args["classes"] = g.int_(g.int_in(1, 8))
    if not table and REGISTRY[kind].param("tied") is not None:
        args["tied"] = "false"
    handled = set(args)
    args.update(g.free_args(kind, handled, 0.4))
    return g.call(kind, args), kind


def _lora(g: Gen) -> str:
    """``lora { r, alpha, dropout, targets }``: any subset of the entries, targets a non-empty subset
    of ``LORA_TARGETS`` in drawn order."""
    g.features.add("lora")
    ents = []
    if g.flag(0.7):
        ents.append(f"r = {g.int_(g.int_in(1, 4))}")
    if g.flag(0.5):
        ents.append(f"alpha = {g.float_(g.draw(st.sampled_from([1.0, 8.0, 16.0, 0.5])))}")
    if g.flag(0.4):
        ents.append(f"dropout = {g.float_(g.draw(st.sampled_from([0.0, 0.05, 0.1])))}")
    if g.flag(0.7):
        targets = g.draw(st.lists(st.sampled_from(LORA_TARGETS), min_size=1, max_size=4, unique=True))
        ents.append("targets = [" + ", ".join(targets) + "]")
    return section(g, "lora", ents, 1)


@st.composite
def specs(draw: Callable[..., Any], require: str | None = None) -> GeneratedSpec:
    """A valid spec (see the module docstring). ``require``: a kind name, ``placement`` name or entry of
    ``FEATURES`` the spec must contain."""
    g = Gen(draw, require)
    g.sep = " " if g.flag(0.15) else "\n"
    g.tricky = g.flag(0.25)
    need_grid = g.need in ("stages", "conv_stem") or (g.need in REGISTRY and REGISTRY[g.need].reads_grid)
    image = (
        g.take("image")
        or g.wants("patch_embedding")
        or need_grid
        or (not g.wants("token_embedding") and g.flag(0.12))
    )
    if g.need in ATTN_TRAITS and attn_traits(g.need).encoder_only:
        mtype = "encoder"
    elif need_grid and g.need != "conv_stem":  # stages: a stack of one model type
        mtype = g.choose(["decoder", "encoder"])
    else:
        mtype = _model_type(g)
    if mtype == "towers":
        return _towers_spec(g)
    d = _d_model(g)
    batch = g.int_in(1, 3)
    grid: tuple[int, int] | None = None

    if image:
        if g.wants("conv_stem") or (not g.wants("patch_embedding") and g.flag(0.25)):
            if g.need == "conv_stem":
                g.need = None
            embedding, k = conv_stem(g, d)
            cls = False
        else:
            patch = g.int_in(1, 8)
            k = g.int_in(1, 4)
            cls = g.flag(0.7) and not need_grid
            emb_args = {"image": g.int_(patch * k), "patch": g.int_(patch)}
            if g.flag(0.5):
                emb_args["channels"] = g.int_(g.int_in(1, 3))
            if not cls or g.flag(0.3):
                emb_args["cls_token"] = g.bool_(cls)
            if g.flag(0.3):
                emb_args["bias"] = g.bool_(g.flag())
            if g.need == "patch_embedding":
                g.need = None
            embedding = g.call("patch_embedding", emb_args)
        grid = None if cls else (k, k)
        length = k * k + int(cls)
        g.features.add("image")
        seq_len = src = length
        vocab = g.int_in(1, MAX_VOCAB) if g.flag(0.3) or g.need in ("lm_head", "mlm_head") else 0
    else:
        emb_kind = g.choose([k for k in kinds_for("embedding") if k not in IMAGE_EMBEDDINGS])
        # a table narrower than d_model (width, project, project_bias) constrains the head and the
        # positions at that width: tests/test_kinds_interop.py covers it against Hugging Face
        emb_args = g.free_args(emb_kind, {"width", "project", "project_bias"}, 0.3)
        if "types" in emb_args:
            emb_args["types"] = g.int_(g.int_in(0, 2))
        embedding = g.call(emb_kind, emb_args)
        vocab = g.int_in(1, MAX_VOCAB)
        seq_len = g.int_in(1, MAX_LEN if g.flag(0.1) else 12)
        src = g.int_in(1, MAX_LEN if g.flag(0.1) else 12)
    name = str(g.draw(st.sampled_from(name_pool(g, "model", MODEL_NAMES))))
    g.features.add(mtype)

    model: list[str] = []
    if mtype != "decoder" or g.flag(0.5):
        model.append(f"type = {mtype}")
    model.append(f"d_model = {g.int_(d)}")
    if vocab:
        model.append(f"vocab = {g.int_(vocab)}")
    model.append(f"embedding = {embedding}")
    # a latent array (Perceiver): the blocks run over it and read the input as memory; a head pools it
    latents = mtype == "encoder" and (g.take("latent_array") or (g.need is None and g.flag(0.1)))
    head, head_kind = _head(g, vocab, REGISTRY[embedding.split("(")[0].strip()].token_table, latents)
    if g.take("lora") or g.flag(0.1):
        model.append(_lora(g))
    if mtype == "encoder_decoder":
        enc = Env(d, vocab, "encoder", src, grid=grid)
        dec = out_env = Env(d, vocab, "decoder", seq_len, memory=True, grid=grid)
        model.append(section(g, "encoder", stack(g, enc, 1, "enc_"), 1))
        model.append(section(g, "decoder", stack(g, dec, 1, "dec_"), 1))
    elif latents:
        n_latents = g.int_in(1, 6)
        model.append(f"latents = {g.call('latent_array', {'length': g.int_(n_latents)})}")
        env = out_env = Env(d, vocab, "encoder", max(seq_len, n_latents), memory=True)
        model.extend(stack(g, env, 0, ""))
    else:
        role = "encoder" if mtype == "encoder" else "decoder"
        out_env = Env(d, vocab, role, seq_len, grid=grid)
        staged = grid is not None and (g.take("stages") or need_grid or g.flag(0.3))
        model.extend(stack(g, out_env, 0, "", staged))
    model.append(f"head = {head}")
    if g.need is not None:
        raise AssertionError(f"strategy bug: could not honour require={g.need!r}")

    parts = [*g.consts, *g.blocks, section(g, f"model {name}", model, 0)]
    text = ("\n\n" if g.sep == "\n" else "\n").join(parts) + "\n"
    out_len = out_env.seq_len  # stages may have merged the grid and widened it
    if head_kind in ("lm_head", "mlm_head"):
        out: tuple[int, ...] = (batch, out_len, vocab)
    elif head_kind == "classifier":
        out = (batch, -1)  # classes: read from the spec by the test
    else:
        out = (batch, out_env.d_model)
    return GeneratedSpec(
        text=text,
        name=name,
        model_type=mtype,
        batch=batch,
        seq_len=seq_len,
        src_len=src if mtype == "encoder_decoder" else None,
        out_shape=out,
        kinds=frozenset(g.kinds),
        features=frozenset(g.features),
        image=image,
    )


def _towers_spec(g: Gen) -> GeneratedSpec:
    """A towers model: its text, and a batch and token length to run it at; its forward returns the
    logits per example of the first tower, (batch, batch)."""
    batch = g.int_in(1, 3)
    name = str(g.draw(st.sampled_from(name_pool(g, "model", MODEL_NAMES))))
    g.features.add("towers")
    model, seq_len = _towers_model(g, name, batch)
    if g.need is not None:
        raise AssertionError(f"strategy bug: could not honour require={g.need!r}")
    parts = [*g.consts, *g.blocks, section(g, f"model {name}", model, 0)]
    text = ("\n\n" if g.sep == "\n" else "\n").join(parts) + "\n"
    return GeneratedSpec(
        text=text,
        name=name,
        model_type="towers",
        batch=batch,
        seq_len=seq_len,
        src_len=None,
        out_shape=(batch, batch),
        kinds=frozenset(g.kinds),
        features=frozenset(g.features),
        image=False,
    )


#: kinds with a generator here that knows their constraints (the rest get schema-drawn arguments)
COVERED_KINDS = frozenset(
    {
        *ATTN_TRAITS,
        "layernorm",
        "rmsnorm",
        "mlp",
        "moe",
        "glu",
        "swiglu",
        "geglu",
        "reglu",
        "conformer_conv",
        "rwkv_channel_mix",  # a feed-forward of `hidden`, as `ffn` draws it
        "adapter",
        "learned",
        "sinusoidal",
        "rope",
        "alibi",
        "t5",
        "shaw",
        "token_embedding",
        "patch_embedding",
        "conv_stem",
        "patch_merging",
        "lm_head",
        "classifier",
        "pooler",
        "mlm_head",
        "projection",
        "contrastive",
        "latent_array",
    }
)
#: placement presets whose parameters the generator knows
COVERED_PLACEMENTS = frozenset({"pre", "post", "sandwich", "parallel", "deepnorm"})


def yaml_twin(text: str, path: str = "spec.arch") -> str:
    """The YAML form of a text spec, by archdsl's own converter (``archdsl fmt --to yaml``)."""
    from archdsl.fmt import to_yaml
    from archdsl.frontend.text import parse_text

    return to_yaml(parse_text(text, path))


def canonical_text(text: str, path: str = "spec.arch") -> str:
    """The canonical text form (``archdsl fmt``) of a text or YAML spec."""
    from archdsl.fmt import to_text
    from archdsl.frontend import parse_source

    return to_text(parse_source(text, path))


_NAME_PROBES = {
    # role -> a spec in which NAME is that role; accepted when it loads and checks clean
    "sublayer": "model m {{ d_model = 8 vocab = 5 embedding = token_embedding() block {{ repeat = 1 "
    "{name} = mha(heads = 2) flow {{ x = x + {name}(x) }} }} head = lm_head() }}",
    "tensor": "model m {{ d_model = 8 vocab = 5 embedding = token_embedding() block {{ repeat = 1 "
    "a = mha(heads = 2) flow {{ {name} = x + a(x) x = {name} + a({name}) }} }} head = lm_head() }}",
    "block": "block {name} {{ norm = layernorm() attention = mha(heads = 2) ffn = mlp(hidden = 4) }} "
    "model m {{ d_model = 8 vocab = 5 embedding = token_embedding() layers = [{name}] head = lm_head() }}",
    "model": "model {name} {{ d_model = 8 vocab = 5 embedding = token_embedding() block {{ repeat = 1 "
    "norm = layernorm() attention = mha(heads = 2) ffn = mlp(hidden = 4) }} head = lm_head() }}",
}


@functools.cache
def accepted_names(role: str) -> tuple[str, ...]:
    """The ``TRICKY_NAMES`` archdsl accepts as a ``role`` name (sublayer, tensor, block, model), found
    by loading and checking a tiny spec with each: the strategies then draw only names that make valid
    specs, whatever archdsl's naming rules are today."""
    import tempfile

    import archdsl

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.arch"
        for name in TRICKY_NAMES:
            path.write_text(_NAME_PROBES[role].format(name=name), encoding="utf-8")
            try:
                ok = not archdsl.check(archdsl.load(path))
            except archdsl.SpecError:
                ok = False
            if ok:
                out.append(name)
    return tuple(out)


def name_pool(g: Gen, role: str, plain: Sequence[str]) -> list[str]:
    """Names to draw for ``role``: the plain ones, and (in about one spec in four) the tricky names
    archdsl accepts there."""
    if g.tricky:  # not c1, c2, ...: the names constants get (a block may not share one)
        return [*plain, *(n for n in accepted_names(role) if not re.fullmatch(r"c\d+", n))]
    return list(plain)
