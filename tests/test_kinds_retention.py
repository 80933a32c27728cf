"""RetNet's retention (Sun et al. 2023): the parallel, chunkwise and recurrent forms against an
independent reference written from the paper's equations (the recurrent form, token by token, in
float64), against torchscale's parallel form with its score normalisation, and against each other; the
decays of the paper; decoding from the state; causality and padding; exact costs for every length and
chunking; a state constant in the context; the shipped spec (RetNet-1.3B) and its parameter count;
refusals."""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SPECS, model_inputs
from test_cost_vs_torch import assert_costs_match, assert_train_step_matches
from torch.nn import functional as F

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.ir import Node, Value
from archdsl.kinds import REGISTRY, ActCfg, Ctx
from archdsl.kinds.retention_nn import MultiScaleRetention, retention_decays
from archdsl.lower.build import build_module
from archdsl.measure import count_params, flop_counter_mode


def make(d: int, **params: Value) -> tuple[Node, Ctx]:
    """A resolved and validated retention node, as elaboration makes it, for width d."""
    ctx = Ctx(d_model=d, vocab=37, stack="decoder")
    kind = REGISTRY["retention"]
    values: dict[str, Value] = {p.name: p.default for p in kind.params if not p.required}
    values.update(params)
    node = Node("retention", tuple(kind.resolve(values).items()))
    assert kind.validate(node, ctx) == []
    return node, ctx


def module(node: Node, ctx: Ctx, seed: int = 0) -> MultiScaleRetention:
    mod = build_module(REGISTRY["retention"].ctor(node, ctx), seed=0).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random biases too, all at unit gain
        for p in mod.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.size(-1)))
    return mod  # type: ignore[return-value]


# odd widths, odd head counts, values at 1-3 x d, a head of 2 (one rotation pair), both norms
CONFIGS = [
    {"d": 24, "heads": 3, "value_factor": 2, "bias": True, "norm": "layernorm"},
    {"d": 20, "heads": 5, "value_factor": 1, "bias": False, "norm": "rmsnorm", "eps": 1e-5},
    {"d": 8, "heads": 4, "value_factor": 3, "bias": True, "norm": "layernorm"},
    {"d": 12, "heads": 1, "value_factor": 2, "bias": True, "norm": "rmsnorm"},
]


def reference(mod: MultiScaleRetention, x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Multi-scale retention as the paper writes it (§2.1 eq. 6, §2.2), token by token in float64,
    from the module's weights only: q_n, k_n turned by e^{inθ} (pairs as complex numbers), k scaled by
    d_k^-1/2, the state S_n = γ S_{n-1} + k_nᵀ v_n and the decay sum s_n = γ s_{n-1} + 1 (torchscale's
    ``scale``), o_n = q_n S_n / sqrt(s_n), GroupNorm per head without affine, swish gate, output."""
    B, T, d = x.shape
    H = mod.n_heads
    dk, dv = d // H, mod.v_proj.out_features // H
    gammas = torch.tensor([1 - 2 ** (-5 - h) for h in range(H)], dtype=torch.float64)
    theta = torch.tensor([10000 ** -(i / max(dk // 2 - 1, 1)) for i in range(dk // 2)], dtype=torch.float64)

    def lin(layer: torch.nn.Linear, t: torch.Tensor) -> torch.Tensor:
        y = t @ layer.weight.double().T
        return y + layer.bias.double() if layer.bias is not None else y

    def turned(t: torch.Tensor, n: int) -> torch.Tensor:  # (B, H, dk) -> complex (B, H, dk / 2)
        return torch.view_as_complex(t.reshape(B, H, dk // 2, 2).contiguous()) * torch.polar(
            torch.ones_like(theta), n * theta
        )

    S = torch.zeros(B, H, dk, dv, dtype=torch.float64)
    s = torch.zeros(H, dtype=torch.float64)
    out = []
    for n in range(T):
        xn = x[:, n].double()
        q = torch.view_as_real(turned(lin(mod.q_proj, xn).view(B, H, dk), n)).reshape(B, H, dk)
        k = torch.view_as_real(turned(lin(mod.k_proj, xn).view(B, H, dk), n)).reshape(B, H, dk) / math.sqrt(
            dk
        )
        v = lin(mod.v_proj, xn).view(B, H, dv)
        S = gammas[:, None, None] * S + k[..., :, None] * v[..., None, :]
        s = gammas * s + 1
        o = torch.einsum("bhk,bhkv->bhv", q, S) / s.sqrt()[:, None]
        if norm == "layernorm":
            o = (o - o.mean(-1, keepdim=True)) / (o.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
        else:
            o = o / (o.square().mean(-1, keepdim=True) + eps).sqrt()
        g = lin(mod.g_proj, xn)
        out.append(lin(mod.out_proj, g * torch.sigmoid(g) * o.reshape(B, H * dv)))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"d{c['d']}h{c['heads']}")
def test_every_form_equals_the_papers_recurrence(cfg: dict[str, Any]) -> None:
    """Parallel, and chunkwise with chunks of 1, 4, 5 and 7 (not dividing 23, several chunks, a partial
    last one) and 30 (longer than the sequence): each equal to the reference to 1e-5 (fp32), and to
    each other."""
    d, norm, eps = cfg["d"], cfg["norm"], cfg.get("eps", 1e-6)
    params = {k: v for k, v in cfg.items() if k != "d"}
    x = torch.randn(2, 23, d, generator=torch.Generator().manual_seed(0))
    node, ctx = make(d, **params)
    mod = module(node, ctx)
    want = reference(mod, x, norm, eps).float()
    with torch.no_grad():
        parallel = mod(x)
        torch.testing.assert_close(parallel, want, rtol=0, atol=1e-5)
        for c in (1, 4, 5, 7, 30):
            chunked = module(make(d, **params, form="chunkwise", chunk=c)[0], ctx)
            chunked.load_state_dict(mod.state_dict())
            y = chunked(x)
            torch.testing.assert_close(y, want, rtol=0, atol=1e-5)
            torch.testing.assert_close(y, parallel, rtol=0, atol=1e-5)


def test_long_sequences_over_many_chunks() -> None:
    """200 positions in chunks of 16 (13 chunks, the last partial) against the parallel form, for heads
    whose decays reach 1 - 2^-12."""
    node, ctx = make(32, heads=8)
    mod = module(node, ctx)
    chunked = module(make(32, heads=8, form="chunkwise", chunk=16)[0], ctx)
    chunked.load_state_dict(mod.state_dict())
    x = torch.randn(2, 200, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(chunked(x), mod(x), rtol=0, atol=1e-5)


def torchscale_parallel(mod: MultiScaleRetention, x: torch.Tensor) -> torch.Tensor:
    """torchscale's parallel form (RetNetRelPos + MultiScaleRetention.parallel_forward) written out: the
    decay mask normalised by the root of its row sums, then the scores by their absolute row sums,
    clamped to [1, 5e4] (detached), in float64."""
    B, T, _ = x.shape
    H, dk, dv = mod.n_heads, mod.key_dim, mod.head_dim
    x = x.double()
    angle = (1.0 / 10000 ** torch.linspace(0, 1, dk // 2, dtype=torch.float64)).repeat_interleave(2)
    decay = torch.log(1 - 2 ** (-5 - torch.arange(H, dtype=torch.float64)))
    index = torch.arange(T, dtype=torch.float64)
    sin, cos = torch.sin(index[:, None] * angle), torch.cos(index[:, None] * angle)
    mask = torch.tril(torch.ones(T, T, dtype=torch.float64))
    mask = torch.masked_fill(index[:, None] - index[None, :], ~mask.bool(), float("inf"))
    mask = torch.nan_to_num(torch.exp(mask * decay[:, None, None]))
    mask = mask / mask.sum(dim=-1, keepdim=True).sqrt()

    def lin(layer: torch.nn.Linear, t: torch.Tensor) -> torch.Tensor:
        return F.linear(t, layer.weight.double(), None if layer.bias is None else layer.bias.double())

    def shift(t: torch.Tensor) -> torch.Tensor:
        turned = torch.stack((-t[..., 1::2], t[..., ::2]), dim=-1).flatten(-2)
        return t * cos + turned * sin

    q = shift(lin(mod.q_proj, x).view(B, T, H, dk).transpose(1, 2))
    k = shift((lin(mod.k_proj, x) * dk**-0.5).view(B, T, H, dk).transpose(1, 2))
    v = lin(mod.v_proj, x).view(B, T, H, dv).transpose(1, 2)
    qk = (q @ k.transpose(-1, -2)) * mask
    qk = qk / qk.detach().abs().sum(dim=-1, keepdim=True).clamp(min=1, max=5e4)
    o = F.layer_norm((qk @ v).transpose(1, 2), (dv,), eps=mod.eps)
    return lin(mod.out_proj, F.silu(lin(mod.g_proj, x)) * o.reshape(B, T, H * dv))


def test_torchscale_differs_only_by_a_scale_the_group_norm_removes() -> None:
    """torchscale's parallel form divides each score row further by its detached absolute sum: a
    positive scale of the head's row, which its group norm cancels but for eps. With a negligible eps
    the two agree to rounding; at eps 1e-6 they may differ (and torchscale's own recurrent form, which
    skips that division, does too)."""
    node, ctx = make(24, heads=3, eps=1e-14)
    mod = module(node, ctx).double()
    with torch.no_grad():
        mod.q_proj.weight.mul_(4.0)  # row sums above 1: the clamp is active
        x = torch.randn(2, 19, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(mod(x), torchscale_parallel(mod, x), rtol=0, atol=1e-8)
        mod.eps = 1e-6  # the clamp acts here: with a real eps its scale shows
        assert (mod(x) - torchscale_parallel(mod, x)).abs().max() > 1e-7


def test_decays_are_the_papers() -> None:
    """γ_h = 1 - 2^(-5-h) (§2.2): for 8 heads 31/32, 63/64, … 4095/4096, torchscale's
    log(1 - 2^(-5 - arange(h))); and a head's output is that decay at work: one head, a key of 1 at
    position 0, then keys of 0, reads back γ^n / sqrt(Σ_{i<=n} γ^i) times the first value."""
    want = [1 - 2 ** (-5 - h) for h in range(8)]
    assert want[0] == 31 / 32 and want[-1] == 4095 / 4096
    torch.testing.assert_close(retention_decays(8, dtype=torch.float64).exp(), torch.tensor(want).double())
    torch.testing.assert_close(
        retention_decays(8), torch.log(1 - 2 ** (-5 - torch.arange(8, dtype=torch.float)))
    )
    # behaviour: heads of d_k = 2 (one pair, θ_0 = 1), q_n = e_0 everywhere, k_0 = e_0 and v_0 = 1 at
    # the first position only (no key scaling here): head h reads q_n · R(n) k_0 = cos n, decayed
    for heads, h in ((1, 0), (4, 3)):
        d = 2 * heads
        node, ctx = make(d, heads=heads, value_factor=1, bias=False)
        mod = module(node, ctx)
        T = 6
        q = torch.zeros(1, T, heads, 2)
        q[..., 0] = 1.0
        k = torch.zeros(1, T, heads, 2)
        k[0, 0, :, 0] = 1.0
        v = torch.zeros(1, T, heads, 1)
        v[0, 0] = 1.0
        log_decay = retention_decays(heads)
        cos, sin, inv = mod.tables(torch.arange(T), log_decay, torch.float32)
        qr, kr = mod.rotate(q, cos, sin) * inv, mod.rotate(k, cos, sin)
        y = mod.retain(qr, kr, v, log_decay)[0, 0, h, :, 0]  # (T,) head h
        g = want[h]
        n = torch.arange(T, dtype=torch.float64)
        expected = g**n * torch.cos(n) / torch.sqrt((1 - g ** (n + 1)) / (1 - g))
        torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", [{}, {"form": "chunkwise", "chunk": 4}], ids=["parallel", "chunkwise"])
def test_decoding_from_the_state_equals_the_full_forward(form: dict[str, Value]) -> None:
    """A prompt of 6, a chunk of 2, a chunk of 5 (across a chunk boundary), then one token at a time
    (the recurrent form): equal to one forward over all 19 positions; the state is (B, h, d_k, d_v)."""
    node, ctx = make(24, heads=3, **form)
    mod = module(node, ctx)
    x = torch.randn(2, 19, 24, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = mod(x)
        mod.setup_cache(2, 19, torch.float32, torch.device("cpu"))
        assert mod.cache is not None and tuple(mod.cache.state.shape) == (2, 3, 8, 16)
        cuts = [0, 6, 8, 13, *range(14, 20)]
        pieces = [mod(x[:, a:b], pos=torch.arange(a, b)) for a, b in itertools.pairwise(cuts)]
        mod.cache = None
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("form", [{}, {"form": "chunkwise", "chunk": 3}], ids=["parallel", "chunkwise"])
def test_causal_and_padding(form: dict[str, Value]) -> None:
    """Outputs up to t do not depend on positions after t (and do on those before); a padded position
    (mask False) adds nothing to the state: what it holds changes no other position's output."""
    node, ctx = make(24, heads=3, **form)
    mod = module(node, ctx)
    x = torch.randn(2, 11, 24, generator=torch.Generator().manual_seed(4))
    x2 = x.clone()
    x2[:, 7:] += 1.0
    x3 = x.clone()
    x3[:, 2] += 1.0
    with torch.no_grad():
        y, y2, y3 = mod(x), mod(x2), mod(x3)
        torch.testing.assert_close(y[:, :7], y2[:, :7], rtol=0, atol=0)
        assert not torch.allclose(y[:, 7:], y2[:, 7:])
        assert not torch.allclose(y[:, 2:7], y3[:, 2:7])
        mask = torch.ones(2, 11, dtype=torch.bool)
        mask[1, 4] = False
        other = torch.where(mask[:, :, None], x, torch.randn(2, 11, 24))
        a, b = mod(x, mask=mask), mod(other, mask=mask)
        torch.testing.assert_close(a[mask], b[mask], rtol=0, atol=1e-6)  # a padded output is undefined
        assert not torch.allclose(mod(x)[1, 5:], mod(other)[1, 5:])  # without the mask it matters
        torch.testing.assert_close(a[0], y[0], rtol=0, atol=0)


# -- costs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"heads": 3},
        {"heads": 3, "form": "chunkwise", "chunk": 4},
        {"heads": 1, "form": "chunkwise", "chunk": 5, "value_factor": 1, "bias": False, "norm": "rmsnorm"},
        {"heads": 6, "form": "chunkwise", "chunk": 1, "value_factor": 3},
    ],
)
def test_costs_are_exact_for_every_length(params: dict[str, Value]) -> None:
    """params == numel; forward FLOPs == FlopCounterMode and forward + backward == FlopCounterMode over
    a training step, for every length 1..17 (one chunk, two, several, partial last chunks); the
    mask-aware count is the products inside the causal decay, counted here pair by pair."""
    node, ctx = make(24, **params)
    kind, mod = REGISTRY["retention"], module(node, ctx).train()
    assert kind.n_params(node, ctx) == count_params(mod)
    h, dv = int(params["heads"]), 24 * int(params.get("value_factor", 2))
    c = params.get("chunk")
    for n in range(1, 18):
        ins = [(2, n, 24)]
        x = torch.randn(2, n, 24, requires_grad=True)
        with flop_counter_mode() as fc:
            y = mod(x)
        assert kind.flops(node, ctx, ins) == fc.get_total_flops(), n
        with flop_counter_mode() as fc:
            mod(x).sum().backward()
        step = kind.flops(node, ctx, ins) + kind.backward_flops(node, ctx, ins, ActCfg())
        assert step == fc.get_total_flops(), n
        assert y.shape == (2, n, 24)
        # mask-aware, by hand: query i meets key j <= i of its own chunk; states from the keys of every
        # chunk a later one reads, read by the queries after the first chunk
        cc = n if c is None else min(int(c), n)
        pairs = sum(1 for i in range(n) for j in range(i + 1) if i // cc == j // cc)
        keys = sum(1 for j in range(n) if j // cc < (n - 1) // cc)
        reads = sum(1 for i in range(n) if i >= cc)
        proj = 2 * 2 * n * (2 * 24 * 24 + 3 * 24 * dv)
        want = proj + 2 * 2 * pairs * (24 + dv) + 2 * 2 * (keys + reads) * (24 * dv // h)
        assert kind.flops_mask_aware(node, ctx, ins) == want, n


def test_state_is_constant_in_the_context_and_big_o_follows_the_form() -> None:
    node, ctx = make(24, heads=3)
    kind = REGISTRY["retention"]
    assert kind.kv_cache(node, ctx, 1) == kind.kv_cache(node, ctx, 10**6) == 3 * 8 * 16
    assert kind.big_o(node, ctx) == ("n·d²", "n²·d")
    chunked, _ = make(24, heads=3, form="chunkwise", chunk=64)
    assert kind.big_o(chunked, ctx) == ("n·d²", "n·c·d", "n·d²/h")
    assert kind.regime(node) == (1, 0) and kind.regime(chunked) == (64, 64)
    spec = archdsl.load(SPECS / "retnet_1_3b.arch")
    caches = {
        archdsl.analyze(spec, seq_len=n).to_dict()["memory"]["kv_cache_bytes"] for n in (1, 1024, 65536)
    }
    assert caches == {24 * 2048 * 4096 // 8 * 4}  # 24 layers of d d_v / h fp32 elements


def test_chunkwise_training_is_linear_in_the_length() -> None:
    """Chunkwise FLOPs and activations grow linearly (doubling n doubles them, past one chunk); the
    parallel form's quadratically."""
    kind = REGISTRY["retention"]
    par, ctx = make(64, heads=4)
    chk, _ = make(64, heads=4, form="chunkwise", chunk=32)

    def costs(node: Node, n: int) -> tuple[int, int]:
        ins = [(1, n, 64)]
        return kind.flops(node, ctx, ins), kind.saved(node, ctx, ins, ActCfg()).internal

    for n in (256, 1024):
        f1, m1 = costs(chk, n)
        f2, m2 = costs(chk, 2 * n)
        assert f2 < 2.05 * f1 and m2 < 2.05 * m1
        p1, q1 = costs(par, n)
        p2, q2 = costs(par, 2 * n)
        assert p2 > 3 * p1 and q2 > 3 * q1


# -- the shipped spec ---------------------------------------------------------------------------------


def test_retnet_1_3b_parameter_count() -> None:
    """1,414,504,448: torchscale's RetNet as built for the paper (fairseq `retnet_xl`, July 2023:
    retention with biases, a GELU FFN with biases, affine LayerNorms, untied output), counted layer by
    layer here with GPT-2's vocabulary; the same on the meta device."""
    d, f, layers, vocab = 2048, 4096, 24, 50257
    retention = 2 * (d * d + d) + 2 * (d * 2 * d + 2 * d) + (2 * d * d + d)  # q, k; v, g; out
    ffn = (d * f + f) + (f * d + d)
    layer = retention + ffn + 2 * 2 * d  # + two LayerNorms
    want = layers * layer + 2 * d + 2 * vocab * d  # + final LayerNorm, embedding, output
    assert want == 1_414_504_448
    spec = archdsl.load(SPECS / "retnet_1_3b.arch")
    assert archdsl.analyze(spec, seq_len=8).params_total == want
    with torch.device("meta"):
        model = archdsl.build(spec)
    assert sum(p.numel() for p in model.parameters()) == want


def test_retnet_tiny_spec_generates_and_emits(tmp_path: Path) -> None:
    """The spec at tiny size with chunkwise training: costs exact, greedy decoding from the state equals
    the full forward's argmax, and the standalone emitted file computes what the built model does."""
    from conftest import TINY

    text = (
        (SPECS / "retnet_1_3b.arch")
        .read_text()
        .replace("eps = 1e-6)", "eps = 1e-6, form = chunkwise, chunk = 4)")
    )
    path = tmp_path / "retnet_chunked.arch"
    path.write_text(text)
    spec = archdsl.load(path, TINY["retnet_1_3b"])
    for batch, n in [(1, 3), (2, 9), (2, 13)]:
        assert_costs_match(spec, batch, n)
        assert_train_step_matches(spec, batch, n)
    model = archdsl.build(spec, seed=0).eval()
    prompt = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(5))
    out = model.generate(prompt, 8, temperature=0)
    with torch.no_grad():
        logits = model(out[:, :-1])
    assert torch.equal(out[:, 5:], logits[:, 4:].argmax(-1))
    namespace: dict[str, Any] = {"__name__": "emitted_retnet"}
    exec(compile(archdsl.emit_source(spec), "emitted_retnet.py", "exec", dont_inherit=True), namespace)
    emitted = namespace["build_model"]().eval()
    emitted.load_state_dict(model.state_dict())
    inputs = model_inputs(spec, 2, 11)
    with torch.no_grad():
        torch.testing.assert_close(emitted(*inputs), model(*inputs), rtol=0, atol=0)


# -- refusals -----------------------------------------------------------------------------------------


def problems(mixer: str, d: int = 24, position: str = "none") -> list[str]:
    text = f"""
model probe {{
  d_model = {d}
  vocab = 37
  embedding = token_embedding()
  position = {position}
  block {{
    repeat = 1
    norm = layernorm()
    mixer = {mixer}
    ffn = mlp(hidden = 48)
  }}
  head = lm_head(tied = false)
}}
"""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "bad.arch"
        p.write_text(text)
        with pytest.raises(SpecError) as e:
            archdsl.load(p)
    return [f"{x.code}: {x.message} | {x.help}" for x in e.value.diagnostics]


@pytest.mark.parametrize(
    ("mixer", "d", "position", "message"),
    [
        (
            "retention(heads = 5)",
            24,
            "none",
            "E011: d_model (24) is not divisible by heads (5) | choose heads",
        ),
        ("retention(heads = 8)", 24, "none", "E011: retention turns pairs of query and key dimensions"),
        ("retention(heads = 1)", 9, "none", "no head count gives even heads"),
        (
            "retention(heads = 3, chunk = 4)",
            24,
            "none",
            "E009: `chunk` sets the chunk length of `form = chunkwise`",
        ),
        (
            "retention(heads = 3, form = chunked)",
            24,
            "none",
            "E003: unknown form `chunked` | did you mean `chunkwise`",
        ),
        ("retention(heads = 3)", 24, "rope(max_len = 64)", "E016"),
    ],
)
def test_invalid_retention_is_refused_clearly(mixer: str, d: int, position: str, message: str) -> None:
    found = problems(mixer, d, position)
    assert any(message in p for p in found), found
