"""PyTorch modules for relative positional schemes, which act inside attention, and Transformer-XL
attention.

A positional module held by :class:`~archdsl.kinds.attention_nn.Attention` as ``pos`` offers
``rotate(q, k)`` (identity here), ``bias(q, k)`` (an additive term on the scores, (nh, T, S) or
(B, nh, T, S)) and, when ``needs_weights``, ``values(att)`` (a term added to the attention output).
Queries are the last T of the S key positions (T == S in self-attention), so ``j - i`` below is the
offset from query i to key j.
"""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.attention_nn import Attention


def relative_positions(
    n_q: int,
    n_k: int,
    device: torch.device,
    qpos: torch.Tensor | None = None,
    kpos: torch.Tensor | None = None,
) -> torch.Tensor:
    """(T, S) offsets j - i from query i to key j: for T = n_q queries that are the last of the
    S = n_k key positions, or at the absolute positions ``qpos`` (T,) and ``kpos`` (S,) when given
    (decoding with a cache)."""
    if qpos is not None and kpos is not None:
        return kpos[None, :] - qpos[:, None]
    i = torch.arange(n_k - n_q, n_k, device=device)[:, None]  # (T, 1)
    j = torch.arange(n_k, device=device)[None, :]  # (1, S)
    return j - i


class ScoreBias(nn.Module):
    """Base of the additive schemes: q and k are left as they are."""

    needs_weights = False  # no term on the values

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, qpos: object = None, kpos: object = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def bias(
        self, q: torch.Tensor, k: torch.Tensor, qpos: object = None, kpos: object = None
    ) -> torch.Tensor | None:
        return None


# -- ALiBi -------------------------------------------------------------------------------------------


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi head slopes (Press et al. 2022, §3), as the authors' code computes them: for n a power of
    2, the geometric sequence m_h = 2^(-8h/n), h = 1..n; otherwise the sequence for the closest smaller
    power of 2, p, then the odd-numbered terms of the sequence for 2p (the slopes that fall between
    those already taken), n - p of them."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))  # 2^(-8/n)
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    p = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(p) + alibi_slopes(2 * p)[0::2][: n_heads - p]


class ALiBi(ScoreBias):
    """Attention with linear biases (Press et al. 2022): score_ij += -m_h * (i - j) for key j at or
    before query i, with a fixed slope m_h per head. Without a causal mask the bias is symmetric,
    -m_h * |i - j| (as encoders using ALiBi do, e.g. MosaicBERT). No parameters."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.register_buffer("slopes", torch.tensor(alibi_slopes(n_heads)), persistent=False)  # (nh,)

    def bias(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        qpos: torch.Tensor | None = None,
        kpos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        distance = relative_positions(q.size(2), k.size(2), q.device, qpos, kpos).abs()  # (T, S): |i - j|
        return (-self.slopes[:, None, None] * distance).to(q.dtype)  # (nh, T, S)


# -- T5 ----------------------------------------------------------------------------------------------


def t5_bucket(
    relative_position: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """T5's relative position buckets (Raffel et al. 2020, §2.1; Mesh TensorFlow), operation for
    operation as Hugging Face's ``T5Attention._relative_position_bucket``. ``relative_position`` is
    j - i. Bidirectional: half the buckets for keys after the query. Of the rest, the first half are
    exact offsets 0 .. max_exact - 1, the second half logarithmically wider bins up to max_distance;
    farther offsets share the last bucket. Unidirectional (causal): only offsets i - j >= 0 count."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2  # now relative_position >= 0
    is_small = relative_position < max_exact
    if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    if_large = torch.min(if_large, torch.full_like(if_large, num_buckets - 1))
    return buckets + torch.where(is_small, relative_position, if_large)


class T5RelativeBias(ScoreBias):
    """T5's relative position bias (Raffel et al. 2020): score_ij += b[bucket(j - i), h], one learned
    scalar per bucket and head. One table serves every self-attention of a stack (it is the same module
    in each); bidirectional buckets in an encoder, unidirectional in a decoder."""

    def __init__(self, buckets: int, max_distance: int, n_heads: int, bidirectional: bool):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional
        self.relative_attention_bias = nn.Embedding(buckets, n_heads)  # Hugging Face's name

    def bias(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        qpos: torch.Tensor | None = None,
        kpos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rel = relative_positions(q.size(2), k.size(2), q.device, qpos, kpos)  # (T, S)
        bucket = t5_bucket(rel, self.bidirectional, self.buckets, self.max_distance)  # (T, S)
        return self.relative_attention_bias(bucket).permute(2, 0, 1)  # (T, S, nh) -> (nh, T, S)


# -- Shaw et al. -------------------------------------------------------------------------------------


class ShawRelative(ScoreBias):
    """Relative position representations (Shaw et al. 2018): learned vectors a^K_r and a^V_r (shared
    by the heads) for clipped offsets r = clip(j - i, -k, k):

        e_ij = q_i . (k_j + a^K_r) * scale,    z_i = sum_j alpha_ij (v_j + a^V_r).

    Computed without the (T, S, hs) per-pair embeddings: q against the 2k + 1 table rows, then gathered
    by offset; the weights summed per offset, then against the a^V table."""

    def __init__(self, head_dim: int, k: int, values: bool = True, scale: float | None = None):
        super().__init__()
        self.k = k
        self.scale = scale if scale is not None else head_dim**-0.5  # as the content scores
        self.needs_weights = values
        self.key_table = nn.Parameter(torch.empty(2 * k + 1, head_dim))  # a^K, rows for -k .. k
        nn.init.normal_(self.key_table, std=0.02)
        if values:
            self.value_table = nn.Parameter(torch.empty(2 * k + 1, head_dim))  # a^V
            nn.init.normal_(self.value_table, std=0.02)

    def index(
        self,
        n_q: int,
        n_k: int,
        device: torch.device,
        qpos: torch.Tensor | None = None,
        kpos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(T, S) table rows: clip(j - i, -k, k) + k."""
        return relative_positions(n_q, n_k, device, qpos, kpos).clamp(-self.k, self.k) + self.k

    def bias(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        qpos: torch.Tensor | None = None,
        kpos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, nh, T, _ = q.size()
        idx = self.index(T, k.size(2), q.device, qpos, kpos).expand(B, nh, -1, -1)  # (B, nh, T, S)
        qa = q @ self.key_table.t()  # (B, nh, T, 2k+1): q_i . a^K_r for every r
        return qa.gather(-1, idx) * self.scale  # (B, nh, T, S)

    def values(
        self, att: torch.Tensor, qpos: torch.Tensor | None = None, kpos: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, nh, T, S = att.size()
        idx = self.index(T, S, att.device, qpos, kpos).expand(B, nh, -1, -1)  # (B, nh, T, S)
        w = att.new_zeros(B, nh, T, 2 * self.k + 1).scatter_add_(-1, idx, att)  # weight per offset
        return w @ self.value_table  # (B, nh, T, hs)


# -- Transformer-XL ----------------------------------------------------------------------------------


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """Transformer-XL's shift (Dai et al. 2019, App. B): x[..., i, p] is for distance K - 1 - p; the
    result's [..., i, j] is for distance (K - T + i) - j, the offset from query i (at position K - T + i)
    back to key j. Entries with j > K - T + i are garbage, and masked by the caller."""
    B, nh, T, K = x.size()
    x = F.pad(x, (1, 0))  # (B, nh, T, K+1): a zero column in front
    # read the same memory as rows of K, after the first T entries: each row shifts by one (written
    # without a (K+1, T) view, so that export needs no guard on K mod T)
    return x.flatten(2)[:, :, T:].view(B, nh, T, K)


class XLAttention(Attention):
    """Transformer-XL attention (Dai et al. 2019, §3.2-3.3): segment-level recurrence and relative
    positional scores. Each forward attends from the T positions of the segment x to the mem_len
    previous inputs of this layer (kept, detached, as module state) and to the segment itself:

        h~ = [SG(mem); x],  q = x W_q,  k = h~ W_k,  v = h~ W_v,  r_d = R_d W_r
        A_ij = (q_i + u) . k_j + (q_i + v) . r_{i - j},   R_d the sinusoid of distance d,

    with the global biases u and v (per layer, as untie_r) and the rel-shift trick for the second term.
    Scores are scaled by 1/sqrt(hs), causal, soft-maxed. The memory starts as mem_len zero positions,
    masked until real inputs fill them, so every forward costs the same (keys = T + mem_len); it
    starts again when the batch size changes (or on ``reset_memory()``). Do not checkpoint (recompute)
    these layers: a second forward would move the memory on."""

    def __init__(self, mem_len: int, **kwargs):
        super().__init__(**kwargs)
        d_model = self.c_proj.out_features
        self.mem_len = mem_len
        self.r_net = nn.Linear(d_model, self.q_dim, bias=False)  # W_r
        self.r_w_bias = nn.Parameter(torch.empty(self.n_heads, self.head_dim))  # u
        self.r_r_bias = nn.Parameter(torch.empty(self.n_heads, self.head_dim))  # v
        nn.init.normal_(self.r_w_bias, std=0.02)
        nn.init.normal_(self.r_r_bias, std=0.02)
        inv_freq = 1.0 / 10000 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (C/2,)
        self.register_buffer("mem", torch.zeros(0, mem_len, d_model), persistent=False)  # (B, M, C)
        self.filled = 0  # how many of the memory's positions hold real inputs (the last ones)

    def reset_memory(self, batch: int = 0) -> None:
        self.mem = self.mem.new_zeros(batch, self.mem_len, self.mem.size(2))
        self.filled = 0

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        """Decoding keeps no separate cache: the memory is the state, started empty."""
        self.mem = torch.zeros(batch, self.mem_len, self.mem.size(2), dtype=dtype, device=device)
        self.filled = 0

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Positions are relative (``pos`` is not needed); ``mask`` (B, T) marks the segment's real
        tokens (the memory's are real)."""
        B, T, _ = x.size()
        if self.mem.size(0) != B:
            self.reset_memory(B)  # a new batch size: a new set of sequences
        M, K = self.mem_len, self.mem_len + T
        h = torch.cat([self.mem.to(x.dtype), x], dim=1)  # (B, K, C): memory, then the segment
        # the fused projection over [memory; segment], queries of the segment kept (as the authors' code)
        q, k, v = self.c_attn(h).split([self.q_dim, self.kv_dim, self.kv_dim], dim=2)  # (B, K, ·) each
        q = q[:, M:]  # (B, T, nh*hs)
        q = self.heads(self.q_norm, q, self.n_heads)  # (B, nh, T, hs)
        k = self.heads(self.k_norm, k, self.n_kv_heads)  # (B, nkv, K, hs)
        v = v.view(B, K, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, K, hs)
        groups = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, nh, K, hs)

        # sinusoids of the distances K-1, ..., 1, 0 (sin half, then cos half), projected per head
        dist = torch.arange(K - 1, -1, -1, device=x.device, dtype=self.inv_freq.dtype)  # (K,)
        angles = dist[:, None] * self.inv_freq[None, :]  # (K, C/2)
        R = torch.cat([angles.sin(), angles.cos()], dim=-1).to(x.dtype)  # (K, C)
        r = self.r_net(R).view(K, self.n_heads, self.head_dim).transpose(0, 1)  # (nh, K, hs)

        ac = (q + self.r_w_bias[:, None]) @ k.transpose(-2, -1)  # (B, nh, T, K): content, global content
        bd = rel_shift((q + self.r_r_bias[:, None]) @ r.transpose(-2, -1))  # (B, nh, T, K): position terms
        att = (ac + bd) * self.scale
        if self.softcap:
            att = self.softcap * torch.tanh(att / self.softcap)
        i = torch.arange(M, K, device=x.device)[:, None]  # (T, 1): query positions
        j = torch.arange(K, device=x.device)[None, :]  # (1, K): key positions
        seen = (j <= i) & (j >= M - self.filled)  # causal, and no empty memory slots
        if mask is not None:  # padding in the segment: (B, 1, T, K); a row may then see nothing
            seen = seen & F.pad(mask.bool(), (M, 0), value=True)[:, None, None, :]
        att = att.masked_fill(~seen, float("-inf") if mask is None else torch.finfo(att.dtype).min)
        att = F.dropout(att.softmax(dim=-1), p=self.dropout, training=self.training)
        y = att @ v  # (B, nh, T, hs)
        if mask is not None:
            y = y.masked_fill(~seen.any(dim=-1, keepdim=True), 0.0)  # rows that see nothing: zeros
        y = y.transpose(1, 2).contiguous().view(B, T, self.q_dim)  # heads side by side again

        with torch.no_grad():  # this segment's inputs become the next one's memory
            # (B, M, C), contiguous: a view of h would have strides that change with T (a recompile)
            self.mem = h[:, K - M :].detach().to(self.mem.dtype).contiguous()
            self.filled = min(M, self.filled + T)
        return self.out_dropout(self.c_proj(y))
