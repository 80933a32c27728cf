"""PyTorch modules for latent arrays (Perceiver) and for cross-attention to a memory of another width
(imported only when a model is built or emitted)."""

import torch
import torch.nn as nn

from archdsl.kinds.attention_nn import Attention
from archdsl.kinds.peft_nn import linear


class LatentArray(nn.Module):
    """A learned (N, d) array, the same for every example: (B, n, c) input -> (B, N, d) queries."""

    def __init__(self, length: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(length, d_model) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.repeat(x.size(0), 1, 1)  # (B, N, d): a copy per example


class WideCrossAttention(Attention):
    """Cross-attention whose keys and values come from a memory ``kv_width`` wide (Perceiver's latents
    reading an input of another width): only the key/value projection changes, ``kv_width -> 2 kv``."""

    def __init__(self, kv_width: int, **kwargs):
        super().__init__(**kwargs)
        names = [("k", self.kv_dim), ("v", self.kv_dim)]  # what LoRA can target
        bias = kwargs.get("bias", True)
        self.kv_proj = linear(kv_width, 2 * self.kv_dim, bias, names, kwargs.get("lora"))
