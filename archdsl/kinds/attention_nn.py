"""PyTorch modules for attention kinds (imported only when a model is built or emitted)."""

import torch
import torch.nn as nn
from torch.nn import functional as F


class SelfAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017) with one fused QKV projection, as in nanoGPT.
    With fewer key/value heads than query heads it is grouped-query attention (Ainslie et al. 2023;
    one key/value head: multi-query attention, Shazeer 2019)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        causal: bool,
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        assert d_model % n_heads == 0 and n_heads % n_kv_heads == 0
        self.head_dim = d_model // n_heads
        self.kv_dim = n_kv_heads * self.head_dim
        self.c_attn = nn.Linear(d_model, d_model + 2 * self.kv_dim, bias=bias)  # q, k, v at once
        self.c_proj = nn.Linear(d_model, d_model, bias=bias)
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.causal = causal
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()  # batch, sequence length, d_model
        q, k, v = self.c_attn(x).split([C, self.kv_dim, self.kv_dim], dim=2)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, n_kv, T, hs)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, n_kv, T, hs)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=self.causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.c_proj(y)


class CrossAttention(nn.Module):
    """Multi-head attention from x (queries) to memory (keys, values): the decoder's encoder-decoder
    attention (Vaswani et al. 2017, §3.2.3)."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        assert d_model % n_heads == 0 and n_heads % n_kv_heads == 0
        self.head_dim = d_model // n_heads
        self.kv_dim = n_kv_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.kv_proj = nn.Linear(d_model, 2 * self.kv_dim, bias=bias)  # k, v at once
        self.c_proj = nn.Linear(d_model, d_model, bias=bias)
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.dropout = dropout

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        S = memory.size(1)  # encoder sequence length
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k, v = self.kv_proj(memory).split(self.kv_dim, dim=2)
        k = k.view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, n_kv, S, hs)
        v = v.view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, n_kv, S, hs)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)
