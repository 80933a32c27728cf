"""The models archdsl is measured against, built with the same shapes: hand-written nanoGPT-style
modules (GPT-2 and Llama), Hugging Face's classes (SDPA attention) and x-transformers.

The hand-written modules use archdsl's parameter names, so one state dict loads into both and the
benchmark can check that they compute the same logits before timing them. Hugging Face's weights load
into archdsl through :func:`archdsl.interop.hf.load_hf_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Shape:
    """A decoder-only language model's sizes, and the batch and length it is timed at."""

    name: str
    vocab: int
    ctx: int
    d: int
    layers: int
    heads: int
    kv_heads: int
    hidden: int
    llama: bool  # RMSNorm, RoPE, SwiGLU, no biases, untied head; else GPT-2 (LayerNorm, learned, GELU)
    batch: int
    seq: int

    def tiny(self) -> Shape:
        """The same architecture at test size (the benchmark's --quick run)."""
        return Shape(
            self.name, 256, 64, 64, 2, 4, 4 if self.kv_heads == self.heads else 2, 128, self.llama, 2, 16
        )


GPT2_SMALL = Shape("GPT-2 small", 50257, 1024, 768, 12, 12, 12, 3072, False, 4, 256)
LLAMA_STYLE = Shape("Llama-style", 32000, 2048, 1024, 8, 16, 4, 2816, True, 2, 512)


# -- hand-written nanoGPT-style modules (Karpathy), the yardstick ------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


class Rotary(nn.Module):
    def __init__(self, hs: int, ctx: int, theta: float = 10000.0):
        super().__init__()
        inv = 1.0 / theta ** (torch.arange(0, hs, 2).float() / hs)
        ang = torch.outer(torch.arange(ctx).float(), inv)
        self.register_buffer("cos", torch.cat([ang, ang], -1).cos(), persistent=False)
        self.register_buffer("sin", torch.cat([ang, ang], -1).sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, nh, T, hs)
        T = x.size(2)
        x1, x2 = x.chunk(2, dim=-1)
        return x * self.cos[:T] + torch.cat([-x2, x1], -1) * self.sin[:T]


class CausalSelfAttention(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.nh, self.nkv, self.hs = s.heads, s.kv_heads, s.d // s.heads
        self.c_attn = nn.Linear(s.d, (s.heads + 2 * s.kv_heads) * self.hs, bias=not s.llama)
        self.c_proj = nn.Linear(s.d, s.d, bias=not s.llama)
        self.rotary = Rotary(self.hs, s.ctx) if s.llama else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split([self.nh * self.hs, self.nkv * self.hs, self.nkv * self.hs], dim=2)
        q = q.view(B, T, self.nh, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.nkv, self.hs).transpose(1, 2)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.nkv != self.nh)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.c_fc = nn.Linear(s.d, s.hidden)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(s.hidden, s.d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class SwiGLU(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.gate_proj = nn.Linear(s.d, s.hidden, bias=False)
        self.up_proj = nn.Linear(s.d, s.hidden, bias=False)
        self.down_proj = nn.Linear(s.hidden, s.d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        norm = (lambda: RMSNorm(s.d, 1e-6)) if s.llama else (lambda: nn.LayerNorm(s.d))
        self.ln_1, self.attn = norm(), CausalSelfAttention(s)
        self.ln_2, self.mlp = norm(), (SwiGLU(s) if s.llama else MLP(s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """nanoGPT's GPT-2, or the same code with Llama's parts (the hand-written baseline)."""

    def __init__(self, s: Shape):
        super().__init__()
        self.wte = nn.Embedding(s.vocab, s.d)
        self.wpe = None if s.llama else nn.Embedding(s.ctx, s.d)
        self.h = nn.ModuleList(Block(s) for _ in range(s.layers))
        self.ln_f = RMSNorm(s.d, 1e-6) if s.llama else nn.LayerNorm(s.d)
        self.lm_head = nn.Linear(s.d, s.vocab, bias=False)
        if not s.llama:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# -- the peers ------------------------------------------------------------------------------------------


def hf_config(s: Shape):
    """The Hugging Face config of a shape (dropout off, SDPA attention)."""
    from transformers import GPT2Config, LlamaConfig

    if s.llama:
        return LlamaConfig(
            vocab_size=s.vocab,
            hidden_size=s.d,
            intermediate_size=s.hidden,
            num_hidden_layers=s.layers,
            num_attention_heads=s.heads,
            num_key_value_heads=s.kv_heads,
            max_position_embeddings=s.ctx,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            attn_implementation="sdpa",
        )
    return GPT2Config(
        vocab_size=s.vocab,
        n_positions=s.ctx,
        n_embd=s.d,
        n_layer=s.layers,
        n_head=s.heads,
        n_inner=s.hidden,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=s.vocab - 1,
        eos_token_id=s.vocab - 1,
        attn_implementation="sdpa",
    )


def hf_model(s: Shape) -> nn.Module:
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    cls = LlamaForCausalLM if s.llama else GPT2LMHeadModel
    torch.manual_seed(0)
    return cls(hf_config(s))


def archdsl_model(s: Shape, hf: nn.Module):
    """archdsl's model from the Hugging Face config (`import-hf`), with Hugging Face's weights, and
    its spec."""
    import archdsl
    from archdsl.interop.hf import load_hf_weights, load_spec_from_config

    spec = load_spec_from_config(hf.config.to_dict())
    model = archdsl.build(spec)
    load_hf_weights(model, hf.state_dict())
    return model, spec


def xtransformers_model(s: Shape) -> nn.Module | None:
    """x-transformers (Phil Wang) with the same shapes, flash (SDPA) attention; None if not installed."""
    try:
        from x_transformers import Decoder, TransformerWrapper
    except ImportError:
        return None
    if s.llama:
        layers = Decoder(
            dim=s.d,
            depth=s.layers,
            heads=s.heads,
            attn_kv_heads=s.kv_heads,
            attn_flash=True,
            rotary_pos_emb=True,
            use_rmsnorm=True,
            ff_glu=True,
            ff_swish=True,
            ff_no_bias=True,
            ff_mult=s.hidden / s.d,
        )
        return TransformerWrapper(
            num_tokens=s.vocab, max_seq_len=s.ctx, attn_layers=layers, use_abs_pos_emb=False
        )
    layers = Decoder(dim=s.d, depth=s.layers, heads=s.heads, attn_flash=True, ff_mult=s.hidden / s.d)
    return TransformerWrapper(num_tokens=s.vocab, max_seq_len=s.ctx, attn_layers=layers, tie_embedding=True)
