"""Image models, and token models after a producer whose output is not contiguous: every feed-forward
kind, every norm kind and several attention kinds build, run forward and backward, and cost what
they hold and do (params == numel, FLOPs == FlopCounterMode module by module, activations ==
saved_tensors_hooks).

A patch embedding without a class token cuts (B, N, d) tokens out of its convolution's (B, d, N)
output, a Conformer convolution turns its (B, d, T) output back into (B, T, d): both hand on
token-major (contiguous) tensors, as every later layer reads them (a transposed view would be copied
by each linear map that reads it, and the copies kept). And every module takes a transposed input all
the same (``reshape``, never ``view``, on tensors it did not make)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import model_inputs
from test_cost_vs_torch import assert_costs_match
from test_memory import measured, predicted

import archdsl
from archdsl.ir import Node
from archdsl.kinds import REGISTRY, ActCfg, Ctx
from archdsl.lower.build import build_module

D = 24
FFN = {
    "mlp": "mlp(hidden = 40)",
    "glu": "glu(hidden = 40)",
    "swiglu": "swiglu(hidden = 40)",
    "geglu": "geglu(hidden = 40)",
    "reglu": "reglu(hidden = 40)",
    "moe": "moe(experts = 3, top_k = 2, hidden = 16, shared = 1)",
    "conformer_conv": "conformer_conv(kernel = 3, norm = layernorm)",
    "rwkv_channel_mix": "rwkv_channel_mix(hidden = 40)",
}
NORMS = {"layernorm": "layernorm()", "rmsnorm": "rmsnorm()"}
ATTENTION = {
    "linear": "linear(heads = 4)",
    "sliding_window": "sliding_window(heads = 4, window = 3)",
    "lsh": "lsh(heads = 4, bucket_size = 4, buckets = 2, n_hashes = 1)",
    "swin": "swin(heads = 4, window = 3)",  # the 4 x 4 grid padded to 6 x 6, shifted windows
}


def image_spec(
    ffn: str, norm: str = "rmsnorm()", attention: str = "mha(heads = 4)", cls_token: bool = False
) -> str:
    """16 patches of a 16 x 16 image (17 positions with a class token), two pre-norm blocks."""
    position = "none" if attention.startswith("lsh") else "learned(max_len = 17)"
    return f"""
model vit {{
  type = encoder
  d_model = {D}
  embedding = patch_embedding(image = 16, patch = 4, channels = 3, cls_token = {str(cls_token).lower()})
  position = {position}
  block {{
    repeat = 2
    placement = pre
    norm = {norm}
    attention = {attention}
    ffn = {ffn}
  }}
  final_norm = {norm}
  head = classifier(classes = 5, pool = {"cls" if cls_token else "mean"})
}}
"""


def load(tmp_path: Path, text: str) -> archdsl.Spec:
    p = tmp_path / "probe.arch"
    p.write_text(text)
    return archdsl.load(p)


def assert_runs_and_costs(spec: archdsl.Spec, batch: int, seq_len: int) -> None:
    assert archdsl.check(spec) == []
    model = archdsl.build(spec).train()
    out = model(*model_inputs(spec, batch, seq_len))
    out.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert_costs_match(spec, batch, seq_len)  # params == numel, FLOPs per module, output shape
    total, per = measured(spec, batch, seq_len)
    assert predicted(spec, batch, seq_len, ActCfg()) == total, per


def test_every_ffn_and_norm_kind_is_covered() -> None:
    assert set(FFN) == {k.name for k in REGISTRY.values() if k.role == "ffn"}
    assert set(NORMS) == {k.name for k in REGISTRY.values() if k.role == "norm"}


def test_producers_hand_on_token_major_tensors() -> None:
    """The patch embedding, the Conformer convolution and the convolutional stem make their outputs
    contiguous themselves: later layers read them as they read token embeddings."""
    from archdsl.kinds.conv_nn import ConformerConv
    from archdsl.kinds.embed_nn import PatchEmbedding
    from archdsl.kinds.vision_nn import ConvStem

    for cls_token in (False, True):
        x = PatchEmbedding(3, 4, D, cls_token=cls_token)(torch.randn(2, 3, 16, 16))
        assert x.shape == (2, 16 + cls_token, D) and x.is_contiguous()
    for norm in ("batchnorm", "layernorm"):
        y = ConformerConv(D, 3, norm=norm).train()(x)
        assert y.shape == x.shape and y.is_contiguous()
    for norm in ("batchnorm", "layernorm", "none"):  # the convolutional stem, as the patch embedding
        z = ConvStem([3, D // 2, D], 3, 2, 1, norm=norm, activation="relu").train()(torch.randn(2, 3, 16, 16))
        assert z.shape == (2, 16, D) and z.is_contiguous()


# every kind that reads a (B, T, d) activation, with small valid arguments
MODULES = {
    "mlp": ("mlp", {"hidden": 40, "activation": "relu2"}),
    "glu": ("glu", {"hidden": 40}),
    "swiglu": ("swiglu", {"hidden": 40}),
    "geglu": ("geglu", {"hidden": 40, "tanh": True}),
    "reglu": ("reglu", {"hidden": 40, "bias": True}),
    "moe": ("moe", {"experts": 3, "top_k": 2, "hidden": 16, "shared": 1}),
    "conformer_conv": ("conformer_conv", {"kernel": 3}),
    "conformer_conv_ln": ("conformer_conv", {"kernel": 4, "norm": "layernorm"}),
    "moe_glu": ("moe", {"experts": 3, "top_k": 1, "hidden": 16, "expert": "glu"}),
    "layernorm": ("layernorm", {}),
    "rmsnorm": ("rmsnorm", {"offset": True}),
    "adapter": ("adapter", {"hidden": 8}),
    "mha": ("mha", {"heads": 4, "kv_heads": 2}),
    "xl": ("xl", {"heads": 4, "mem_len": 3}),
    "sliding_window": ("sliding_window", {"heads": 4, "window": 3}),
    "sparse": ("sparse", {"heads": 4, "stride": 3}),
    "longformer": ("longformer", {"heads": 4, "window": 3}),
    "bigbird": ("bigbird", {"heads": 4, "block": 2, "max_len": 64}),
    "lsh": ("lsh", {"heads": 4, "bucket_size": 4, "buckets": 2}),
    "linear": ("linear", {"heads": 4, "kv_heads": 2, "chunk": 3}),
    "linear_favor": ("linear", {"heads": 4, "feature_map": "favor", "causal": False}),
    "swin": ("swin", {"heads": 4, "window": 2, "shift": True}),
    "patch_merging": ("patch_merging", {}),
    "mla": ("mla", {"heads": 4, "kv_rank": 5, "rope_dim": 2, "v_dim": 5}),
    "retention": ("retention", {"heads": 4, "form": "chunkwise", "chunk": 3}),
    "rwkv_time_mix": ("rwkv_time_mix", {"hidden": 10, "chunk": 3}),
    "rwkv_channel_mix": ("rwkv_channel_mix", {"hidden": 40}),
    "mamba": ("mamba", {"d_state": 3, "chunk": 3}),
    "mamba2": ("mamba2", {"head_dim": 8, "d_state": 3, "chunk": 3}),
}
#: the token grid of the kinds that read one (``Kind.reads_grid``): padded for the windows and merged
GRID = (3, 4)


def _length(name: str) -> int:
    return GRID[0] * GRID[1] if REGISTRY[name].reads_grid else 7


def _module(name: str, params: dict[str, object]) -> torch.nn.Module:
    kind = REGISTRY[name]
    ctx = Ctx(d_model=D, vocab=37, stack="decoder")
    if kind.reads_grid:  # an image encoder's grid; a transition reads and writes D here
        ctx = Ctx(
            d_model=D, vocab=37, stack="encoder", grid=GRID, d_in=D if kind.role == "transition" else None
        )
    values = {p.name: p.default for p in kind.params if not p.required}
    values.update(kind.defaults(ctx, 1))
    values.update(params)
    node = Node(name, tuple(kind.resolve(values).items()))
    assert kind.validate(node, ctx, 1) == []
    return build_module(kind.ctor(node, ctx), seed=0).eval()


def test_every_module_reading_activations_is_covered() -> None:
    roles = ("ffn", "norm", "attention", "adapter", "transition")
    assert {kind for kind, _ in MODULES.values()} == {k.name for k in REGISTRY.values() if k.role in roles}


@pytest.mark.parametrize("name", list(MODULES))
def test_module_takes_a_transposed_input(name: str) -> None:
    mod = _module(*MODULES[name])
    x = torch.randn(2, D, _length(MODULES[name][0])).transpose(1, 2)  # (B, T, d), a transposed view
    assert not x.is_contiguous()
    outs = []
    with torch.no_grad():
        for t in (x, x.contiguous()):
            if hasattr(mod, "reset_memory"):  # Transformer-XL: each run from an empty memory
                mod.reset_memory()
            outs.append(mod(t))
    torch.testing.assert_close(*outs)


# without a class token (the patch tokens as the convolution lays them out) through every kind; with
# one (a new, concatenated tensor) through a dense and a mixture
IMAGE_CASES = [(ffn, False) for ffn in FFN] + [("mlp", True), ("moe", True)]


@pytest.mark.parametrize(("ffn", "cls_token"), IMAGE_CASES, ids=[f"{f}-{c}" for f, c in IMAGE_CASES])
def test_image_model_through_every_ffn_kind(ffn: str, cls_token: bool, tmp_path: Path) -> None:
    spec = load(tmp_path, image_spec(FFN[ffn], cls_token=cls_token))
    assert_runs_and_costs(spec, 2, 1)


@pytest.mark.parametrize("norm", list(NORMS))
def test_image_model_through_every_norm_kind(norm: str, tmp_path: Path) -> None:
    spec = load(tmp_path, image_spec(FFN["moe"], norm=NORMS[norm]))
    assert_runs_and_costs(spec, 2, 1)


@pytest.mark.parametrize("attention", list(ATTENTION))
def test_image_model_through_attention_kinds(attention: str, tmp_path: Path) -> None:
    spec = load(tmp_path, image_spec(FFN["moe"], attention=ATTENTION[attention]))
    assert_runs_and_costs(spec, 2, 1)


def conv_then(ffn: str, order: str) -> str:
    """A token model whose feed-forward reads the Conformer convolution's transposed output: directly
    (``nested``), or through a residual sum laid out as that output (``conv_first``)."""
    flow = {
        "nested": "x = x + ffn(conv(ln_1(x)))",
        "conv_first": "x = conv(ln_1(x)) + x\n    x = x + ffn(ln_2(x))",
    }[order]
    return f"""
block b {{
  conv = conformer_conv(kernel = 3, norm = layernorm)
  ffn = {ffn}
  ln_1 = rmsnorm()
  {"ln_2 = rmsnorm()" if order == "conv_first" else ""}
  flow {{
    {flow}
  }}
}}

model m {{
  type = encoder
  d_model = {D}
  vocab = 37
  embedding = token_embedding()
  position = learned(max_len = 16)
  layers = [b] * 2
  head = lm_head(tied = false)
}}
"""


CONV_CASES = [(ffn, "nested") for ffn in ("mlp", "swiglu", "moe", "conformer_conv")] + [("moe", "conv_first")]


@pytest.mark.parametrize(("ffn", "order"), CONV_CASES, ids=[f"{f}-{o}" for f, o in CONV_CASES])
def test_token_model_ffn_after_a_transposed_producer(ffn: str, order: str, tmp_path: Path) -> None:
    spec = load(tmp_path, conv_then(FFN[ffn], order))
    model = archdsl.build(spec).train()
    (idx,) = model_inputs(spec, 2, 7)
    model(idx).sum().backward()
    assert_costs_match(spec, 2, 7)
    total, per = measured(spec, 2, 7)
    assert predicted(spec, 2, 7, ActCfg()) == total, per
