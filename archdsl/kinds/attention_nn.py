"""PyTorch modules for attention kinds (imported only when a model is built or emitted)."""

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.peft_nn import linear


class KVCache(nn.Module):
    """Keys and values of the positions decoded so far, preallocated (static shapes, so a decode step
    compiles once): (B, n_kv_heads, L, hs) each. A full cache (L = the longest sequence) keeps position
    p in slot p. A rolling cache keeps the first ``sink`` positions for good (Longformer's global
    tokens) and position p >= sink in slot sink + (p - sink) mod W, W = L - sink (a sliding window),
    overwriting what the window no longer sees. Which position a slot holds follows from the last
    position written, so nothing else is stored: the cache is exactly the bytes the report counts."""

    def __init__(
        self, batch: int, n_kv_heads: int, length: int, head_dim: int, rolling: bool, sink: int = 0, **factory
    ):
        super().__init__()
        shape = (batch, n_kv_heads, length, head_dim)
        self.register_buffer("k", torch.zeros(shape, **factory), persistent=False)
        self.register_buffer("v", torch.zeros(shape, **factory), persistent=False)
        self.length, self.rolling, self.sink = length, rolling, sink

    def positions(self, last: torch.Tensor) -> torch.Tensor:
        """(L,) the position each slot holds once ``last`` (a 0-d tensor) is the latest written;
        negative for slots not written yet."""
        slot = torch.arange(self.length, device=self.k.device)
        fixed = torch.where(slot <= last, slot, -1)
        if not self.rolling:
            return fixed
        s = self.sink
        rolled = last - torch.remainder(last - slot, self.length - s)  # p = slot mod W, the latest
        return torch.where(slot < s, fixed, torch.where(rolled >= s, rolled, -1))

    def extend(
        self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Add the keys and values (B, nkv, T, hs) of positions ``pos`` (T,); return the keys and values
        the chunk's queries may read and their positions (negative: an empty slot). One new token (or
        a full cache) is written first and the cache alone is read; a longer chunk into a rolling cache
        reads the old slots and the chunk, then is written (it may overwrite what its first queries see)."""
        if not self.rolling or k.size(2) == 1:
            self.write(pos, k, v)
            return self.k, self.v, self.positions(pos[-1])
        kpos = torch.cat([self.positions(pos[0] - 1), pos])
        keys = torch.cat([self.k, k.to(self.k.dtype)], 2)
        values = torch.cat([self.v, v.to(self.v.dtype)], 2)
        self.write(pos, k, v)
        return keys, values, kpos

    def write(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store (B, nkv, T, hs) keys and values of positions ``pos`` (T,); a rolling cache keeps those
        it holds (the sink and the last W)."""
        if self.rolling:
            w = self.length - self.sink
            if k.size(2) > w and not self.sink:  # a long chunk: only its last W stay
                pos, k, v = pos[-w:], k[:, :, -w:], v[:, :, -w:]
            elif k.size(2) > w:  # ... and its positions in the sink
                keep = (pos < self.sink) | (pos > pos[-1] - w)
                pos, k, v = pos[keep], k[:, :, keep], v[:, :, keep]
            slot = torch.where(pos < self.sink, pos, self.sink + torch.remainder(pos - self.sink, w))
        else:
            slot = pos
        self.k.index_copy_(2, slot, k.to(self.k.dtype))
        self.v.index_copy_(2, slot, v.to(self.v.dtype))


class RecurrentState(nn.Module):
    """A recurrent mixer's decoding state: named buffers of fixed shapes, zeros before the first token
    (static shapes, so a decode step compiles once). Its size does not grow with the context; the
    report's KV-cache figure for the mixer is exactly these buffers' bytes."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], **factory):
        super().__init__()
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(shape, **factory), persistent=False)


class LinearState(RecurrentState):
    """Linear attention's recurrent state: sum_j φ(k_j) [v_j 1]^T, (B, n_kv_heads, f, hs + 1)."""

    def __init__(self, batch: int, n_kv_heads: int, features: int, width: int, **factory):
        super().__init__({"state": (batch, n_kv_heads, features, width)}, **factory)


class Attention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017), nanoGPT style: one fused QKV projection for
    self-attention (q from x and k, v from memory for cross-attention), grouped key/value heads (GQA),
    optional qk-norm, a positional module acting on q, k or the scores, soft-capping, and a core
    (`attend`) that variants replace."""

    materialize = False  # True: explicit scores even where SDPA's fused kernel would do
    dot_scores = True  # scores are q . k * scale (False: a variant's own `scores`, never SDPA)
    few = 4  # up to this many queries, masked attention without autograd is two matmuls (few_queries)

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        causal: bool,
        cross: bool = False,
        bias: bool = True,
        q_norm: nn.Module | None = None,
        k_norm: nn.Module | None = None,
        pos: nn.Module | None = None,
        softcap: float = 0.0,
        scale: float | None = None,
        dropout: float = 0.0,
        out_dropout: float = 0.0,
        prefix: int = 0,
        lora: dict | None = None,
        out_bias: bool | None = None,
        qk_norm_per_head: bool = False,
    ):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.q_dim, self.kv_dim = n_heads * head_dim, n_kv_heads * head_dim
        q, kv = [("q", self.q_dim)], [("k", self.kv_dim), ("v", self.kv_dim)]  # names LoRA can target
        if cross:
            self.q_proj = linear(d_model, self.q_dim, bias, q, lora)
            self.kv_proj = linear(d_model, 2 * self.kv_dim, bias, kv, lora)  # k, v from the memory
        else:
            self.c_attn = linear(d_model, self.q_dim + 2 * self.kv_dim, bias, q + kv, lora)  # q, k, v at once
        out_bias = bias if out_bias is None else out_bias
        self.c_proj = linear(self.q_dim, d_model, out_bias, [("o", d_model)], lora)
        self.q_norm = q_norm if q_norm is not None else nn.Identity()
        self.k_norm = k_norm if k_norm is not None else nn.Identity()
        self.qk_norm_per_head = qk_norm_per_head  # norms over head_dim, one gain for all heads (Qwen 3)
        self.pos = pos
        self.causal, self.cross, self.softcap, self.prefix = causal, cross, softcap, prefix
        self.scale = scale if scale is not None else head_dim**-0.5
        self.dropout = dropout
        self.out_dropout = nn.Dropout(out_dropout)
        self.cache: nn.Module | None = None  # set while decoding (setup_cache, remember)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C). ``mask`` (B, S) marks the keys that are real tokens (padding is
        False): the sequence's own for self-attention, the memory's for cross-attention. ``pos`` (T,)
        are the absolute positions of x when decoding with a cache (see :meth:`setup_cache`)."""
        B, T, _ = x.size()
        if memory is None:
            q, k, v = self.c_attn(x).split([self.q_dim, self.kv_dim, self.kv_dim], dim=2)
        else:
            q = self.q_proj(x)
            k, v = self.kv_proj(memory).split(self.kv_dim, dim=2) if self.cache is None else (None, None)
        q = self.heads(self.q_norm, q, self.n_heads)  # (B, nh, T, hs)
        if k is not None:
            S = k.size(1)  # key length: T, or the memory's length
            k = self.heads(self.k_norm, k, self.n_kv_heads)  # (B, nkv, S, hs)
            v = v.view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, S, hs)
        if memory is not None:
            y = self.cross_attend(q, k, v, mask)
        elif self.cache is not None:
            assert pos is not None, "decoding with a cache needs the positions of x"
            y = self.cached(q, k, v, pos, mask)
        else:
            if self.pos is not None:  # RoPE turns q and k; additive schemes leave them
                q, k = self.pos.rotate(q, k) if pos is None else self.pos.rotate(q, k, pos, pos)
            if mask is None:
                y = self.attend(q, k, v)  # positions 0 .. T-1, or all shifted alike (pos)
            else:
                at = torch.arange(T, device=x.device) if pos is None else pos
                y = self.masked(q, k, v, at, at, mask)
        y = y.transpose(1, 2).contiguous().view(B, T, self.q_dim)  # heads side by side again
        return self.out_dropout(self.c_proj(y))

    def heads(self, norm: nn.Module, t: torch.Tensor, n: int) -> torch.Tensor:
        """(B, T, n * hs) -> (B, n, T, hs), normalised by ``norm`` (the qk-norm) over the whole width
        or, per head, over hs."""
        B, T, _ = t.size()
        if self.qk_norm_per_head:
            return norm(t.view(B, T, n, self.head_dim)).transpose(1, 2)
        return norm(t).view(B, T, n, self.head_dim).transpose(1, 2)

    def cross_attend(
        self, q: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Queries over the memory (from the cache when generating): no positions, no causal mask."""
        if k is None or v is None:
            k, v = self.cache.k, self.cache.v
        if mask is None:
            return self.attend(q, k, v)
        qpos = torch.zeros(q.size(2), dtype=torch.long, device=q.device)  # every memory key is visible:
        kpos = torch.zeros(k.size(2), dtype=torch.long, device=q.device)  # one position for all
        return self.masked(q, k, v, qpos, kpos, mask)

    def cached(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Incremental self-attention: the new keys and values join the cache, the queries attend over
        the positions it holds."""
        if self.pos is not None:
            q, k = self.pos.rotate(q, k, pos, pos)  # keys are cached turned
        keys, values, kpos = self.cache.extend(pos, k, v)
        return self.masked(q, keys.to(q.dtype), values.to(q.dtype), pos, kpos, mask)

    def visible(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Which keys each query may see, from absolute positions: i (T, 1) of the queries, j (1, S)
        of the keys -> (T, S) bool (or (nh, T, S) when heads differ). Variants override it; their
        fast paths compute the same pattern without a T x S mask."""
        if not self.causal:
            return (i >= 0) | (j >= 0)
        return (j <= i) | ((i < self.prefix) & (j < self.prefix))  # prefix-LM: the prefix sees itself

    def masked(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        qpos: torch.Tensor,
        kpos: torch.Tensor,
        mask: torch.Tensor | None = None,
        pattern: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention under an explicit mask: the pattern at these positions (``visible``, unless given
        as ``pattern``; negative key positions are empty cache slots), and real keys only when ``mask``
        (B, S) is given. A query that sees no key gets zeros, never NaN."""
        if pattern is None:
            pattern = self.visible(qpos[:, None], kpos[None, :])  # (T, S) or (nh, T, S)
        allowed = pattern & (kpos >= 0)
        if mask is not None:
            allowed = allowed & mask[:, None, None, :].bool()  # (B, 1 or nh, T, S)
        bias = self.pos.bias(q, k, qpos, kpos) if self.pos is not None else None
        weights_needed = self.pos is not None and self.pos.needs_weights
        low = torch.finfo(q.dtype).min  # not -inf: a row with nothing to see stays finite
        plain = bias is None and not self.softcap and not weights_needed and not self.materialize
        dropping = self.training and self.dropout > 0
        if (
            plain
            and self.dot_scores
            and q.size(2) <= self.few
            and not torch.is_grad_enabled()
            and not dropping
        ):
            y = self.few_queries(q, k, v, allowed)  # decoding: a token or a few over the cache
        elif plain and self.dot_scores:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=torch.zeros_like(allowed, dtype=q.dtype).masked_fill(~allowed, low),
                scale=self.scale,
                dropout_p=self.dropout if self.training else 0.0,
                enable_gqa=self.n_kv_heads != self.n_heads,
            )
        else:
            att, v = self.capped_scores(q, k, v, bias)  # (B, nh, T, S), (B, nh, S, hs)
            att = F.dropout(
                att.masked_fill(~allowed, low).softmax(dim=-1), p=self.dropout, training=self.training
            )
            y = att @ v  # (B, nh, T, hs)
            if weights_needed:
                y = y + self.pos.values(att, qpos, kpos)  # a positional term on the values (Shaw et al. 2018)
        return y.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)  # rows that see nothing: zeros

    def few_queries(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """Attention of a few queries (a decoding step) under a mask, as two matmuls. SDPA's fused CPU
        kernel tiles the queries in blocks of hundreds and fills its buffers for each call: a tenth
        of a millisecond of work took it milliseconds. Grouped query heads share their key/value head
        without copies: q (B, nh, T, hs) is viewed as (B, nkv, groups * T, hs). The same matmuls and
        FLOPs as SDPA's; the softmax in float32, as SDPA's kernels accumulate."""
        B, nh, T, hs = q.size()
        nkv, S = k.size(1), k.size(2)
        att = q.reshape(B, nkv, -1, hs) @ k.transpose(-2, -1)  # (B, nkv, groups * T, S)
        att = att.view(B, nh, T, S).float() * self.scale
        att = att.masked_fill(~allowed, torch.finfo(att.dtype).min).softmax(dim=-1).to(v.dtype)
        return (att.view(B, nkv, -1, S) @ v).view(B, nh, T, hs)  # (B, nh, T, hs)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        """Preallocate this layer's cache for sequences of up to ``max_len`` positions."""
        length = self.cache_length(max_len)
        rolling = length < max_len
        self.cache = KVCache(
            batch,
            self.n_kv_heads,
            length,
            self.head_dim,
            rolling,
            self.cache_sink() if rolling else 0,
            dtype=dtype,
            device=device,
        )

    def cache_length(self, max_len: int) -> int:
        """Positions a decoder keeps for a query: every one before it (sliding windows: the window)."""
        return max_len

    def cache_sink(self) -> int:
        """Of a rolling cache, the first positions kept for good (Longformer's global tokens)."""
        return 0

    def remember(self, memory: torch.Tensor) -> None:
        """Cross-attention: project the encoder output once, for every decoding step that follows."""
        B, S, _ = memory.size()
        k, v = self.kv_proj(memory).split(self.kv_dim, dim=2)
        self.cache = KVCache(B, self.n_kv_heads, S, self.head_dim, False, dtype=k.dtype, device=k.device)
        pos = torch.arange(S, device=memory.device)
        k = self.heads(self.k_norm, k, self.n_kv_heads)  # (B, nkv, S, hs)
        self.cache.write(pos, k, v.view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Every query over every key it may see; SDPA (flash on CPU and GPU) when nothing else is
        needed, explicit scores otherwise."""
        bias = self.pos.bias(q, k) if self.pos is not None else None
        weights_needed = self.pos is not None and self.pos.needs_weights  # e.g. Shaw's value term
        if (
            bias is None
            and not self.softcap
            and not self.prefix
            and not weights_needed
            and not self.materialize
        ):
            return F.scaled_dot_product_attention(
                q,
                k,
                v,
                is_causal=self.causal,
                scale=self.scale,
                dropout_p=self.dropout if self.training else 0.0,
                enable_gqa=self.n_kv_heads != self.n_heads,
            )
        return self.explicit(q, k, v, bias)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return (q @ k.transpose(-2, -1)) * self.scale  # (B, nh, T, S)

    def capped_scores(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Explicit scores (B, nh, T, S), soft-capped and biased, and the values repeated per query
        head (B, nh, S, hs): what the explicit and the masked paths share."""
        groups = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, nh, S, hs)
        att = self.scores(q, k)  # (B, nh, T, S)
        if self.softcap:
            att = self.softcap * torch.tanh(att / self.softcap)
        if bias is not None:
            att = att + bias
        return att, v

    def explicit(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        att, v = self.capped_scores(q, k, v, bias)  # (B, nh, T, S), (B, nh, S, hs)
        T, S = att.shape[-2:]
        if self.causal:
            i = torch.arange(T, device=q.device)[:, None]
            j = torch.arange(S, device=q.device)[None, :]
            seen = (j <= i) | ((i < self.prefix) & (j < self.prefix))  # prefix-LM: the prefix sees itself
            att = att.masked_fill(~seen, float("-inf"))
        att = F.dropout(att.softmax(dim=-1), p=self.dropout, training=self.training)
        y = att @ v  # (B, nh, T, hs)
        if self.pos is not None and self.pos.needs_weights:
            y = y + self.pos.values(att)  # a positional term on the values (Shaw et al. 2018)
        return y


class AdditiveAttention(Attention):
    """Additive (concat) scores, w^T tanh(q + k) per head (Bahdanau et al. 2015)."""

    dot_scores = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.w = nn.Parameter(torch.randn(self.n_heads, self.head_dim) * self.head_dim**-0.5)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.explicit(q, k, v, self.pos.bias(q, k) if self.pos is not None else None)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        e = torch.tanh(q.unsqueeze(3) + k.unsqueeze(2))  # (B, nh, T, S, hs)
        return (e @ self.w[None, :, None, :, None]).squeeze(-1)  # (B, nh, T, S)


class BilinearAttention(Attention):
    """General (bilinear) scores, q^T W k with a W per head (Luong et al. 2015)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.w = nn.Parameter(torch.eye(self.head_dim).repeat(self.n_heads, 1, 1))  # (nh, hs, hs)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return super().attend(q @ self.w, k, v)  # (B, nh, T, hs) @ (nh, hs, hs)

    def masked(
        self, q: torch.Tensor, *args: torch.Tensor | None, **kwargs: torch.Tensor | None
    ) -> torch.Tensor:
        return super().masked(q @ self.w, *args, **kwargs)  # type: ignore[arg-type]
