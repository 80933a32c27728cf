"""PyTorch modules for the heads of towers models (imported only when a model is built or emitted)."""

import torch
import torch.nn as nn
from torch.nn import functional as F


class Projection(nn.Module):
    """A tower's head: pool (B, T, d) to (B, d) — class token, mean over real tokens, the first
    ``eos_id`` or the largest token id — and project it to the shared width: (B, width)."""

    def __init__(self, d_model: int, width: int, pool: str = "cls", eos_id: int = -1, bias: bool = False):
        super().__init__()
        self.proj = nn.Linear(d_model, width, bias=bias)
        self.pool, self.eos_id = pool, eos_id

    def forward(
        self, x: torch.Tensor, idx: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.pool == "cls":
            pooled = x[:, 0]  # (B, d)
        elif self.pool == "mean":
            if mask is None:
                pooled = x.mean(dim=1)
            else:
                w = mask.to(x.dtype)[:, :, None]  # (B, T, 1)
                pooled = (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        else:
            assert idx is not None, "pooling at a token reads the token ids"
            if self.pool == "eos":
                where = (idx == self.eos_id).int().argmax(dim=-1)  # (B,) its first position
            else:
                where = idx.argmax(dim=-1)  # (B,) the first position of the largest id
            pooled = x[torch.arange(x.size(0), device=x.device), where]  # (B, d)
        return self.proj(pooled)


class Contrastive(nn.Module):
    """CLIP's head: cosine similarities of two towers' embeddings, scaled by exp(logit_scale), a learned
    temperature. (Ba, e), (Bb, e) -> logits (Ba, Bb) and their transpose; with ``return_loss``, also
    the symmetric cross-entropy over the matching pairs (row i with column i)."""

    def __init__(self, logit_scale: float = 2.6592):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, return_loss: bool = False
    ) -> tuple[torch.Tensor, ...]:
        a = F.normalize(a, dim=-1)  # (Ba, e), unit rows (a zero row stays zero, never NaN)
        b = F.normalize(b, dim=-1)  # (Bb, e)
        logits = a @ b.t() * self.logit_scale.exp()  # (Ba, Bb)
        if not return_loss:
            return logits, logits.t()
        labels = torch.arange(logits.size(0), device=logits.device)  # pair i: row i, column i
        loss = (F.cross_entropy(logits.t(), labels) + F.cross_entropy(logits, labels)) / 2
        return logits, logits.t(), loss
