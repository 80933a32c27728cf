"""Mamba's selective state-space mixer: the chunked scan and its hand-written backward against the
sequential recurrence (and autograd through it), numerical stability over long sequences with strong
decay, chunk-size invariance, padding, exact costs for every length, linear memory, decoding, and
hybrid layer patterns with attention."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from test_cost_vs_torch import assert_costs_match, assert_train_step_matches
from test_kinds_efficient import LargestTensor, assert_exact_costs, make, module

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.ir import Value
from archdsl.kinds import REGISTRY, ActCfg, Ctx
from archdsl.kinds.ssm_nn import SelectiveScan

D = 24
CTX = Ctx(d_model=D, vocab=37, stack="decoder")


def sequential(u, delta, a, b, c, h0=None):  # type: ignore[no-untyped-def]
    """The recurrence as written in the paper, one position at a time (the reference)."""
    B, T, E = u.shape
    h = torch.zeros(B, E, a.size(1), dtype=u.dtype) if h0 is None else h0
    ys = []
    for t in range(T):
        h = torch.exp(delta[:, t, :, None] * a) * h + (delta[:, t] * u[:, t])[..., None] * b[:, t, None, :]
        ys.append((h * c[:, t, None, :]).sum(-1))
    return torch.stack(ys, dim=1), h


def inputs(b: int, t: int, e: int, n: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> list[Any]:
    """u, Δ (b, t, e); A (e, n); B, C (b, t, n)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, t, e, generator=g, dtype=dtype)
    delta = torch.rand(b, t, e, generator=g, dtype=dtype) * 0.5
    a = -torch.rand(e, n, generator=g, dtype=dtype) * 4
    bm, c = torch.randn(b, t, n, generator=g, dtype=dtype), torch.randn(b, t, n, generator=g, dtype=dtype)
    return [u, delta, a, bm, c]


# -- the scan ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 17, 64])
def test_scan_equals_the_recurrence(chunk: int) -> None:
    args = inputs(2, 17, 5, 3)
    h0 = torch.randn(2, 5, 3, dtype=torch.float64)
    for start in (None, h0):
        y, last = SelectiveScan.apply(*args, start, chunk)
        want, want_last = sequential(*args, start)
        torch.testing.assert_close(y, want, rtol=0, atol=1e-12)
        torch.testing.assert_close(last, want_last, rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 4, 7, 40])
def test_scan_gradients_equal_autograd_through_the_recurrence(chunk: int) -> None:
    args = [x.requires_grad_() for x in inputs(2, 13, 4, 3)]
    dy = torch.randn(2, 13, 4, dtype=torch.float64)
    got = torch.autograd.grad((SelectiveScan.apply(*args, None, chunk)[0] * dy).sum(), args)
    want = torch.autograd.grad((sequential(*args)[0] * dy).sum(), args)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    torch.autograd.gradcheck(lambda *x: SelectiveScan.apply(*x, None, chunk)[0], args)


def test_scan_computes_only_the_gradients_asked_for() -> None:
    """A frozen A (or frozen inputs) gets no gradient, and the others are unchanged."""
    u, delta, a, b, c = inputs(1, 9, 3, 2)
    u.requires_grad_()
    b.requires_grad_()
    y, _ = SelectiveScan.apply(u, delta, a, b, c, None, 4)
    gu, gb = torch.autograd.grad(y.sum(), [u, b])
    wu, wb = torch.autograd.grad(sequential(u, delta, a, b, c)[0].sum(), [u, b])
    torch.testing.assert_close((gu, gb), (wu, wb))


def test_scan_is_stable_over_long_sequences_with_strong_decay() -> None:
    """exp of the cumulative Δ A over 4096 positions is far below fp32's range (e^-10^5): the scan
    only ever multiplies decays (<= 1) and adds, so fp32 agrees with the fp64 recurrence."""
    B, T, E, N = 1, 4096, 3, 2
    g = torch.Generator().manual_seed(3)
    u = torch.randn(B, T, E, generator=g, dtype=torch.float64)
    delta = torch.rand(B, T, E, generator=g, dtype=torch.float64) * 4 + 0.5  # strong, varying steps
    a = torch.tensor([[-16.0, -1e-3]] * E, dtype=torch.float64)  # fast and very slow decay
    b, c = torch.randn(B, T, N, generator=g, dtype=torch.float64), torch.randn(B, T, N, generator=g)
    c = c.double()
    want, _ = sequential(u, delta, a, b, c)
    for chunk in (256, 4096):
        args = [x.float().requires_grad_() for x in (u, delta, a, b, c)]
        y, _ = SelectiveScan.apply(*args, None, chunk)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4)
        grads = torch.autograd.grad(y.sum(), args)
        assert all(torch.isfinite(x).all() for x in grads)


# -- the module ----------------------------------------------------------------------------------------


def test_module_is_independent_of_the_chunk_length() -> None:
    """Outputs and every parameter's gradient agree for chunks of 1, 3 and one chunk."""
    x = torch.randn(2, 11, D, generator=torch.Generator().manual_seed(0))
    results = []
    for chunk in (1, 3, 256):
        mod = module(make("mamba", d_state=4, d_conv=3, chunk=chunk)).double().train()
        y = mod(x.double())
        grads = torch.autograd.grad((y * y).sum(), list(mod.parameters()))
        results.append((y, grads))
    for y, grads in results[1:]:
        torch.testing.assert_close(y, results[0][0])
        torch.testing.assert_close(grads, results[0][1])


def test_module_equals_the_paper_written_out() -> None:
    """in_proj, causal conv, SiLU, x_proj, softplus(dt_proj), the recurrence, D, the SiLU gate,
    out_proj — by hand, position by position."""
    mod = module(make("mamba", d_state=3, d_conv=4, expand=2, dt_rank=5, bias=True)).double()
    with torch.no_grad():
        for p in mod.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 9, D, dtype=torch.float64)
    E, k = mod.d_inner, mod.d_conv
    with torch.no_grad():
        xz = x @ mod.in_proj.weight.T + mod.in_proj.bias
        h, z = xz[..., :E], xz[..., E:]
        w = mod.conv1d.weight[:, 0]  # (E, k)
        padded = torch.cat([torch.zeros(2, k - 1, E, dtype=x.dtype), h], dim=1)
        conv = torch.stack([(padded[:, t : t + k] * w.T).sum(1) for t in range(9)], 1) + mod.conv1d.bias
        u = torch.nn.functional.silu(conv)
        dbc = u @ mod.x_proj.weight.T
        dt, b, c = dbc.split([5, 3, 3], dim=-1)
        delta = torch.nn.functional.softplus(dt @ mod.dt_proj.weight.T + mod.dt_proj.bias)
        y, _ = sequential(u, delta, -torch.exp(mod.A_log), b, c)
        y = (y + u * mod.D) * torch.nn.functional.silu(z)
        want = y @ mod.out_proj.weight.T + mod.out_proj.bias
        torch.testing.assert_close(mod(x), want)


@pytest.mark.parametrize("d_conv", [1, 4])
def test_padding_leaves_the_state_unchanged(d_conv: int) -> None:
    """Left padding gives the unpadded outputs; with a convolution of width 1, padding anywhere does
    (Δ = 0 there: the state passes unchanged; a wider convolution still sees the padding's zeros)."""
    mod = module(make("mamba", d_state=4, d_conv=d_conv, chunk=3, bias=True)).double()
    x = torch.randn(1, 7, D, dtype=torch.float64)
    want = mod(x)
    left = torch.cat([torch.randn(1, 3, D, dtype=x.dtype), x], dim=1)
    mask = torch.tensor([[0] * 3 + [1] * 7])
    torch.testing.assert_close(mod(left, mask=mask)[:, 3:], want)
    if d_conv == 1:
        mid = torch.cat([x[:, :4], torch.randn(1, 2, D, dtype=x.dtype), x[:, 4:]], dim=1)
        mask = torch.tensor([[1] * 4 + [0] * 2 + [1] * 3])
        got = mod(mid, mask=mask)
        torch.testing.assert_close(torch.cat([got[:, :4], got[:, 6:]], dim=1), want)


def test_decoding_continues_the_state_for_chunks_of_any_length() -> None:
    mod = module(make("mamba", d_state=5, d_conv=3, expand=3, dt_rank=4, chunk=2)).double()
    x = torch.randn(2, 12, D, dtype=torch.float64)
    with torch.no_grad():
        full = mod(x)
        mod.setup_cache(2, 12, torch.float64, torch.device("cpu"))
        cuts = [0, 5, 7, 8, 9, 10, 11, 12]
        pieces = [mod(x[:, a:b]) for a, b in itertools.pairwise(cuts)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
    state = sum(buf.numel() for buf in mod.cache.buffers())
    assert state == 2 * REGISTRY["mamba"].kv_cache(make("mamba", d_state=5, d_conv=3, expand=3), CTX, 10**6)


# -- costs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"chunk": 4},
        {"d_state": 3, "d_conv": 1, "expand": 1, "dt_rank": 7, "chunk": 5, "bias": True, "conv_bias": False},
        {"d_state": 1, "d_conv": 2, "expand": 3, "dt_rank": 1, "chunk": 1},
    ],
)
def test_costs_are_exact_for_every_length(params: dict[str, Value]) -> None:
    assert_exact_costs(make("mamba", **params), CTX, range(1, 14))


def test_cost_formulas() -> None:
    """d = 24, E = 48, N = 16, k = 4, R = ceil(24 / 16) = 2."""
    kind, node = REGISTRY["mamba"], make("mamba")
    assert node["dt_rank"] == 2
    d, e, n, k, r = 24, 48, 16, 4, 2
    params = d * 2 * e + e * k + e + e * (r + 2 * n) + r * e + e + e * n + e + e * d
    assert kind.n_params(node, CTX) == params
    m = 2 * 100  # two sequences of 100
    ins = [(2, 100, d)]
    assert kind.flops(node, CTX, ins) == 2 * m * (d * 2 * e + e * (r + 2 * n) + r * e + e * d + e * k + e * n)
    linear = 2 * m * (d * 2 * e + e * (r + 2 * n) + r * e + e * d)
    full = ActCfg()
    assert kind.backward_flops(node, CTX, ins, full) == 2 * linear + 2 * (2 * m * e * k) + 5 * (2 * m * e * n)
    frozen = ActCfg(weight_grad=False)
    assert kind.backward_flops(node, CTX, ins, frozen) == linear + 2 * m * e * k + 4 * (2 * m * e * n)
    assert kind.backward_flops(node, CTX, ins, ActCfg(input_grad=False, weight_grad=False)) == 0
    assert kind.kv_cache(node, CTX, 1) == kind.kv_cache(node, CTX, 10**9) == e * (k - 1 + n)
    # saved: 9E + R + 2N per position, the padded conv input, A twice, ceil(100 / 256) = 1 state
    s = kind.saved(node, CTX, ins, full)
    assert s.inputs == (True,)
    assert s.internal == (m * (9 * e + r + 2 * n) + 2 * e * (100 + k - 1) + 2 * e * n + 2 * 1 * e * n) * 4


def test_peak_intermediate_grows_linearly() -> None:
    """Chunk by chunk: no (T, E, N) tensor of all states ever exists, and 4x the length takes about
    4x the memory."""
    mod = module(make("mamba", d_state=16, chunk=32))
    largest = []
    for n in (256, 1024):
        x = torch.randn(1, n, D)
        with torch.no_grad(), LargestTensor() as m:
            mod(x)
        largest.append(m.largest)
    assert largest[1] <= 4.5 * largest[0], largest
    assert largest[1] < 1024 * 48 * 16, largest


# -- in specs ------------------------------------------------------------------------------------------

HYBRID = """
block ssm {{
  norm  = rmsnorm(eps = 1e-5)
  mixer = mamba(d_state = 4, d_conv = 3, chunk = 4)
  ffn   = none
}}
block attn {{
  norm      = rmsnorm(eps = 1e-5)
  attention = mha(heads = 4, kv_heads = 2, bias = false)
  ffn       = swiglu(hidden = 40)
}}
model hybrid {{
  type       = decoder
  d_model    = {d}
  vocab      = 37
  embedding  = token_embedding()
  position   = {position}
  layers     = [ssm, ssm, ssm, attn] * 2
  final_norm = rmsnorm(eps = 1e-5)
  head       = lm_head(tied = false)
}}
"""


@pytest.mark.parametrize("position", ["none", "rope(max_len = 64)"])
def test_hybrid_pattern_with_attention(position: str, tmp_path: Path) -> None:
    """Jamba-style: three Mamba layers and one attention layer, twice. Costs exact, decoding equals
    the full forward (a state per Mamba layer, a KV cache per attention layer), and only the attention
    layers' cache grows with the context."""
    p = tmp_path / "hybrid.arch"
    p.write_text(HYBRID.format(d=D, position=position))
    spec = archdsl.load(p)
    assert [b.label for b in spec.model.stacks[0].layers] == ["ssm", "ssm", "ssm", "attn"] * 2
    for b, n in [(1, 8), (2, 13)]:
        assert_costs_match(spec, b, n)
        assert_train_step_matches(spec, b, n)
    model = archdsl.build(spec, seed=0).eval()
    idx = torch.randint(0, 37, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(idx)
        model.setup_cache(2, 12)
        cuts = [0, 5, 7, *range(8, 13)]
        pieces = [model(idx[:, a:b], pos=torch.arange(a, b)) for a, b in itertools.pairwise(cuts)]
        model.clear_cache()
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)
    short, long = (archdsl.analyze(spec, seq_len=n).memory["kv_cache_bytes"] for n in (16, 32))
    state = 6 * 2 * D * (3 - 1 + 4) * 4  # six Mamba layers: E (k - 1 + N) fp32 numbers each
    kv = 2 * 2 * 2 * (D // 4) * 4  # two attention layers: keys and values of 2 heads per position
    assert (short, long) == (state + 16 * kv, state + 32 * kv)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ("mamba(d_state = 0)", "d_state"),
        ("mamba(expand = 1.5)", "expand"),
        ("mamba(chunk = 0)", "chunk"),
        ("mamba(heads = 4)", "heads"),
    ],
)
def test_invalid_parameters_are_refused_clearly(call: str, needle: str, tmp_path: Path) -> None:
    p = tmp_path / "bad.arch"
    p.write_text(
        HYBRID.format(d=D, position="none").replace("mamba(d_state = 4, d_conv = 3, chunk = 4)", call)
    )
    with pytest.raises(SpecError) as err:
        archdsl.load(p)
    d = err.value.diagnostics[0]
    assert needle in d.message and d.span is not None


def test_mamba_cannot_be_cross_attention(tmp_path: Path) -> None:
    """A recurrence over its own sequence: no cross form (arity 1 only)."""
    text = """
model m {
  type = encoder_decoder
  d_model = 24
  vocab = 37
  embedding = token_embedding()
  encoder {
    position = none
    block { repeat = 1
      norm = layernorm()
      mixer = mamba()
      ffn = mlp(hidden = 8) }
  }
  decoder {
    position = none
    block { repeat = 1
      norm = layernorm()
      mixer = mamba()
      cross_attention = mamba()
      ffn = mlp(hidden = 8) }
  }
  head = lm_head()
}
"""
    p = tmp_path / "x.arch"
    p.write_text(text)
    with pytest.raises(SpecError) as err:
        archdsl.load(p)
    assert any("mamba" in d.message for d in err.value.diagnostics)


# -- Mamba-2 -------------------------------------------------------------------------------------------


def sequential2(x, dt, a, b, c, h0=None):  # type: ignore[no-untyped-def]
    """Mamba-2's recurrence one position at a time: a scalar decay per head, B and C per group."""
    B, T, H, P = x.shape
    G = b.size(2)
    b, c = b.repeat_interleave(H // G, dim=2), c.repeat_interleave(H // G, dim=2)  # (B, T, H, N)
    h = torch.zeros(B, H, P, b.size(-1), dtype=x.dtype) if h0 is None else h0
    ys = []
    for t in range(T):
        h = torch.exp(dt[:, t] * a)[..., None, None] * h
        h = h + (dt[:, t, :, None] * x[:, t])[..., None] * b[:, t, :, None, :]
        ys.append((h * c[:, t, :, None, :]).sum(-1))
    return torch.stack(ys, dim=1), h


def inputs2(b: int, t: int, h: int, p: int, g: int, n: int, seed: int = 0) -> list[torch.Tensor]:
    """x (b, t, h, p), Δ (b, t, h), A (h,), B and C (b, t, g, n), in fp64."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.float64
    return [
        torch.randn(b, t, h, p, generator=gen, dtype=d),
        torch.rand(b, t, h, generator=gen, dtype=d),
        -torch.rand(h, generator=gen, dtype=d) * 3,
        torch.randn(b, t, g, n, generator=gen, dtype=d),
        torch.randn(b, t, g, n, generator=gen, dtype=d),
    ]


@pytest.mark.parametrize("chunk", [1, 3, 4, 13, 64])
def test_ssd_equals_the_recurrence(chunk: int) -> None:
    from archdsl.kinds.ssm_nn import ssd

    args = inputs2(2, 13, 6, 3, 2, 5)
    h0 = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    y, last = ssd(*args, chunk, h0)
    want, want_last = sequential2(*args, h0)
    torch.testing.assert_close(y, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(last, want_last, rtol=0, atol=1e-12)
    y, last = ssd(*args, chunk)  # from zeros: the last state only with several chunks
    torch.testing.assert_close(y, sequential2(*args)[0], rtol=0, atol=1e-12)
    assert (last is None) == (chunk >= 13)
    grads = [t.requires_grad_() for t in args]
    torch.autograd.gradcheck(lambda *t: ssd(*t, chunk)[0], grads)


def test_ssd_is_stable_over_long_sequences_with_strong_decay() -> None:
    from archdsl.kinds.ssm_nn import ssd

    x, dt, _, b, c = inputs2(1, 2048, 2, 2, 1, 3, seed=4)
    dt = dt * 4 + 0.5
    a = torch.tensor([-16.0, -1e-3], dtype=torch.float64)
    want, _ = sequential2(x, dt, a, b, c)
    args = [t.float().requires_grad_() for t in (x, dt, a, b, c)]
    y, _ = ssd(*args, 256)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4)
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(y.sum(), args))


M2 = {"head_dim": 4, "n_groups": 3, "d_state": 5, "d_conv": 3, "chunk": 4}


def test_mamba2_decoding_continues_the_state() -> None:
    mod = module(make("mamba2", **M2)).double()
    x = torch.randn(2, 12, D, dtype=torch.float64)
    with torch.no_grad():
        full = mod(x)
        mod.setup_cache(2, 12, torch.float64, torch.device("cpu"))
        cuts = [0, 5, 7, 8, 9, 10, 11, 12]
        pieces = [mod(x[:, a:b]) for a, b in itertools.pairwise(cuts)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
    state = sum(buf.numel() for buf in mod.cache.buffers())
    assert state == 2 * REGISTRY["mamba2"].kv_cache(make("mamba2", **M2), CTX, 10**6)
    assert state == 2 * ((48 + 2 * 3 * 5) * 2 + 12 * 4 * 5)  # (E + 2GN)(k - 1) + H P N


def test_mamba2_padding_and_chunk_invariance() -> None:
    """Left padding gives the unpadded outputs; chunks of 1, 4 and one chunk agree, gradients too."""
    x = torch.randn(2, 9, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    results = []
    for chunk in (1, 4, 256):
        mod = module(make("mamba2", **{**M2, "chunk": chunk})).double().train()
        y = mod(x)
        results.append((y, torch.autograd.grad((y * y).sum(), list(mod.parameters()))))
    for y, grads in results[1:]:
        torch.testing.assert_close(y, results[0][0])
        torch.testing.assert_close(grads, results[0][1])
    mod = module(make("mamba2", **M2)).double()
    left = torch.cat([torch.randn(2, 3, D, dtype=x.dtype), x], dim=1)
    mask = torch.tensor([[0] * 3 + [1] * 9] * 2)
    torch.testing.assert_close(mod(left, mask=mask)[:, 3:], mod(x))


@pytest.mark.parametrize(
    "params",
    [
        M2,
        {"heads": 8, "head_dim": 6, "d_state": 2, "d_conv": 1, "chunk": 5, "bias": True, "conv_bias": False},
        {"head_dim": 48, "n_groups": 1, "d_state": 1, "d_conv": 2, "chunk": 1},
        {"expand": 1, "head_dim": 2, "n_groups": 12, "d_state": 3, "chunk": 3},
    ],
)
def test_mamba2_costs_are_exact_for_every_length(params: dict[str, Value]) -> None:
    assert_exact_costs(make("mamba2", **params), CTX, range(1, 14))


def test_mamba2_cost_formulas() -> None:
    """d = 24, E = 48, H = 12, P = 4, G = 3, N = 5, k = 3, chunk 4."""
    kind, node = REGISTRY["mamba2"], make("mamba2", **M2)
    d, e, h, p, g, n, k = 24, 48, 12, 4, 3, 5, 3
    conv = e + 2 * g * n
    assert kind.n_params(node, CTX) == d * (e + conv + h) + conv * k + conv + 3 * h + e + e * d
    b, t = 2, 10  # 10 positions: 3 chunks of 4, padded to 12
    linear = 2 * b * t * (d * (e + conv + h) + e * d)
    ssd = 2 * b * 12 * 4 * (g * n + h * p) + 4 * b * 12 * h * p * n
    assert kind.flops(node, CTX, [(b, t, d)]) == linear + 2 * b * t * conv * k + ssd
    one = 2 * 1 * 3 * 3 * (g * n + h * p)  # 3 positions: one chunk of 3, no states
    assert kind.flops(node, CTX, [(1, 3, d)]) == 2 * 3 * (d * (e + conv + h) + e * d) + 2 * 3 * conv * k + one
    assert (
        kind.backward_flops(node, CTX, [(b, t, d)], ActCfg())
        == 2 * linear + 2 * 2 * b * t * conv * k + 2 * ssd
    )


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ("mamba2(head_dim = 5)", "not divisible by head_dim"),
        ("mamba2(heads = 4, head_dim = 8)", "must be expand · d_model"),
        ("mamba2(head_dim = 4, n_groups = 5)", "not divisible by n_groups"),
    ],
)
def test_mamba2_shapes_are_checked(call: str, needle: str, tmp_path: Path) -> None:
    p = tmp_path / "bad.arch"
    p.write_text(
        HYBRID.format(d=D, position="none").replace("mamba(d_state = 4, d_conv = 3, chunk = 4)", call)
    )
    with pytest.raises(SpecError) as err:
        archdsl.load(p)
    d = err.value.diagnostics[0]
    assert needle in d.message and d.code == "E011" and d.span is not None and d.help


def test_mamba2_in_a_hybrid_pattern(tmp_path: Path) -> None:
    p = tmp_path / "hybrid.arch"
    text = HYBRID.format(d=D, position="rope(max_len = 64)")
    p.write_text(
        text.replace(
            "mamba(d_state = 4, d_conv = 3, chunk = 4)", "mamba2(head_dim = 8, d_state = 4, chunk = 4)"
        )
    )
    spec = archdsl.load(p)
    for b, n in [(1, 8), (2, 13)]:
        assert_costs_match(spec, b, n)
        assert_train_step_matches(spec, b, n)
    model = archdsl.build(spec, seed=0).eval()
    prompt = torch.randint(0, 37, (2, 3), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, 9, temperature=0)
    with torch.no_grad():
        logits = model(out[:, :-1])
    assert torch.equal(out[:, 3:], logits[:, 2:].argmax(-1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize(
    ("name", "params"),
    [("mamba", {"d_state": 5, "d_conv": 3, "chunk": 4}), ("mamba2", M2), ("mamba2", {**M2, "chunk": 64})],
)
def test_saved_activations_in_other_dtypes(name: str, params: dict[str, Value], dtype: torch.dtype) -> None:
    """The scans compute in fp32 (or wider): in bf16 they keep fp32 copies, in fp64 fp64 tensors — the
    kinds' ``saved`` counts them exactly (tests/test_memory.py holds fp32)."""
    from archdsl.measure import saved_bytes

    node, by = make(name, **params), torch.finfo(dtype).bits // 8
    mod = module(node).to(dtype).train()
    for b, n in [(2, 13), (3, 5), (1, 9)]:
        total, _ = saved_bytes(mod, torch.randn(b, n, D, dtype=dtype, requires_grad=True))
        s = REGISTRY[name].saved(node, CTX, [(b, n, D)], ActCfg(bytes=by))
        assert s.internal + (b * n * D * by if s.inputs[0] else 0) == total, (b, n)


@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_polynomials_hold_in_the_declared_regime(name: str, tmp_path: Path) -> None:
    """Chunk 4: Mamba's polynomials hold for n a multiple of 4 (one boundary state per chunk);
    Mamba-2's for n a multiple of 4 above 4 (a single chunk carries no states) — and the report's
    exactness flags say so."""
    call = (
        "mamba(d_state = 4, d_conv = 3, chunk = 4)" if name == "mamba" else "mamba2(head_dim = 8, chunk = 4)"
    )
    p = tmp_path / "m.arch"
    p.write_text(
        HYBRID.format(d=D, position="none").replace("mamba(d_state = 4, d_conv = 3, chunk = 4)", call)
    )
    spec = archdsl.load(p)
    for n, exact in [(8, True), (12, True), (4, name == "mamba"), (6, False)]:
        r = archdsl.analyze(spec, batch=2, seq_len=n)
        f, mem = r.flops(), r.memory
        sizes = r.sizes()
        assert (f["train_step_poly"](**sizes) == f["train_step"]) == (exact or name == "mamba"), n
        assert (mem["activation_poly"](**sizes) == mem["activation_bytes"]) == exact, n
        assert (
            mem["activation_poly_exact"] == exact and mem["kv_cache_poly"](**sizes) == mem["kv_cache_bytes"]
        )
