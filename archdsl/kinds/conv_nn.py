"""PyTorch modules for convolution kinds."""

import torch
import torch.nn as nn
from torch.nn import functional as F


class ConformerConv(nn.Module):
    """Conformer convolution module (Gulati et al. 2020, Fig. 2), ESPnet's names: pointwise conv
    d -> 2d, GLU over channels, depthwise conv (kernel k, causal or centred padding), BatchNorm or
    LayerNorm, SiLU, pointwise conv d -> d, dropout."""

    def __init__(
        self,
        d_model: int,
        kernel: int,
        causal: bool = False,
        norm: str = "batchnorm",
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, 1, bias=bias)
        self.depthwise_conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model, bias=bias)
        self.norm = nn.BatchNorm1d(d_model) if norm == "batchnorm" else nn.LayerNorm(d_model)
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, 1, bias=bias)
        self.dropout = nn.Dropout(dropout)
        # (left, right) padding of the depthwise conv: all on the left when causal
        self.padding = (kernel - 1, 0) if causal else ((kernel - 1) // 2, kernel // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C); ``mask`` (B, T) marks real tokens: padding is zeroed before the depthwise conv
        (as ESPnet does), so it cannot reach real positions."""
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)  # (B, C, T) -> (B, 2C, T) -> (B, C, T)
        if mask is not None:
            x = x.masked_fill(~mask.bool()[:, None, :], 0.0)
        x = self.depthwise_conv(F.pad(x, self.padding))  # (B, C, T + k - 1) -> (B, C, T)
        if isinstance(self.norm, nn.LayerNorm):
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # over channels
        else:
            x = self.norm(x)
        x = self.pointwise_conv2(F.silu(x))  # (B, C, T)
        # (B, T, C) token-major, as later layers read it (a view would be copied by each linear map)
        return self.dropout(x.transpose(1, 2).contiguous())

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        raise NotImplementedError(
            "the Conformer convolution has no decoding state yet: generate with full forwards instead"
        )
