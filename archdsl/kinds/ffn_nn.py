"""PyTorch modules for feed-forward kinds."""

import torch
import torch.nn as nn


class MLP(nn.Module):
    """Position-wise feed-forward network: Linear -> activation -> Linear (Vaswani et al. 2017, §3.3)."""

    def __init__(self, d_model: int, hidden: int, act: nn.Module, bias: bool = True):
        super().__init__()
        self.c_fc = nn.Linear(d_model, hidden, bias=bias)
        self.act = act
        self.c_proj = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))  # (B, T, C) -> (B, T, hidden) -> (B, T, C)
