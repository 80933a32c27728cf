"""PyTorch modules for feed-forward kinds."""

import torch
import torch.nn as nn


class MLP(nn.Module):
    """Position-wise feed-forward network: Linear -> activation -> Linear (Vaswani et al. 2017, §3.3)."""

    def __init__(self, d_model: int, hidden: int, act: nn.Module, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(d_model, hidden, bias=bias)
        self.act = act
        self.c_proj = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))  # (B, T, C) -> (B, T, hidden) -> (B, T, C)


class MoE(nn.Module):
    """Top-k mixture of expert MLPs with a linear router (softmax, then top-k, optionally renormalised)."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        n_experts: int,
        top_k: int,
        act: nn.Module,
        bias: bool = False,
        normalize: bool = True,
    ):
        super().__init__()
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(MLP(d_model, hidden, act, bias) for _ in range(n_experts))
        self.top_k = top_k
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        x = x.view(B * T, C)  # tokens
        probs = self.router(x).softmax(dim=-1)  # (B*T, E)
        weight, chosen = probs.topk(self.top_k, dim=-1)  # (B*T, k)
        if self.normalize:
            weight = weight / weight.sum(dim=-1, keepdim=True)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):  # a loop over experts, never over tokens
            token, slot = (chosen == e).nonzero(as_tuple=True)
            y.index_add_(0, token, expert(x[token]) * weight[token, slot, None])
        return y.view(B, T, C)
