"""PyTorch modules for windowed and sparse attention (imported only when a model is built or emitted).

Nothing here builds a T x T score or mask past the lengths a pattern covers. Queries are cut into blocks
(the last one padded with zero rows), each query block meets a few key blocks gathered for it (plus, for
Longformer and BigBird, the global keys shared by every block), and a boolean mask over (block, query,
key) keeps the pairs the pattern allows. Time and memory grow as T times the keys one block meets. The
query heads that share a key/value head (GQA) are folded into the query rows of one matmul, so keys are
never repeated per head. The sliding window instead runs SDPA on segments of its band
(``window_segments``: dense, or a head, blocks over overlapping views of k and v, and a tail), keeping
what dense SDPA keeps.
"""

import random

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.attention_nn import Attention, KVCache
from archdsl.kinds.local import band_masked, window_block, window_segments


def pad_seq(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero rows after the sequence (dim -2) up to `length`."""
    return F.pad(x, (0, 0, 0, length - x.size(-2)))


class LocalAttention(Attention):
    """Base of the windowed and sparse modules: `grouped` sees q grouped by key/value head,
    (B, nkv, g, T, hs) with g = n_heads / n_kv_heads, and k, v as (B, nkv, T, hs)."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        nh = q.size(1)
        q = q.unflatten(1, (self.n_kv_heads, nh // self.n_kv_heads))  # (B, nkv, g, T, hs)
        return self.grouped(q, k, v).flatten(1, 2)  # (B, nh, T, hs)

    def grouped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The pattern, on q (B, nkv, g, T, hs) and k, v (B, nkv, T, hs); returns (B, nkv, g, T, hs)."""
        raise NotImplementedError

    def weights(self, att: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """Scaled scores -> attention weights: soft-cap, mask, softmax, dropout."""
        if self.softcap:
            att = self.softcap * torch.tanh(att / self.softcap)
        if allowed is not None:
            att = att.masked_fill(~allowed, float("-inf"))
        return F.dropout(att.softmax(dim=-1), p=self.dropout, training=self.training)

    def blocks(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None
    ) -> torch.Tensor:
        """Attention within independent groups (the `lead` dims): q (B, nkv, g, *lead, Lq, hs) over
        k, v (B, nkv, *lead, Lk, hs), keeping the pairs `allowed` (*lead, Lq, Lk) marks. The g query
        heads of a key/value head share one matmul: 4 * g * Lq * Lk * hs FLOPs per group."""
        g, Lq = q.size(2), q.size(-2)
        q = q.movedim(2, -3).flatten(-3, -2)  # (B, nkv, *lead, g * Lq, hs)
        att = (q @ k.transpose(-2, -1)) * self.scale  # (B, nkv, *lead, g * Lq, Lk)
        att = att.unflatten(-2, (g, Lq))  # (B, nkv, *lead, g, Lq, Lk)
        att = self.weights(att, allowed.unsqueeze(-3) if allowed is not None else None)
        y = att.flatten(-3, -2) @ v  # (B, nkv, *lead, g * Lq, hs)
        return y.unflatten(-2, (g, Lq)).movedim(-3, 2)  # (B, nkv, g, *lead, Lq, hs)

    def dense(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Every pair (under the causal mask): for sequences the pattern sees whole."""
        T = q.size(-2)
        causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril() if self.causal else None
        return self.blocks(q, k, v, causal)

    def gathered(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        size: int,
        idx: torch.Tensor,
        ok: torch.Tensor | None = None,
        reach: tuple[int, int] | None = None,
        glob: int = 0,
    ) -> torch.Tensor:
        """Block-sparse attention. Queries are cut into nb blocks of `size` (zero-padded to
        N = nb * size); query block j meets the key blocks idx[j] (idx: (nb, S); those off the sequence
        or with ok[j] false are masked), then the first `glob` keys, shared by every block. Query i keeps
        key p when p is a real position (or i is padding), p >= glob (those keys are the global
        columns), p <= i under a causal mask and, with reach = (before, after), i - before <= p <= i +
        after. Cost: 4 * N * (S * size + glob) * hs FLOPs per head."""
        T, nb = q.size(-2), idx.size(0)
        N, dev = nb * size, q.device
        qb = pad_seq(q, N).unflatten(-2, (nb, size))  # (B, nkv, g, nb, size, hs)
        src = idx.clamp(0, nb - 1)
        kb = pad_seq(k, N).unflatten(-2, (nb, size))[:, :, src].flatten(-3, -2)  # (B, nkv, nb, S*size, hs)
        vb = pad_seq(v, N).unflatten(-2, (nb, size))[:, :, src].flatten(-3, -2)  # (B, nkv, nb, S*size, hs)
        offs = torch.arange(size, device=dev)
        i = (torch.arange(nb, device=dev)[:, None] * size + offs)[:, :, None]  # (nb, size, 1) query positions
        p = (idx[:, :, None] * size + offs).flatten(1)[:, None, :]  # (nb, 1, S*size) key positions
        valid = (idx >= 0) & (idx < nb)  # (nb, S): blocks on the sequence
        if ok is not None:
            valid = valid & ok
        allowed = valid.repeat_interleave(size, dim=1)[:, None, :] & (p >= glob) & ((p < T) | (i >= T))
        if self.causal:
            allowed = allowed & (p <= i)
        if reach is not None:
            allowed = allowed & (p >= i - reach[0]) & (p <= i + reach[1])  # (nb, size, S*size)
        if glob:  # the global keys, appended to every block's keys
            kb = torch.cat([kb, k[:, :, None, :glob].expand(-1, -1, nb, -1, -1)], dim=-2)
            vb = torch.cat([vb, v[:, :, None, :glob].expand(-1, -1, nb, -1, -1)], dim=-2)
            pg = torch.arange(glob, device=dev)
            seen = (pg <= i) if self.causal else torch.ones(nb, size, glob, dtype=torch.bool, device=dev)
            allowed = torch.cat([allowed, seen.expand(nb, size, glob)], dim=-1)  # (nb, size, S*size + glob)
        y = self.blocks(qb, kb, vb, allowed)  # (B, nkv, g, nb, size, hs)
        return y.flatten(-3, -2)[..., :T, :]  # (B, nkv, g, T, hs)

    def band(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, before: int, after: int, glob: int = 0
    ) -> torch.Tensor:
        """Query i over keys i - before .. i + after: blocks of size max(before, after, 1) meet their own
        block and the neighbours the reach touches (one on each side at most)."""
        size = max(before, after, 1)
        nb = -(-q.size(-2) // size)
        near = torch.arange(-int(before > 0), int(after > 0) + 1, device=q.device)  # block offsets
        idx = torch.arange(nb, device=q.device)[:, None] + near  # (nb, 1 to 3)
        return self.gathered(q, k, v, size, idx, reach=(before, after), glob=glob)

    def global_rows(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, y: torch.Tensor, n: int
    ) -> torch.Tensor:
        """Replace the outputs of the first n queries by their attention over every key (bidirectional
        global tokens): 4 * n * T * hs FLOPs per head."""
        return torch.cat([self.blocks(q[..., :n, :], k, v, None), y[..., n:, :]], dim=-2)


def windows(x: torch.Tensor, start: int, size: int, step: int, count: int) -> torch.Tensor:
    """`count` windows of `size` rows (dim -2) from `start`, each `step` after the last, as a view
    (overlapping where size > step): (..., T, hs) -> (..., count, size, hs)."""
    x = x[..., start : start + (count - 1) * step + size, :]
    return x.unfold(-2, size, step).transpose(-1, -2)


def band_allowed(
    q0: int, k0: int, lq: int, lk: int, before: int, after: int, device: torch.device
) -> torch.Tensor | None:
    """(lq, lk) bool: query q0 + r sees key k0 + c when -before <= (k0 + c) - (q0 + r) <= after; None
    when it sees them all."""
    if not band_masked(q0 - k0, lq, lk, before, after):
        return None
    d = (k0 + torch.arange(lk, device=device)) - (q0 + torch.arange(lq, device=device))[:, None]
    return (d >= -before) & (d <= after)


def band_bias(
    segment: tuple[int, int, int, int, int], reach: tuple[int, int], q: torch.Tensor
) -> tuple[bool, torch.Tensor | None]:
    """SDPA's mask for a segment: (is_causal, additive mask in q's dtype or None). A segment whose band
    is the causal triangle (the causal head) takes SDPA's causal mask, which skips what it hides."""
    q0, k0, lq, lk, _ = segment
    before, after = reach
    if after == 0 and q0 == k0 and lq == lk and lq - 1 <= before:
        return True, None
    if not band_masked(q0 - k0, lq, lk, before, after):
        return False, None
    d = q0 - k0  # query r, key c kept when -before <= c - r - d <= after: -inf above and below the band
    hidden = torch.full((lq, lk), float("-inf"), dtype=q.dtype, device=q.device)
    return False, hidden.triu(d + after + 1) + hidden.tril(d - before - 1)


def segment_calls(
    segment: tuple[int, int, int, int, int], batch: int
) -> list[tuple[tuple[int, int, int, int, int], int | None]]:
    """The SDPA calls of one segment: (part, b) — a segment of one block in one call for the whole
    batch (b None), else for each batch element b its blocks, at most 2,048 queries' worth a call (the
    segment cut to those blocks: a call's output, copied into the layer's, then never outgrows the
    sequence, and the forward's peak stays dense SDPA's)."""
    q0, k0, lq, lk, count = segment
    if count == 1:
        return [(segment, None)]
    per = max(1, 2048 // lq)
    if count <= per:  # (under torch.compile, a guard rather than a loop over a symbolic count)
        return [(segment, b) for b in range(batch)]
    parts = [(q0 + j * lq, k0 + j * lq, lq, lk, min(per, count - j)) for j in range(0, count, per)]
    return [(part, b) for b in range(batch) for part in parts]


def call_views(x: torch.Tensor, b: int | None, start: int, size: int, step: int, count: int) -> torch.Tensor:
    """A call's rows of x (B, H, T, hs) as SDPA takes them: (B, H, size, hs) for one block of the whole
    batch, or (count, H, size, hs), the blocks of batch element b — views, never copies."""
    if b is None:
        return x[:, :, start : start + size]
    return windows(x[b], start, size, step, count).transpose(0, 1)


class BandAttention(torch.autograd.Function):
    """Attention over a band of reach (before, after), segment by segment (``window_segments`` with
    blocks of ``block``), with SDPA's CPU flash kernel (``segment_calls``). q (B, nh, T, hs), k and v
    (B, nkv, T, hs), read as views (blocks of one batch element are a batch of overlapping windows);
    the output (B, nh, T, hs) is laid out (B, T, nh, hs), as the out projection reads it. Backward
    keeps what dense SDPA keeps — q, k, v, the output and the log-sum-exp — and rebuilds the masks."""

    @staticmethod
    def forward(ctx, q, k, v, reach, block, scale):  # type: ignore[no-untyped-def]
        B, nh, T, hs = q.shape
        y = q.new_empty(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs), laid out (B, T, nh, hs)
        lse = None
        for seg in window_segments(T, *reach, block):
            causal, bias = band_bias(seg, reach, q)
            for (q0, k0, lq, lk, count), b in segment_calls(seg, B):
                out, m = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    call_views(q, b, q0, lq, lq, count),
                    call_views(k, b, k0, lk, lq, count),
                    call_views(v, b, k0, lk, lq, count),
                    0.0,
                    causal,
                    attn_mask=bias,
                    scale=scale,
                )
                if lse is None:
                    lse = m.new_empty(B, nh, T, 1)  # (fp32; fp64 for fp64 inputs)
                call_views(y, b, q0, lq, lq, count).copy_(out)
                call_views(lse, b, q0, lq, lq, count).copy_(m.unsqueeze(-1))
        ctx.save_for_backward(q, k, v, y, lse)
        ctx.reach, ctx.block, ctx.scale = reach, block, scale
        return y

    @staticmethod
    def backward(ctx, gy):  # type: ignore[no-untyped-def]
        q, k, v, y, lse = ctx.saved_tensors
        gq, gk, gv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for seg in window_segments(q.size(-2), *ctx.reach, ctx.block):
            causal, bias = band_bias(seg, ctx.reach, q)
            for (q0, k0, lq, lk, count), b in segment_calls(seg, q.size(0)):
                dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                    call_views(gy, b, q0, lq, lq, count),
                    call_views(q, b, q0, lq, lq, count),
                    call_views(k, b, k0, lk, lq, count),
                    call_views(v, b, k0, lk, lq, count),
                    call_views(y, b, q0, lq, lq, count),
                    call_views(lse, b, q0, lq, lq, count).squeeze(-1),
                    0.0,
                    causal,
                    attn_mask=bias,
                    scale=ctx.scale,
                )
                call_views(gq, b, q0, lq, lq, count).copy_(dq)
                if b is None:
                    gk[:, :, k0 : k0 + lk] += dk
                    gv[:, :, k0 : k0 + lk] += dv
                else:  # overlapping windows: their gradients add up
                    at = torch.arange(count, device=q.device)[:, None] * lq + torch.arange(
                        lk, device=q.device
                    )
                    at = (k0 + at).flatten()  # (count * lk,) the key of each window row
                    gk[b].index_add_(1, at, dk.transpose(0, 1).flatten(1, 2))
                    gv[b].index_add_(1, at, dv.transpose(0, 1).flatten(1, 2))
        return gq, gk, gv, None, None, None


class SlidingWindowAttention(LocalAttention):
    """Sliding-window attention: causal, query i sees keys i - window + 1 .. i; bidirectional, keys
    with |i - j| <= window // 2. The kernel follows the length (``window_segments``): dense SDPA while
    the window covers the sequence or nearly; else SDPA on a causal head, on blocks of queries each
    over the keys its window reaches, and on a tail — time and memory linear in T, never more than
    dense. Soft-capping, dropout in training and ``materialize`` take the same segments with explicit
    products."""

    def __init__(self, window: int, **kwargs):
        super().__init__(**kwargs)
        self.window = window
        self.reach = (window - 1, 0) if self.causal else (window // 2, window // 2)
        self.block = window_block(*self.reach, explicit=bool(self.softcap or self.dropout))

    def visible(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        if self.causal:
            return (j <= i) & (i - j < self.window)
        return (i - j).abs() <= self.window // 2

    def cache_length(self, max_len: int) -> int:
        """A causal window needs only its last `window` keys: a rolling cache."""
        return min(self.window, max_len) if self.causal else max_len

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.materialize or self.softcap or (self.dropout and self.training):
            return super().attend(q, k, v)  # explicit products (grouped)
        before, after = self.reach
        if q.size(-2) <= (before if self.causal else min(before, after)) + 1:  # the window covers it all
            return F.scaled_dot_product_attention(
                q, k, v, is_causal=self.causal, scale=self.scale, enable_gqa=self.n_kv_heads != self.n_heads
            )
        if q.device.type == "cpu":
            return BandAttention.apply(q, k, v, self.reach, self.block, self.scale)
        segments = window_segments(q.size(-2), *self.reach, self.block)
        return torch.cat([self.sdpa(q, k, v, seg) for seg in segments], dim=2)  # (B, nh, T, hs)

    def sdpa(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seg: tuple[int, int, int, int, int]
    ) -> torch.Tensor:
        """One segment through F.scaled_dot_product_attention, its blocks copied into the batch (on
        devices without SDPA's CPU kernel; the output, concatenated, is a copy more than on CPU)."""
        q0, k0, lq, lk, count = seg
        causal, bias = band_bias(seg, self.reach, q)
        qs, ks, vs = (
            windows(x, s, n, lq, count).movedim(2, 1) for x, s, n in ((q, q0, lq), (k, k0, lk), (v, k0, lk))
        )
        y = F.scaled_dot_product_attention(
            qs.flatten(0, 1),
            ks.flatten(0, 1),
            vs.flatten(0, 1),
            attn_mask=bias,
            is_causal=causal,
            scale=self.scale,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )  # (B * count, nh, lq, hs)
        return y.unflatten(0, (q.size(0), count)).movedim(1, 2).flatten(2, 3)  # (B, nh, count * lq, hs)

    def grouped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Explicit products over the same segments: dense with the band's mask, or each segment's
        queries, keys and values copied into blocks."""
        T, (before, after) = q.size(-2), self.reach
        segments = window_segments(T, before, after, self.block)
        if len(segments) == 1:
            return self.blocks(q, k, v, band_allowed(0, 0, T, T, before, after, q.device))
        ys = []
        for q0, k0, lq, lk, count in segments:
            qs, ks, vs = (
                windows(x, s, n, lq, count).clone(memory_format=torch.contiguous_format)
                for x, s, n in ((q, q0, lq), (k, k0, lk), (v, k0, lk))
            )  # (B, nkv, g, count, lq, hs), (B, nkv, count, lk, hs) twice
            allowed = band_allowed(q0, k0, lq, lk, before, after, q.device)
            ys.append(self.blocks(qs, ks, vs, allowed).flatten(-3, -2))  # (B, nkv, g, count * lq, hs)
        return torch.cat(ys, dim=-2)  # (B, nkv, g, T, hs)


class LongformerAttention(LocalAttention):
    """Longformer: a sliding window plus the first `global_tokens` positions, which every query sees
    and which (bidirectional) see every key. Causal: a causal window plus the first tokens as columns."""

    def __init__(self, window: int, global_tokens: int, **kwargs):
        super().__init__(**kwargs)
        self.window, self.global_tokens = window, global_tokens

    def visible(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        G = self.global_tokens
        if self.causal:
            return (j <= i) & ((i - j < self.window) | (j < G))
        return ((i - j).abs() <= self.window // 2) | (j < G) | (i < G)

    def cache_length(self, max_len: int) -> int:
        """Causal: the global tokens and the last `window` keys (a rolling cache with a sink)."""
        return min(self.global_tokens + self.window, max_len) if self.causal else max_len

    def cache_sink(self) -> int:
        return self.global_tokens

    def grouped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        G = self.global_tokens
        before, after = (self.window - 1, 0) if self.causal else (self.window // 2, self.window // 2)
        if q.size(-2) <= max(before + 1, after + 1, G):
            return self.dense(q, k, v)
        y = self.band(q, k, v, before, after, glob=G)
        return y if self.causal or not G else self.global_rows(q, k, v, y, G)


class SparseAttention(LocalAttention):
    """Sparse Transformer factorised attention (Child et al. 2019), its heads split between two
    patterns (the first half of the key/value groups, or of the query heads when there is one
    key/value head, takes the first). stride L, summary c:

    strided: A1 = keys i - L .. i (bidirectional: |i - j| <= L); A2 = keys j with (i - j) mod L = 0.
    fixed:   A1 = keys in i's block of L (floor(j / L) = floor(i / L)); A2 = the summary keys,
             j mod L >= L - c, and i itself (so that no query is left without keys).
    Causal masks add j <= i."""

    def __init__(self, pattern: str, stride: int, summary: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.layout, self.stride, self.summary = pattern, stride, summary

    def patterns(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The A1 and A2 patterns, (T, S) each, from positions i (T, 1) and j (1, S)."""
        L, c = self.stride, self.summary
        if self.layout == "strided":
            a1 = (i - j <= L) & (j - i <= (0 if self.causal else L))
            a2 = torch.remainder(i - j, L) == 0
        else:
            a1 = torch.div(j, L, rounding_mode="floor") == torch.div(i, L, rounding_mode="floor")
            a2 = (torch.remainder(j, L) >= L - c) | (j == i)
        if self.causal:
            a1, a2 = a1 & (j <= i), a2 & (j <= i)
        return a1, a2

    def visible(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """(nh, T, S): the A1 pattern for the first heads, A2 for the rest (as `grouped` splits them)."""
        a1, a2 = self.patterns(i, j)
        g = self.n_heads // self.n_kv_heads
        head = torch.arange(self.n_heads, device=i.device)
        first = head // g < (self.n_kv_heads + 1) // 2 if self.n_kv_heads > 1 else head < (g + 1) // 2
        return torch.where(first[:, None, None], a1, a2)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        """A decoder whose two patterns have key/value heads of their own keeps two caches: the A1
        heads' the last L + 1 keys (strided) or L (fixed: the query's block) in a rolling cache, the A2
        heads' every key. With one key/value head (serving both patterns) one cache of every key."""
        if not self.causal or self.n_kv_heads == 1:
            return super().setup_cache(batch, max_len, dtype, device)
        c = (self.n_kv_heads + 1) // 2
        near = min(self.stride + (self.layout == "strided"), max_len)
        kw = {"dtype": dtype, "device": device}
        self.cache = nn.ModuleList(
            [
                KVCache(batch, c, near, self.head_dim, near < max_len, **kw),
                KVCache(batch, self.n_kv_heads - c, max_len, self.head_dim, False, **kw),
            ]
        )
        return None

    def cached(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        if not isinstance(self.cache, nn.ModuleList):
            return super().cached(q, k, v, pos, mask)
        if self.pos is not None:
            q, k = self.pos.rotate(q, k, pos, pos)  # keys are cached turned
        c = self.cache[0].k.size(1)  # key/value heads of A1; their query heads come first
        qs = q.split(
            [c * (self.n_heads // self.n_kv_heads), q.size(1) - c * (self.n_heads // self.n_kv_heads)], 1
        )
        ks, vs = k.split([c, k.size(1) - c], 1), v.split([c, v.size(1) - c], 1)
        ys = []
        for which, cache in enumerate(self.cache):
            keys, values, kpos = cache.extend(pos, ks[which], vs[which])
            pattern = self.patterns(pos[:, None], kpos[None, :])[which]  # A1, then A2
            ys.append(self.masked(qs[which], keys.to(q.dtype), values.to(q.dtype), pos, kpos, mask, pattern))
        return torch.cat(ys, dim=1)  # (B, nh, T, hs)

    def grouped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        kv, g = q.size(1), q.size(2)
        if kv > 1:  # split the key/value groups
            c = (kv + 1) // 2
            y1 = self.local(q[:, :c], k[:, :c], v[:, :c])
            return torch.cat([y1, self.far(q[:, c:], k[:, c:], v[:, c:])], dim=1)
        c = (g + 1) // 2  # one key/value head: split its query heads
        return torch.cat([self.local(q[:, :, :c], k, v), self.far(q[:, :, c:], k, v)], dim=2)

    def local(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A1: the previous L keys (strided) or the query's own block (fixed)."""
        T, L = q.size(-2), self.stride
        if self.layout == "strided":
            if T <= L + 1:
                return self.dense(q, k, v)
            return self.band(q, k, v, L, 0 if self.causal else L)
        if T <= L:
            return self.dense(q, k, v)
        nb = -(-T // L)
        return self.gathered(q, k, v, L, torch.arange(nb, device=q.device)[:, None])

    def far(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.residues(q, k, v) if self.layout == "strided" else self.summaries(q, k, v)

    def residues(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Strided A2: positions regrouped by i mod L; each group of nb = ceil(T / L) positions attends
        within itself, 4 * N * nb * hs FLOPs per head (N = nb * L)."""
        T, L = q.size(-2), self.stride
        nb = -(-T // L)
        N = nb * L
        # position i = r * L + s goes to [s, r]: one group per residue s
        qr = pad_seq(q, N).unflatten(-2, (nb, L)).transpose(-3, -2)  # (B, nkv, g, L, nb, hs)
        kr = pad_seq(k, N).unflatten(-2, (nb, L)).transpose(-3, -2)  # (B, nkv, L, nb, hs)
        vr = pad_seq(v, N).unflatten(-2, (nb, L)).transpose(-3, -2)  # (B, nkv, L, nb, hs)
        pos = torch.arange(N, device=q.device).view(nb, L).t()  # (L, nb)
        i, p = pos[:, :, None], pos[:, None, :]
        allowed = (p <= i) if self.causal else (p < T) | (i >= T)  # (L, nb, nb)
        y = self.blocks(qr, kr, vr, allowed)  # (B, nkv, g, L, nb, hs)
        return y.transpose(-3, -2).flatten(-3, -2)[..., :T, :]  # (B, nkv, g, T, hs)

    def summaries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Fixed A2: every query over the last c keys of each block (nb * c of them, a matmul:
        4 * N * nb * c * hs FLOPs per head) and over its own key (an elementwise product)."""
        T, L, c = q.size(-2), self.stride, self.summary
        nb = -(-T // L)
        N, g = nb * L, q.size(2)
        q, k, v = pad_seq(q, N), pad_seq(k, N), pad_seq(v, N)  # (B, nkv, g, N, hs), (B, nkv, N, hs)
        ks = k.unflatten(-2, (nb, L))[..., L - c :, :].flatten(-3, -2)  # (B, nkv, nb*c, hs)
        vs = v.unflatten(-2, (nb, L))[..., L - c :, :].flatten(-3, -2)  # (B, nkv, nb*c, hs)
        i = torch.arange(N, device=q.device)[:, None]  # (N, 1)
        p = (
            torch.arange(nb, device=q.device)[:, None] * L + torch.arange(L - c, L, device=q.device)
        ).flatten()
        seen = (p <= i) if self.causal else (p < T) | (i >= T)  # (N, nb*c)
        own = i % L < L - c  # (N, 1): its own key, unless that is a summary already
        att = (q.flatten(2, 3) @ ks.transpose(-2, -1)).unflatten(2, (g, N))  # (B, nkv, g, N, nb*c)
        att_own = (q * k.unsqueeze(2)).sum(-1, keepdim=True)  # (B, nkv, g, N, 1)
        w = self.weights(torch.cat([att, att_own], dim=-1) * self.scale, torch.cat([seen, own], dim=-1))
        y = (w[..., :-1].flatten(2, 3) @ vs).unflatten(2, (g, N)) + w[..., -1:] * v.unsqueeze(2)
        return y[..., :T, :]  # (B, nkv, g, T, hs)


class BigBirdAttention(LocalAttention):
    """BigBird block-sparse attention (Zaheer et al. 2020, ITC). With blocks of `block` tokens, query
    block j sees `window_blocks` blocks around it (causal: itself and the window_blocks - 1 before
    it), the first `global_blocks` blocks, and `random_blocks` blocks drawn once, from `seed`, for the
    longest sequence (`rand_blocks`, a buffer): at nb blocks, R[j] mod nb (causal: mod j + 1). Global
    blocks (bidirectional) see every key. Repeated and overlapping blocks count once."""

    def __init__(
        self,
        block: int,
        window_blocks: int,
        global_blocks: int,
        random_blocks: int,
        seed: int,
        max_len: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.block, self.window_blocks, self.global_blocks = block, window_blocks, global_blocks
        rows = -(-max_len // block)
        rng = random.Random(seed)
        table = [[rng.randrange(rows) for _ in range(random_blocks)] for _ in range(rows)]
        self.register_buffer("rand_blocks", torch.tensor(table, dtype=torch.long).view(rows, random_blocks))

    def visible(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """The pattern `grouped` computes, for a whole sequence of S = j.size(-1) positions (the
        random blocks depend on how many blocks there are)."""
        S, b, gb, wb = j.size(-1), self.block, self.global_blocks, self.window_blocks
        if S <= b * max(1, gb):
            return super().visible(i, j)
        nb = -(-S // b)
        bi, bj = (
            torch.div(i, b, rounding_mode="floor"),
            torch.div(j, b, rounding_mode="floor"),
        )  # (T, 1), (1, S)
        rows = torch.arange(nb, device=i.device)[:, None]
        if self.causal:
            rnd = torch.remainder(self.rand_blocks[:nb], rows + 1)  # (nb, R)
            near = (bi - bj >= 0) & (bi - bj < wb)
        else:
            rnd = torch.remainder(self.rand_blocks[:nb], nb)
            near = (bi - bj).abs() <= (wb - 1) // 2
        drawn = (rnd[bi.clamp(0, nb - 1)[:, 0]][:, None, :] == bj[0][None, :, None]).any(-1)  # (T, S)
        seen = near | (bj < gb) | drawn
        return seen & (j <= i) if self.causal else seen | (bi < gb)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        raise NotImplementedError(
            "BigBird attention has no KV cache yet: its random blocks depend on the sequence's length, "
            "so decoding token by token would change them; generate with full forwards instead"
        )

    def grouped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, b, gb = q.size(-2), self.block, self.global_blocks
        if T <= b * max(1, gb):  # one block, or only global ones: every pair
            return self.dense(q, k, v)
        nb = -(-T // b)
        if nb > self.rand_blocks.size(0):
            raise ValueError(f"sequence of {T} is longer than max_len ({self.rand_blocks.size(0) * b})")
        j = torch.arange(nb, device=q.device)[:, None]  # (nb, 1)
        if self.causal:
            win = j + torch.arange(1 - self.window_blocks, 1, device=q.device)  # itself and those before
            rnd = self.rand_blocks[:nb] % (j + 1)
            near = j - rnd < self.window_blocks
        else:
            half = (self.window_blocks - 1) // 2
            win = j + torch.arange(-half, half + 1, device=q.device)
            rnd = self.rand_blocks[:nb] % nb
            near = (rnd - j).abs() <= half
        again = (rnd[:, :, None] == rnd[:, None, :]).tril(-1).any(-1)  # drawn already for this block
        ok = torch.cat([win >= gb, (rnd >= gb) & ~near & ~again], dim=1)  # global blocks are columns
        y = self.gathered(q, k, v, b, torch.cat([win, rnd], dim=1), ok, glob=gb * b)
        return y if self.causal or not gb else self.global_rows(q, k, v, y, gb * b)
