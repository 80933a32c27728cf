"""PyTorch modules for parameter-efficient fine-tuning: LoRA linears and bottleneck adapters."""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F


class LoRALinear(nn.Linear):
    """A frozen linear map plus low-rank updates (Hu et al. 2022) on chosen slices of its output (a fused
    QKV projection may adapt q and v only): y = W x + b + (alpha / r) B A dropout(x) on each slice."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        bias: bool,
        slices: list[tuple[int, int]],
        r: int,
        alpha: float,
        dropout: float = 0.0,
    ):
        super().__init__(d_in, d_out, bias=bias)
        self.slices = slices  # (start, size) of each adapted part of the output
        self.r, self.scale = r, alpha / r
        self.lora_A = nn.Parameter(torch.empty(len(slices) * r, d_in))  # all slices' A, stacked
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.ParameterList(nn.Parameter(torch.zeros(size, r)) for _, size in slices)
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        a = F.linear(self.lora_dropout(x), self.lora_A).split(self.r, dim=-1)  # one (..., r) per slice
        pieces, end = [], 0
        for (start, size), a_i, b_i in zip(self.slices, a, self.lora_B, strict=True):
            pieces += [y[..., end:start], y[..., start : start + size] + self.scale * F.linear(a_i, b_i)]
            end = start + size
        return torch.cat([*pieces, y[..., end:]], dim=-1)


def linear(d_in: int, d_out: int, bias: bool, parts: list[tuple[str, int]], lora: dict | None) -> nn.Linear:
    """nn.Linear, or a LoRALinear when the spec's LoRA targets some of its named output ``parts``."""
    if lora is None or not any(name in lora["targets"] for name, _ in parts):
        return nn.Linear(d_in, d_out, bias=bias)
    slices, start = [], 0
    for name, size in parts:
        if name in lora["targets"]:
            slices.append((start, size))
        start += size
    return LoRALinear(d_in, d_out, bias, slices, lora["r"], lora["alpha"], lora["dropout"])


def linear_plain(
    d_in: int, d_out: int, bias: bool, parts: list[tuple[str, int]], lora: dict | None
) -> nn.Linear:
    """nn.Linear (this model has no LoRA; ``parts`` and ``lora`` are unused). Emitted files of models
    without LoRA carry this as ``linear``: what ``linear`` builds there, with the same parameter names."""
    return nn.Linear(d_in, d_out, bias=bias)


class Adapter(nn.Module):
    """A bottleneck adapter (Houlsby et al. 2019): x + up(act(down(x)))."""

    def __init__(self, d_model: int, hidden: int, act: nn.Module):
        super().__init__()
        self.down = nn.Linear(d_model, hidden)
        self.act = act
        self.up = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))
