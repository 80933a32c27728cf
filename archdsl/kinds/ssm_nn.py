"""PyTorch modules for state-space sequence mixers: Mamba's selective SSM (Gu & Dao 2023, "Mamba:
Linear-Time Sequence Modeling with Selective State Spaces", §3 and Algorithm 2).

Training runs a chunked selective scan with a hand-written backward (:class:`SelectiveScan`): chunk
by chunk, a parallel prefix scan over the chunk's positions (log2(chunk) doubling steps, Hillis &
Steele 1986) carries the state, and only the chunk-boundary states are kept for backward, which
recomputes the states of one chunk at a time. Decoding keeps the recurrent state and the last inputs of
the convolution (a :class:`~archdsl.kinds.attention_nn.RecurrentState`) and takes one step per token.
"""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.attention_nn import RecurrentState


def linear_scan(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """The linear recurrence h_t = a_t h_{t-1} + b_t (h_{-1} = 0) along dim 1 of (B, L, ...) tensors, or
    with ``reverse`` h_t = a_t h_{t+1} + b_t (h_L = 0), by log2(L) doubling steps (Hillis & Steele
    1986): after the step of offset k, position t holds the recurrence over its last 2k positions.
    Elementwise and in place: ``b`` becomes h, ``a`` is overwritten. Only products of the a_t (<= 1
    for a decay) and sums: nothing over- or underflows that the sequential recurrence would not."""
    L, k = a.size(1), 1
    while k < L:
        if reverse:
            b[:, :-k] += a[:, :-k] * b[:, k:]
            if 2 * k < L:
                a[:, :-k] = a[:, :-k] * a[:, k:]
        else:
            b[:, k:] += a[:, k:] * b[:, :-k]
            if 2 * k < L:
                a[:, k:] = a[:, k:] * a[:, :-k]
        k *= 2
    return b


class SelectiveScan(torch.autograd.Function):
    """Mamba's selective scan (Gu & Dao 2023, Algorithm 2) over (B, T, E) inputs u, step sizes Δ, a
    diagonal A (E, N) and input-dependent B, C (B, T, N):

        h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) B_t,    y_t = h_t C_t        (h_t: (E, N))

    from a state h0 (B, E, N) (zeros in training; the decoding state when continuing one). Returns y
    (B, T, E) and the last state. In chunks of ``chunk`` positions: each chunk's states by a parallel
    scan, then y_t = h_t C_t as a batched matmul (2 B T E N FLOPs). The chunk-boundary states are kept
    for backward (fp32, B ceil(T / chunk) E N); backward goes through the chunks from the last,
    recomputes each chunk's states from its boundary state, runs the adjoint recurrence
    g_t = dh_t + exp(Δ_{t+1} A) ⊙ g_{t+1} backwards by the same scan, and contracts over N or E with
    batched matmuls: the gradients of C, of Δ through exp(ΔA), of Δu through B, of B, and (if A
    trains) of A, each 2 B T E N FLOPs. Everything else is elementwise. Computed in fp32 (or the
    inputs' wider type). A fused CUDA kernel (the paper's) does the same work in one pass over the
    chunk in SRAM, keeping no boundary states, and counts its state reads as elementwise work.
    The gradient with respect to h0 is not computed: the decoding state is not trained through."""

    @staticmethod
    def forward(ctx, u, delta, a, b, c, h0, chunk):  # type: ignore[no-untyped-def]
        """u, Δ (B, T, E); a = A (E, N); b = B, c = C (B, T, N); h0 (B, E, N) or None."""
        B, T, E = u.shape
        dt = torch.promote_types(u.dtype, torch.float32)
        h = u.new_zeros(B, E, a.size(1), dtype=dt) if h0 is None else h0.to(dt)
        ys, starts = [], []
        for s in range(0, T, chunk):
            starts.append(h)
            H = SelectiveScan.states(u[:, s : s + chunk], delta[:, s : s + chunk], a, b[:, s : s + chunk], h)
            ys.append((H @ c[:, s : s + chunk, :, None].to(dt)).squeeze(-1))  # (B, L, E)
            h = H[:, -1].clone()  # (B, E, N), not a view that keeps the chunk's states
        ctx.chunk = chunk
        ctx.save_for_backward(u, delta, a, b, c, torch.stack(starts, dim=1))
        ctx.mark_non_differentiable(h)
        return torch.cat(ys, dim=1).to(u.dtype), h

    @staticmethod
    def states(
        u: torch.Tensor, delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor, h: torch.Tensor
    ) -> torch.Tensor:
        """The states (B, L, E, N) of one chunk from the state h (B, E, N) before it."""
        dt = h.dtype
        decay = torch.exp(delta.to(dt)[..., None] * a.to(dt))  # (B, L, E, N): exp(Δ_t A)
        x = (delta.to(dt) * u.to(dt))[..., None] * b.to(dt)[:, :, None, :]  # (B, L, E, N): Δ_t u_t B_t
        x[:, 0] += decay[:, 0] * h
        return linear_scan(decay, x)

    @staticmethod
    def backward(ctx, dy, _dh):  # type: ignore[no-untyped-def]
        u, delta, a, b, c, starts = ctx.saved_tensors
        need_u, need_delta, need_a, need_b, need_c = ctx.needs_input_grad[:5]
        chunk, T, dt = ctx.chunk, u.size(1), starts.dtype
        du, ddelta, db, dc = [], [], [], []
        da = torch.zeros_like(a, dtype=dt)
        af = a.to(dt)
        carry = None  # exp(Δ_{t+1} A) g_{t+1} at the first position of the chunk after
        for j, s in reversed(list(enumerate(range(0, T, chunk)))):
            uj, dj, bj, cj, dyj = (x[:, s : s + chunk].to(dt) for x in (u, delta, b, c, dy))
            decay = torch.exp(dj[..., None] * af)  # (B, L, E, N)
            H = SelectiveScan.states(uj, dj, a, bj, starts[:, j])
            if need_c:
                dc.append((dyj[:, :, None, :] @ H).squeeze(2))  # (B, L, N)
            G = dyj[..., None] * cj[:, :, None, :]  # (B, L, E, N): dy_t C_t
            if carry is not None:
                G[:, -1] += carry
            after = torch.cat([decay[:, 1:], torch.ones_like(decay[:, :1])], dim=1)  # exp(Δ_{t+1} A)
            G = linear_scan(after, G, reverse=True)  # the adjoint states g_t
            carry = decay[:, 0] * G[:, 0]
            if need_u or need_delta:
                dxu = (G @ bj[..., None]).squeeze(-1)  # (B, L, E): the gradient of Δ_t u_t
                du.append(dxu * dj)
                ddelta.append(dxu * uj)
            if need_delta or need_a:
                before = torch.cat([starts[:, j, None], H[:, :-1]], dim=1)  # h_{t-1}
                dlog = G * before * decay  # (B, L, E, N): the gradient of Δ_t A
                Bs, L, E, N = dlog.shape
                dlog = dlog.permute(2, 0, 1, 3).reshape(E, Bs * L, N)  # per channel
                if need_delta:
                    ddelta[-1] = ddelta[-1] + (dlog @ af[..., None]).view(E, Bs, L).permute(1, 2, 0)
                if need_a:
                    da += (dlog.transpose(1, 2) @ dj.permute(2, 0, 1).reshape(E, Bs * L, 1)).squeeze(-1)
            if need_b:
                db.append((G.transpose(-1, -2) @ (dj * uj)[..., None]).squeeze(-1))  # (B, L, N)

        def joined(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor | None:
            return torch.cat(parts[::-1], dim=1).to(like.dtype) if parts else None

        return (
            joined(du, u) if need_u else None,
            joined(ddelta, delta) if need_delta else None,
            da.to(a.dtype) if need_a else None,
            joined(db, b) if need_b else None,
            joined(dc, c) if need_c else None,
            None,
            None,
        )


class DeltaProjection(nn.Module):
    """Δ's projection: rank R -> E with a bias, initialised as in Mamba (Gu & Dao 2023, §3.6): weights
    uniform in ±R^-1/2, and biases such that softplus(bias) = Δ spreads log-uniformly over [0.001, 0.1]
    (floored at 1e-4). Its own class, so the model's N(0, 0.02) initialisation of linear maps
    leaves it alone."""

    def __init__(self, rank: int, d_inner: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_inner, rank).uniform_(-(rank**-0.5), rank**-0.5))
        lo, hi = math.log(1e-3), math.log(1e-1)
        step = torch.exp(torch.rand(d_inner) * (hi - lo) + lo).clamp(min=1e-4)
        self.bias = nn.Parameter(step + torch.log(-torch.expm1(-step)))  # softplus^-1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class MambaState(RecurrentState):
    """Mamba's decoding state: the last k - 1 inputs of the convolution (B, E, k - 1) and the SSM state
    (B, E, N)."""

    def __init__(self, batch: int, d_inner: int, d_conv: int, d_state: int, **factory):
        super().__init__({"conv": (batch, d_inner, d_conv - 1), "ssm": (batch, d_inner, d_state)}, **factory)


class Mamba(nn.Module):
    """The Mamba mixer (Gu & Dao 2023, Fig. 3), Hugging Face's parameter names:

        x, z = in_proj(h)                                 d -> 2E, E = expand d
        x = silu(conv1d(x))                               causal depthwise, width k
        Δ, B, C = x_proj(x)                               E -> R + 2N
        Δ = softplus(dt_proj(Δ))                          R -> E, with a bias
        y = SelectiveScan(x, Δ, A = -exp(A_log), B, C) + D x
        out = out_proj(y * silu(z))                       E -> d

    ``mask`` (B, T), False for padding: a padded position feeds zeros to the convolution and to the
    scan, with Δ = 0 there, so it leaves the SSM state as it was (Hugging Face zeroes the inputs only,
    so its state decays over padding; the two agree for left and right padding). While ``cache`` is set
    (``setup_cache``), forward continues from the state for a chunk of any length and updates it."""

    def __init__(
        self,
        d_model: int,
        d_inner: int,
        d_state: int,
        d_conv: int,
        dt_rank: int,
        conv_bias: bool = True,
        bias: bool = False,
        chunk: int = 256,
    ):
        super().__init__()
        self.d_inner, self.d_state, self.d_conv, self.dt_rank, self.chunk = (
            d_inner,
            d_state,
            d_conv,
            dt_rank,
            chunk,
        )
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = DeltaProjection(dt_rank, d_inner)
        # S4D-real initialisation: A = -(1, 2, …, N) for every channel
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1)
        )
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        self.cache: MambaState | None = None

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        keep = None if mask is None else mask.bool()[..., None]  # (B, T, 1)
        x, z = self.in_proj(x).chunk(2, dim=-1)  # (B, T, E) each
        if keep is not None:
            x = x.masked_fill(~keep, 0.0)
        u = F.silu(self.conv(x.transpose(1, 2))).transpose(1, 2).contiguous()  # (B, T, E)
        if keep is not None:
            u = u.masked_fill(~keep, 0.0)
        dt, Bm, Cm = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (B, T, E)
        if keep is not None:
            delta = delta.masked_fill(~keep, 0.0)
        A = -torch.exp(self.A_log)  # (E, N)
        if self.cache is None:
            y, _ = SelectiveScan.apply(u, delta, A, Bm, Cm, None, self.chunk)
        elif x.size(1) == 1:
            y = self.step(u, delta, A, Bm, Cm)
        else:
            y, last = SelectiveScan.apply(u, delta, A, Bm, Cm, self.cache.ssm, self.chunk)
            self.cache.ssm.copy_(last)
        y = (y + u * self.D) * F.silu(z)  # (B, T, E)
        return self.out_proj(y)

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        """Causal depthwise convolution, (B, E, T) -> (B, E, T): k - 1 zeros on the left, or the cached
        inputs before these."""
        k = self.d_conv
        if self.cache is None:
            return self.conv1d(F.pad(x, (k - 1, 0)))
        xc = torch.cat([self.cache.conv, x.to(self.cache.conv.dtype)], dim=-1)  # (B, E, k - 1 + T)
        if k > 1:
            self.cache.conv.copy_(xc[..., -(k - 1) :])
        return self.conv1d(xc.to(x.dtype))

    def step(
        self, u: torch.Tensor, delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """One token (B, 1, ·) from the cached state: h = exp(Δ A) ⊙ h + (Δ u) B, y = h C."""
        assert self.cache is not None
        dt, like = torch.promote_types(u.dtype, torch.float32), u.dtype
        u, delta, b, c = u[:, 0].to(dt), delta[:, 0].to(dt), b[:, 0].to(dt), c[:, 0].to(dt)
        h = torch.exp(delta[..., None] * a.to(dt)) * self.cache.ssm.to(dt)  # (B, E, N)
        h = h + (delta * u)[..., None] * b[:, None, :]
        self.cache.ssm.copy_(h)
        return (h @ c[..., None]).transpose(1, 2).to(like)  # (B, 1, E)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        self.cache = MambaState(batch, self.d_inner, self.d_conv, self.d_state, dtype=dtype, device=device)
