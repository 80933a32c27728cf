"""PyTorch modules for norm kinds."""

import torch
import torch.nn as nn


class RMSNorm(nn.Module):
    """x / rms(x) * g, computed in float32 as Llama and Gemma do; with ``offset`` the gain is 1 + w."""

    def __init__(self, d_model: int, eps: float = 1e-6, offset: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d_model) if offset else torch.ones(d_model))
        self.eps, self.offset = eps, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        gain = 1.0 + self.weight.float() if self.offset else self.weight
        return (gain * h).type_as(x)
