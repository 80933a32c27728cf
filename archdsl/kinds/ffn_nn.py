"""PyTorch modules for feed-forward kinds."""

import torch
import torch.nn as nn

from archdsl.kinds.peft_nn import linear


class MLP(nn.Module):
    """Position-wise feed-forward network: Linear -> activation -> Linear (Vaswani et al. 2017, §3.3)."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        act: nn.Module,
        bias: bool = True,
        dropout: float = 0.0,
        lora: dict | None = None,
    ):
        super().__init__()
        self.c_fc = linear(d_model, hidden, bias, [("up", hidden)], lora)
        self.act = act
        self.c_proj = linear(hidden, d_model, bias, [("down", d_model)], lora)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))  # (B, T, C) -> (B, T, hidden) -> (B, T, C)


class MoE(nn.Module):
    """Top-k mixture of experts with a linear router (softmax, top-k, optionally renormalised), the
    routed experts' sum scaled by ``routed_scale``, plus always-active shared experts. ``aux_loss``
    holds the Switch load-balancing loss of the last forward; the model adds ``aux_coef`` times it to
    the training loss."""

    def __init__(
        self,
        d_model: int,
        n_experts: int,
        top_k: int,
        experts: list[nn.Module],
        shared: list[nn.Module],
        normalize: bool = True,
        aux_coef: float = 0.0,
        routed_scale: float = 1.0,
    ):
        super().__init__()
        self.aux_coef, self.routed_scale = aux_coef, routed_scale
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(experts)
        self.shared = nn.ModuleList(shared)
        self.top_k, self.normalize = top_k, normalize
        self.aux_loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        x = x.reshape(B * T, C)  # (B*T, C) tokens; a copy when x is not contiguous (patch tokens)
        probs = self.router(x).float().softmax(dim=-1)  # (B*T, E)
        weight, chosen = probs.topk(self.top_k, dim=-1)  # (B*T, k)
        if self.normalize:
            weight = weight / weight.sum(dim=-1, keepdim=True)
        weight = weight.to(x.dtype)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):  # a loop over experts, never over tokens
            token, slot = (chosen == e).nonzero(as_tuple=True)
            y.index_add_(0, token, expert(x[token]) * weight[token, slot, None])
        if self.routed_scale != 1.0:
            y = y * self.routed_scale  # DeepSeek's routed_scaling_factor
        for expert in self.shared:
            y = y + expert(x)
        routed = torch.zeros_like(probs).scatter_(1, chosen, 1.0).mean(dim=0)  # f_e: share of assignments
        self.aux_loss = probs.size(1) * (routed / self.top_k * probs.mean(dim=0)).sum()  # Fedus et al. 2021
        return y.view(B, T, C)  # y is laid out as the reshaped x: contiguous


class GatedMLP(nn.Module):
    """Gated feed-forward, down(act(gate(x)) * up(x)) (Shazeer 2020), with Llama's names."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        act: nn.Module,
        bias: bool = False,
        dropout: float = 0.0,
        lora: dict | None = None,
    ):
        super().__init__()
        self.gate_proj = linear(d_model, hidden, bias, [("gate", hidden)], lora)
        self.up_proj = linear(d_model, hidden, bias, [("up", hidden)], lora)
        self.down_proj = linear(hidden, d_model, bias, [("down", d_model)], lora)
        self.act = act
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x)))  # (B, T, C)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): CLIP's approximation of GELU (Radford et al. 2021; Hendrycks & Gimpel
    2016, §2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SquaredReLU(nn.Module):
    """relu(x)^2 (Primer, So et al. 2021)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()
