"""Efficient attention (lsh, linear) and the Conformer convolution module: exact costs against the
modules for every length, equality with explicit reference formulas, causality, linear memory growth,
and use in specs (analysis, build, standalone emitted file)."""

from __future__ import annotations

import importlib.util
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import model_inputs
from test_cost_vs_torch import assert_costs_match
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.ir import Node, Value
from archdsl.kinds import REGISTRY, Ctx
from archdsl.lower.build import build_module
from archdsl.measure import count_params, flop_counter_mode

D = 24
CTX = Ctx(d_model=D, vocab=37, stack="decoder")
ENC = Ctx(d_model=D, vocab=37, stack="encoder")


def make(name: str, ctx: Ctx = CTX, arity: int = 1, **params: Value) -> Node:
    """A resolved and validated node of a kind, as elaboration would make it."""
    kind = REGISTRY[name]
    values: dict[str, Value] = {p.name: p.default for p in kind.params if not p.required}
    values.update(kind.defaults(ctx, arity))
    values.update(params)
    node = Node(name, tuple(kind.resolve(values).items()))
    assert kind.validate(node, ctx, arity) == []
    return node


def module(node: Node, ctx: Ctx = CTX) -> torch.nn.Module:
    return build_module(REGISTRY[node.kind].ctor(node, ctx), seed=0).eval()


def assert_exact_costs(
    node: Node, ctx: Ctx, lengths: range | list[int], batch: int = 2, memory: int = 0
) -> None:
    """params == numel, and FLOPs == FlopCounterMode for every length."""
    kind, mod = REGISTRY[node.kind], module(node, ctx)
    assert kind.n_params(node, ctx) == count_params(mod)
    for n in lengths:
        args = [torch.randn(batch, n, ctx.d_model)]
        ins: list[tuple[Any, ...]] = [(batch, n, ctx.d_model)]
        if memory:
            args.append(torch.randn(batch, memory, ctx.d_model))
            ins.append((batch, memory, ctx.d_model))
        with torch.no_grad(), flop_counter_mode() as fc:
            y = mod(*args)
        assert y.shape == (batch, n, ctx.d_model)
        assert kind.flops(node, ctx, ins) == fc.get_total_flops(), (node, n)


# -- exact costs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"heads": 4, "bucket_size": 4, "buckets": 4, "n_hashes": 2},
        {"heads": 4, "kv_heads": 2, "bucket_size": 3, "buckets": 6, "n_hashes": 3, "causal": False},
        {"heads": 2, "head_dim": 5, "bucket_size": 1, "buckets": 1, "n_hashes": 1, "bias": False},
        {"heads": 3, "bucket_size": 5, "buckets": 2, "n_hashes": 1, "qk_norm": "layernorm", "softcap": 2.0},
    ],
)
def test_lsh_costs_are_exact_for_every_length(params: dict[str, Value]) -> None:
    assert_exact_costs(make("lsh", **params), CTX, range(1, 14))


@pytest.mark.parametrize(
    "params",
    [
        {"heads": 4, "chunk": 4},
        {"heads": 4, "kv_heads": 2, "chunk": 3, "qk_norm": "rmsnorm"},
        {"heads": 4, "feature_map": "favor", "features": 7, "chunk": 5},
        {"heads": 6, "kv_heads": 3, "feature_map": "favor", "chunk": 1, "bias": False},
        {"heads": 4, "causal": False, "feature_map": "favor", "features": 9},
        {"heads": 2, "causal": False},
    ],
)
def test_linear_costs_are_exact_for_every_length(params: dict[str, Value]) -> None:
    assert_exact_costs(make("linear", **params), CTX, range(1, 14))


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_linear_cross_attention_costs_are_exact(feature_map: str) -> None:
    node = make("linear", CTX, 2, heads=4, kv_heads=2, feature_map=feature_map)
    for m in (1, 6, 11):
        assert_exact_costs(node, CTX, [1, 5, 9], memory=m)


@pytest.mark.parametrize(
    "params",
    [
        {"kernel": 31},
        {"kernel": 4, "causal": False, "norm": "layernorm"},
        {"kernel": 1, "bias": False},
        {"kernel": 6, "causal": True, "norm": "layernorm", "dropout": 0.1},
    ],
)
def test_conformer_conv_costs_are_exact(params: dict[str, Value]) -> None:
    assert_exact_costs(make("conformer_conv", **params), CTX, range(1, 10))


def test_cost_formulas() -> None:
    lsh = make("lsh", heads=4, bucket_size=8, buckets=4, n_hashes=2)
    kind, (b, n, hs, r, c) = REGISTRY["lsh"], (2, 20, 6, 2, 8)
    n_p = 24  # 20 padded to whole chunks of 8
    hashing = 2 * b * 4 * n * hs * r * 2
    assert kind.core_flops(lsh, CTX, b, n, n) == hashing + 8 * b * 4 * r * n_p * c * hs
    assert kind.pairs(lsh, n, n) == r * c * (2 * n_p - c)
    assert kind.kv_cache(lsh, CTX, 100) == (4 + 4) * hs * 100

    lin = make("linear", heads=4, kv_heads=2, chunk=8)
    kind, f, e = REGISTRY["linear"], 6, 7
    assert kind.core_flops(lin, CTX, b, n, n) == 2 * b * n_p * (4 * c * (f + e) + 2 * f * e + 4 * f * e)
    assert kind.kv_cache(lin, CTX, 10) == kind.kv_cache(lin, CTX, 10_000) == 2 * f * e  # constant state
    kept = 2 * (c * (c + 1) // 2) + 4 * 5 // 2  # two whole chunks and 4 tokens
    masked = kind.flops_mask_aware(lin, CTX, [(b, n, D)]) - kind.projection_flops(lin, CTX, [(b, n, D)])
    assert masked == 2 * b * (4 * kept * (f + e) + n * f * e * (2 + 4))
    assert kind.flops_mask_aware(lin, CTX, [(b, n, D)]) < kind.flops(lin, CTX, [(b, n, D)])
    bi = make("linear", ENC, heads=4, feature_map="favor", features=16)
    assert kind.flops_mask_aware(bi, ENC, [(b, n, D)]) == kind.flops(bi, ENC, [(b, n, D)])
    assert kind.big_o(bi, ENC) == ("n·d²", "n·m·d")
    assert kind.n_features(make("linear", heads=1, feature_map="favor"), CTX) == int(24 * math.log(24))

    conv = make("conformer_conv", kernel=5)
    assert REGISTRY["conformer_conv"].flops(conv, CTX, [(b, n, D)]) == 2 * b * n * (3 * D * D + D * 5)


def test_costs_grow_linearly() -> None:
    for name, params in [
        ("lsh", {"bucket_size": 32}),
        ("linear", {"chunk": 32}),
        ("linear", {"causal": False}),
    ]:
        node, kind = make(name, heads=4, **params), REGISTRY[name]
        core = [kind.core_flops(node, CTX, 1, n, n) for n in (256, 1024, 4096)]
        assert core[1] == 4 * core[0] and core[2] == 4 * core[1], name


# -- reference formulas -------------------------------------------------------------------------------


def lsh_reference(mod: torch.nn.Module, qk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Dense softmax attention restricted to the union, over rounds, of the LSH windows rebuilt from the
    module's rotations: same bucket, and the same or previous chunk of the (bucket, position) order
    (causal: the c sorted slots up to the query's, and no later position). A query's own key scores
    -1e5 (attended only when alone)."""
    B, H, T, hs = qk.shape
    R, c = mod.n_hashes, mod.bucket_size
    if mod.n_buckets == 1:
        buckets = torch.zeros(B, H, R, T, dtype=torch.long)
    else:
        rotated = torch.einsum("bhtd,drk->bhrtk", qk, mod.rotations)
        buckets = torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)  # (B, H, R, T)
    slot = (buckets * T + torch.arange(T)).argsort(dim=-1).argsort(dim=-1)  # sorted position of each token
    i, j = slot[..., :, None], slot[..., None, :]
    if mod.causal:
        ahead = i - j
        window = (ahead >= 0) & (ahead <= c)
    else:
        ahead = torch.div(i, c, rounding_mode="floor") - torch.div(j, c, rounding_mode="floor")
        window = (ahead >= 0) & (ahead <= 1)
    seen = ((buckets[..., :, None] == buckets[..., None, :]) & window).any(dim=2)  # (B, H, T, T)
    if mod.causal:
        seen = seen & torch.ones(T, T, dtype=torch.bool).tril()
    scores = qk @ F.normalize(qk, dim=-1).transpose(-2, -1) * hs**-0.5
    scores = scores.masked_fill(torch.eye(T, dtype=torch.bool), -1e5).masked_fill(~seen, -1e9)
    return scores.softmax(dim=-1) @ v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n_hashes", "buckets", "bucket_size"), [(1, 4, 3), (3, 2, 4), (2, 6, 1), (4, 8, 5)])
def test_lsh_equals_attention_over_its_windows(
    causal: bool, n_hashes: int, buckets: int, bucket_size: int
) -> None:
    node = make(
        "lsh", heads=2, kv_heads=1, causal=causal, n_hashes=n_hashes, buckets=buckets, bucket_size=bucket_size
    )
    mod = module(node)
    g = torch.Generator().manual_seed(n_hashes * 10 + buckets)
    for T in (1, 7, 16, 21):
        qk, v = torch.randn(2, 2, T, 12, generator=g), torch.randn(2, 1, T, 12, generator=g)
        want = lsh_reference(mod, qk, v.expand(-1, 2, -1, -1))
        torch.testing.assert_close(mod.attend(qk, qk, v), want, rtol=1e-5, atol=1e-5)


def test_lsh_with_one_bucket_covering_everything_is_dense_causal_attention() -> None:
    mod = module(make("lsh", heads=2, buckets=1, bucket_size=16, n_hashes=1))
    qk, v = torch.randn(1, 2, 11, 12), torch.randn(1, 2, 11, 12)
    scores = qk @ F.normalize(qk, dim=-1).transpose(-2, -1) / math.sqrt(12)
    i, j = torch.arange(11)[:, None], torch.arange(11)[None, :]
    visible = (j < i) | ((i == 0) & (j == 0))  # every earlier key; its own only when there is none
    want = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1) @ v
    torch.testing.assert_close(mod.attend(qk, qk, v), want)


def test_lsh_rounds_and_sharing() -> None:
    mod = module(make("lsh", heads=4, kv_heads=2, n_hashes=3, buckets=6, seed=5))
    assert mod.rotations.shape == (6, 3, 3)  # (hs, rounds, buckets / 2)
    assert "rotations" in mod.state_dict()  # fixed from the seed, saved with the weights
    again = module(make("lsh", heads=4, kv_heads=2, n_hashes=3, buckets=6, seed=5))
    other = module(make("lsh", heads=4, kv_heads=2, n_hashes=3, buckets=6, seed=6))
    assert torch.equal(mod.rotations, again.rotations) and not torch.equal(mod.rotations, other.rotations)
    assert mod.c_attn.weight.shape == (4 * 6 + 2 * 6, D)  # shared query-key (4 heads) and values (2 heads)
    assert not hasattr(mod, "q_proj")


def phi_elu(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


def phi_favor(omega: torch.Tensor) -> Any:
    def phi(x: torch.Tensor) -> torch.Tensor:  # exp(W x' - |x'|^2 / 2) / sqrt(m), x' = x / hs^(1/4)
        x = x * x.size(-1) ** -0.25
        return torch.exp(x @ omega.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(omega.size(0))

    return phi


def linear_reference(
    fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, causal: bool, eps: float
) -> torch.Tensor:
    """φ(Q)(φ(K)^T V) / φ(Q) φ(K)^T 1; causal: with explicit prefix sums over positions."""
    if not causal:
        return (fq @ (fk.transpose(-2, -1) @ v)) / (fq @ fk.sum(dim=-2)[..., None] + eps)
    # (B, H, T, f, hs): S_i = sum_{j <= i} φ(k_j) v_j^T
    state = torch.cumsum(fk[..., :, None] * v[..., None, :], dim=-3)
    z = torch.cumsum(fk, dim=-2)  # (B, H, T, f)
    num = torch.einsum("bhtf,bhtfd->bhtd", fq, state)
    return num / ((fq * z).sum(dim=-1, keepdim=True) + eps)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_linear_equals_its_explicit_formula(causal: bool, feature_map: str) -> None:
    extra: dict[str, Value] = {"features": 11} if feature_map == "favor" else {}
    node = make("linear", heads=4, kv_heads=2, causal=causal, feature_map=feature_map, chunk=4, **extra)
    mod = module(node).double()
    phi = phi_elu if feature_map == "elu" else phi_favor(mod.omega)
    g = torch.Generator().manual_seed(0)
    for T in (1, 4, 9, 13):
        q = torch.randn(2, 4, T, 6, generator=g, dtype=torch.float64)  # 4 query heads
        k = torch.randn(2, 2, T, 6, generator=g, dtype=torch.float64)  # 2 key/value heads
        v = torch.randn(2, 2, T, 6, generator=g, dtype=torch.float64)
        eps = 1e-6 if feature_map == "elu" else 0.0  # Katharopoulos et al.'s eps; none for FAVOR+
        want = linear_reference(
            phi(q), phi(k).repeat_interleave(2, 1), v.repeat_interleave(2, 1), causal, eps
        )
        got = mod.attend(q, k, v)
        # FAVOR+ stabilisers are constants that cancel in the normalisation, up to rounding
        tol = 1e-12 if feature_map == "elu" else 1e-9
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_favor_features_are_orthogonal_and_approximate_softmax() -> None:
    mod = module(make("linear", ENC, heads=1, head_dim=8, feature_map="favor", features=4096, seed=3))
    w = mod.omega  # (m, hs)
    block = w[:8] @ w[:8].T
    torch.testing.assert_close(block, torch.diag(block.diagonal()), atol=1e-4, rtol=0)  # orthogonal rows
    g = torch.Generator().manual_seed(0)
    q, k, v = (0.5 * torch.randn(1, 1, 16, 8, generator=g) for _ in range(3))
    exact = F.scaled_dot_product_attention(q, k, v)
    assert (mod.attend(q, k, v) - exact).abs().max() < 0.05  # E[φ(q)·φ(k)] = exp(q·k / sqrt(hs))


def conformer_reference(mod: torch.nn.Module, x: torch.Tensor, kernel: int, causal: bool) -> torch.Tensor:
    """Plain torch ops: pointwise conv, GLU, padded depthwise conv, BatchNorm (eval), SiLU, pointwise conv."""
    C = x.size(-1)
    h = x.transpose(1, 2)  # (B, C, T)
    h = torch.einsum("oc,bct->bot", mod.pointwise_conv1.weight[..., 0], h) + mod.pointwise_conv1.bias[:, None]
    a, gate = h[:, :C], h[:, C:]
    h = a * torch.sigmoid(gate)
    left = kernel - 1 if causal else (kernel - 1) // 2
    h = torch.cat([h.new_zeros(*h.shape[:2], left), h, h.new_zeros(*h.shape[:2], kernel - 1 - left)], dim=-1)
    w = mod.depthwise_conv.weight[:, 0]  # (C, k)
    h = (
        sum(w[:, t, None] * h[:, :, t : t + x.size(1)] for t in range(kernel))
        + mod.depthwise_conv.bias[:, None]
    )
    bn = mod.norm
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    h = (h - bn.running_mean[:, None]) * scale[:, None] + bn.bias[:, None]
    h = h * torch.sigmoid(h)
    h = torch.einsum("oc,bct->bot", mod.pointwise_conv2.weight[..., 0], h) + mod.pointwise_conv2.bias[:, None]
    return h.transpose(1, 2)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(("kernel", "causal"), [(7, False), (4, False), (5, True), (1, True)])
def test_conformer_conv_equals_plain_torch(kernel: int, causal: bool) -> None:
    mod = module(make("conformer_conv", kernel=kernel, causal=causal))
    with torch.no_grad():
        mod.norm.running_mean.normal_()
        mod.norm.running_var.uniform_(0.5, 2.0)
        mod.norm.weight.normal_()
        mod.norm.bias.normal_()
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), conformer_reference(mod, x, kernel, causal))
    if not causal:  # the split padding is PyTorch's own "same" padding
        same = torch.nn.Conv1d(D, D, kernel, groups=D, padding="same")
        same.load_state_dict(mod.depthwise_conv.state_dict())
        h = torch.randn(2, D, 9)
        torch.testing.assert_close(mod.depthwise_conv(F.pad(h, mod.padding)), same(h))


# -- causality ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "lsh", "heads": 2, "bucket_size": 2, "buckets": 4, "n_hashes": 3},
        {"kind": "lsh", "heads": 4, "kv_heads": 2, "bucket_size": 3, "buckets": 8, "n_hashes": 1},
        {"kind": "linear", "heads": 4, "chunk": 3},
        {"kind": "linear", "heads": 4, "kv_heads": 1, "feature_map": "favor", "chunk": 5},
        {"kind": "conformer_conv", "kernel": 5},
        {"kind": "conformer_conv", "kernel": 4, "norm": "layernorm"},
    ],
    ids=lambda p: "-".join(f"{v}" for v in p.values()),
)
def test_causal_variants_do_not_look_ahead(params: dict[str, Value]) -> None:
    params = dict(params)
    name = str(params.pop("kind"))
    mod = module(make(name, **params))
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 17, D, generator=g)
    for t in (1, 5, 9, 16):
        x2 = x.clone()
        x2[:, t:] = torch.randn(2, 17 - t, D, generator=g)
        with torch.no_grad():
            a, b = mod(x), mod(x2)
        torch.testing.assert_close(a[:, :t], b[:, :t])
        assert not torch.allclose(a[:, t:], b[:, t:])
    if name != "lsh":  # bidirectional: earlier outputs do change
        params["causal"] = False
        enc = module(make(name, ENC, **params))
        x2 = x.clone()
        x2[:, 5:] = torch.randn(2, 12, D, generator=g)
        with torch.no_grad():
            assert not torch.allclose(enc(x)[:, :5], enc(x2)[:, :5])


# -- memory -------------------------------------------------------------------------------------------------


class LargestTensor(TorchDispatchMode):
    """The largest tensor any op produces (intermediates included)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "lsh", "bucket_size": 32, "buckets": 16, "n_hashes": 2},
        {"kind": "lsh", "bucket_size": 32, "buckets": 16, "n_hashes": 2, "causal": False},
        {"kind": "linear", "chunk": 32},
        {"kind": "linear", "chunk": 32, "feature_map": "favor", "features": 16},
        {"kind": "linear", "causal": False},
    ],
    ids=lambda p: "-".join(f"{v}" for v in p.values()),
)
def test_peak_intermediate_grows_linearly(params: dict[str, Value]) -> None:
    params = dict(params)
    mod = module(make(str(params.pop("kind")), heads=2, **params))
    largest = []
    for n in (256, 1024):
        x = torch.randn(1, n, D)
        with torch.no_grad(), LargestTensor() as m:
            mod(x)
        largest.append(m.largest)
    assert largest[1] <= 4.5 * largest[0], largest  # x4 the length: about x4 the memory, never x16
    assert largest[1] < 2 * 1024 * 1024, largest  # below the n x n scores of the two heads


# -- in specs ---------------------------------------------------------------------------------------------


def spec(body: str, model_type: str = "decoder", position: str = "learned(max_len = 64)") -> str:
    return f"""
model probe {{
  type = {model_type}
  d_model = {D}
  vocab = 37
  embedding = token_embedding()
  position = {position}
  block {{
    repeat = 2
{body}
  }}
  final_norm = layernorm()
  head = lm_head(tied = false)
}}
"""


SPECS = {
    "lsh": spec(
        """placement = pre
    norm = layernorm()
    attention = lsh(heads = 4, bucket_size = 4, buckets = 4)
    ffn = mlp(hidden = 48)"""
    ),
    "lsh_rope": spec(
        """placement = pre
    norm = rmsnorm()
    attention = lsh(heads = 2, kv_heads = 1, bucket_size = 3, n_hashes = 3, bias = false)
    ffn = swiglu(hidden = 32)""",
        position="rope(max_len = 64)",
    ),
    "linear": spec(
        """placement = pre
    norm = layernorm()
    attention = linear(heads = 4, chunk = 4)
    ffn = mlp(hidden = 48)"""
    ),
    "linear_favor_encoder": spec(
        """placement = post
    norm = layernorm()
    attention = linear(heads = 3, feature_map = favor, features = 16)
    ffn = mlp(hidden = 48)""",
        "encoder",
    ),
    "conformer_ffn_slot": spec(
        "placement = pre\nnorm = layernorm()\nattention = mha(heads = 4)\nffn = conformer_conv(kernel = 5)"
    ),
    "conformer_flow": spec(
        """ffn1 = mlp(hidden = 48, activation = silu)
    attn = linear(heads = 4, feature_map = favor, features = 8)
    conv = conformer_conv(kernel = 3, norm = layernorm)
    ffn2 = mlp(hidden = 48, activation = silu)
    ln1 = layernorm()
    ln2 = layernorm()
    ln3 = layernorm()
    ln4 = layernorm()
    ln_out = layernorm()
    flow {
      x = x + 0.5 * ffn1(ln1(x))
      x = x + attn(ln2(x))
      x = x + conv(ln3(x))
      x = x + 0.5 * ffn2(ln4(x))
      x = ln_out(x)
    }""",
        "encoder",
    ),
}


def load(text: str, tmp_path: Path, name: str = "probe") -> archdsl.Spec:
    p = tmp_path / f"{name}.arch"
    p.write_text(text)
    return archdsl.load(p)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_kinds_work_in_specs(name: str, tmp_path: Path) -> None:
    s = load(SPECS[name], tmp_path)
    assert archdsl.check(s) == []
    for batch, n in [(1, 1), (2, 7), (2, 13)]:
        assert_costs_match(s, batch, n)

    # the emitted file, loaded with the built module's weights, computes the same
    src = archdsl.emit_source(s)
    path = tmp_path / f"emitted_{name}.py"
    path.write_text(src)
    mod_spec = importlib.util.spec_from_file_location(f"emitted_{name}", path)
    assert mod_spec and mod_spec.loader
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    built = archdsl.build(s, seed=3).eval()
    emitted = mod.build_model().eval()
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in emitted.state_dict().items()
    }
    emitted.load_state_dict(built.state_dict())
    inputs = model_inputs(s, 2, 11)
    with torch.no_grad():
        torch.testing.assert_close(emitted(*inputs), built(*inputs), rtol=0, atol=0)
    assert "import archdsl" not in src and "from archdsl" not in src


def problems(text: str) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "bad.arch"
        p.write_text(text)
        with pytest.raises(SpecError) as e:
            archdsl.load(p)
    return [f"{x.code}: {x.message}" for x in e.value.diagnostics]


@pytest.mark.parametrize(
    ("attention", "message"),
    [
        ("lsh(heads = 4, buckets = 5)", "`buckets` must be 1 or even"),
        ("linear(heads = 4, softcap = 30.0)", "`softcap` has nothing to act on"),
        ("linear(heads = 4, dropout = 0.1)", "`dropout` has nothing to act on"),
        ("linear(heads = 4, features = 8)", "`features` sets the number of random features"),
    ],
)
def test_invalid_parameters_are_refused_clearly(attention: str, message: str) -> None:
    text = spec(f"norm = layernorm()\nattention = {attention}\nffn = mlp(hidden = 48)")
    assert any(message in p for p in problems(text)), problems(text)


def test_lsh_is_not_cross_attention_and_takes_no_score_bias() -> None:
    text = f"""
model probe {{
  type = encoder_decoder
  d_model = {D}
  vocab = 37
  embedding = token_embedding()
  encoder {{ block {{ repeat = 1
    norm = layernorm()
    attention = mha(heads = 4)
    ffn = mlp(hidden = 48) }} }}
  decoder {{ block {{ repeat = 1
    norm = layernorm()
    attention = lsh(heads = 4)
    cross_attention = lsh(heads = 4)
    ffn = mlp(hidden = 48) }} }}
  head = lm_head(tied = false)
}}
"""
    assert any("cannot be cross-attention" in p for p in problems(text))
    bias_schemes = [k for k in ("alibi", "t5") if k in REGISTRY]
    for scheme in bias_schemes:
        for kind in ("lsh", "linear"):
            text = spec(
                f"norm = layernorm()\nattention = {kind}(heads = 4)\nffn = mlp(hidden = 48)",
                position=f"{scheme}()",
            )
            assert any("forms no score matrix" in p for p in problems(text)), (scheme, kind)


def test_linear_cross_attention_in_an_encoder_decoder(tmp_path: Path) -> None:
    text = f"""
model probe {{
  type = encoder_decoder
  d_model = {D}
  vocab = 37
  embedding = token_embedding()
  encoder {{ block {{ repeat = 1
    norm = layernorm()
    attention = linear(heads = 4, feature_map = favor, features = 8)
    ffn = conformer_conv(kernel = 3) }} }}
  decoder {{ block {{ repeat = 1
    norm = layernorm()
    attention = lsh(heads = 4, bucket_size = 2, buckets = 2)
    cross_attention = linear(heads = 4)
    ffn = mlp(hidden = 48) }} }}
  head = lm_head(tied = false)
}}
"""
    s = load(text, tmp_path)
    assert_costs_match(s, 2, 9)


@pytest.mark.parametrize(
    "params",
    [
        {
            "kind": "lsh",
            "heads": 4,
            "kv_heads": 2,
            "bucket_size": 3,
            "buckets": 4,
            "n_hashes": 2,
            "dropout": 0.1,
        },
        {"kind": "linear", "heads": 4, "chunk": 3},
        {"kind": "linear", "heads": 4, "feature_map": "favor", "features": 8, "causal": False},
        {"kind": "conformer_conv", "kernel": 3, "dropout": 0.1},
    ],
    ids=lambda p: str(p["kind"]),
)
def test_modules_train(params: dict[str, Value]) -> None:
    """In training mode (dropout, BatchNorm statistics) the modules run and every weight gets a finite
    gradient."""
    params = dict(params)
    mod = module(make(str(params.pop("kind")), **params)).train()
    x = torch.randn(2, 10, D, requires_grad=True)
    mod(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in mod.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
