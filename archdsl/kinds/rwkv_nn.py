"""PyTorch modules for RWKV-4 (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era"):
time mixing (token shift, the WKV operator, receptance gate) and channel mixing (token shift, squared
ReLU, receptance gate), with Hugging Face ``RwkvForCausalLM``'s parameter names.

The WKV operator, per channel, with decay ``w = -exp(time_decay) < 0`` and bonus ``u = time_first``:

    wkv_t = (sum_{s<t} e^{(t-1-s) w + k_s} v_s + e^{u + k_t} v_t)
            / (sum_{s<t} e^{(t-1-s) w + k_s} + e^{u + k_t})

Training runs it in chunks of ``chunk`` positions (:func:`wkv`): inside a chunk every (t, s) pair's
exponent is formed and exponentiated against the exact maximum of its row, so no term overflows and the
largest is exactly 1 (the denominator is at least 1, whatever the magnitudes of keys and decays); the
chunks are joined by the state of the chunks before (numerator, denominator and their max exponent, as
Hugging Face's CPU loop keeps it), carried from chunk to chunk. Decoding keeps that state.
"""

import torch
import torch.nn as nn
from torch.nn import functional as F

from archdsl.kinds.attention_nn import RecurrentState


def no_term() -> float:
    """An exponent that stands for "no term" (padding, the empty state, pairs a chunk does not keep): far
    below any real exponent, finite (no inf - inf), and twice it still finite in float32. (A function,
    not a module constant, so that an emitted model file copies it with the code that reads it.)"""
    return -1e30


def wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype the WKV operator runs in: float32, or the activations' when wider (float64)."""
    return torch.promote_types(dtype, torch.float32)


def wkv_pairs(w: torch.Tensor, u: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exponents a chunk of c positions adds to its keys: (A, c, c) for the outputs — ``(t-1-s) w``
    below the diagonal, ``u`` on it, :func:`no_term` above — and (A, c) for the chunk's state at its
    last position, ``(c-1-s) w``."""
    at = torch.arange(c, device=w.device, dtype=w.dtype)
    dist = (at[:, None] - 1 - at[None, :]).tril(-1)  # (c, c): t - 1 - s below the diagonal
    above = torch.full((c, c), no_term(), device=w.device, dtype=w.dtype).triu(1)  # (c, c): s > t
    pairs = dist * w[:, None, None] + torch.diag_embed(u[:, None].expand(-1, c)) + above  # (A, c, c)
    last = (c - 1 - at) * w[:, None]  # (A, c)
    return pairs, last


def wkv(
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    chunk: int,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
    """WKV of (B, T, A) keys and values, chunk by chunk, in w's dtype (float32 at least: :func:`wide`)
    -> (B, A, Tp) outputs (Tp: T padded to whole chunks; the outputs are the first T) and, when
    ``state`` is given (max exponent p, scaled numerator a and denominator b, each (B, A): the state
    after the positions before), the state after the last position.

    Per chunk of c positions (c = min(chunk, T)): E = pairs + k_s (B, A, n, c, c), its rows' maxima
    r = max(max_s E, p + t w) (detached: the output does not depend on them), G = exp(E - r), and

        wkv_t = (G v + e^{p + t w - r} a) / (G 1 + e^{p + t w - r} b)

    with (p, a, b) the state before the chunk. The chunk's own state at its last position (exponents
    ``(c-1-s) w + k_s``, against their max) joins the states in a loop over chunks (not tokens):
    p' = max(p + c w, q), a' = a e^{p + c w - p'} + a_c e^{q - p'}, likewise b. Every maximum is detached
    (numerator and denominator share it); the decays ``t w`` carry gradients to ``time_decay``.
    Matmul work: ``2 B A Tp c`` (G v; the chunk states are elementwise). A fused kernel (RWKV's CUDA
    WKV) runs the recurrence sequentially per channel instead: no pair products, O(T A) memory."""
    B, T, A = k.shape
    c = min(chunk, T)
    n = -(-T // c)  # chunks
    pad = n * c - T
    # channels first, time padded to whole chunks (keys that weigh nothing): (B, A, n, c), contiguous
    dt = w.dtype
    kc = F.pad(k.transpose(1, 2).to(dt), (0, pad), value=no_term()).contiguous().view(B, A, n, c)
    vc = F.pad(v.transpose(1, 2).to(dt), (0, pad)).contiguous().view(B, A, n, c)
    pairs, last = wkv_pairs(w, u, c)

    # each chunk's state at its last position, exponents (c-1-s) w + k_s against their max: for the
    # chunks a later chunk reads (and, with a state to return, the last one's at the last real position)
    used = n if state is not None else n - 1
    f = last[None, :, None, :] + kc[:, :, :used]  # (B, A, used, c)
    if state is not None and pad:  # the last chunk's at the last real position (no decays over padding)
        at = torch.arange(c, device=k.device, dtype=dt)
        end = (c - 1 - pad - at) * w[:, None] + kc[..., -1, :]  # (B, A, c)
        f = torch.cat([f[..., :-1, :], end[..., None, :]], dim=2)
    q = f.detach().amax(dim=-1)  # (B, A, used)
    ef = torch.exp(f - q[..., None])  # (B, A, used, c)
    qa = (ef * vc[:, :, :used]).sum(dim=-1)  # (B, A, used): scaled numerators
    qb = ef.sum(dim=-1)  # (B, A, used)

    # the state before each chunk: a loop over chunks, starting from the state given (or none)
    if state is None:
        p = torch.full((B, A), no_term(), device=k.device, dtype=dt)
        a, b = torch.zeros(B, A, device=k.device, dtype=dt), torch.zeros(B, A, device=k.device, dtype=dt)
    else:
        p, a, b = (s.to(dt) for s in state)
    before: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for j in range(n):
        before.append((p, a, b))
        if j == n - 1 and state is None:
            break  # training needs no state after the last chunk
        decayed = p + (c - pad if j == n - 1 else c) * w  # the state at the chunk's last (real) position
        top = torch.maximum(decayed.detach(), q[..., j])
        e_old, e_new = torch.exp(decayed - top), torch.exp(q[..., j] - top)
        p, a, b = top, a * e_old + qa[..., j] * e_new, b * e_old + qb[..., j] * e_new
    final = (p, a, b) if state is not None else None  # the state after position T - 1
    p0, a0, b0 = (torch.stack(s, dim=-1) for s in zip(*before, strict=True))  # (B, A, n) each

    # outputs: the chunk's pairs (the bonus on the diagonal) and the state before it
    e = pairs[None, :, None] + kc[..., None, :]  # (B, A, n, c, c)
    at = torch.arange(c, device=k.device, dtype=dt)
    decayed = p0[..., None] + at * w[:, None, None]  # (B, A, n, c): the state at each position
    r = torch.maximum(e.detach().amax(dim=-1), decayed.detach())  # (B, A, n, c)
    g = torch.exp(e - r[..., None])  # (B, A, n, c, c)
    es = torch.exp(decayed - r)  # (B, A, n, c)
    num = (g @ vc[..., None])[..., 0] + es * a0[..., None]  # (B, A, n, c)
    den = g.sum(dim=-1) + es * b0[..., None]  # (B, A, n, c), at least 1
    return (num / den).view(B, A, n * c), final


def wkv_step(
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One position (B, A) of the recurrence, in w's dtype, as Hugging Face's ``rwkv_linear_attention_cpu``
    steps it: the output from the state and the bonus, then the state one position on."""
    p, a, b = (s.to(w.dtype) for s in state)
    k, v = k.to(w.dtype), v.to(w.dtype)
    top = torch.maximum(p, u + k)
    e_old, e_new = torch.exp(p - top), torch.exp(u + k - top)
    y = (e_old * a + e_new * v) / (e_old * b + e_new)
    decayed = p + w
    top = torch.maximum(decayed, k)
    e_old, e_new = torch.exp(decayed - top), torch.exp(k - top)
    return y, (top, e_old * a + e_new * v, e_old * b + e_new)


def shift(x: torch.Tensor, mask: torch.Tensor | None, cache: RecurrentState | None) -> torch.Tensor:
    """RWKV's token shift: each position's previous input (B, T, C), zero before the first token (or the
    input before this chunk, kept in ``cache.x``, which then holds this chunk's last). Padding (``mask``
    False) is zero as a previous input."""
    if mask is not None:
        x = x.masked_fill(~mask.bool()[..., None], 0.0)
    if cache is None:
        return F.pad(x[:, :-1], (0, 0, 1, 0))  # (B, T, C)
    shifted = torch.cat([cache.x[:, None].to(x.dtype), x[:, :-1]], dim=1)
    cache.x.copy_(x[:, -1])
    return shifted


class RwkvTimeMix(nn.Module):
    """RWKV-4 time mixing (Peng et al. 2023, §3.2; Hugging Face ``RwkvSelfAttention``): with x' the
    previous position's input (token shift),

        k = W_k (μ_k x + (1 - μ_k) x'),  v = W_v (μ_v x + …),  r = σ(W_r (μ_r x + …))
        out = W_o (r ⊙ wkv(k, v))

    with per-channel decay ``time_decay`` and bonus ``time_first`` (see :func:`wkv`). k, v and r are
    ``hidden`` wide (Hugging Face's ``attention_hidden_size``). Training runs the chunked WKV; with a
    cache (``setup_cache``) a forward of any length continues from the state (a single position steps
    the recurrence directly) and updates it in place."""

    def __init__(self, d_model: int, hidden: int, chunk: int = 16):
        super().__init__()
        self.hidden, self.chunk = hidden, chunk
        self.time_decay = nn.Parameter(torch.empty(hidden))
        self.time_first = nn.Parameter(torch.empty(hidden))
        self.time_mix_key = nn.Parameter(torch.empty(d_model))
        self.time_mix_value = nn.Parameter(torch.empty(d_model))
        self.time_mix_receptance = nn.Parameter(torch.empty(d_model))
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.value = nn.Linear(d_model, hidden, bias=False)
        self.receptance = nn.Linear(d_model, hidden, bias=False)
        self.output = nn.Linear(hidden, d_model, bias=False)
        self.cache: RecurrentState | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Hugging Face's initialisation of a middle layer (it varies them with the layer's depth, which
        a module does not know): decays spread from slow to fast over the channels, bonus log 0.3 with
        a zigzag, mixing ratios rising over the channels."""
        d, a = self.time_mix_key.numel(), self.hidden
        with torch.no_grad():
            h = torch.arange(a, dtype=torch.float32) / max(a - 1, 1)
            self.time_decay.copy_(-5 + 8 * h**1.35)
            zigzag = (torch.arange(a) + 1) % 3 - 1
            self.time_first.copy_(torch.full((a,), -1.2039728) + 0.5 * zigzag)  # log 0.3
            ratio = torch.arange(d, dtype=torch.float32) / d
            self.time_mix_key.copy_(ratio**0.5)
            self.time_mix_value.copy_(ratio**0.5 + 0.15)
            self.time_mix_receptance.copy_(ratio**0.25)

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C). ``mask`` (B, T): padding (False) adds nothing to the state and its
        outputs are zero. ``pos`` is not needed: the state knows where it is."""
        T = x.size(1)
        shifted = shift(x, mask, self.cache)
        dx = x - shifted  # μ x + (1 - μ) x' = x' + μ (x - x')
        k = self.key(shifted + dx * self.time_mix_key)  # (B, T, A)
        v = self.value(shifted + dx * self.time_mix_value)  # (B, T, A)
        r = torch.sigmoid(self.receptance(shifted + dx * self.time_mix_receptance))  # (B, T, A)
        dt = wide(k.dtype)
        w, u = -torch.exp(self.time_decay.to(dt)), self.time_first.to(dt)  # (A,)
        k = k.to(dt)
        if mask is not None:  # padding: a key that weighs nothing
            k = k.masked_fill(~mask.bool()[..., None], no_term())
        if self.cache is None:
            y, _ = wkv(w, u, k, v, self.chunk)
            y = y[:, :, :T].transpose(1, 2)  # (B, T, A)
        else:
            state = (self.cache.p, self.cache.a, self.cache.b)
            if T == 1:  # one position: the recurrence itself
                y, new = wkv_step(w, u, k[:, 0], v[:, 0], state)
                y = y[:, None]  # (B, 1, A)
            else:
                y, new = wkv(w, u, k, v, self.chunk, state)
                y = y[:, :, :T].transpose(1, 2)
            self.store(*new)
        if mask is not None:
            y = y.masked_fill(~mask.bool()[..., None], 0.0)
        return self.output(r * y.to(r.dtype).contiguous())

    def store(self, p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
        """Keep the state in the cache's dtype: the max exponent rounded to it, and the rounding folded
        into the scaled numerator and denominator (so half-precision decoding loses no more than the
        numbers' own rounding)."""
        cache = self.cache
        assert cache is not None
        kept = p.to(cache.p.dtype)
        fix = torch.exp(p - kept.to(p.dtype))
        cache.p.copy_(kept)
        cache.a.copy_(a * fix)
        cache.b.copy_(b * fix)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        """The state per sequence: the last input (token shift, C) and the WKV numerator, denominator and
        their max exponent (A each): ``C + 3A`` numbers, whatever the length."""
        C, A = self.time_mix_key.numel(), self.hidden
        shapes = {"x": (batch, C), "p": (batch, A), "a": (batch, A), "b": (batch, A)}
        self.cache = RecurrentState(shapes, dtype=dtype, device=device)
        self.cache.p.fill_(max(no_term(), torch.finfo(dtype).min))  # the empty state


class RwkvChannelMix(nn.Module):
    """RWKV-4 channel mixing (Peng et al. 2023, §3.3; Hugging Face ``RwkvFeedForward``): with x' the
    previous position's input,

        k = relu(W_k (μ_k x + (1 - μ_k) x'))²,  r = σ(W_r (μ_r x + (1 - μ_r) x'))
        out = r ⊙ W_v k

    W_k is d -> ``hidden`` (Hugging Face's ``intermediate_size``), W_v back, W_r d -> d. Decoding keeps
    the last input (``setup_cache``)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.time_mix_key = nn.Parameter(torch.empty(d_model))
        self.time_mix_receptance = nn.Parameter(torch.empty(d_model))
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(hidden, d_model, bias=False)
        self.cache: RecurrentState | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Mixing ratios rising over the channels (Hugging Face's, for a middle layer)."""
        d = self.time_mix_key.numel()
        with torch.no_grad():
            ratio = torch.arange(d, dtype=torch.float32) / d
            self.time_mix_key.copy_(ratio**0.5)
            self.time_mix_receptance.copy_(ratio**0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); ``mask`` (B, T): padding is zero as a previous input."""
        shifted = shift(x, mask, self.cache)
        dx = x - shifted
        k = torch.square(torch.relu(self.key(shifted + dx * self.time_mix_key)))  # (B, T, hidden)
        r = torch.sigmoid(self.receptance(shifted + dx * self.time_mix_receptance))  # (B, T, C)
        return r * self.value(k)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        """The last input per sequence (C numbers), for the token shift."""
        self.cache = RecurrentState({"x": (batch, self.time_mix_key.numel())}, dtype=dtype, device=device)
