"""PyTorch modules for positional kinds. Each adds its encoding to x: (B, T, C) -> (B, T, C)."""

import math

import torch
import torch.nn as nn


class LearnedPositions(nn.Module):
    """Learned absolute position embeddings (GPT-2, BERT); position p reads row ``offset + p`` (OPT and
    RoBERTa keep two rows before position 0)."""

    def __init__(self, max_len: int, d_model: int, offset: int = 0):
        super().__init__()
        self.max_len, self.offset = max_len, offset  # positions 0 .. max_len - 1
        self.weight = nn.Parameter(torch.empty(offset + max_len, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) at positions 0 .. T-1, or at ``pos`` (T,) when decoding."""
        o = self.offset
        return x + (self.weight[o : o + x.size(1)] if pos is None else self.weight[pos + o])  # (T, C)


class SinusoidalPositions(nn.Module):
    """Fixed sinusoids (Vaswani et al. 2017, §3.5): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len  # positions 0 .. max_len - 1
        pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (max_len, 1)
        inv_freq = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
        )
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * inv_freq)
        pe[:, 1::2] = torch.cos(pos * inv_freq)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) at positions 0 .. T-1, or at ``pos`` (T,) when decoding."""
        return x + (self.pe[: x.size(1)] if pos is None else self.pe[pos]).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021) for one attention: cos and sin tables for the rotated
    channels of a head, applied to q and k. Computed as Hugging Face's Llama does, in float32."""

    needs_weights = False  # acts on q and k only

    def __init__(
        self,
        head_dim: int,
        max_len: int,
        theta: float = 10000.0,
        fraction: float = 1.0,
        interleaved: bool = False,
        scaling: str = "none",
        factor: float = 1.0,
        low_freq_factor: float = 1.0,
        high_freq_factor: float = 4.0,
        original_max_len: int = 8192,
        beta_fast: float = 32.0,
        beta_slow: float = 1.0,
        attention_factor: float = 1.0,
    ):
        super().__init__()
        self.max_len = max_len  # positions 0 .. max_len - 1 (the tables' rows)
        self.rot = int(head_dim * fraction) // 2 * 2  # rotated channels per head
        self.interleaved = interleaved
        inv_freq = 1.0 / theta ** (torch.arange(0, self.rot, 2, dtype=torch.int64).float() / self.rot)
        if scaling == "linear":
            inv_freq = inv_freq / factor
        elif scaling == "llama3":  # Llama 3.1: stretch low frequencies, keep high ones, blend between
            wavelen = 2 * math.pi / inv_freq
            low, high = original_max_len / low_freq_factor, original_max_len / high_freq_factor
            scaled = torch.where(wavelen > low, inv_freq / factor, inv_freq)
            smooth = (original_max_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            blended = (1 - smooth) * scaled / factor + smooth * scaled
            inv_freq = torch.where((wavelen >= high) & (wavelen <= low), blended, scaled)
        elif scaling == "yarn":  # YaRN (Peng et al. 2023): interpolate low frequencies, keep high ones
            inv_freq = self.yarn(inv_freq, theta, factor, original_max_len, beta_fast, beta_slow)
        angles = torch.arange(max_len, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (max_len, rot/2)
        if interleaved:
            angles = angles.repeat_interleave(2, dim=-1)  # pairs of neighbours share an angle
        else:
            angles = torch.cat([angles, angles], dim=-1)  # the two halves share an angle
        # YaRN's attention factor scales cos and sin (1 otherwise)
        self.register_buffer("cos", angles.cos() * attention_factor, persistent=False)  # (max_len, rot)
        self.register_buffer("sin", angles.sin() * attention_factor, persistent=False)

    def yarn(
        self, inv_freq: torch.Tensor, theta: float, factor: float, original: int, fast: float, slow: float
    ) -> torch.Tensor:
        """Frequencies blended between extrapolation (pairs that turn more than ``fast`` times over the
        original context) and interpolation by ``factor`` (those that turn fewer than ``slow`` times),
        linearly in the pair's index between (Hugging Face's ``_compute_yarn_parameters``)."""

        def pair(turns: float) -> float:  # the dimension that turns `turns` times over the context
            return self.rot * math.log(original / (turns * 2 * math.pi)) / (2 * math.log(theta))

        lo, hi = max(math.floor(pair(fast)), 0), min(math.ceil(pair(slow)), self.rot - 1)
        ramp = (torch.arange(self.rot // 2, dtype=torch.float32) - lo) / ((hi - lo) or 0.001)
        kept = 1 - ramp.clamp(0, 1)  # 1: extrapolated (as trained), 0: interpolated
        return inv_freq / factor * (1 - kept) + inv_freq * kept

    def rotate(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        qpos: torch.Tensor | None = None,
        kpos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q and k turned by the angles of their positions (0 .. T-1 unless given, (T,) each)."""
        return self.turn(q, qpos), self.turn(k, kpos)

    def turn(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        T = x.size(2)
        if pos is None:
            cos, sin = self.cos[:T], self.sin[:T]  # (T, rot), broadcast over batch and heads
        else:
            cos, sin = self.cos[pos], self.sin[pos]  # (T, rot) at the given positions
        x_rot, x_pass = x[..., : self.rot], x[..., self.rot :]
        if self.interleaved:
            pairs = x_rot.unflatten(-1, (-1, 2))
            rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
        else:
            x1, x2 = x_rot.chunk(2, dim=-1)
            rotated = torch.cat([-x2, x1], dim=-1)
        return torch.cat([x_rot * cos + rotated * sin, x_pass], dim=-1)

    def bias(self, q: torch.Tensor, k: torch.Tensor, qpos: object = None, kpos: object = None) -> None:
        return None
