"""Windowed and sparse attention kinds: sliding window, Sparse Transformer, Longformer, BigBird.

Each keeps a sub-quadratic set of (query, key) pairs, and its module (:mod:`archdsl.kinds.local_nn`)
computes only those, block by block: queries are cut into blocks (the last one padded with zeros) and a
query block meets whole key blocks, the mask then dropping the pairs the pattern does not keep. The
costs count exactly what the module multiplies, padding and masked entries included; ``pairs`` counts
what the mask keeps. When the sequence is so short that the pattern keeps every pair, the module attends
densely, and the cost is the dense ``4 b n² h hs``. The sliding window chooses its kernel by length
(:func:`window_segments`: dense SDPA, or SDPA on a head, blocks and a tail, never more than dense), and
its costs follow the segments the module runs.

Costs are exact for a concrete n. For a symbolic n they take n past the dense threshold and, where a
count has a remainder, n a multiple of the block.

These kinds are self-attention only, and take no positional scheme that adds a bias to the scores
(ALiBi, T5, Shaw): their modules never hold an n x n score matrix to add it to. RoPE, which turns q and
k before attention, works unchanged.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.attention import AttentionKind, _folds
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.local_nn"


# -- counting helpers (ints, or sympy symbols for n) --------------------------------------------------


def _concrete(*xs: Any) -> bool:
    return all(isinstance(x, int) for x in xs)


def _cdiv(a: Any, b: int) -> Any:
    return -(-a // b)


def _cap(n: Any, limit: int) -> Any:
    """min(n, limit); a symbolic n is taken to be past the limit."""
    return min(n, limit) if _concrete(n) else limit


def _dense(n: Any, limit: int) -> bool:
    """Whether the module attends densely: n at most `limit` (never for a symbolic n)."""
    return _concrete(n) and n <= limit


def reach(node: Node) -> tuple[int, int]:
    """(before, after) of a window kind: causal, keys i - window + 1 .. i; else |i - j| <= window // 2."""
    w = int(node["window"])
    return (w - 1, 0) if node["causal"] else (w // 2, w // 2)


def band_cells(n: Any, before: int, after: int, glob: int = 0) -> Any:
    """Score entries per head that ``LocalAttention.band`` computes: blocks of s = max(before, after,
    1) queries (n padded to a multiple of s), each over its own block, the neighbours the reach touches,
    and `glob` global keys."""
    s = max(before, after, 1)
    touched = 1 + (before > 0) + (after > 0)
    return _cdiv(n, s) * s * (touched * s + glob)


def band_pairs(n: Any, before: int, after: int) -> Any:
    """Pairs (i, j), 0 <= i, j < n, with i - before <= j <= i + after: n on the diagonal and, for each
    side of reach r, sum over d = 1..r of (n - d)."""

    def side(r: int) -> Any:
        k = _cap(n, r)
        return k * n - k * (k + 1) // 2

    return n + side(before) + side(after)


# -- the sliding window's kernel: dense, or a head, blocks and a tail (one plan for module and costs) --


def window_block(before: int, after: int, explicit: bool = False) -> int:
    """s, the queries of one block of the blocked window kernel, a power of two. A block of s queries
    meets s + before + after keys: it computes (s + before + after) / (before + after + 1) of what its
    band keeps. For SDPA, an eighth of the keys a query may see, at most 32 (1.06 of the band for a
    causal window of 512): SDPA's CPU kernel cuts queries into tiles of 32 anyway for such short
    blocks, and longer ones compute more (measured at w = 512, n = 1k … 4k: blocks of 32 beat 64 and
    128 by 2–10%).
    For the explicit products (a window with soft-capping or dropout: ``explicit``), a quarter, at
    most 1,024: each block copies its keys and values, (s + before + after) / s of them, and
    materialises its scores, so fewer, larger blocks keep less."""
    span, s = before + after + 1, 1
    top, part = (1024, 4) if explicit else (32, 8)
    while 2 * s <= min(top, span // part):
        s *= 2
    return s


def window_segments(n: int, before: int, after: int, block: int) -> list[tuple[int, int, int, int, int]]:
    """How ``SlidingWindowAttention`` computes a band of reach (before, after) over n positions, as
    segments (q0, k0, lq, lk, count): `count` blocks of lq queries, block j the queries q0 + j lq ..
    q0 + (j + 1) lq - 1 over the lk keys from k0 + j lq; each segment is one SDPA call (or one
    explicit product). Dense — one
    segment of every pair — while the window covers the sequence or nearly (n <= before + after + 1).
    Else, with h = before + 1 and s = `block` (:func:`window_block`): the head, queries 0 .. h - 1 over keys
    0 .. h + after - 1 (causal: SDPA's causal mask, which skips the upper triangle); queries h ..
    n - after - 1 in blocks over their own keys and the window's reach, keys q0 - before .. q0 + lq +
    after - 1: first a short block up to the next multiple of s (past h + after), then whole blocks of
    s, then the rest; and the tail, the last `after` queries over keys n - after - before .. n - 1.
    Every segment has keys only within the sequence (no padding), and the body's blocks tile exactly
    when n is a multiple of s. Costs sum(count lq lk) score entries per head: at most n², less when n
    > s (Σ = n² - L (n - s) for L body queries, plus what the head and tail save)."""
    if n <= before + after + 1:
        return [(0, 0, n, n, 1)]
    s, h, end = block, before + 1, n - after
    out = [(0, 0, h, h + after, 1)]
    a = h
    first = min(-(h + after) % s, end - a)  # up to where whole blocks end at multiples of s
    if first:
        out.append((a, a - before, first, first + before + after, 1))
        a += first
    if (end - a) // s:
        out.append((a, a - before, s, s + before + after, (end - a) // s))
        a += (end - a) // s * s
    if end - a:
        out.append((a, a - before, end - a, end - a + before + after, 1))
    if after:
        out.append((end, end - before, after, after + before, 1))
    return out


def band_masked(d: int, lq: Any, lk: Any, before: int, after: int) -> bool:
    """Whether a segment whose first query is d positions past its first key leaves out some pair:
    query r, key c kept when -before <= c - r - d <= after. (lq, lk are ints for every segment a
    symbolic plan has.)"""
    return d + lq - 1 > before or lk - 1 - d > after


def _window_plan(n: Any, before: int, after: int, s: int) -> list[tuple[Any, Any, Any, Any, Any]]:
    """:func:`window_segments` for an int n, or, for a symbolic n, the segments it has for n past the
    dense threshold and a multiple of s (then the short block is whole and no rest is left)."""
    if _concrete(n):
        return list(window_segments(n, before, after, s))
    h = before + 1
    first = -(h + after) % s
    out: list[tuple[Any, Any, Any, Any, Any]] = [(0, 0, h, h + after, 1)]
    if first:
        out.append((h, h - before, first, first + before + after, 1))
    body = (n - after - h - first) // s
    out.append((h + first, h + first - before, s, s + before + after, body))
    if after:
        out.append((n - after, n - after - before, after, after + before, 1))
    return out


# -- what the modules keep for backward (LocalAttention.blocks and the patterns built on it) ---------


def _attend_saved(node: Node, act: ActCfg, q: Any, k: Any, v: Any, scores: Any, mask: Any = 0) -> Saved:
    """What one ``LocalAttention.blocks`` call keeps, from element counts: q (a copy, or the rotated q
    itself), k and v as the call holds them, and the score-sized core — the probabilities, the
    soft-capped scores (kept by tanh), the boolean mask (``mask`` bytes), dropout's noise and the
    dropped probabilities."""
    by = act.bytes
    core = scores * by * (2 if node["softcap"] else 1) + mask
    if node["dropout"] and act.training:
        core += 2 * scores * by
    return Saved(internal=(q + k + v) * by + core, core=core)


def _plus(*parts: Saved) -> Saved:
    return Saved(internal=sum((p.internal for p in parts), 0), core=sum((p.core for p in parts), 0))


def _dense_saved(
    node: Node,
    act: ActCfg,
    b: Any,
    n: Any,
    hs: int,
    heads: tuple[int, int],
    part: tuple[int, int],
    plain: bool,
    rotated: bool,
    masked: bool | None = None,
) -> Saved:
    """``dense``: every pair of a short sequence, under the causal mask, for ``part`` = (query heads,
    key/value heads) of the module's ``heads``. q, k and v are copied for the matmuls, except where a
    batched matmul can take the view as it is: then it keeps the tensor the view is of — the
    projection's output for a ``plain`` q or k and for v (counted by ``saved``), the whole rotated or
    normalised q or k otherwise. Views of a projection's (B, n, heads hs) layout fold where
    ``_folds`` says (for q, with one query head per group); views of a rotated, head-major q or k
    unless they are a slice of more than one of the key/value groups (Sparse Transformer's split).
    The boolean mask is kept when ``masked`` (default: under a causal mask)."""
    (h, kv), (h_p, kv_p) = heads, part
    fold = _folds(kv_p, b)
    fq = (kv_p == kv or fold) if rotated else fold and h_p == kv_p
    fk = (kv_p == kv or fold) if rotated else fold
    q_el = (0 if plain else b * h * n * hs) if fq else b * h_p * n * hs
    k_el = (0 if plain else b * kv * n * hs) if fk else b * kv_p * n * hs
    v_el = 0 if fold else b * kv_p * n * hs
    mask = n * n if (node["causal"] if masked is None else masked) else 0
    return _attend_saved(node, act, q_el, k_el, v_el, b * h_p * n * n, mask)


def _gathered_saved(
    node: Node, act: ActCfg, b: Any, n: Any, h: int, kv: int, hs: int, size: int, blocks: int, glob: int
) -> Saved:
    """``gathered``: queries in nb blocks of ``size`` (n padded to N = nb * size), each over ``blocks``
    key blocks and ``glob`` global keys, L = blocks * size + glob. It keeps the padded q's copy, the
    gathered k and v, (B, kv, nb, L, hs) each (with global keys, the concatenation; the gather itself
    keeps its block indices, int64), and the (nb, size, L) mask."""
    nb = _cdiv(n, size)
    keys = blocks * size + glob
    s = _attend_saved(
        node,
        act,
        b * h * nb * size * hs,
        b * kv * nb * keys * hs,
        b * kv * nb * keys * hs,
        b * h * nb * size * keys,
        nb * size * keys,
    )
    return Saved(internal=s.internal + nb * blocks * 8, core=s.core)


def _band_saved(
    node: Node, act: ActCfg, b: Any, n: Any, h: int, kv: int, hs: int, before: int, after: int, glob: int = 0
) -> Saved:
    """``band``: blocks of max(before, after, 1), each over its own block and the neighbours the reach
    touches."""
    touched = 1 + (before > 0) + (after > 0)
    return _gathered_saved(node, act, b, n, h, kv, hs, max(before, after, 1), touched, glob)


def _global_rows_saved(
    node: Node, act: ActCfg, b: Any, n: Any, h: int, kv: int, hs: int, g: int, plain: bool, rotated: bool
) -> Saved:
    """``global_rows``: the first g queries over every key, unmasked; k and v as in ``dense`` (a
    rotated k is viewed whole). The queries are copied, unless the slice can be viewed — one query
    head per group or a single global token, and a rotated q or a projection's view that folds — and
    then kept whole."""
    fold = _folds(kv, b)
    fq = (h == kv or g == 1) and (rotated or fold)
    q_el = (0 if plain else b * h * n * hs) if fq else b * h * g * hs
    k_el = 0 if plain and fold else b * kv * n * hs
    v_el = 0 if fold else b * kv * n * hs
    return _attend_saved(node, act, q_el, k_el, v_el, b * h * g * n)


def _self_attention_only(node: Node, ctx: Ctx) -> list[ShapeError]:
    errs = []
    if node["cross"]:
        errs.append(
            ShapeError(
                f"`{node.kind}` is self-attention only",
                help="its window relates positions of one sequence; use `mha` for cross-attention",
                param="cross",
                code="E016",
            )
        )
    elif ctx.position is not None and ctx.position.kind != "rope":
        errs.append(
            ShapeError(
                f"`{node.kind}` cannot take the stack's `{ctx.position.kind}` positions",
                help="a score bias needs the full n x n scores, which block-sparse attention never holds; "
                "use `rope` (it turns q and k) or learned / sinusoidal positions",
                code="E016",
            )
        )
    return errs


class LocalKind(AttentionKind):
    """Shared by the kinds here: self-attention only, no score-bias positions, no parameters beyond the
    projections; the core costs 4 hs FLOPs per score entry the module computes (``cells``)."""

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        return _self_attention_only(node, ctx)

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        h, _, hs = self.dims(node, ctx)
        return 4 * b * h * hs * self.cells(node, n)

    def cells(self, node: Node, n: Any) -> Any:
        """Score entries per head the module computes (each costs 4 hs FLOPs: score and value)."""
        raise NotImplementedError

    # what backward keeps: the shared shell (AttentionKind.saved), with a core of block matmuls that
    # copy q, k and v (never SDPA) and an output re-laid out for the out projection

    def calls_sdpa(self, node: Node, ctx: Ctx, act: ActCfg) -> bool:
        return False

    def out_copy(self, node: Node, ctx: Ctx, act: ActCfg, n: Any = None) -> bool:
        return True

    def dense_at(self, node: Node, n: Any) -> bool:
        """Whether the module attends densely at this length (never for a symbolic n)."""
        raise NotImplementedError

    def keeps_projections(self, node: Node, ctx: Ctx, act: ActCfg, b: Any, n: Any) -> tuple[bool, bool]:
        """Where the dense path's (or the global rows') matmuls take k and v's views as they are, they
        keep the projection's output (see ``_dense_saved``)."""
        return False, self.dense_views(node, n) and _folds(self.view_heads(node), b)

    def view_heads(self, node: Node) -> int:
        """Key/value heads of the matmuls that read k and v as views (the dense path)."""
        return int(node["kv_heads"])

    def dense_views(self, node: Node, n: Any) -> bool:
        """Whether some matmul reads k and v as the projection's views: the dense path's, or the global
        rows' (they fold with one key/value head, see ``_dense_saved``)."""
        return self.dense_at(node, n)


class SlidingWindow(LocalKind):
    """Sliding-window (local) attention (Beltagy et al. 2020, Longformer §3.1; Mistral 7B, Jiang et al.
    2023; Gemma 2's local layers). Causal: query i sees keys i - w + 1 .. i, the w most recent.
    Bidirectional: keys j with |i - j| <= w // 2 (2 (w // 2) + 1 keys, as Longformer's w / 2 on each
    side). The kernel follows the length (``window_segments``, shared by the module and the costs), with
    reach r = w - 1 before and a = 0 after the query (bidirectional r = a = w // 2): dense SDPA, ``4 b h
    hs n²`` FLOPs, while n <= r + a + 1 (the window covers the sequence, or nearly); past it SDPA on a
    head (queries 0 .. r, causally masked when causal), blocks of s queries each over the s + r + a keys
    they reach, and a tail (the last a queries) — for n a multiple of s, ``4 b h hs ((r + 1)(r + 1 + a)
    + p (p + r + a) + (n - r - 1 - a - p)(s + r + a) + a (a + r))`` FLOPs, p = -(r + 1 + a) mod s
    aligning the blocks; s a power of two, ``window_block``. Never more FLOPs or saved activations than
    dense SDPA; O(n w d) time and memory. LoRA adapts ``q``, ``k``, ``v`` and ``o``."""

    name = "sliding_window"
    extra = (
        Param(
            "window",
            "int",
            min=1,
            doc="keys per query: i - window + 1 .. i (causal); window // 2 on each side (bidirectional)",
        ),
    )

    def block(self, node: Node) -> int:
        """s: queries per block (larger where the module multiplies explicitly: soft-capping, dropout)."""
        return window_block(*reach(node), explicit=bool(node["softcap"] or node["dropout"]))

    def segments(self, node: Node, n: Any) -> list[tuple[Any, Any, Any, Any, Any]]:
        return _window_plan(n, *reach(node), self.block(node))

    def cells(self, node: Node, n: Any) -> Any:
        return sum(count * lq * lk for _, _, lq, lk, count in self.segments(node, n))

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        return band_pairs(n, *reach(node))

    def dense_at(self, node: Node, n: Any) -> bool:
        before, after = reach(node)
        return _dense(n, before + after + 1)

    def regime(self, node: Node) -> tuple[int, int]:
        """Multiples of s past the short block's end (then every body block is whole and the short one
        too: the segments of :func:`_window_plan`)."""
        before, after = reach(node)
        s = self.block(node)
        return s, before + after + 1 + (-(before + 1 + after) % s)

    # backward: SDPA (the fused kernel: what dense SDPA keeps, the output laid out for the out
    # projection), or explicit products where SDPA cannot go (soft-capping, dropout in training,
    # materialised scores asked for)

    def calls_sdpa(self, node: Node, ctx: Ctx, act: ActCfg) -> bool:
        return act.flash and not node["softcap"]

    def sdpa_whole(self, node: Node, n: Any) -> bool:
        """Whether the module hands the whole sequence to SDPA, as dense attention does: the window
        covers it (under SDPA's causal mask, or with no mask at all)."""
        before, after = reach(node)
        return _dense(n, before + 1 if node["causal"] else min(before, after) + 1)

    def out_copy(self, node: Node, ctx: Ctx, act: ActCfg, n: Any = None) -> bool:
        """Fused: SDPA's output over the whole sequence is laid out as q (copied for the out projection
        when q is head-major, as dense attention's); the segments' output is laid out as the
        projection reads it. Explicit: the output re-laid out."""
        if not self.uses_fused_kernel(node, ctx, act):
            return True
        return self.sdpa_whole(node, n) and AttentionKind.out_copy(self, node, ctx, act, n)

    def keeps_projections(self, node: Node, ctx: Ctx, act: ActCfg, b: Any, n: Any) -> tuple[bool, bool]:
        if self.uses_fused_kernel(node, ctx, act):
            return self.q_view(node, ctx), True
        return super().keeps_projections(node, ctx, act, b, n)

    def recompute_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, selective: bool
    ) -> Any:
        """SDPA's backward recomputes each segment's scores: half the core's FLOPs."""
        if self.uses_fused_kernel(node, ctx, act) and self.projection_backward(node, ctx, ins, act)[1]:
            b, n, m = self._lengths(ins)
            return self.core_flops(node, ctx, b, n, m) // 2
        return super().recompute_flops(node, ctx, ins, act, selective)

    def core_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """Fused: q and k where they are new tensors (views of the projection otherwise, counted by
        ``saved``), the output and the log-sum-exp (fp32) — what dense SDPA keeps, whether the window
        covers the sequence (one SDPA call) or not (the segments rebuild their masks in backward).
        Explicit: dense, the products of ``_dense_saved`` (the band's mask kept unless the window
        covers the sequence); blocked, per segment copies of its queries, keys and values, its scores
        and its boolean mask (the blocks share one)."""
        h, kv, hs = self.dims(node, ctx)
        by = act.bytes
        if self.uses_fused_kernel(node, ctx, act):
            new_k = node["qk_norm"] != "none" or self.rotated(node, ctx)
            out = ((0 if self.q_view(node, ctx) else b * n * h * hs) + (b * n * kv * hs if new_k else 0)) * by
            return Saved(internal=out + b * n * h * hs * by + b * h * n * 4)
        before, after = reach(node)
        if self.dense_at(node, n):
            covered = n <= min(before, after) + 1
            return _dense_saved(
                node,
                act,
                b,
                n,
                hs,
                (h, kv),
                (h, kv),
                self.q_view(node, ctx),
                self.rotated(node, ctx),
                masked=not covered,
            )
        parts = [
            _attend_saved(
                node,
                act,
                b * h * count * lq * hs,
                b * kv * count * lk * hs,
                b * kv * count * lk * hs,
                b * h * count * lq * lk,
                lq * lk if band_masked(0 if i == 0 else before, lq, lk, before, after) else 0,
            )
            for i, (_, _, lq, lk, count) in enumerate(self.segments(node, n))
        ]
        return _plus(*parts)

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        _, kv, hs = self.dims(node, ctx)
        if node["causal"]:
            return 2 * kv * hs * _cap(context, int(node["window"]))  # the last `window` keys
        return super().kv_cache(node, ctx, context)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²", "n·w·d")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "SlidingWindowAttention", **self.common_ctor_args(node, ctx), window=node["window"])


class Longformer(LocalKind):
    """Longformer attention (Beltagy et al. 2020): a sliding window plus global tokens, the first g
    positions. Bidirectional (the default in an encoder): query i sees keys j with |i - j| <= w // 2
    or j < g, and the first g queries see every key. Causal: keys i - w + 1 .. i and the first g (the
    global tokens become columns every later query sees, as attention sinks). Computed in blocks of s =
    max(w - 1, 1) (causal) or max(w // 2, 1) queries (n padded to N, a multiple of s), each over its own
    block, the k - 1 neighbours the window reaches (k = 2 causal, 3 bidirectional, 1 when w = 1) and
    the g global keys: ``4 b h hs (N (k s + g) + g n)`` FLOPs (the g n term, the global queries over
    every key, bidirectional only); dense when the window or the global tokens cover the sequence.
    O(n (w + g) d). LoRA adapts ``q``, ``k``, ``v`` and ``o``."""

    name = "longformer"
    extra = (
        Param(
            "window",
            "int",
            min=1,
            doc="local keys: i - window + 1 .. i (causal); window // 2 on each side (bidirectional)",
        ),
        Param("global_tokens", "int", default=1, min=0, doc="the first positions, seen by (and seeing) all"),
    )

    def cells(self, node: Node, n: Any) -> Any:
        before, after = reach(node)
        g = int(node["global_tokens"])
        if _dense(n, max(before + 1, after + 1, g)):
            return n * n
        rows = 0 if node["causal"] else g * n  # global queries over every key
        return band_cells(n, before, after, glob=g) + rows

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        before, after = reach(node)
        g = _cap(n, int(node["global_tokens"]))
        if node["causal"]:  # columns j < g (with j <= i), then the window over keys >= g
            return g * n - g * (g - 1) // 2 + band_pairs(n - g, before, after)
        return n * n - (n - g) * (n - g) + band_pairs(n - g, before, after)  # global rows and columns

    def dense_at(self, node: Node, n: Any) -> bool:
        before, after = reach(node)
        return _dense(n, max(before + 1, after + 1, int(node["global_tokens"])))

    def regime(self, node: Node) -> tuple[int, int]:
        before, after = reach(node)
        return max(before, after, 1), max(before + 1, after + 1, int(node["global_tokens"]))

    def dense_views(self, node: Node, n: Any) -> bool:
        global_rows = not node["causal"] and int(node["global_tokens"]) > 0
        return self.dense_at(node, n) or global_rows

    def core_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """The dense path, or the band with the global keys (and, bidirectional, the global rows)."""
        h, kv, hs = self.dims(node, ctx)
        g, plain = int(node["global_tokens"]), self.q_view(node, ctx)
        if self.dense_at(node, n):
            return _dense_saved(node, act, b, n, hs, (h, kv), (h, kv), plain, self.rotated(node, ctx))
        s = _band_saved(node, act, b, n, h, kv, hs, *reach(node), glob=g)
        if node["causal"] or not g:
            return s
        return _plus(s, _global_rows_saved(node, act, b, n, h, kv, hs, g, plain, self.rotated(node, ctx)))

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        _, kv, hs = self.dims(node, ctx)
        if node["causal"]:  # the global tokens and the last `window` keys
            return 2 * kv * hs * _cap(context, int(node["window"]) + int(node["global_tokens"]))
        return super().kv_cache(node, ctx, context)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²", "n·(w+g)·d")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "LongformerAttention",
            **self.common_ctor_args(node, ctx),
            window=node["window"],
            global_tokens=node["global_tokens"],
        )


class Sparse(LocalKind):
    """Sparse Transformer factorised attention (Child et al. 2019, §4), the "multi-head" option: each
    head uses one of two masks. With stride l: `strided`, A1 = keys i - l .. i (bidirectional |i - j|
    <= l) and A2 = keys j with (i - j) mod l = 0; `fixed`, A1 = keys in i's block of l (floor(j / l) =
    floor(i / l)) and A2 = the c summary keys at the end of every block (j mod l >= l - c) plus i
    itself (so that no query is left without keys). Causal masks add j <= i. A1 takes the first
    ceil(kv / 2) key/value groups (with one key/value head, the first ceil(h / 2) query heads), A2 the
    rest. FLOPs ``4 b hs (h1 C1 + h2 C2)``: strided C1 as `sliding_window` with reach l, C2 = N n_b
    (positions regrouped by i mod l); fixed C1 = N l, C2 = N n_b c (the own key is elementwise); N = n
    rounded up to l, n_b = N / l. O(n l d + n² d / l): O(n √n d) at l = √n. LoRA adapts ``q``, ``k``,
    ``v`` and ``o``."""

    name = "sparse"
    extra = (
        Param(
            "pattern", "enum", default="strided", choices=("strided", "fixed"), doc="the factorisation (§4.2)"
        ),
        Param("stride", "int", min=1, doc="l: the local span, the stride of A2 (strided), the block (fixed)"),
        Param("summary", "int", default=1, min=1, doc="c: summary keys at the end of each block (fixed)"),
    )

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        errs = super().validate_core(node, ctx)
        if int(node["heads"]) < 2:
            errs.append(
                ShapeError(
                    "`sparse` splits its heads between two patterns and needs at least 2",
                    help="set heads = 2 or more",
                    param="heads",
                    code="E009",
                )
            )
        if node["pattern"] == "fixed" and int(node["summary"]) > int(node["stride"]):
            errs.append(
                ShapeError(
                    f"summary ({node['summary']}) exceeds the block of the fixed pattern "
                    f"(stride {node['stride']})",
                    help="the summary keys are the last `summary` of each block: choose summary <= stride",
                    param="summary",
                    code="E009",
                )
            )
        return errs

    def split(self, node: Node) -> tuple[int, int]:
        """(heads on A1, heads on A2): whole key/value groups, or query heads under one kv head."""
        h, kv = int(node["heads"]), int(node["kv_heads"])
        h1 = (h // kv) * _cdiv(kv, 2) if kv > 1 else _cdiv(h, 2)
        return h1, h - h1

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        _, _, hs = self.dims(node, ctx)
        (h1, h2), (c1, c2) = self.split(node), self.head_cells(node, n)
        return 4 * b * hs * (h1 * c1 + h2 * c2)

    def head_cells(self, node: Node, n: Any) -> tuple[Any, Any]:
        """Score entries per head of A1 and of A2."""
        L, c = int(node["stride"]), int(node["summary"])
        nb = _cdiv(n, L)
        if node["pattern"] == "strided":
            c1 = n * n if _dense(n, L + 1) else band_cells(n, L, 0 if node["causal"] else L)
            return c1, nb * L * nb
        return (n * n if _dense(n, L) else nb * L * L), nb * L * nb * c

    def head_pairs(self, node: Node, n: Any) -> tuple[Any, Any]:
        """Pairs kept by A1 and by A2, per head."""
        L, c, causal = int(node["stride"]), int(node["summary"]), bool(node["causal"])
        q, r = n // L, n % L  # whole blocks, and the rest
        if not _concrete(n):
            r = 0
        if node["pattern"] == "strided":
            p1 = band_pairs(n, L, 0 if causal else L)
            # residue classes: r of q + 1 positions, L - r of q; within each, all pairs or j <= i
            if causal:
                return p1, r * (q + 1) * (q + 2) // 2 + (L - r) * q * (q + 1) // 2
            return p1, r * (q + 1) * (q + 1) + (L - r) * q * q
        p1 = q * L * (L + 1) // 2 + r * (r + 1) // 2 if causal else q * L * L + r * r
        e = max(0, r - (L - c)) if _concrete(n) else 0  # summary positions in the last, partial block
        s = q * c + e  # summary positions below n
        if not causal:
            return p1, n * s + (n - s)  # every summary key, and its own key unless a summary
        # sum of the summary positions j, each seen by the n - j queries at or after it
        sum_j = (
            c * L * q * (q - 1) // 2
            + q * (c * (2 * L - c - 1) // 2)
            + e * q * L
            + e * (L - c)
            + e * (e - 1) // 2
        )
        return p1, s * n - sum_j + (n - s)

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        """Kept pairs, averaged over the heads (the two masks differ): a Fraction when not whole."""
        h = int(node["heads"])
        (h1, h2), (p1, p2) = self.split(node), self.head_pairs(node, n)
        total = h1 * p1 + h2 * p2
        if _concrete(total):
            return total // h if total % h == 0 else Fraction(total, h)
        return total / h

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Any) -> Any:
        b, n, _ = self._lengths(ins)
        _, _, hs = self.dims(node, ctx)
        (h1, h2), (p1, p2) = self.split(node), self.head_pairs(node, n)
        return self.projection_flops(node, ctx, ins) + 4 * b * hs * (h1 * p1 + h2 * p2)

    def view_heads(self, node: Node) -> int:
        kv = int(node["kv_heads"])
        return _cdiv(kv, 2) if kv > 1 else 1  # A1's key/value heads

    def dense_at(self, node: Node, n: Any) -> bool:
        """Whether A1 attends densely (A2 never does)."""
        L = int(node["stride"])
        return _dense(n, L + 1 if node["pattern"] == "strided" else L)

    def regime(self, node: Node) -> tuple[int, int]:
        L = int(node["stride"])
        return L, L + 1 if node["pattern"] == "strided" else L

    def core_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """A1 on the first heads, A2 on the rest (``split``: by key/value groups, or with one key/value
        head by query heads, both then reading the same k and v). A1: the dense path (see
        ``_dense_saved`` for when a slice of the groups is kept whole), the band (strided) or the
        gathered own block (fixed). A2 strided (``residues``): positions regrouped by residue, each
        group over itself, copying q, k and v (N = n padded to whole strides, nb of them) under an
        (L, nb, nb) mask. A2 fixed (``summaries``): the padded q, k, v (the own-key product keeps q and
        k, the weights' product v), the summary keys and values the score and value matmuls read
        (copies, unless they are views of the padded k, v that fold), a second copy of q where the
        padded q cannot be viewed for its matmul, and scores over the nb c summaries and the own key
        under an (N, nb c + 1) mask."""
        h, kv, hs = self.dims(node, ctx)
        L, c = int(node["stride"]), int(node["summary"])
        h1, h2 = self.split(node)
        kv1 = _cdiv(kv, 2) if kv > 1 else 1
        kv2 = kv - kv1 if kv > 1 else 1
        strided = node["pattern"] == "strided"
        if self.dense_at(node, n):
            a1 = _dense_saved(
                node, act, b, n, hs, (h, kv), (h1, kv1), self.q_view(node, ctx), self.rotated(node, ctx)
            )
        elif strided:
            a1 = _band_saved(node, act, b, n, h1, kv1, hs, L, 0 if node["causal"] else L)
        else:
            a1 = _gathered_saved(node, act, b, n, h1, kv1, hs, L, 1, 0)
        nb = _cdiv(n, L)
        N = nb * L
        if strided:
            a2 = _attend_saved(
                node, act, b * h2 * N * hs, b * kv2 * N * hs, b * kv2 * N * hs, b * h2 * N * nb, N * nb
            )
        else:
            # with no padding to add, the padded q, k, v keep the (B, n, heads, hs) order of the
            # projection's views (a rotated q, k is head-major); the matmuls then copy what they cannot
            # fold: q (besides the padded q the own-key product keeps), and the summaries when they
            # are a view of the padded k, v (every key a summary, one per block, or one block)
            unpadded = not _concrete(n) or n % L == 0
            rotated = self.rotated(node, ctx)
            fold = _folds(kv2, b)
            q_copy = unpadded and not rotated and not (h2 == kv2 and fold)
            sliced = 1 < c < L and not (_concrete(nb) and nb == 1)  # a slice of the blocks: copied
            ks = b * kv2 * nb * c * hs if sliced or (unpadded and not rotated and not fold) else 0
            vs = b * kv2 * nb * c * hs if sliced or (unpadded and not fold) else 0
            keys = nb * c + 1
            q_el = b * h2 * N * hs * (2 if q_copy else 1)
            a2 = _attend_saved(
                node, act, q_el, b * kv2 * N * hs + ks, b * kv2 * N * hs + vs, b * h2 * N * keys, N * keys
            )
        return _plus(a1, a2)

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """What a decoder keeps, as the lowered module allocates it: with key/value heads of their own,
        A1 heads the last l + 1 keys (strided) or l (fixed: the query's block), A2 heads every key
        (fixed: the summary keys would do; not yet built); one key/value head serving both, every
        key."""
        _, kv, hs = self.dims(node, ctx)
        if not node["causal"] or kv == 1:
            return super().kv_cache(node, ctx, context)
        L = int(node["stride"]) + (node["pattern"] == "strided")
        kv1 = _cdiv(kv, 2)
        return 2 * hs * (kv1 * _cap(context, L) + (kv - kv1) * context)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        if node["pattern"] == "strided":
            return ("n·d²", "n·l·d", "n²·d/l")
        return ("n·d²", "n·l·d", "n²·c·d/l")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "SparseAttention",
            **self.common_ctor_args(node, ctx),
            pattern=node["pattern"],
            stride=node["stride"],
            summary=node["summary"],
        )


@functools.lru_cache(maxsize=64)
def random_blocks(seed: int, rows: int, count: int) -> tuple[tuple[int, ...], ...]:
    """BigBird's random key blocks, for each of `rows` query blocks: `count` draws from range(rows)
    (``BigBirdAttention`` draws the same table, the same way, into its ``rand_blocks`` buffer)."""
    rng = random.Random(seed)
    return tuple(tuple(rng.randrange(rows) for _ in range(count)) for _ in range(rows))


class BigBird(LocalKind):
    """BigBird block-sparse attention (Zaheer et al. 2020, ITC). With blocks of b tokens (n padded to
    N = n_b b), query block j sees `window_blocks` w blocks centred on it (causal: itself and the w - 1
    before it), the first `global_blocks` g blocks, and `random_blocks` r blocks: R[j] mod n_b (causal:
    mod j + 1), R drawn once from `seed` for the longest sequence, `max_len`. Global blocks
    (bidirectional) see every key; a block met twice counts once. FLOPs ``4 b h hs (N ((w + r) b + g b)
    + g b n)`` (the g b n term bidirectional only); dense when n <= b max(1, g). O(n b (w + r + g) d). LoRA
    adapts ``q``, ``k``, ``v`` and ``o``."""

    name = "bigbird"
    extra = (
        Param("block", "int", default=64, min=1, doc="b: tokens per block"),
        Param("window_blocks", "int", default=3, min=1, doc="w: blocks around each query block (odd)"),
        Param("global_blocks", "int", default=2, min=0, doc="g: the first blocks, seen by (and seeing) all"),
        Param("random_blocks", "int", default=3, min=0, doc="r: random blocks per query block"),
        Param("seed", "int", default=0, min=0, doc="seed of the random blocks (fixed at construction)"),
        Param("max_len", "int", default=4096, min=1, doc="longest sequence (the random table's length)"),
    )

    #: query blocks the random table may have: it is drawn (in Python) and kept for max_len / block
    MAX_ROWS = 1 << 14

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        errs = super().validate_core(node, ctx)
        w = int(node["window_blocks"])
        rows = _cdiv(int(node["max_len"]), int(node["block"]))
        if rows > self.MAX_ROWS:
            errs.append(
                ShapeError(
                    f"max_len / block is {rows:,} query blocks; BigBird's random table has at most "
                    f"{self.MAX_ROWS:,}",
                    help="the table is drawn for every block of the longest sequence: lower max_len or "
                    "raise block",
                    param="max_len",
                    code="E009",
                )
            )
        if not node["causal"] and w % 2 == 0:
            errs.append(
                ShapeError(
                    f"window_blocks ({w}) must be odd without a causal mask",
                    help=f"the window is the query's block and as many on each side: use {w - 1} or {w + 1}",
                    param="window_blocks",
                    code="E009",
                )
            )
        return errs

    def cells(self, node: Node, n: Any) -> Any:
        b, w, g, r = (int(node[p]) for p in ("block", "window_blocks", "global_blocks", "random_blocks"))
        if _dense(n, b * max(1, g)):
            return n * n
        rows = 0 if node["causal"] else g * b * n  # global queries over every key
        return _cdiv(n, b) * b * ((w + r) * b + g * b) + rows

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        b, w, g, r = (int(node[p]) for p in ("block", "window_blocks", "global_blocks", "random_blocks"))
        causal, G = bool(node["causal"]), g * b
        if not _concrete(n):  # nominal: every block distinct and whole
            return n * (w + r) * b + G * n + (0 if causal else G * n)
        if n <= b * max(1, g):
            return n * (n + 1) // 2 if causal else n * n
        nb, rows = _cdiv(n, b), _cdiv(int(node["max_len"]), b)
        table = random_blocks(int(node["seed"]), rows, r)
        half = (w - 1) // 2
        total = G * (G + 1) // 2 if causal else G * n  # the global queries
        for j in range(g, nb):
            q = min(b, n - j * b)  # queries in block j
            if causal:
                seen = set(range(max(g, j - w + 1), j + 1)) | {x % (j + 1) for x in table[j]}
                earlier = sum(1 for x in seen if g <= x < j)
                total += q * G + q * b * earlier + q * (q + 1) // 2
            else:
                seen = set(range(max(g, j - half), min(j + half, nb - 1) + 1)) | {x % nb for x in table[j]}
                total += q * (G + sum(min(b, n - x * b) for x in seen if x >= g))
        return total

    def dense_at(self, node: Node, n: Any) -> bool:
        return _dense(n, int(node["block"]) * max(1, int(node["global_blocks"])))

    def regime(self, node: Node) -> tuple[int, int]:
        b = int(node["block"])
        return b, b * max(1, int(node["global_blocks"]))

    def dense_views(self, node: Node, n: Any) -> bool:
        return self.dense_at(node, n) or (not node["causal"] and int(node["global_blocks"]) > 0)

    def core_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """The dense path, or the gathered blocks (window and random ones, and the global keys) and,
        bidirectional, the global rows."""
        h, kv, hs = self.dims(node, ctx)
        blk, w, g, r = (int(node[p]) for p in ("block", "window_blocks", "global_blocks", "random_blocks"))
        plain = self.q_view(node, ctx)
        if self.dense_at(node, n):
            return _dense_saved(node, act, b, n, hs, (h, kv), (h, kv), plain, self.rotated(node, ctx))
        s = _gathered_saved(node, act, b, n, h, kv, hs, blk, w + r, g * blk)
        if node["causal"] or not g:
            return s
        return _plus(
            s, _global_rows_saved(node, act, b, n, h, kv, hs, g * blk, plain, self.rotated(node, ctx))
        )

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        limits = [int(node["max_len"]), super().max_seq_len(node, ctx)]
        return min(x for x in limits if x is not None)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²", "n·b·(w+r+g)·d")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "BigBirdAttention",
            **self.common_ctor_args(node, ctx),
            block=node["block"],
            window_blocks=node["window_blocks"],
            global_blocks=node["global_blocks"],
            random_blocks=node["random_blocks"],
            seed=node["seed"],
            max_len=node["max_len"],
        )


KINDS: tuple[Kind, ...] = (SlidingWindow(), Sparse(), Longformer(), BigBird())
