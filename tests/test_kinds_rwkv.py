"""RWKV-4's WKV operator and modules on their own: the chunked training form equals the stabilised
recurrence (Hugging Face's loop, in float64) for large keys, extreme decays and long sequences, in
values and gradients, whatever the chunk; decoding (prompts, chunks, single steps) continues it
exactly; padding adds nothing; the decoding state round-trips through half precision."""

from __future__ import annotations

import pytest
import torch
from conftest import SPECS, TINY
from transformers.models.rwkv.modeling_rwkv import rwkv_linear_attention_cpu

import archdsl
from archdsl.kinds.attention_nn import RecurrentState
from archdsl.kinds.rwkv_nn import RwkvChannelMix, RwkvTimeMix, wkv, wkv_step

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def recurrence(
    w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: State | None = None
) -> tuple[torch.Tensor, State]:
    """The stabilised recurrence as Hugging Face's ``rwkv_linear_attention_cpu`` writes it (a running max
    exponent), token by token in float64: (B, T, A) outputs and the final state."""
    B, _, A = k.shape
    w, u, k, v = (t.double() for t in (w, u, k, v))
    if state is None:
        p, a, b = (
            torch.full((B, A), -1e38, dtype=torch.float64),
            torch.zeros(B, A).double(),
            torch.zeros(B, A).double(),
        )
    else:
        p, a, b = (s.double() for s in state)
    out = []
    for t in range(k.size(1)):
        kt, vt = k[:, t], v[:, t]
        top = torch.maximum(p, u + kt)
        e1, e2 = torch.exp(p - top), torch.exp(u + kt - top)
        out.append((e1 * a + e2 * vt) / (e1 * b + e2))
        top = torch.maximum(p + w, kt)
        e1, e2 = torch.exp(p + w - top), torch.exp(kt - top)
        p, a, b = top, e1 * a + e2 * vt, e1 * b + e2
    return torch.stack(out, dim=1), (p, a, b)


def draw(b: int, t: int, a: int, key_scale: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Keys of the given scale, values N(0, 1), time_decay spread over [-8, 8] (decays from e^-8 to
    e^8 per step), bonus N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(b, t, a, generator=g) * key_scale
    v = torch.randn(b, t, a, generator=g)
    time_decay = torch.linspace(-8.0, 8.0, a)
    u = torch.randn(a, generator=g)
    return k, v, time_decay, u


def ours(
    time_decay: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int
) -> torch.Tensor:
    y, _ = wkv(-torch.exp(time_decay), u, k, v, chunk)
    return y[:, :, : k.size(1)].transpose(1, 2)


@pytest.mark.parametrize(
    ("n", "key_scale", "chunk"),
    [(37, 1.0, 8), (300, 30.0, 16), (1500, 80.0, 16), (64, 200.0, 5), (40, 50.0, 1), (20, 50.0, 64)],
)
def test_chunked_wkv_equals_stabilised_recurrence(n: int, key_scale: float, chunk: int) -> None:
    """Keys up to hundreds (e^k far past float32's range), decays from e^-8 to e^8 per step, sequences
    of up to 1500: the chunked form stays finite and within float32 rounding of the float64
    recurrence — as close as Hugging Face's own float32 loop, or closer (20x at 1500 positions, where
    the loop's running sums accumulate rounding)."""
    k, v, time_decay, u = draw(2, n, 7, key_scale)
    y = ours(time_decay, u, k, v, chunk)
    truth, _ = recurrence(-torch.exp(time_decay), u, k, v)
    assert torch.isfinite(y).all()
    err = (y.double() - truth).abs().max().item()
    hf, _ = rwkv_linear_attention_cpu(time_decay, u, k, v)
    assert err < 5e-5
    assert err <= 2 * (hf.double() - truth).abs().max().item() + 2e-6


@pytest.mark.parametrize(("n", "key_scale", "chunk"), [(45, 1.0, 8), (200, 40.0, 16), (33, 10.0, 1)])
def test_chunked_wkv_gradients_equal_the_recurrences(n: int, key_scale: float, chunk: int) -> None:
    """Gradients for keys, values, time_decay and time_first: the chunked form (maxima detached) against
    autograd through the float64 recurrence, as close as autograd through HF's float32 loop."""
    k, v, time_decay, u = (t.clone().requires_grad_() for t in draw(2, n, 5, key_scale, seed=1))
    g = torch.randn(2, n, 5, generator=torch.Generator().manual_seed(2))
    got = torch.autograd.grad((ours(time_decay, u, k, v, chunk) * g).sum(), [k, v, time_decay, u])
    hf, _ = rwkv_linear_attention_cpu(time_decay, u, k, v)
    loop = torch.autograd.grad((hf * g).sum(), [k, v, time_decay, u])
    k2, v2, td2, u2 = (t.detach().double().requires_grad_() for t in (k, v, time_decay, u))
    truth, _ = recurrence(-torch.exp(td2), u2, k2, v2)
    want = torch.autograd.grad((truth * g.double()).sum(), [k2, v2, td2, u2])
    for a, h, b in zip(got, loop, want, strict=True):
        assert torch.isfinite(a).all()
        err, hf_err = ((x.double() - b).abs().max() / b.abs().max() for x in (a, h))
        assert err < 5e-5
        assert err <= 2 * hf_err + 1e-6


def test_state_continues_the_recurrence() -> None:
    """From any state (the recurrence's after a prefix), any length (one chunk, several, one padded),
    the outputs and the state after are the recurrence's; one step likewise."""
    k, v, time_decay, u = draw(2, 50, 6, 20.0, seed=3)
    w = -torch.exp(time_decay)
    truth, _ = recurrence(w, u, k, v)
    for cut, chunk in [(1, 16), (7, 4), (23, 16), (30, 3)]:
        state = tuple(s.float() for s in recurrence(w, u, k[:, :cut], v[:, :cut])[1])
        y, final = wkv(w, u, k[:, cut:], v[:, cut:], chunk, state)
        assert (y[:, :, : 50 - cut].transpose(1, 2).double() - truth[:, cut:]).abs().max() < 1e-5
        p, a, b = (s.double() for s in recurrence(w, u, k, v)[1])
        fp, fa, fb = (s.double() for s in final)
        torch.testing.assert_close(fa / fb, a / b, atol=1e-5, rtol=1e-5)  # the state's value
        torch.testing.assert_close(fb * torch.exp(fp - p), b, atol=0, rtol=1e-4)  # and its scale
    state = tuple(s.float() for s in recurrence(w, u, k[:, :10], v[:, :10])[1])
    y, _ = wkv_step(w, u, k[:, 10], v[:, 10], state)
    assert (y.double() - truth[:, 10]).abs().max() < 1e-5


@pytest.mark.parametrize("chunk", [1, 3, 16, 100])
def test_time_mix_is_the_same_function_at_every_chunk(chunk: int) -> None:
    torch.manual_seed(0)
    ref = RwkvTimeMix(12, 9, chunk=5)
    with torch.no_grad():
        ref.time_decay.uniform_(-6.0, 6.0)
        for lin in (ref.key, ref.value, ref.receptance, ref.output):
            lin.weight.normal_(0.0, 1.0)
    m = RwkvTimeMix(12, 9, chunk=chunk)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 23, 12)
    torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["time", "channel"])
def test_modules_decode_as_they_train(kind: str) -> None:
    """A prompt, chunks of 2 and 3, then single steps (the recurrence) through the cache equal the full
    forward; the cache holds exactly ``kv_cache``'s numbers."""
    torch.manual_seed(1)
    m = (RwkvTimeMix(10, 7, chunk=4) if kind == "time" else RwkvChannelMix(10, 15)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 17, 10)
    with torch.no_grad():
        full = m(x)
        m.setup_cache(3, 17, torch.float32, torch.device("cpu"))
        assert m.cache is not None
        per_sequence = sum(b[0].numel() for b in m.cache.buffers())
        assert per_sequence == (10 + 3 * 7 if kind == "time" else 10)
        pieces = [m(x[:, a:b]) for a, b in [(0, 6), (6, 8), (8, 11), *((t, t + 1) for t in range(11, 17))]]
    m.cache = None
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padding_adds_nothing() -> None:
    """A model over a left-padded batch (``attention_mask``) gives, at the real positions, what it gives
    the unpadded sequence (RWKV has no positions to shift); gradients stay finite."""
    spec = archdsl.load(SPECS / "rwkv_169m.arch", TINY["rwkv_169m"])
    model = archdsl.build(spec, seed=0)
    idx = torch.randint(0, 37, (1, 9), generator=torch.Generator().manual_seed(4))
    padded = torch.cat([torch.full((1, 5), 3), idx], dim=1)  # 5 pad tokens in front
    mask = torch.cat([torch.zeros(1, 5), torch.ones(1, 9)], dim=1).long()
    batch = torch.cat([padded, torch.randint(0, 37, (1, 14))])  # with an unpadded neighbour
    batch_mask = torch.cat([mask, torch.ones(1, 14, dtype=torch.long)])
    with torch.no_grad():
        alone = model(idx)
        got = model(batch, attention_mask=batch_mask)
    torch.testing.assert_close(got[:1, 5:], alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(got).all()
    out = model(batch, attention_mask=batch_mask)
    out[batch_mask.bool()].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_half_precision_state_keeps_its_value() -> None:
    """Stored in bfloat16, the state's max exponent is rounded and the rounding folded into the
    numerator and denominator: the value they stand for keeps bfloat16's relative precision."""
    m = RwkvTimeMix(4, 3)
    m.setup_cache(2, 8, torch.bfloat16, torch.device("cpu"))
    assert m.cache is not None and isinstance(m.cache, RecurrentState)
    p = torch.tensor([[97.3, -41.77, 5.5], [0.013, 180.9, -300.3]])
    a, b = torch.randn(2, 3), torch.rand(2, 3) + 0.5
    m.store(p, a, b)
    scale = torch.exp(m.cache.p.float() - p)
    torch.testing.assert_close(m.cache.a.float() * scale, a, atol=0, rtol=1e-2)
    torch.testing.assert_close(m.cache.b.float() * scale, b, atol=0, rtol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(("input_grad", "weight_grad"), [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("rwkv_time_mix", {"hidden": 10, "chunk": 4}),
        ("rwkv_time_mix", {"chunk": 16}),
        ("rwkv_channel_mix", {}),
    ],
)
def test_saved_activations_in_every_dtype_and_frozen(
    name: str, params: dict, input_grad: bool, weight_grad: bool, dtype: torch.dtype
) -> None:
    """What autograd keeps equals the kind's ``saved`` exactly: with trainable weights and without (a
    frozen base), in half precision (the WKV still in float32) and in float64 (the WKV in float64)."""
    from archdsl.ir import Node
    from archdsl.kinds import REGISTRY, ActCfg, Ctx
    from archdsl.lower.build import build_module
    from archdsl.measure import saved_bytes

    kind, ctx = REGISTRY[name], Ctx(d_model=24, vocab=37)
    values = {p.name: p.default for p in kind.params}
    values.update(kind.defaults(ctx, 1))
    values.update(params)
    node = Node(name, tuple(values.items()))
    for batch, n in [(2, 13), (3, 5), (1, 17)]:
        module = build_module(kind.ctor(node, ctx), seed=0).to(dtype).train()
        module.requires_grad_(weight_grad)
        x = torch.randn(batch, n, 24, dtype=dtype, requires_grad=input_grad)
        measured, _ = saved_bytes(module, x)
        act = ActCfg(bytes=torch.finfo(dtype).bits // 8, input_grad=input_grad, weight_grad=weight_grad)
        assert kind.saved(node, ctx, [(batch, n, 24)], act).internal == measured
