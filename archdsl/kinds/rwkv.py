"""RWKV-4 (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era"): time mixing, a
sequence mixer (the WKV recurrence with a per-channel decay), and channel mixing, a feed-forward that
reads the previous token. Both as in Hugging Face ``RwkvForCausalLM`` (``RwkvSelfAttention``,
``RwkvFeedForward``); the modules are in :mod:`archdsl.kinds.rwkv_nn`.

A model is ``embedding_norm = layernorm`` (RWKV's ``pre_ln``), pre-norm blocks with ``mixer =
rwkv_time_mix(…)`` and ``ffn = rwkv_channel_mix(…)``, a final LayerNorm, an untied head and ``position =
none`` (specs/rwkv_169m.arch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, chain_backward
from archdsl.kinds.mixer import MixerKind
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.rwkv_nn"


def wkv_bytes(act: ActCfg) -> int:
    """Bytes per number of the WKV operator: float32, or the activations' dtype when wider."""
    return max(4, act.bytes)


def lengths(ins: Sequence[Shape]) -> tuple[Any, Any]:
    """(batch, length) of a (B, T, d) input."""
    return ins[0][0], ins[0][1]


def chunking(node: Node, n: Any) -> tuple[Any, Any, Any]:
    """(c, chunks, n_p): the chunk length the module uses (``chunk``, or n when shorter: a concrete
    length), the number of chunks and n padded to whole chunks. A symbolic n is taken to be a multiple
    of ``chunk`` past it (the regime)."""
    c = int(node["chunk"])
    if isinstance(n, int):
        c = min(c, n)
        chunks = -(-n // c)
        return c, chunks, chunks * c
    return c, n // c, n


class RwkvTimeMix(MixerKind):
    """RWKV-4 time mixing (Peng et al. 2023, §3.2; Hugging Face ``RwkvSelfAttention``), a sequence mixer:
    token shift ``x̃ = μ x + (1 - μ) x_{t-1}`` (learned μ per channel for k, v and r), ``k = W_k x̃_k``,
    ``v = W_v x̃_v``, ``r = σ(W_r x̃_r)`` (d -> a, no bias), output ``W_o (r ⊙ wkv)`` with, per channel,
    decay ``w = -exp(time_decay)`` and bonus ``u = time_first``: ``wkv_t = (Σ_{s<t} e^{(t-1-s) w + k_s}
    v_s + e^{u + k_t} v_t) / (Σ_{s<t} e^{(t-1-s) w + k_s} + e^{u + k_t})``. ``hidden`` is a (HF's
    ``attention_hidden_size``, default d). Parameters ``4 d a + 3 d + 2 a``. Training runs the WKV in
    chunks of c = ``chunk`` (c = n when shorter): each chunk's pairs (c x c per channel, exponentiated
    against their row's exact maximum, so any magnitude of keys and decays is stable) and the state of
    the chunks before, carried in a loop over chunks. FLOPs: the projections ``8 b n d a`` and the pair
    products ``2 b a n_p c`` (n_p = n padded to whole chunks; the rest is elementwise). O(n) time and
    memory in the length. Decoding keeps ``d + 3 a`` numbers per sequence (the last input; the WKV
    numerator, denominator and their max exponent), whatever the context.

    A fused kernel (RWKV's CUDA WKV) scans sequentially per channel instead: no pair products, and only
    k, v and the output kept for backward. The chunk length changes only the cost, not the function
    (tests/test_kinds_rwkv.py)."""

    name = "rwkv_time_mix"
    params = (
        Param(
            "hidden",
            "int",
            default=None,
            min=1,
            doc="width a of k, v and r (HF's attention_hidden_size; default: d_model)",
        ),
        Param(
            "chunk",
            "int",
            default=16,
            min=1,
            doc="chunk length c of the training form (the function is the same)",
        ),
    )

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Any]:
        return {"hidden": ctx.d_model}

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, a = ctx.d_model, int(node["hidden"])
        return 4 * d * a + 3 * d + 2 * a

    def projection_flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n = lengths(ins)
        return 8 * b * n * ctx.d_model * node["hidden"]

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n = lengths(ins)
        c, _, n_p = chunking(node, n)
        return self.projection_flops(node, ctx, ins) + 2 * b * node["hidden"] * n_p * c

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        """The pair products a chunk keeps: ``c (c + 1) / 2`` per whole chunk (the earlier positions and
        the bonus), ``r (r + 1) / 2`` for a last chunk of r positions; padding counts nothing."""
        b, n = lengths(ins)
        c, _, _ = chunking(node, n)
        whole = n // c
        r = n - whole * c
        kept = whole * (c * (c + 1) // 2) + r * (r + 1) // 2
        return self.projection_flops(node, ctx, ins) + 2 * b * node["hidden"] * kept

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The projections in a chain (k, v, r read the input; the output map reads r ⊙ wkv), and the pair
        products twice over (the pairs' and the values' gradients) wherever gradients flow."""
        b, n = lengths(ins)
        d, a = ctx.d_model, int(node["hidden"])
        stages = [[("key", b * n, d, a), ("value", b * n, d, a), ("receptance", b * n, d, a)]]
        proj, grad = chain_backward(None, stages, act.input_grad, act.weight_grad)
        out, _ = chain_backward(None, [[("output", b * n, a, d)]], grad, act.weight_grad)
        core = (self.flops_mask_aware if mask_aware else self.flops)(node, ctx, ins)
        core -= self.projection_flops(node, ctx, ins)
        return proj + out + (2 * core if grad else 0)

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """With weights that train: the token shift's difference ``x - x_{t-1}`` (for the μ's) and the
        three mixed inputs of k, v, r (for W_k, W_v, W_r); r (σ's output), wkv and ``r ⊙ wkv`` (W_o's
        input); in float32 (the activations' dtype when wider), over n_p positions: the padded values,
        the pairs' exponentials (c per position), the state's weights, and the numerators and
        denominators; over n_p - c (the chunks a later one reads): the chunk states' exponentials; per
        chunk: the state before it (numerator, denominator) and, in the loop, two weights and the two
        running sums; and the constants of the decays (c² + 2c, c fewer with one chunk) and
        exp(time_decay). Without trainable weights (a frozen base) only what the input's gradient
        needs: r, wkv, the padded values, the pairs' exponentials, the numerators, denominators and the
        state's weights (two chunks or more), the chunk states' exponentials and the loop's weights."""
        if not (act.input_grad or act.weight_grad):
            return Saved()
        b, n = lengths(ins)
        d, a, by = ctx.d_model, int(node["hidden"]), act.bytes
        c, chunks, n_p = chunking(node, n)
        several = not isinstance(chunks, int) or chunks > 1
        if act.weight_grad:
            ours = b * n * (4 * d + 3 * a) * by
            wkv = b * a * n_p * (c + 4) + b * a * (n_p - c) + 4 * b * a * (chunks - 1) + 2 * b * a * chunks
            consts = c * c + c + (c if several else 0) + a
            return Saved(internal=ours + (wkv + consts) * wkv_bytes(act))
        ours = 2 * b * n * a * by
        wkv = b * a * n_p * (c + 3) + b * a * (n_p - c) + b * a * (chunks - 1)
        if several:
            wkv += b * a * n_p + b * a * (chunks - 2)
        return Saved(internal=ours + wkv * wkv_bytes(act))

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """The last input (token shift) and the WKV state (numerator, denominator, max exponent)."""
        return ctx.d_model + 3 * int(node["hidden"])

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        # a = hidden, c = chunk
        return ("n·d·a", "n·c·a")

    def regime(self, node: Node) -> tuple[int, int]:
        """Whole chunks, and more than one (a shorter sequence is one chunk of its own length)."""
        c = int(node["chunk"])
        return c, c

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "RwkvTimeMix", d_model=ctx.d_model, hidden=node["hidden"], chunk=node["chunk"])


class RwkvChannelMix(Kind):
    """RWKV-4 channel mixing (Peng et al. 2023, §3.3), a feed-forward over the token-shifted input:
    ``k = relu(W_k x̃_k)²`` (d -> h), ``r = σ(W_r x̃_r)`` (d -> d), ``out = r ⊙ W_v k`` (h -> d), with
    ``x̃ = μ x + (1 - μ) x_{t-1}``. ``hidden`` is h (Hugging Face's ``intermediate_size``, default 4d).
    Parameters ``2 d h + d² + 2 d``; FLOPs ``2 b n (2 d h + d²)``. Decoding keeps the last input (d
    numbers per sequence); the padding mask zeroes padded positions as a previous input."""

    name = "rwkv_channel_mix"
    role = "ffn"
    recurrent = True
    reads_mask = True
    params = (
        Param(
            "hidden",
            "int",
            default=None,
            min=1,
            doc="inner width h (HF's intermediate_size; default: 4 d_model)",
        ),
    )

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Any]:
        return {"hidden": 4 * ctx.d_model}

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, h = ctx.d_model, int(node["hidden"])
        return 2 * d * h + d * d + 2 * d

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n = lengths(ins)
        d = ctx.d_model
        return 2 * b * n * (2 * d * node["hidden"] + d * d)

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """W_k and W_r read the input, W_v what W_k made."""
        b, n = lengths(ins)
        d, h = ctx.d_model, int(node["hidden"])
        stages = [[("key", b * n, d, h), ("receptance", b * n, d, d)], [("value", b * n, h, d)]]
        return chain_backward(None, stages, act.input_grad, act.weight_grad)[0]

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """With weights that train: ``x - x_{t-1}`` (for the μ's), the two mixed inputs, relu's output and
        its square (W_v's input), r and ``W_v k``; without (a frozen base): relu's output, r and
        ``W_v k``."""
        b, n = lengths(ins)
        d, h, by = ctx.d_model, int(node["hidden"]), act.bytes
        if act.weight_grad:
            return Saved(internal=b * n * (5 * d + 2 * h) * by)
        if act.input_grad:
            return Saved(internal=b * n * (2 * d + h) * by)
        return Saved()

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """The last input, for the token shift."""
        return ctx.d_model

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d·h", "n·d²")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "RwkvChannelMix", d_model=ctx.d_model, hidden=node["hidden"])


KINDS: tuple[Kind, ...] = (RwkvTimeMix(), RwkvChannelMix())
