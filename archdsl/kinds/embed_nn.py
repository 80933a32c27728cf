"""PyTorch modules for embedding and head kinds."""

import torch
import torch.nn as nn


class PatchEmbedding(nn.Module):
    """Image -> patch tokens: a strided convolution cuts and projects patches (ViT), plus a class token."""

    def __init__(self, channels: int, patch: int, d_model: int, cls_token: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(channels, d_model, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model)) if cls_token else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixels).flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, N, d)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.size(0), -1, -1), x], dim=1)  # (B, 1 + N, d)
        return x


class Classifier(nn.Module):
    """Pool a sequence (class token or mean) and map it to class logits: (B, T, d) -> (B, classes)."""

    def __init__(self, d_model: int, classes: int, pool: str = "cls", bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(d_model, classes, bias=bias)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x[:, 0] if self.pool == "cls" else x.mean(dim=1)  # (B, d)
        return self.proj(pooled)
