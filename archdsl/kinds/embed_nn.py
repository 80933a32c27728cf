"""PyTorch modules for embedding and head kinds."""

import torch
import torch.nn as nn


class PatchEmbedding(nn.Module):
    """Image -> patch tokens: a strided convolution cuts and projects patches (ViT), plus a class token."""

    def __init__(self, channels: int, patch: int, d_model: int, cls_token: bool = True, bias: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(channels, d_model, kernel_size=patch, stride=patch, bias=bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model)) if cls_token else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixels).flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, N, d), a transposed view
        if self.cls_token is None:
            return x.contiguous()  # (B, N, d) token-major, as later layers read it (they would copy it)
        return torch.cat([self.cls_token.expand(x.size(0), -1, -1), x], dim=1)  # (B, 1 + N, d)


class Classifier(nn.Module):
    """Pool a sequence (class token or mean) and map it to class logits: (B, T, d) -> (B, classes)."""

    pools = True  # the model hands it the padding mask: a mean is over real tokens only

    def __init__(self, d_model: int, classes: int, pool: str = "cls", bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(d_model, classes, bias=bias)
        self.pool = pool

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pool == "cls":
            pooled = x[:, 0]  # (B, d)
        elif mask is None:
            pooled = x.mean(dim=1)
        else:
            w = mask.to(x.dtype)[:, :, None]  # (B, T, 1)
            pooled = (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        return self.proj(pooled)


class TokenEmbedding(nn.Embedding):
    """Token embeddings, optionally scaled by sqrt(d) and with token-type rows (type 0 is added); a
    table ``width`` wide (not d) with ``project_in`` to d after the lookup (OPT-350m), or without it
    when the stack projects after its positions and embedding norm (ALBERT)."""

    def __init__(
        self,
        vocab: int,
        d_model: int,
        scale: bool = False,
        types: int = 0,
        width: int | None = None,
        project_in: nn.Module | None = None,
    ):
        w = width or d_model
        super().__init__(vocab, w)
        self.scale = d_model**0.5 if scale else 1.0
        self.types = nn.Embedding(types, w) if types else None
        self.project_in = project_in  # (w -> d), or None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = super().forward(idx)  # (B, T, w)
        if self.scale != 1.0:
            x = x * torch.tensor(self.scale, dtype=x.dtype)  # Gemma scales in the activation dtype
        if self.types is not None:
            x = x + self.types.weight[0]  # the model reads every token as type 0
        return self.project_in(x) if self.project_in is not None else x  # (B, T, d)


class OutputLinear(nn.Linear):
    """The output projection with its model's adjustments: inputs scaled first (T5 scales by d^-0.5
    with tied embeddings), outputs soft-capped after, c * tanh(y / c) (Gemma 2's final logits); with a
    token table narrower than d, ``project_out`` (d -> the table's width) first (OPT-350m)."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        bias: bool,
        cap: float = 0.0,
        scale: float = 1.0,
        project_out: nn.Module | None = None,
    ):
        super().__init__(d_in, d_out, bias=bias)
        self.cap, self.scale = cap, scale
        self.project_out = project_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project_out is not None:
            x = self.project_out(x)  # (B, T, d) -> (B, T, width)
        y = super().forward(x * self.scale if self.scale != 1.0 else x)
        return self.cap * torch.tanh(y / self.cap) if self.cap else y


class Pooler(nn.Module):
    """tanh(W h_0 + b): BERT's summary of a sequence, from its first position."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))  # (B, d)


class MLMHead(nn.Module):
    """BERT's masked-LM head: dense, GELU, LayerNorm, then vocabulary logits with a bias; with a
    token table ``width`` wide (ALBERT) the dense map goes d -> width and the rest works at width."""

    def __init__(
        self, d_model: int, vocab: int, eps: float = 1e-12, width: int | None = None, tanh: bool = False
    ):
        super().__init__()
        w = width or d_model
        self.dense = nn.Linear(d_model, w)
        self.act = nn.GELU(approximate="tanh" if tanh else "none")
        self.norm = nn.LayerNorm(w, eps=eps)
        self.weight = nn.Parameter(torch.empty(vocab, w))  # tied to the token embedding by default
        nn.init.normal_(self.weight, std=0.02)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.norm(self.act(self.dense(x))), self.weight, self.bias)  # (B, T, V)
