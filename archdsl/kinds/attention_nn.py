"""PyTorch modules for attention kinds (imported only when a model is built or emitted)."""

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.peft_nn import linear


class Attention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017), nanoGPT style: one fused QKV projection for
    self-attention (q from x and k, v from memory for cross-attention), grouped key/value heads (GQA),
    optional qk-norm, a positional module acting on q, k or the scores, soft-capping, and a core
    (`attend`) that variants replace."""

    materialize = False  # True: explicit scores even where SDPA's fused kernel would do

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
        self.pos = pos
        self.causal, self.softcap, self.prefix = causal, softcap, prefix
        self.scale = scale if scale is not None else head_dim**-0.5
        self.dropout = dropout
        self.out_dropout = nn.Dropout(out_dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.size()
        if memory is None:
            q, k, v = self.c_attn(x).split([self.q_dim, self.kv_dim, self.kv_dim], dim=2)
        else:
            q = self.q_proj(x)
            k, v = self.kv_proj(memory).split(self.kv_dim, dim=2)
        S = k.size(1)  # key length: T, or the memory's length
        q = self.q_norm(q).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_norm(k).view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, S, hs)
        v = v.view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, S, hs)
        if self.pos is not None:
            q, k = self.pos.rotate(q, k)  # RoPE turns q and k; additive schemes leave them
        y = self.attend(q, k, v)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, self.q_dim)  # heads side by side again
        return self.out_dropout(self.c_proj(y))

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

    def explicit(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        groups = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, nh, S, hs)
        att = self.scores(q, k)  # (B, nh, T, S)
        if self.softcap:
            att = self.softcap * torch.tanh(att / self.softcap)
        if bias is not None:
            att = att + bias
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
