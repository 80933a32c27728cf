"""PyTorch modules for multi-head latent attention (DeepSeek-V2), imported only when a model is built
or emitted."""

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.attention_nn import Attention
from archdsl.kinds.norm_nn import RMSNorm


class LatentCache(nn.Module):
    """Latent attention's decoding cache (DeepSeek-AI 2024, §2.1.2): per position only the normalised
    key-value latent c (``kv_rank``) and the rotated rope key that all heads share (``rope_dim``), side
    by side in one preallocated (B, L, kv_rank + rope_dim) buffer — not every head's keys and values.
    Position p is kept in slot p, so the slots' positions follow from the last one written."""

    def __init__(self, batch: int, length: int, width: int, **factory):
        super().__init__()
        self.register_buffer("kv", torch.zeros(batch, length, width, **factory), persistent=False)
        self.length = length

    def extend(self, pos: torch.Tensor, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the (B, T, width) latents of positions ``pos`` (T,); return the whole cache and the
        position each slot holds (negative: not written yet)."""
        self.kv.index_copy_(1, pos, latent.to(self.kv.dtype))
        slot = torch.arange(self.length, device=self.kv.device)
        return self.kv, torch.where(slot <= pos[-1], slot, -1)


class LatentAttention(Attention):
    """Multi-head latent attention, MLA (DeepSeek-AI 2024, "DeepSeek-V2", §2.1), with Hugging Face's
    ``DeepseekV2Attention`` names and layout.

    Queries: ``q = W_q x`` or, compressed, ``q = W_qb RMSNorm(W_qa x)`` (``q_rank``), h heads of
    ``head_dim + rope_dim``. Keys and values: one projection ``W_kva x`` gives the latent
    ``c = RMSNorm(·)`` (``kv_rank``) and one rope key ``k_R`` shared by all heads (``rope_dim``);
    ``W_kvb c`` gives each head's key (``head_dim``) and value (``v_dim``). The stack's rotary scheme
    turns only the rope parts (``q_R``, ``k_R``): the decoupled RoPE. Scores
    ``(q_C · k_C + q_R · k_R) · scale``, scale ``1 / sqrt(head_dim + rope_dim)`` by default.

    Training (and a forward without a cache) expands every head's keys and values and runs one
    attention; where the query-key and value widths differ, the narrower side is padded with zeros
    to the wider, so one fused kernel takes them (SDPA's fused CPU kernel, like FlashAttention, wants
    equal widths; Hugging Face pads values the same way for FlashAttention 2): the zeros change no
    score and no output. Decoding (``setup_cache``) caches only ``[c, k_R]`` per position and absorbs
    the up-projections (§2.1.2): the key part ``W_uk`` of ``W_kvb`` folds into the query,
    ``q_C · (W_uk c) = (W_ukᵀ q_C) · c``, and the value part ``W_uv`` into the output,
    ``Σ p (W_uv c) = W_uv Σ p c``; the cached latents are never expanded."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        head_dim: int,
        rope_dim: int,
        v_dim: int,
        kv_rank: int,
        q_rank: int = 0,
        causal: bool = True,
        bias: bool = True,
        out_bias: bool | None = None,
        pos: nn.Module | None = None,
        softcap: float = 0.0,
        scale: float | None = None,
        dropout: float = 0.0,
        out_dropout: float = 0.0,
        eps: float = 1e-6,
    ):
        nn.Module.__init__(self)  # projections of its own; Attention's core (attend, masked, visible)
        self.n_heads = self.n_kv_heads = n_heads  # every head has its own keys and values
        self.head_dim, self.rope_dim, self.v_dim = head_dim, rope_dim, v_dim
        self.kv_rank, self.q_rank = kv_rank, q_rank
        self.qk_dim = head_dim + rope_dim  # query and key width per head
        self.width = max(self.qk_dim, v_dim)  # q, k and v padded to one width (one fused kernel)
        if q_rank:  # low-rank queries: down, normalise, up
            self.q_a_proj = nn.Linear(d_model, q_rank, bias=bias)
            self.q_a_norm = RMSNorm(q_rank, eps)
            self.q_b_proj = nn.Linear(q_rank, n_heads * self.qk_dim, bias=False)
        else:
            self.q_proj = nn.Linear(d_model, n_heads * self.qk_dim, bias=False)
        self.kv_a_proj = nn.Linear(d_model, kv_rank + rope_dim, bias=bias)  # latent and shared rope key
        self.kv_a_norm = RMSNorm(kv_rank, eps)
        self.kv_b_proj = nn.Linear(kv_rank, n_heads * (head_dim + v_dim), bias=False)  # per-head k, v
        self.c_proj = nn.Linear(n_heads * v_dim, d_model, bias=bias if out_bias is None else out_bias)
        self.pos = pos
        self.causal, self.cross, self.softcap, self.prefix = causal, False, softcap, 0
        self.scale = scale if scale is not None else self.qk_dim**-0.5
        self.dropout = dropout
        self.out_dropout = nn.Dropout(out_dropout)
        self.cache: nn.Module | None = None  # a LatentCache while decoding (setup_cache)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); ``mask`` (B, S) marks real keys, ``pos`` (T,) the positions of x
        when decoding with a cache."""
        B, T, _ = x.size()
        q = self.queries(x).view(B, T, self.n_heads, self.qk_dim).transpose(1, 2)  # (B, nh, T, dn + dr)
        q_nope, q_rope = q.split([self.head_dim, self.rope_dim], dim=-1)
        latent, k_rope = self.kv_a_proj(x).split([self.kv_rank, self.rope_dim], dim=2)
        latent = self.kv_a_norm(latent)  # (B, T, r)
        k_rope = k_rope.unsqueeze(1)  # (B, 1, T, dr): one rope key for all heads
        if self.pos is not None:  # the decoupled RoPE turns the rope parts only
            q_rope, k_rope = self.pos.rotate(q_rope, k_rope, pos, pos)
        if self.cache is not None:
            assert pos is not None, "decoding with a cache needs the positions of x"
            y = self.absorbed(q_nope, q_rope, torch.cat([latent, k_rope.squeeze(1)], dim=-1), pos, mask)
        else:
            y = self.expanded(q_nope, q_rope, latent, k_rope, pos, mask)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_heads * self.v_dim)  # heads side by side
        return self.out_dropout(self.c_proj(y))

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, nh * (dn + dr)): directly, or through the query latent."""
        if self.q_rank:
            return self.q_b_proj(self.q_a_norm(self.q_a_proj(x)))
        return self.q_proj(x)

    def expanded(
        self,
        q_nope: torch.Tensor,
        q_rope: torch.Tensor,
        latent: torch.Tensor,
        k_rope: torch.Tensor,
        pos: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Every head's keys and values made from the latents, then attention: (B, nh, T, dv)."""
        B, H, T, _ = q_nope.shape
        kv = self.kv_b_proj(latent).view(B, T, H, self.head_dim + self.v_dim).transpose(1, 2)
        k_nope, v = kv.split([self.head_dim, self.v_dim], dim=-1)  # (B, nh, T, dn), (B, nh, T, dv)
        q = torch.cat([q_nope, q_rope], dim=-1)  # (B, nh, T, dn + dr)
        k = torch.cat([k_nope, k_rope.expand(B, H, T, self.rope_dim)], dim=-1)  # (B, nh, T, dn + dr)
        w = self.width
        if self.qk_dim < w:  # zeros: scores unchanged
            q, k = F.pad(q, (0, w - self.qk_dim)), F.pad(k, (0, w - self.qk_dim))
        if self.v_dim < w:  # zeros: outputs unchanged past dv
            v = F.pad(v, (0, w - self.v_dim))
        if mask is None:
            y = self.attend(q, k, v)  # (B, nh, T, w)
        else:
            at = torch.arange(T, device=q.device) if pos is None else pos
            y = self.masked(q, k, v, at, at, mask)
        return y[..., : self.v_dim]

    def absorbed(
        self,
        q_nope: torch.Tensor,
        q_rope: torch.Tensor,
        latent: torch.Tensor,
        pos: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attention over the cached latents with ``W_kvb`` absorbed: ``latent`` (B, T, r + dr) is the
        new positions' [c, k_R] -> (B, nh, T, dv)."""
        H, r = self.n_heads, self.kv_rank
        w_k, w_v = self.kv_b_proj.weight.view(H, -1, r).split([self.head_dim, self.v_dim], dim=1)
        q = torch.cat([q_nope @ w_k, q_rope], dim=-1)  # (B, nh, T, r + dr): W_ukᵀ q_C beside q_R
        keys, kpos = self.cache.extend(pos, latent)  # (B, L, r + dr), (L,)
        keys = keys.to(q.dtype).unsqueeze(1)  # (B, 1, L, r + dr): shared by every head
        att = (q @ keys.transpose(-2, -1)) * self.scale  # (B, nh, T, L)
        if self.softcap:
            att = self.softcap * torch.tanh(att / self.softcap)
        allowed = self.visible(pos[:, None], kpos[None, :]) & (kpos >= 0)  # (T, L)
        if mask is not None:
            allowed = allowed & mask[:, None, None, :].bool()  # (B, 1, T, L)
        att = att.masked_fill(~allowed, torch.finfo(att.dtype).min).softmax(dim=-1)
        att = F.dropout(att, p=self.dropout, training=self.training)
        y = (att @ keys[..., :r]) @ w_v.transpose(-2, -1)  # (B, nh, T, r) -> (B, nh, T, dv)
        return y.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)  # rows that see nothing: zeros

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        """Preallocate the latent cache for sequences of up to ``max_len`` positions."""
        width = self.kv_rank + self.rope_dim
        self.cache = LatentCache(batch, max_len, width, dtype=dtype, device=device)
