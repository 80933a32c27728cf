"""PyTorch module for RetNet's multi-scale retention (imported only when a model is built or emitted)."""

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.attention_nn import RecurrentState


def retention_decays(
    n_heads: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """log γ_h for h = 0 … H-1, γ_h = 1 - 2^(-5-h) (Sun et al. 2023, §2.2; torchscale's RetNetRelPos):
    (H,)."""
    h = torch.arange(n_heads, dtype=dtype, device=device)
    return torch.log1p(-torch.exp2(-5.0 - h))


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, …) -> (-x1, x0, -x3, x2, …): the pairs turned a quarter (torchscale's
    rotate_every_two)."""
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


class MultiScaleRetention(nn.Module):
    """Gated multi-scale retention (Sun et al. 2023, "Retentive Network", §2), the arithmetic of Microsoft's
    torchscale (``MultiScaleRetention`` and ``RetNetRelPos``): per head h, with decay γ_h = 1 - 2^(-5-h),

        q_n = (x_n W_Q) e^{inθ},  k_n = (x_n W_K) e^{inθ} / sqrt(d_k),  v_n = x_n W_V
        o_n = Σ_{m<=n} γ^{n-m} (q_n · k_m) v_m / sqrt(Σ_{i=0}^{n} γ^i)
            = q_n S_n / sqrt(Σ_{i=0}^{n} γ^i),   S_n = γ S_{n-1} + k_nᵀ v_n      (the recurrent form)
        y = (swish(x W_G) ⊙ GroupNorm_h(o)) W_O

    e^{inθ} turns the pairs (2i, 2i+1) of q and k by n θ_i, θ_i = 10000^(-i / (d_k/2 - 1)) (torchscale's
    xPos-like angles). The division by sqrt(Σ γ^i) is the decay normalisation of the parallel form's
    mask (D_nm / sqrt(Σ_m D_nm)), which torchscale's recurrent form also applies; the group norm (per
    head, no affine) removes any other positive scale of a head's row, so torchscale's further
    detached score normalisation is not applied (see the kind's docs).

    Training runs the parallel form (``form = parallel``: one block of T x T decayed scores) or the
    chunkwise one (``form = chunkwise``: blocks of ``chunk``, the state of the chunks before carried by
    a loop over chunks); decoding (``setup_cache``) continues the recurrence from a state of
    (B, H, d_k, d_v / H) for a chunk of any length, one token by the recurrent form. ``mask`` (B, T), False
    for padding, zeroes a padded key's contribution; ``pos`` (T,) the absolute positions when decoding."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        value_dim: int,
        form: str = "parallel",
        chunk: int = 512,
        bias: bool = True,
        norm: str = "layernorm",
        eps: float = 1e-6,
    ):
        super().__init__()
        self.n_heads, self.key_dim, self.head_dim = n_heads, d_model // n_heads, value_dim // n_heads
        self.form, self.chunk, self.norm, self.eps = form, chunk, norm, eps
        self.scale = self.key_dim**-0.5
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, value_dim, bias=bias)
        self.g_proj = nn.Linear(d_model, value_dim, bias=bias)
        self.out_proj = nn.Linear(value_dim, d_model, bias=bias)
        self.cache: RecurrentState | None = None

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        shape = (batch, self.n_heads, self.key_dim, self.head_dim)
        self.cache = RecurrentState({"state": shape}, dtype=dtype, device=device)

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, T, _ = x.size()
        H, dk = self.n_heads, self.key_dim
        pos = torch.arange(T, device=x.device) if pos is None else pos
        # the tables in float32 at least (float64 for a float64 model), then in x's dtype
        log_decay = retention_decays(H, x.device, torch.promote_types(x.dtype, torch.float32))  # (H,)
        cos, sin, inv_norm = self.tables(pos, log_decay, x.dtype)  # (T, 1, dk) x 2, (T, H, 1)
        k = self.k_proj(x)
        if mask is not None:  # a padded position adds nothing to any state
            k = k * mask[:, :, None].to(k.dtype)
        q = (self.rotate(self.q_proj(x).view(B, T, H, dk), cos, sin)) * inv_norm  # (B, T, H, dk)
        k = self.rotate(k.view(B, T, H, dk), cos, sin) * self.scale
        v = self.v_proj(x).view(B, T, H, self.head_dim)
        if self.cache is not None and T == 1:
            y = self.step(q, k, v, log_decay)  # (1, B, H, 1, dv)
        else:
            y = self.retain(q, k, v, log_decay)  # (nc, B, H, c, dv)
        y = self.group_norm(y)
        y = y.permute(1, 0, 3, 2, 4).reshape(B, -1, H * self.head_dim)[:, :T]  # (B, T, dv)
        return self.out_proj(F.silu(self.g_proj(x)) * y)

    def tables(
        self, pos: torch.Tensor, log_decay: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rotation by n θ and the decay normalisation 1 / sqrt(Σ_{i=0}^{n} γ^i) of each position n:
        cos, sin (T, 1, d_k) and (T, H, 1), computed in log_decay's dtype."""
        half = self.key_dim // 2
        at = pos.to(log_decay.dtype)[:, None]  # (T, 1)
        angle = 10000.0 ** -torch.linspace(0, 1, half, device=pos.device, dtype=log_decay.dtype)  # (dk/2,)
        turns = at * angle.repeat_interleave(2)  # (T, dk)
        # Σ_{i=0}^{n} γ^i = (1 - γ^{n+1}) / (1 - γ), with expm1 for the γ near 1
        total = torch.expm1((at + 1) * log_decay) / torch.expm1(log_decay)  # (T, H)
        inv_norm = total.rsqrt()[:, :, None]
        return turns.cos()[:, None].to(dtype), turns.sin()[:, None].to(dtype), inv_norm.to(dtype)

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Turn the pairs of x (B, T, H, d_k) by their position's angles."""
        return x * cos + rotate_pairs(x) * sin

    def chunks(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """(B, T, H, e) -> (nc, B, H, c, e), T padded with zeros to whole chunks (a contiguous copy)."""
        B, T, H, e = x.shape
        nc = -(-T // c)
        if nc * c > T:
            x = F.pad(x, (0, 0, 0, 0, 0, nc * c - T))
        return x.view(B, nc, c, H, e).permute(1, 0, 3, 2, 4).contiguous()

    def retain(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor
    ) -> torch.Tensor:
        """The parallel form (one chunk of T) or the chunkwise one (§2.1, eq. 7): inside each chunk the
        decayed scores (Q Kᵀ ⊙ D) V; across chunks, each chunk's state Kᵀ (ζ ⊙ V), carried with decay
        γ^c, read by (Q ⊙ ξ) S. With a decoding state: its state read by every chunk, and updated."""
        T = q.size(1)
        c = T if self.form == "parallel" else min(self.chunk, T)
        q, k, v = self.chunks(q, c), self.chunks(k, c), self.chunks(v, c)  # (nc, B, H, c, ·)
        nc = q.size(0)
        i = torch.arange(c, device=q.device, dtype=log_decay.dtype)
        ld = log_decay[:, None, None]  # (H, 1, 1)
        rel = i[:, None] - i[None, :]  # (c, c)
        decay = torch.where(rel >= 0, torch.exp(rel.clamp(min=0) * ld), 0.0).to(q.dtype)  # (H, c, c)
        y = ((q @ k.transpose(-2, -1)) * decay) @ v  # (nc, B, H, c, dv)
        state = self.cache.state.to(q.dtype) if self.cache is not None else None
        if nc == 1 and state is None:
            return y
        # the chunks' own states, Σ_i γ^(c-1-i) k_iᵀ v_i, for every chunk a later one reads
        k_decay = torch.exp((c - 1 - i)[:, None] * ld).to(q.dtype)  # (H, c, 1)
        own = (k[:-1] * k_decay).transpose(-2, -1) @ v[:-1]  # (nc - 1, B, H, dk, dv)
        chunk_decay = torch.exp(c * ld).to(q.dtype)  # (H, 1, 1)
        before, s = [], state
        for j in range(nc):  # the state before each chunk: a loop over chunks, not tokens
            if s is not None:
                before.append(s)
            if j < nc - 1:
                s = own[j] if s is None else s * chunk_decay + own[j]
        first = nc - len(before)  # 1 in training: the first chunk has nothing before it
        q_decay = torch.exp((i + 1)[:, None] * ld).to(q.dtype)  # (H, c, 1)
        cross = (q[first:] * q_decay) @ torch.stack(before)  # (nc - first, B, H, c, dv)
        y = torch.cat([y[:first], y[first:] + cross]) if first else y + cross
        if state is not None:  # the state after the last real token of the last chunk
            r = T - (nc - 1) * c
            last = torch.where(i < r, torch.exp((r - 1 - i).clamp(min=0) * ld[..., 0]), 0.0)  # (H, c)
            tail = (k[-1] * last[:, :, None].to(q.dtype)).transpose(-2, -1) @ v[-1]  # (B, H, dk, dv)
            end = before[-1] * torch.exp(r * ld).to(q.dtype) + tail
            self.cache.state.copy_(end.to(self.cache.state.dtype))
        return y

    def step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor
    ) -> torch.Tensor:
        """The recurrent form for one token (§2.1, eq. 6): S_n = γ S_{n-1} + k_nᵀ v_n, o_n = q_n S_n.
        (B, 1, H, ·) -> (1, B, H, 1, dv)."""
        state = self.cache.state  # (B, H, dk, dv)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, 1, ·)
        gamma = log_decay.exp()[:, None, None].to(state.dtype)  # (H, 1, 1)
        s = state * gamma + (k.transpose(-2, -1) * v).to(state.dtype)  # (B, H, dk, dv)
        state.copy_(s)
        return (q @ s.to(q.dtype))[None]

    def group_norm(self, y: torch.Tensor) -> torch.Tensor:
        """GroupNorm with one group per head and no affine (torchscale: a LayerNorm, or in its later
        version an RMSNorm, over each head's d_v)."""
        if self.norm == "rmsnorm":
            return F.rms_norm(y, (self.head_dim,), eps=self.eps)
        return F.layer_norm(y, (self.head_dim,), eps=self.eps)
