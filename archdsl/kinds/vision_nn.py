"""PyTorch modules for the hierarchical vision kinds: Swin's window attention and patch merging, and a
convolutional stem. Tokens are (B, rows * cols, C), the grid row-major."""

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.peft_nn import linear


def relative_position_index(window: int) -> torch.Tensor:
    """(M², M²) index into the (2M - 1)² x heads bias table: the relative (row, column) offset of key j
    from query i, shifted to start at 0 (Liu et al. 2021, §3.2)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (M², M², 2), >= 0
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def shift_mask(rows: int, cols: int, window: int, shift: int) -> torch.Tensor:
    """(windows, M², M²) additive mask of shifted windows: 0 where query and key come from the same
    region of the image before the cyclic shift, -100 elsewhere (Hugging Face's ``get_attn_mask``).
    Along each axis the regions are [0, n - M), [n - M, n - shift) and [n - shift, n)."""
    r = torch.arange(rows)
    c = torch.arange(cols)
    r_region = (r >= rows - window).long() + (r >= rows - shift).long()
    c_region = (c >= cols - window).long() + (c >= cols - shift).long()
    region = (r_region[:, None] * 3 + c_region[None, :]).float()  # (rows, cols)
    windows = (
        region.view(rows // window, window, cols // window, window).transpose(1, 2).reshape(-1, window**2)
    )
    same = windows[:, None, :] == windows[:, :, None]  # (windows, M², M²)
    return torch.zeros(same.shape).masked_fill(~same, -100.0)


class WindowAttention(nn.Module):
    """Swin's (shifted) window attention (Liu et al. 2021), Hugging Face's layout: the grid padded to
    whole windows, cyclically shifted by ``shift``, cut into M x M windows; multi-head attention in each
    with a learned relative position bias (and the shifted windows' mask); then the windows put back,
    the shift undone, the padding cut off."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        head_dim: int,
        rows: int,
        cols: int,
        window: int,
        shift: int = 0,
        bias: bool = True,
        out_bias: bool = True,
        scale: float | None = None,
        dropout: float = 0.0,
        out_dropout: float = 0.0,
        lora: dict | None = None,
    ):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        self.rows, self.cols, self.window, self.shift = rows, cols, window, shift
        self.pad_rows, self.pad_cols = -rows % window, -cols % window
        inner = n_heads * head_dim
        self.q_proj = linear(d_model, inner, bias, [("q", inner)], lora)  # Hugging Face's layout
        self.k_proj = linear(d_model, inner, bias, [("k", inner)], lora)
        self.v_proj = linear(d_model, inner, bias, [("v", inner)], lora)
        self.o_proj = linear(inner, d_model, out_bias, [("o", d_model)], lora)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, n_heads))
        self.register_buffer(
            "relative_position_index", relative_position_index(window).flatten(), persistent=False
        )
        mask = shift_mask(rows + self.pad_rows, cols + self.pad_cols, window, shift) if shift else None
        self.register_buffer("mask", mask, persistent=False)  # (windows, M², M²), or None
        self.scale = scale if scale is not None else head_dim**-0.5
        self.dropout = dropout
        self.out_dropout = nn.Dropout(out_dropout)

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """(B, rows * cols, C) -> (B * windows, M², C): padded, shifted, cut into windows."""
        B, _, C = x.shape
        M = self.window
        x = x.reshape(B, self.rows, self.cols, C)  # a view of a token-major input
        if self.pad_rows or self.pad_cols:
            x = F.pad(x, (0, 0, 0, self.pad_cols, 0, self.pad_rows))  # zeros below and to the right
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        H, W = x.shape[1], x.shape[2]
        x = x.view(B, H // M, M, W // M, M, C).transpose(2, 3)  # (B, H/M, W/M, M, M, C)
        return x.reshape(-1, M * M, C)

    def merge(self, windows: torch.Tensor, batch: int) -> torch.Tensor:
        """(B * windows, M², C) -> (B, rows * cols, C): the inverse of ``partition``."""
        B, M, C = batch, self.window, windows.size(-1)
        H, W = self.rows + self.pad_rows, self.cols + self.pad_cols
        x = windows.view(B, H // M, W // M, M, M, C).transpose(2, 3).reshape(B, H, W, C)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x[:, : self.rows, : self.cols].reshape(B, self.rows * self.cols, C)

    def heads(self, t: torch.Tensor) -> torch.Tensor:
        """(b, M², h * hs) -> (b * h, M², hs)."""
        b, n, _ = t.shape
        return (
            t.view(b, n, self.n_heads, self.head_dim)
            .transpose(1, 2)
            .reshape(b * self.n_heads, n, self.head_dim)
        )

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, rows * cols, C) -> (B, rows * cols, C). An image has no padding mask to take."""
        if mask is not None:
            raise ValueError("window attention reads a grid of image tokens: it takes no padding mask")
        B = x.size(0)
        h, n = self.n_heads, self.window**2
        windows = self.partition(x)  # (b, M², C), b = B * windows
        b = windows.size(0)
        q, k, v = (self.heads(proj(windows)) for proj in (self.q_proj, self.k_proj, self.v_proj))
        att = torch.bmm(q, k.transpose(1, 2)) * self.scale  # (b * h, M², M²)
        bias = self.relative_position_bias_table[self.relative_position_index].view(n, n, h)
        att = att.view(b, h, n, n) + bias.permute(2, 0, 1).contiguous()  # (b, h, M², M²): + the bias
        if self.mask is not None:
            att = att.view(B, -1, h, n, n) + self.mask[:, None]  # the shifted windows' regions apart
        att = F.softmax(att.view(b * h, n, n), dim=-1)
        att = F.dropout(att, self.dropout, self.training)
        y = torch.bmm(att, v)  # (b * h, M², hs)
        y = y.view(b, h, n, self.head_dim).transpose(1, 2).reshape(b, n, h * self.head_dim)
        return self.out_dropout(self.merge(self.o_proj(y), B))


class PatchMerging(nn.Module):
    """Swin's patch merging (Liu et al. 2021, §3.1): each 2 x 2 neighbourhood concatenated (an odd side
    padded with zeros), LayerNorm over the 4 C channels, a linear map to the next stage's width."""

    def __init__(self, rows: int, cols: int, d_in: int, d_out: int, eps: float = 1e-5, bias: bool = False):
        super().__init__()
        self.rows, self.cols = rows, cols
        self.norm = nn.LayerNorm(4 * d_in, eps=eps)
        self.reduction = nn.Linear(4 * d_in, d_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, rows * cols, C) -> (B, ceil(rows / 2) * ceil(cols / 2), d_out)."""
        B, _, C = x.shape
        x = x.reshape(B, self.rows, self.cols, C)  # a view of a token-major input
        if self.rows % 2 or self.cols % 2:
            x = F.pad(x, (0, 0, 0, self.cols % 2, 0, self.rows % 2))
        # Hugging Face's order: (0, 0), (1, 0), (0, 1), (1, 1) -> (B, rows / 2, cols / 2, 4 C)
        x = torch.cat([x[:, i::2, j::2] for j in range(2) for i in range(2)], dim=-1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class ConvStem(nn.Module):
    """Image -> tokens on a grid through strided convolutions, each followed by a norm (BatchNorm over
    channels, or LayerNorm over each position's channels) and, between them, an activation (LeViT:
    4 x (3 x 3, stride 2, BatchNorm), Hardswish between; CvT: one 7 x 7, stride 4, LayerNorm)."""

    def __init__(
        self,
        widths: list[int],
        kernel: int,
        stride: int,
        padding: int,
        norm: str = "batchnorm",
        activation: str = "none",
        bias: bool = False,
    ):
        super().__init__()
        pairs = [(widths[i], widths[i + 1]) for i in range(len(widths) - 1)]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, kernel, stride, padding, bias=bias) for a, b in pairs)
        norms = {"batchnorm": nn.BatchNorm2d, "layernorm": nn.LayerNorm}
        self.norms = nn.ModuleList(norms[norm](b) if norm in norms else nn.Identity() for _, b in pairs)
        acts = {"hardswish": nn.Hardswish, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
        self.act = acts[activation]() if activation in acts else nn.Identity()
        self.channels_last = norm == "layernorm"

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H' * W', d)."""
        x = pixels
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = conv(x)  # (B, c, h, w)
            if self.channels_last:
                x = norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # over each position's channels
            else:
                x = norm(x)
            if i < last:
                x = self.act(x)
        return x.flatten(2).transpose(1, 2).contiguous()  # (B, h * w, d), token-major
