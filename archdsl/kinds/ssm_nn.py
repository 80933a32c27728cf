"""PyTorch modules for state-space sequence mixers: Mamba's selective SSM (Gu & Dao 2023, "Mamba:
Linear-Time Sequence Modeling with Selective State Spaces", §3 and Algorithm 2) and Mamba-2's
state-space dual (Dao & Gu 2024, "Transformers are SSMs", §6–7).

Mamba trains with a chunked selective scan and a hand-written backward (:class:`SelectiveScan`):
chunk by chunk, a parallel prefix scan over the chunk's positions (log2(chunk) doubling steps, Hillis &
Steele 1986) carries the state, and only the chunk-boundary states are kept for backward, which
recomputes the states of one chunk at a time. Mamba-2's scalar decay per head lets it run as masked
attention within chunks and a short recurrence across them (:func:`ssd`, through autograd). Decoding
keeps the recurrent state and the last inputs of the convolution (a
:class:`~archdsl.kinds.attention_nn.RecurrentState`) and takes one step per token.
"""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.attention_nn import RecurrentState
from archdsl.kinds.norm_nn import RMSNorm


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
        (Δ, B, C = RMSNorm(Δ), RMSNorm(B), RMSNorm(C))    with ``norm_eps``: Jamba
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
        norm_eps: float | None = None,
    ):
        super().__init__()
        self.d_inner, self.d_state, self.d_conv = d_inner, d_state, d_conv
        self.dt_rank, self.chunk = dt_rank, chunk
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.norms = norm_eps is not None
        if norm_eps is not None:  # Jamba: RMSNorms on Δ, B and C (Lieber et al. 2024, §3.2)
            self.dt_layernorm = RMSNorm(dt_rank, eps=norm_eps)
            self.b_layernorm = RMSNorm(d_state, eps=norm_eps)
            self.c_layernorm = RMSNorm(d_state, eps=norm_eps)
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
        if self.norms:
            dt, Bm, Cm = self.dt_layernorm(dt), self.b_layernorm(Bm), self.c_layernorm(Cm)
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


def segment_sums(a: torch.Tensor) -> torch.Tensor:
    """(..., L) -> (..., L, L): entry (l, s) is a_{s+1} + … + a_l for s <= l, -inf above the diagonal
    (a cumulative sum of masked copies, never a difference of two long sums: the SSD paper's stable
    ``segsum``)."""
    L = a.size(-1)
    x = a[..., None].expand(*a.shape, L)  # (..., L, L): column s holds a
    below = torch.ones(L, L, dtype=torch.bool, device=a.device).tril(-1)
    x = x.masked_fill(~below, 0.0).cumsum(dim=-2)  # (l, s): sum of a_j for s < j <= l
    return x.masked_fill(~below.logical_or(torch.eye(L, dtype=torch.bool, device=a.device)), -torch.inf)


def ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    chunk: int,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mamba-2's state-space dual (Dao & Gu 2024, "Transformers are SSMs", §6, Listing 1) in chunks:
    x (B, T, H, P), Δ (B, T, H), A (H,), B and C (B, T, G, N) shared by the H / G heads of a group,
    from the state h0 (B, H, P, N) (zeros when None). Per head

        h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t^T,    y_t = h_t C_t,

    computed in chunks of L = min(chunk, T) positions (the sequence padded to whole chunks): within a
    chunk as masked attention, Y = (C B^T ∘ exp(segsum(Δ A))) (Δ x); then, with several chunks or a
    state h0, the chunk's contribution to the state, S_k = Σ_l exp(ΔA_{l+1..L}) (Δ x_l) B_l^T, the
    states carried across chunks by a loop over chunks (elementwise), and each chunk reading the state
    before it, C_l S_{k-1}^T exp(ΔA_{1..l}) (with one chunk and no h0 the state before is zero and the
    one after not wanted: None is returned for it). Every exponent is a sum of Δ A <= 0 over a
    segment: nothing overflows. Batched matmuls: 2 B T_p L (G N + H P) FLOPs, and 4 B T_p H P N for
    the states, T_p the padded length. Returns y (B, T, H, P) and the last state (B, H, P, N);
    computed in fp32 (or the inputs' wider type)."""
    Bs, T, H, P = x.shape
    G, N = b.shape[2:]
    Q = H // G  # heads per group
    L = min(chunk, T)
    nc = -(-T // L)
    pad = nc * L - T
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, dt, a, b, c = x.to(dtype), dt.to(dtype), a.to(dtype), b.to(dtype), c.to(dtype)

    def chunked(t: torch.Tensor) -> torch.Tensor:
        """(B, T, G, ...) -> (B, nc, G, L, ...), padded with zeros to whole chunks, contiguous."""
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.view(Bs, nc, L, *t.shape[2:]).transpose(2, 3).contiguous()

    xdt = chunked((x * dt[..., None]).view(Bs, T, G, Q, P))  # (B, nc, G, L, Q, P): Δ x
    xdt = xdt.transpose(3, 4).contiguous()  # (B, nc, G, Q, L, P)
    adt = chunked((dt * a).view(Bs, T, G, Q)).transpose(3, 4).contiguous()  # (B, nc, G, Q, L): Δ A
    b, c = chunked(b), chunked(c)  # (B, nc, G, L, N)
    cum = adt.cumsum(dim=-1)  # Δ A summed from the chunk's start

    # 1. within each chunk: masked "attention" with decays
    scores = (c @ b.transpose(-1, -2))[:, :, :, None] * torch.exp(segment_sums(adt))  # (B, nc, G, Q, L, L)
    y = scores @ xdt  # (B, nc, G, Q, L, P)
    if nc == 1 and h0 is None:
        return y.permute(0, 1, 4, 2, 3, 5).reshape(Bs, L, H, P)[:, :T], None

    # 2. each chunk's contribution to the state
    xd = xdt * torch.exp(cum[..., -1:] - cum)[..., None]  # decayed to the chunk's end
    states = (xd.transpose(-1, -2).reshape(Bs, nc, G, Q * P, L) @ b).view(Bs, nc, H, P, N)

    # 3. across chunks: the state before each chunk
    h = x.new_zeros(Bs, H, P, N) if h0 is None else h0.to(dtype)
    whole = torch.exp(cum[..., -1]).view(Bs, nc, H)  # a chunk's total decay
    before = []
    for k in range(nc):
        before.append(h)
        h = whole[:, k, :, None, None] * h + states[:, k]

    # 4. each chunk reads the state before it
    prev = torch.stack(before, dim=1).view(Bs, nc, G, Q * P, N)
    y_off = (c @ prev.transpose(-1, -2)).view(Bs, nc, G, L, Q, P)  # (B, nc, G, L, Q, P)
    y = y + (y_off * torch.exp(cum).transpose(3, 4)[..., None]).transpose(3, 4)
    return y.permute(0, 1, 4, 2, 3, 5).reshape(Bs, nc * L, H, P)[:, :T], h


class GatedRMSNorm(nn.Module):
    """Mamba-2's output norm (Dao & Gu 2024, §7.3): RMSNorm of y ⊙ silu(z) over groups of E / G
    channels, a gain per channel; computed in fp32, as Hugging Face's ``MambaRMSNormGated``."""

    def __init__(self, d_inner: int, n_groups: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_inner))
        self.n_groups, self.eps = n_groups, eps

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = y.float() * F.silu(z.float())  # (B, T, E)
        g = h.view(*h.shape[:-1], self.n_groups, -1)  # (B, T, G, E / G)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * g.view_as(h).to(y.dtype)


class Mamba2State(RecurrentState):
    """Mamba-2's decoding state: the last k - 1 inputs of the convolution over x, B and C
    (B, E + 2 G N, k - 1) and the SSM state (B, H, P, N)."""

    def __init__(
        self, batch: int, conv_dim: int, d_conv: int, heads: int, head_dim: int, d_state: int, **factory
    ):
        shapes = {"conv": (batch, conv_dim, d_conv - 1), "ssm": (batch, heads, head_dim, d_state)}
        super().__init__(shapes, **factory)


class Mamba2(nn.Module):
    """The Mamba-2 mixer (Dao & Gu 2024, §7, Fig. 6), Hugging Face's parameter names:

        z, xBC, Δ = in_proj(h)                d -> E + (E + 2 G N) + H,  E = H P
        x, B, C = silu(conv1d(xBC))           causal depthwise, width k
        Δ = softplus(Δ + dt_bias)             one step per head
        y = SSD(x, Δ, A = -exp(A_log), B, C) + D x     A, D: one per head
        out = out_proj(norm(y, z))            gated RMSNorm, G groups

    Padding (``mask``) is handled as in :class:`Mamba`; while ``cache`` is set, forward continues from
    the state for a chunk of any length."""

    def __init__(
        self,
        d_model: int,
        heads: int,
        head_dim: int,
        n_groups: int,
        d_state: int,
        d_conv: int,
        conv_bias: bool = True,
        bias: bool = False,
        chunk: int = 256,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.heads, self.head_dim, self.n_groups, self.d_state = heads, head_dim, n_groups, d_state
        self.d_inner, self.d_conv, self.chunk = heads * head_dim, d_conv, chunk
        self.conv_dim = self.d_inner + 2 * n_groups * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + heads, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, bias=conv_bias)
        lo, hi = math.log(1e-3), math.log(1e-1)
        step = torch.exp(torch.rand(heads) * (hi - lo) + lo).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(step + torch.log(-torch.expm1(-step)))  # softplus^-1 of Δ in [1e-3, 0.1]
        self.A_log = nn.Parameter(torch.log(torch.arange(1, heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(heads))
        self.norm = GatedRMSNorm(self.d_inner, n_groups, eps)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.cache: Mamba2State | None = None

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, T, _ = x.shape
        H, P, GN = self.heads, self.head_dim, self.n_groups * self.d_state
        keep = None if mask is None else mask.bool()[..., None]  # (B, T, 1)
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, H], dim=-1)
        if keep is not None:
            xbc = xbc.masked_fill(~keep, 0.0)
        xbc = F.silu(self.conv(xbc.transpose(1, 2))).transpose(1, 2).contiguous()  # (B, T, E + 2GN)
        if keep is not None:
            xbc = xbc.masked_fill(~keep, 0.0)
        xs, b, c = xbc.split([self.d_inner, GN, GN], dim=-1)
        xs = xs.view(B, T, H, P)
        b, c = b.view(B, T, self.n_groups, self.d_state), c.view(B, T, self.n_groups, self.d_state)
        dt = F.softplus(dt + self.dt_bias)  # (B, T, H)
        if keep is not None:
            dt = dt.masked_fill(~keep, 0.0)
        A = -torch.exp(self.A_log)  # (H,)
        if self.cache is None:
            y, _ = ssd(xs, dt, A, b, c, self.chunk)
        elif T == 1:
            y = self.step(xs, dt, A, b, c)
        else:
            y, last = ssd(xs, dt, A, b, c, self.chunk, self.cache.ssm)
            assert last is not None  # from a state there is one after
            self.cache.ssm.copy_(last)
        y = y.to(x.dtype) + xs * self.D[:, None]  # (B, T, H, P)
        return self.out_proj(self.norm(y.reshape(B, T, self.d_inner), z))

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        """Causal depthwise convolution, (B, C, T) -> (B, C, T), as :meth:`Mamba.conv`."""
        k = self.d_conv
        if self.cache is None:
            return self.conv1d(F.pad(x, (k - 1, 0)))
        xc = torch.cat([self.cache.conv, x.to(self.cache.conv.dtype)], dim=-1)  # (B, C, k - 1 + T)
        if k > 1:
            self.cache.conv.copy_(xc[..., -(k - 1) :])
        return self.conv1d(xc.to(x.dtype))

    def step(
        self, x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """One token from the cached state: h = exp(Δ A) h + Δ x B^T, y = h C, per head."""
        assert self.cache is not None
        dtype, like = torch.promote_types(x.dtype, torch.float32), x.dtype
        B, H, G = x.size(0), self.heads, self.n_groups
        x, dt = x[:, 0].to(dtype), dt[:, 0].to(dtype)  # (B, H, P), (B, H)
        b = b[:, 0].to(dtype).repeat_interleave(H // G, dim=1)  # (B, H, N): each head's group
        c = c[:, 0].to(dtype).repeat_interleave(H // G, dim=1)
        h = torch.exp(dt * a.to(dtype))[..., None, None] * self.cache.ssm.to(dtype)  # (B, H, P, N)
        h = h + (dt[..., None] * x)[..., None] * b[:, :, None, :]
        self.cache.ssm.copy_(h)
        return (h @ c[..., None]).view(B, 1, H, -1).to(like)  # (B, 1, H, P)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        self.cache = Mamba2State(
            batch,
            self.conv_dim,
            self.d_conv,
            self.heads,
            self.head_dim,
            self.d_state,
            dtype=dtype,
            device=device,
        )
