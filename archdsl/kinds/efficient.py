"""Efficient attention kinds: Reformer's LSH attention and kernelised linear attention.

Both keep the multi-head shell of :class:`~archdsl.kinds.attention.AttentionKind` (projections, grouped
values, qk-norm, RoPE, output projection) and replace the core with one that never forms an n x n
matrix: time and memory grow linearly in the sequence length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.attention import AttentionKind
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError, chain_backward
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.efficient_nn"

#: positional schemes acting inside attention that only turn q and k (no bias on a score matrix)
ROTARY = ("rope",)


def padded(n: Any, c: int) -> Any:
    """``n`` rounded up to a whole number of chunks of ``c``: ``c * ceil(n / c)``."""
    return (n + c - 1) // c * c


def position_errors(kind: AttentionKind, node: Node, ctx: Ctx) -> list[ShapeError]:
    """An efficient core has no score matrix to add a positional bias to: only rotary schemes fit."""
    pos = kind.position(node, ctx)
    if pos is None or pos[1].kind in ROTARY:
        return []
    return [
        ShapeError(
            f"`{node.kind}` attention forms no score matrix, so the stack's positional scheme "
            f"`{pos[1].kind}` (a bias on the scores) cannot act in it",
            help="use `position = rope(…)`, or a table added to the embeddings (`learned`, `sinusoidal`)",
            code="E016",
        )
    ]


def shared_qk_name(lora: Any) -> str:
    """The LoRA name LSH's shared query-key projection answers to: ``q``, or ``k`` when only that is
    targeted (the one projection gives both queries and keys, and is adapted once)."""
    if lora is not None and "k" in lora.targets and "q" not in lora.targets:
        return "k"
    return "q"


class LSHAttention(AttentionKind):
    """Reformer LSH attention (Kitaev et al. 2020, "Reformer: The Efficient Transformer", §2 and
    Appendix A): queries and keys are shared (``k = q / |q|``), hashed by random rotations
    ``h(x) = argmax [xR; -xR]`` into ``buckets`` buckets, sorted by (bucket, position) and cut into
    chunks of ``c = bucket_size``; each query attends to the keys of its own bucket in its chunk and
    the previous one (causal: in the c sorted slots before its own), never to itself unless nothing
    else is visible. ``n_hashes = r`` rounds are combined by their log-partition functions, duplicates
    counted once. Parameters ``d (q + kv) + q d`` (one shared query-key projection, plus biases).
    FLOPs: projections, hashing ``2 b n h d_k r buckets/2`` (none with one bucket), and ``8 b h r n_p c
    d_k`` for the chunked scores and values, ``n_p = c ceil(n / c)``: O(n · c · r) time and memory.
    LoRA adapts the shared query-key projection (once, when it targets ``q`` or ``k``), ``v`` and ``o``.

    The shared query-key is one projection: the module's fused ``c_attn`` yields q and v only (``d ->
    q + kv``; values may have fewer heads), so the parameter count is the module's exactly, and qk-norm
    is one norm. The random rotations are a buffer drawn from ``seed`` when the module is built.
    Padding to whole chunks sorts last and is never a key. Causal masking compares original positions,
    and a causal query's window slides with it over the sorted order (the c slots before its own)
    rather than being the chunk-aligned one: within a bucket sorted slots follow positions, so what a
    query sees never depends on later tokens, which chunk boundaries would make it do. Self-attention
    only (the sharing needs keys from the queries' sequence); the stack's positional scheme may rotate
    q (RoPE) but not bias scores.
    """

    name = "lsh"
    extra = (
        Param("bucket_size", "int", default=64, min=1, doc="chunk length c (about the mean bucket size)"),
        Param("buckets", "int", default=32, min=1, doc="hash buckets per round: 1 or even (±rotations)"),
        Param("n_hashes", "int", default=2, min=1, doc="hashing rounds r, combined by logsumexp"),
        Param("seed", "int", default=0, min=0, doc="seed of the random rotations (fixed at build)"),
    )

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        errs = position_errors(self, node, ctx)
        if node["cross"]:
            errs.append(
                ShapeError(
                    "`lsh` attention shares queries and keys, so it cannot be cross-attention",
                    help="use `mha` or `linear` for cross-attention",
                    param="cross",
                    code="E009",
                )
            )
        nb = int(node["buckets"])
        if nb > 1 and nb % 2:
            errs.append(
                ShapeError(
                    f"`buckets` must be 1 or even, got {nb}",
                    help=f"angular LSH hashes to argmax [xR; -xR]: choose {nb - 1} or {nb + 1}",
                    param="buckets",
                    code="E009",
                )
            )
        return errs

    def lora_parts(
        self, node: Node, ctx: Ctx
    ) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
        """The shared query-key projection (adapted when LoRA targets ``q`` or ``k``: it gives both),
        the output one, and the values'."""
        d = ctx.d_model
        h, kv, hs = self.dims(node, ctx)
        q, v = h * hs, kv * hs
        return [(shared_qk_name(ctx.lora), d, q), ("o", q, d)], [("v", d, v)]

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        h, kv, hs = self.dims(node, ctx)
        q, v = h * hs, kv * hs
        n = d * (q + v) + q * d + ((q + v) if node["bias"] else 0) + (d if node["out_bias"] else 0)
        if ctx.lora is not None:
            x_side, kv_side = self.lora_parts(node, ctx)
            n += ctx.lora.params(x_side + kv_side)
        if node["qk_norm"] != "none":  # one norm: keys are the queries
            n += self.qk_norm_widths(node, ctx)[0] * (2 if node["qk_norm"] == "layernorm" else 1)
        pos = self.position(node, ctx)
        if pos is not None:
            n += pos[0].attention_params(pos[1], ctx, node)
        return n

    def projection_flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, _ = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        d, q, v = ctx.d_model, h * hs, kv * hs
        total = 2 * b * n * (d * (q + v) + q * d)
        if ctx.lora is not None:
            x_side, kv_side = self.lora_parts(node, ctx)
            total += ctx.lora.flops(x_side + kv_side, b * n)
        return total

    def projection_backward(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg
    ) -> tuple[Any, bool]:
        """The shared query-key and the value projections, then the output one, with their LoRA
        updates."""
        b, n, _ = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        d, q, v = ctx.d_model, h * hs, kv * hs
        qk = shared_qk_name(ctx.lora)
        qv, inner = chain_backward(
            ctx.lora, [[(qk, b * n, d, q), ("v", b * n, d, v)]], act.input_grad, act.weight_grad
        )
        out, _ = chain_backward(ctx.lora, [[("o", b * n, q, d)]], inner, act.weight_grad)
        return qv + out, inner

    def regime(self, node: Node) -> tuple[int, int]:
        """Whole chunks of c; with several rounds, also n long enough that each query's estimated
        bucket mates (``core_saved``) fill its window: ``(n - 1) // D >= window - 1``, i.e.
        ``n > D (window - 1)``, with D the buckets (twice that causal; with one bucket, every other
        query: n > window - 1)."""
        c = int(node["bucket_size"])
        if int(node["n_hashes"]) == 1:
            return c, 0
        window = c + 1 if node["causal"] else 2 * c
        nb = int(node["buckets"])
        if nb == 1:
            return c, window - 1
        return c, (2 * nb if node["causal"] else nb) * (window - 1)

    def no_grad_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Any:
        """The hashing rotations feed an argmax: no gradient flows back through them."""
        return self.hash_flops(node, ctx, b, n)

    def hash_flops(self, node: Node, ctx: Ctx, b: Any, n: Any) -> Any:
        h, _, hs = self.dims(node, ctx)
        nb = int(node["buckets"])
        return 2 * b * h * n * hs * node["n_hashes"] * (nb // 2) if nb > 1 else 0

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        h, _, hs = self.dims(node, ctx)
        c = int(node["bucket_size"])
        chunked = 8 * b * h * node["n_hashes"] * padded(n, c) * c * hs  # (c x 2c) scores and values
        return self.hash_flops(node, ctx, b, n) + chunked

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, _ = self._lengths(ins)
        return super().flops_mask_aware(node, ctx, ins) + self.hash_flops(node, ctx, b, n)

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        """The query-key products actually formed: per round, every (padded) query against its chunk
        and the previous one, less the first chunk's missing predecessor: ``r c (2 n_p - c)``. Causal
        and bucket masks then discard some of them (how many depends on the hashes); the products are
        computed either way."""
        c = int(node["bucket_size"])
        return node["n_hashes"] * c * (2 * padded(n, c) - c)

    # what backward keeps: the shared shell (AttentionKind.saved) around this core

    def calls_sdpa(self, node: Node, ctx: Ctx, act: ActCfg) -> bool:
        return False

    def own_keys(self, node: Node) -> bool:
        return False  # keys are the normalised queries

    def keeps_projections(self, node: Node, ctx: Ctx, act: ActCfg, b: Any, n: Any) -> tuple[bool, bool]:
        """Normalising the keys keeps its input: the shared query-key as a view of the projection,
        unless normalised or rotated."""
        plain = self.q_view(node, ctx)
        return plain, plain

    def core_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """Over r rounds, n_p = n padded to whole chunks of c: the keys' normalisation keeps its input
        (a new query-key when normalised or rotated), the norms and their clamp; sorting keeps the
        padded [q, k, v] and the order (int64); the scores keep the sorted [q, k, v] (q is a view of it)
        and the looked-back keys; the values' product the looked-back values; the combination of the
        rounds keeps the [o, lse] it unsorts and the ranks (int64), the unsorted [o, lse] and the
        rounds' weights. Score-sized (the core, (n_p, 2c) per round and head): the scores as logsumexp
        and exp keep them, the two boolean masks, soft-capping's and dropout's tensors, the
        log-partition per query, and — with several rounds — the indices of the pairs a window keeps
        (int64). Those are the only data-dependent count here: each query keeps its own key and, with
        uniformly filled buckets, the (n - 1) / buckets others of its bucket (half of them causal; all
        with one bucket), at most its window."""
        h, _, hs = self.dims(node, ctx)
        c, r, nb, by = int(node["bucket_size"]), int(node["n_hashes"]), int(node["buckets"]), act.bytes
        n_p = padded(n, c)
        out = (0 if self.q_view(node, ctx) else b * h * n * hs) + 2 * b * h * n  # the query-key; norms
        out += b * h * n_p * 3 * hs + b * h * r * n_p * 3 * hs  # padded and sorted [q, k, v]
        out += 2 * b * h * r * n_p * 2 * hs  # looked-back keys and values
        out += 2 * b * h * r * n_p * (hs + 1) + b * h * r * n  # [o, lse] sorted and unsorted; weights
        out = out * by + 2 * b * h * r * n_p * 8  # + the order and the ranks (int64)
        scores = b * h * r * n_p * 2 * c
        core = 2 * scores * by + 2 * scores + b * h * r * n_p * by  # logsumexp's, exp's; masks; lse
        if node["softcap"]:
            core += scores * by  # tanh's output
        if node["dropout"] and act.training:
            core += 2 * scores * by  # dropout's noise and the dropped weights
        if r > 1:
            window = c + 1 if node["causal"] else 2 * c
            if isinstance(n, int):
                others = min(n - 1 if nb == 1 else (n - 1) // (2 * nb if node["causal"] else nb), window - 1)
            else:
                others = window - 1  # a symbolic n is taken to be long: the window is full
            core += b * h * r * (n + n * others) * 8  # the kept pairs' indices (int64)
        return Saved(internal=out + core, core=core)

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """Shared query-keys of every query head and the values: ``(h + kv) d_k`` per position."""
        h, kv, hs = self.dims(node, ctx)
        return (h + kv) * hs * context

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        # r = n_hashes, c = bucket_size, b = buckets
        return ("n·d²", "n·r·c·d", "n·r·b·d")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        args = self.common_ctor_args(node, ctx)
        args.pop("k_norm", None)  # keys are the normalised queries
        return ours(
            NN,
            "LSHAttention",
            bucket_size=node["bucket_size"],
            n_buckets=node["buckets"],
            n_hashes=node["n_hashes"],
            seed=node["seed"],
            **args,
        )


class LinearAttention(AttentionKind):
    """Kernelised linear attention: ``softmax(q k^T) v`` replaced by ``φ(q) (φ(K)^T V) / φ(q) φ(K)^T 1``
    with ``φ(x) = elu(x) + 1`` (Katharopoulos et al. 2020, "Transformers are RNNs") or Performer's
    FAVOR+ positive orthogonal random features ``φ(x) = exp(Wx' - |x'|²/2) / sqrt(m)``, ``x' = x /
    d_k^(1/4)`` (Choromanski et al. 2021, "Rethinking Attention with Performers"; ``m = features``,
    drawn from ``seed`` at build, no redraw). With f features (``d_k`` for elu, m for favor), ``e = d_k
    + 1`` (values with a ones column that carries the normaliser) and s keys (n, or the memory's
    length), FLOPs are the projections, favor's feature maps ``2 b (n h + s kv) d_k m``, then —
    bidirectional: ``2 b kv s f e`` for the state ``φ(K)^T [V 1]`` and ``2 b h n f e`` to read it;
    causal, in chunks of ``c = chunk`` over ``n_p = c ceil(n / c)``: ``2 b h n_p c (f + e)`` for the
    masked products inside each chunk, ``2 b kv n_p f e`` for the chunk states and ``2 b h n_p f e`` to
    read the state of the chunks before. O(n) time and memory; a decoder keeps a constant-size state.
    LoRA adapts ``q``, ``k``, ``v`` and ``o``.

    Grouped key/value heads keep one state per key/value head. The core has no weights to drop or cap
    and no score matrix to bias: ``dropout``, ``softcap`` and positional schemes other than RoPE are
    refused. FAVOR+ stabilises its exponentials with constants the normalisation cancels (a maximum
    per query; bidirectional, one over every key), so causal outputs never depend on later tokens.
    """

    name = "linear"
    state_cache = True  # causal decoding keeps the running sums φ(K)^T [V 1]
    extra = (
        Param("feature_map", "enum", default="elu", choices=("elu", "favor"), doc="φ: elu + 1, or FAVOR+"),
        Param(
            "features",
            "int",
            default=None,
            min=1,
            doc="favor: random features m (default: d_k ln d_k, at least d_k)",
        ),
        Param("seed", "int", default=0, min=0, doc="favor: seed of the random features (fixed at build)"),
        Param("chunk", "int", default=64, min=1, doc="causal: chunk length of the blockwise computation"),
    )

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        errs = position_errors(self, node, ctx)
        for name in ("softcap", "dropout"):
            if node[name]:
                errs.append(
                    ShapeError(
                        f"`linear` attention forms no attention weights, so `{name}` has nothing to act on",
                        help=f"drop `{name}` (use `out_dropout` for dropout on the output)",
                        param=name,
                        code="E009",
                    )
                )
        if node["feature_map"] == "elu" and node["features"] is not None:
            errs.append(
                ShapeError(
                    "`features` sets the number of random features of `feature_map = favor`",
                    help="elu + 1 keeps the head size; drop `features` or set `feature_map = favor`",
                    param="features",
                    code="E009",
                )
            )
        return errs

    def n_features(self, node: Node, ctx: Ctx) -> int:
        """f: the width of φ(x)."""
        _, _, hs = self.dims(node, ctx)
        if node["feature_map"] == "elu":
            return hs
        if node["features"] is not None:
            return int(node["features"])
        return max(hs, int(hs * math.log(hs)))  # Performer's default, m = d_k ln d_k

    def regime(self, node: Node) -> tuple[int, int]:
        return (int(node["chunk"]) if node["causal"] else 1), 0

    def one_sided_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Any:
        """FAVOR+'s random features are a fixed buffer: their products need only q's and k's gradients."""
        return self.feature_flops(node, ctx, b, n, m)

    def feature_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        if node["feature_map"] == "elu":
            return 0
        h, kv, hs = self.dims(node, ctx)
        return 2 * b * (n * h + m * kv) * hs * self.n_features(node, ctx)

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        h, kv, hs = self.dims(node, ctx)
        f, e = self.n_features(node, ctx), hs + 1
        total = self.feature_flops(node, ctx, b, n, m)
        if node["causal"]:
            c = int(node["chunk"])
            n_p = padded(n, c)
            return total + 2 * b * n_p * (h * c * (f + e) + kv * f * e + h * f * e)
        return total + 2 * b * f * e * (kv * m + h * n)

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        """As ``flops``, but the causal products inside each chunk count only the pairs the mask keeps
        (``c (c + 1) / 2`` per whole chunk, ``r (r + 1) / 2`` for a last chunk of ``r`` tokens) and
        padding counts nothing; a linear attention's other products are all used."""
        b, n, m = self._lengths(ins)
        if not node["causal"]:
            return self.projection_flops(node, ctx, ins) + self.core_flops(node, ctx, b, n, m)
        h, kv, hs = self.dims(node, ctx)
        f, e, c = self.n_features(node, ctx), hs + 1, int(node["chunk"])
        whole = n // c
        r = n - whole * c
        kept = whole * (c * (c + 1) // 2) + r * (r + 1) // 2
        core = self.feature_flops(node, ctx, b, n, m) + 2 * b * (h * kept * (f + e) + n * f * e * (kv + h))
        return self.projection_flops(node, ctx, ins) + core

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        """The pairs the mask keeps, as for softmax attention: every query still meets every visible key,
        through the state. (The FLOPs do not follow from the pairs; see ``flops_mask_aware``.)"""
        return super().pairs(node, n, m)

    # what backward keeps: the shared shell (AttentionKind.saved) around this core

    def calls_sdpa(self, node: Node, ctx: Ctx, act: ActCfg) -> bool:
        return False

    def keeps_projections(self, node: Node, ctx: Ctx, act: ActCfg, b: Any, n: Any) -> tuple[bool, bool]:
        """elu keeps its input: q and k as views of the projections, unless normalised or rotated."""
        plain = node["feature_map"] == "elu" and self.q_view(node, ctx)
        return plain, plain

    def core_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """φ: elu keeps its input (new q and k when normalised or rotated; views of the projections
        otherwise, see ``keeps_projections``); FAVOR+ keeps the scaled q and k (their square) and the
        exponentials. Bidirectional: φ(K) and [V 1] (their product's inputs), the state, φ(q), and the
        numerators and the normaliser (the division's inputs). Causal, over n_p = n padded to whole
        chunks of c: the padded φ(q), φ(K) and [V 1] — with g > 1 query heads per key/value head,
        φ(K) and [V 1] broadcast to every query head too (copies) — the chunk mask and the masked
        chunk scores (the score-sized core), the states of the chunks before (broadcast likewise), and
        the numerators and the normaliser."""
        h, kv, hs = self.dims(node, ctx)
        f, e, by = self.n_features(node, ctx), hs + 1, act.bytes
        if node["feature_map"] == "elu":
            out = 0 if self.q_view(node, ctx) else b * n * h * hs + b * m * kv * hs  # elu's input
        else:
            out = b * n * h * hs + b * m * kv * hs + b * h * n * f + b * kv * m * f  # scaled q, k; exp(·)
        out += b * h * n  # the normaliser
        if not node["causal"]:
            out += b * kv * m * (f + e) + b * kv * f * e + b * h * n * (f + e)  # φ(K), [V 1]; state; φ(q), y
            return Saved(internal=out * by)
        c = int(node["chunk"])
        n_p = padded(n, c)
        copies = h != kv  # broadcasting over the query heads of a group copies
        out += b * h * n_p * f + b * kv * n_p * (f + e)  # padded φ(q), φ(K), [V 1]
        if copies:
            out += b * h * n_p * (f + e)  # φ(K) and [V 1] per query head
        out += b * (h if copies else kv) * (n_p // c) * f * e + b * h * n_p * e  # the states before; y
        core = b * h * n_p * c * by + c * c  # masked chunk scores; the mask (bool)
        return Saved(internal=out * by + core, core=core)

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """A constant-size state per key/value head, whatever the context: ``φ(K)^T V`` (f x d_k) and
        the normaliser ``φ(K)^T 1`` (f), ``kv f (d_k + 1)`` elements."""
        _, kv, hs = self.dims(node, ctx)
        return kv * self.n_features(node, ctx) * (hs + 1)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        # m = features (d_k for elu), c = chunk, h = heads, s = the memory's length (cross-attention)
        terms = ("n·d²",) if node["feature_map"] == "elu" else ("n·d²", "n·m·d")
        if node["cross"]:
            terms += ("s·d²",) if node["feature_map"] == "elu" else ("s·d²", "s·m·d")
        if node["causal"]:
            terms += ("n·c·d",) if node["feature_map"] == "elu" else ("n·c·h·m",)
        return terms

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "LinearAttention",
            feature_map=node["feature_map"],
            n_features=self.n_features(node, ctx),
            seed=node["seed"],
            chunk=node["chunk"],
            **self.common_ctor_args(node, ctx),
        )


KINDS: tuple[Kind, ...] = (LSHAttention(), LinearAttention())
