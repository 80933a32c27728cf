"""LoRA, kind by kind: every kind with projections LoRA can target either adapts exactly the targeted
ones — in the module and in the cost model alike (params == numel, trainable == numel of what
requires grad, active, forward FLOPs == FlopCounterMode, training-step FLOPs, activations ==
saved_tensors_hooks) — or ``check`` refuses the combination with a diagnostic and a help line.

Today every kind adapts: attention's q, k, v, o through the shell they share (LSH's one shared
query-key projection answers to q and to k), feed-forwards' up, down and gate, in every expert of a
mixture; the Conformer convolution's pointwise convolutions are no LoRA targets (they stay frozen).
Generated over the registry: a new attention or feed-forward kind fails here until it is listed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_cost_vs_torch import assert_costs_match, assert_train_step_matches
from test_memory import measured, predicted

import archdsl
from archdsl.kinds import REGISTRY, ActCfg

D = 24
R = 2
BATCH, SEQ = 2, 9

# one small, valid call of every attention kind (the shell they share adapts q, k, v and o)
ATTENTION = {
    "mha": "mha(heads = 4, kv_heads = 2)",
    "sliding_window": "sliding_window(heads = 4, kv_heads = 2, window = 3)",
    "sparse": "sparse(heads = 4, stride = 3)",
    "longformer": "longformer(heads = 4, window = 3, global_tokens = 1)",
    "bigbird": "bigbird(heads = 4, block = 2, window_blocks = 3, global_blocks = 1, random_blocks = 1, "
    "max_len = 64)",
    "lsh": "lsh(heads = 4, kv_heads = 2, bucket_size = 4, buckets = 2, n_hashes = 1)",
    "linear": "linear(heads = 4, kv_heads = 2)",
    "xl": "xl(heads = 4, mem_len = 3)",
    "mla": "mla(heads = 4, kv_rank = 5, rope_dim = 2, v_dim = 7, q_rank = 3)",
    "swin": "swin(heads = 4, window = 2)",  # on a 6 x 6 grid: nine windows, shifted in the second layer
    "retention": "retention(heads = 4, form = chunkwise, chunk = 4)",
    "rwkv_time_mix": "rwkv_time_mix(hidden = 10, chunk = 4)",
    "mamba": "mamba(d_state = 3, chunk = 4)",
    "mamba2": "mamba2(head_dim = 8, d_state = 3, chunk = 4)",
}
# attention kinds whose projections LoRA's names do not address (they stay frozen): latent attention's
# compressed projections; recurrent mixers' (a documented choice: q, k, v, o name attention's maps)
UNTARGETED_ATTENTION = {"mla", "retention", "rwkv_time_mix", "mamba", "mamba2"}
# variants of the shell's core that hold projections of their own shape
VARIANTS = {
    "mha_bilinear": "mha(heads = 4, score = bilinear)",
    "mha_additive": "mha(heads = 4, score = additive, qk_norm = rmsnorm)",
    "linear_favor": "linear(heads = 4, feature_map = favor, features = 8)",
}
# every feed-forward kind: (call, LoRA parameters per adapted (up, down, gate) map, by name)
FFN = {
    "mlp": "mlp(hidden = 40)",
    "glu": "glu(hidden = 40)",
    "swiglu": "swiglu(hidden = 40)",
    "geglu": "geglu(hidden = 40, tanh = true)",
    "reglu": "reglu(hidden = 40, bias = true)",
    "moe": "moe(experts = 3, top_k = 2, hidden = 16)",
    "conformer_conv": "conformer_conv(kernel = 3)",
    "rwkv_channel_mix": "rwkv_channel_mix(hidden = 40)",
}
FFN_VARIANTS = {
    "moe_glu_shared": "moe(experts = 3, top_k = 1, hidden = 16, expert = glu, activation = relu, shared = 1)",
    "moe_relu": "moe(experts = 2, top_k = 2, hidden = 16, activation = relu, normalize = false)",
}
# kinds whose projections LoRA's names do not address (they stay frozen): a documented choice
UNTARGETED = {"conformer_conv", "rwkv_channel_mix"}


def ffn_lora(call: str, targets: tuple[str, ...]) -> int:
    """LoRA parameters one feed-forward should hold, from its shapes by hand: up and gate d -> h, down
    h -> d (a gate only in gated ones), in every expert of a mixture."""
    if call.startswith(tuple(UNTARGETED)):
        return 0
    hidden = int(call.split("hidden = ")[1].split(",")[0].rstrip(")"))
    experts = 1
    gated = not call.startswith(("mlp", "moe")) or "expert = glu" in call
    if call.startswith("moe"):
        experts = int(call.split("experts = ")[1].split(",")[0])
        experts += int(call.split("shared = ")[1].split(",")[0].rstrip(")")) if "shared" in call else 0
    shapes = {"up": (D, hidden), "down": (hidden, D), **({"gate": (D, hidden)} if gated else {})}
    return experts * sum(R * (a + b) for name, (a, b) in shapes.items() if name in targets)


ATTENTION_TARGETS = [("q",), ("k",), ("v",), ("o",), ("q", "k", "v", "o")]
FFN_TARGETS = [("up",), ("down",), ("gate",), ("up", "down", "gate")]


def spec_text(
    attention: str = "mha(heads = 4)",
    ffn: str = "mlp(hidden = 40)",
    targets: tuple[str, ...] = ("q", "v"),
    dropout: float = 0.0,
    cross: str | None = None,
    position: str | None = None,
) -> str:
    if position is None:
        position = "none" if attention.startswith(("xl", "lsh")) else "learned(max_len = 64)"
    grid = REGISTRY[attention.split("(")[0]].reads_grid  # an image encoder around it (Swin)
    block = f"""
    position = {position}
    block {{
      repeat = 2
      placement = pre
      norm = layernorm()
      attention = {attention}
      {"cross_attention = " + cross if cross else ""}
      ffn = {ffn}
    }}
    final_norm = layernorm()
"""
    body = block
    kind = "encoder" if grid else "decoder"
    if cross:
        kind = "encoder_decoder"
        encoder = block.replace("cross_attention = " + cross, "")
        body = f"encoder {{ {encoder} }}\n  decoder {{ {block} }}"
    return f"""
model probe {{
  type = {kind}
  d_model = {D}
  vocab = 37
  embedding = {"patch_embedding(image = 12, patch = 2, cls_token = false)" if grid else "token_embedding()"}
  {body}
  head = {"classifier(classes = 5, pool = mean)" if grid else "lm_head(tied = false)"}
  lora {{
    r = {R}
    dropout = {dropout}
    targets = [{", ".join(targets)}]
  }}
}}
"""


def load(tmp_path: Path, text: str) -> archdsl.Spec:
    p = tmp_path / "probe.arch"
    p.write_text(text)
    return archdsl.load(p)


def lora_numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if "lora_" in n)


def assert_consistent(spec: archdsl.Spec, batch: int = BATCH, seq: int = SEQ) -> torch.nn.Module:
    """The cost model counts what the module holds and does, with LoRA on."""
    assert archdsl.check(spec) == []
    model = archdsl.build(spec)
    r = archdsl.analyze(spec, batch=batch, seq_len=seq)
    assert r.params_total == sum(p.numel() for p in model.parameters())
    assert r.params_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert r.params_trainable == lora_numel(model)  # the base is frozen: only the updates train
    # a token uses all but the routed experts it is not sent to (their LoRA updates included)
    idle = sum(
        (len(m.experts) - m.top_k) * sum(p.numel() for p in m.experts[0].parameters())
        for m in model.modules()
        if type(m).__name__ == "MoE"
    )
    assert r.params_active == r.params_total - idle
    assert_costs_match(spec, batch, seq)  # forward FLOPs, in total and module by module
    assert_train_step_matches(spec, batch, seq)
    total, per = measured(spec, batch, seq)
    assert predicted(spec, batch, seq, ActCfg()) == total, per
    return model


def attention_lora(call: str, targets: tuple[str, ...]) -> int:
    """LoRA parameters one attention should hold, counted from the projections' shapes by hand: q
    d -> h hs, k and v d -> kv hs, o h hs -> d; LSH's one shared query-key projection is adapted by
    either q or k; latent attention's compressed projections are no targets."""
    if call.startswith(tuple(UNTARGETED_ATTENTION)):
        return 0
    heads = 4
    kv = 2 if "kv_heads = 2" in call else heads
    hs = D // heads
    shapes = {"q": (D, heads * hs), "k": (D, kv * hs), "v": (D, kv * hs), "o": (heads * hs, D)}
    if call.startswith("lsh"):
        shapes.pop("k")
        targets = tuple({"k": "q"}.get(t, t) for t in targets)
    return sum(R * (a + b) for name, (a, b) in shapes.items() if name in set(targets))


def test_every_kind_with_projections_is_covered() -> None:
    assert set(ATTENTION) == {k.name for k in REGISTRY.values() if k.role == "attention"}
    assert set(FFN) == {k.name for k in REGISTRY.values() if k.role == "ffn"}
    assert set(FFN) | set(FFN_VARIANTS) == {name for name, _ in FFN_CASES}


ALL_ATTENTION = ATTENTION_TARGETS[-1]
# the kinds with projections of their own make-up (the shell's, LSH's shared query-key, XL's over the
# memory) with every target alone and all of them (with dropout); the shell's other cores and the
# score variants with all of them (a target dropped changes the count of updates)
ATTENTION_CASES = (
    [(name, t) for name in ("mha", "lsh") for t in ATTENTION_TARGETS]
    + [
        ("xl", ("q",)),
        ("xl", ("o",)),
        ("xl", ALL_ATTENTION),
    ]
    + [
        (name, ALL_ATTENTION)
        for name in [*ATTENTION, *VARIANTS]
        if name not in ("mha", "lsh", "xl", *UNTARGETED_ATTENTION)
    ]
    # frozen under LoRA, with the feed-forward's update training around it (its input needs a gradient
    # in the second layer, nothing in the first)
    + [(name, (*ALL_ATTENTION, "up")) for name in sorted(UNTARGETED_ATTENTION)]
)
# a dense and a gated mixture with every target; the rest with all of them
FFN_CASES = [(name, t) for name in ("mlp", "moe_glu_shared") for t in FFN_TARGETS if t != ("down",)] + [
    (name, FFN_TARGETS[-1])
    for name in ("glu", "swiglu", "geglu", "reglu", "moe", "conformer_conv", "moe_relu", "rwkv_channel_mix")
]


def _id(case: tuple[str, tuple[str, ...]]) -> str:
    return f"{case[0]}-{'-'.join(case[1])}"


@pytest.mark.parametrize(("name", "targets"), ATTENTION_CASES, ids=map(_id, ATTENTION_CASES))
def test_attention_lora_is_applied_and_counted(name: str, targets: tuple[str, ...], tmp_path: Path) -> None:
    call = {**ATTENTION, **VARIANTS}[name]
    dropout = 0.1 if len(targets) > 1 else 0.0
    spec = load(tmp_path, spec_text(call, targets=targets, dropout=dropout))
    model = assert_consistent(spec)
    attn = model.h[0].attn
    assert lora_numel(attn) == attention_lora(call, targets)


CROSS_CASES = [("mha", ("q",)), ("mha", ("k", "v")), ("mha", ("o",)), ("linear", ("q", "k", "v", "o"))]


@pytest.mark.parametrize(("name", "targets"), CROSS_CASES, ids=map(_id, CROSS_CASES))
def test_cross_attention_lora_is_applied_and_counted(
    name: str, targets: tuple[str, ...], tmp_path: Path
) -> None:
    call = ATTENTION[name].replace(")", ", causal = false)")
    spec = load(tmp_path, spec_text(targets=targets, cross=call))
    model = assert_consistent(spec)
    assert lora_numel(model.decoder.h[0].cross) == attention_lora(call, targets)


@pytest.mark.parametrize(("name", "targets"), FFN_CASES, ids=map(_id, FFN_CASES))
def test_ffn_lora_is_applied_and_counted(name: str, targets: tuple[str, ...], tmp_path: Path) -> None:
    call = {**FFN, **FFN_VARIANTS}[name]
    # with the attention's v adapted too, something trains whatever the ffn adapts
    text = spec_text(ffn=call, targets=("v", *targets), dropout=0.1 if len(targets) > 1 else 0.0)
    model = assert_consistent(load(tmp_path, text))
    assert lora_numel(model.h[0].mlp) == ffn_lora(call, targets)


FROZEN_CASES = [
    ("moe", ("q", "o")),
    ("moe_glu_shared", ("v",)),
    ("moe_relu", ("q", "o")),
    ("conformer_conv", ("v",)),
]


@pytest.mark.parametrize(("name", "targets"), FROZEN_CASES, ids=map(_id, FROZEN_CASES))
def test_frozen_ffn_without_updates_is_counted(name: str, targets: tuple[str, ...], tmp_path: Path) -> None:
    """A frozen feed-forward (LoRA only on attention): what it keeps when only its input needs a
    gradient, and in the first layer, where nothing before it trains but the attention's update."""
    call = {**FFN, **FFN_VARIANTS}[name]
    model = assert_consistent(load(tmp_path, spec_text(ffn=call, targets=targets)))
    assert lora_numel(model.h[0].mlp) == 0


@pytest.mark.parametrize("position", ["t5()", "shaw(k = 2)", "shaw(k = 2, values = false)"])
def test_lora_with_positions_acting_in_attention(position: str, tmp_path: Path) -> None:
    """The stack's scheme in every self-attention: its tables are frozen too (T5's buckets, Shaw's
    q and summed weights are then kept for nothing)."""
    spec = load(tmp_path, spec_text("mha(heads = 4, score = bilinear)", targets=("q",), position=position))
    assert_consistent(spec)


@pytest.mark.parametrize(("batch", "seq"), [(1, 5), (2, 1)], ids=["batch1", "seq1"])
@pytest.mark.parametrize(
    ("call", "position"),
    [
        ("mha(heads = 1, score = bilinear)", "rope(max_len = 64)"),
        ("mha(heads = 4)", "rope(max_len = 64)"),
        ("xl(heads = 1, mem_len = 3)", "none"),
    ],
    ids=["bilinear_1head", "mha_rope", "xl_1head"],
)
def test_lora_where_views_fold(call: str, position: str, batch: int, seq: int, tmp_path: Path) -> None:
    """One head, a batch of one, one position: matmuls take views as they are, and a head-major
    output is token-major already (nothing copied, nothing kept twice)."""
    spec = load(tmp_path, spec_text(call, targets=("q", "o"), position=position))
    assert_consistent(spec, batch, seq)


@pytest.mark.parametrize(
    "head",
    [
        "pooler()",
        "mlm_head()",
        "mlm_head(tied = false)",
        "classifier(classes = 3)",
        "classifier(classes = 3, pool = mean)",
    ],
)
def test_frozen_heads_keep_what_their_modules_keep(head: str, tmp_path: Path) -> None:
    """A head in a frozen base (LoRA on the attention only): its maps' inputs are not kept for weights
    that do not train; what its activations need is."""
    text = spec_text(targets=("q", "v")).replace("lm_head(tied = false)", head)
    text = text.replace("type = decoder", "type = encoder")
    assert_consistent(load(tmp_path, text))
