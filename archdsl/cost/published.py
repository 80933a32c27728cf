"""The FLOP formulas people quote, applied as written, beside archdsl's exact counts (docs/cost-model.md
embeds the table; a test keeps it current).

Each takes a model's headline sizes — L blocks, width d, vocabulary V, h query heads of size hs, the
feed-forward width f — from its first block, and a length n:

* Kaplan et al. 2020, Table 1: ``C_forward = 2 N + 2 L n d_attn`` per token, N the blocks' parameters
  (no embedding or de-embedding), d_attn = h hs.
* Hoffmann et al. 2022, App. F: per sequence, the embeddings as a matmul ``2 n V d``, per layer QKV
  ``2 n 3 d (h hs)``, logits ``2 n² (h hs)``, softmax ``3 h n²``, the value reduction ``2 n² (h hs)``,
  the output ``2 n (h hs) d`` and the feed-forward ``2 n (d f + d f)``, and the final logits ``2 n d V``.
* Narayanan et al. 2021, §5.1: ``24 B s l h² (1 + s / 6h + V / 12 l h)`` forward (their 72 ... for a
  training step, 96 ... with full recomputation), h the width, for d_ff = 4h and multi-head attention.
* Chowdhery et al. 2022 (PaLM), App. B: ``6 N + 12 L H Q T`` training FLOPs per token, N all
  parameters, H heads of size Q, context T.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from archdsl.ir import Model, Spec


@dataclass(frozen=True)
class Dims:
    L: int
    d: int
    V: int
    h: int
    hs: int
    f: int


def dims(model: Model) -> Dims | None:
    """Headline sizes of a decoder with dense attention (of one width: no stages); None for other
    models."""
    if model.type != "decoder" or model.stacks[0].stages:
        return None
    blk = model.stacks[0].layers[0]
    roles = {name: node for name, node in blk.sublayers}
    attn = next((n for n in roles.values() if n.kind == "mha"), None)
    ffn = next(
        (n for n in roles.values() if n.kind in ("mlp", "swiglu", "geglu", "reglu", "glu", "moe")), None
    )
    if attn is None or ffn is None:
        return None
    h = int(attn["heads"])
    hs = int(attn["head_dim"]) if attn["head_dim"] is not None else model.d_model // h
    return Dims(model.n_layers, model.d_model, model.vocab, h, hs, int(ffn["hidden"]))


def kaplan_forward(x: Dims, block_params: int, n: int) -> int:
    return n * (2 * block_params + 2 * x.L * n * x.h * x.hs)


def hoffmann_forward(x: Dims, n: int) -> int:
    a = x.h * x.hs
    layer = 2 * n * 3 * x.d * a + 2 * n * n * a + 3 * x.h * n * n + 2 * n * n * a + 2 * n * a * x.d
    layer += 2 * n * (x.d * x.f + x.d * x.f)
    return 2 * n * x.V * x.d + x.L * layer + 2 * n * x.d * x.V


def narayanan_forward(x: Dims, n: int) -> int:
    # 24 s l h² (1 + s / 6h + V / 12 l h), multiplied out to stay in integers
    return 24 * n * x.L * x.d * x.d + 4 * n * n * x.L * x.d + 2 * n * x.d * x.V


def palm_train(x: Dims, params: int, n: int) -> int:
    return n * (6 * params + 12 * x.L * x.h * x.hs * n)


def table(specs: list[Spec], n: int = 2048) -> str:
    """The markdown table of docs/cost-model.md: each formula against the exact count."""
    from archdsl.pipeline import analyze

    def pct(x: int, exact: int) -> str:
        return f"{x / 1e9:,.1f} G ({(x - exact) / exact:+.1%})"

    rows = [
        f"| model (n = {n:,}, batch 1) | exact forward | Kaplan 2020 | Hoffmann 2022 | Narayanan 2021 | "
        "exact training step | PaLM 6N + 12LHQT |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in specs:
        x = dims(spec.model)
        assert x is not None, spec.path
        r = analyze(spec, seq_len=n, attention="materialized")
        blocks = sum(layer.params for layer in r.layers if layer.name.startswith("h."))
        fwd, train = r.flops_forward, r.flops()["train_step"]
        rows.append(
            f"| {spec.model.name} | {fwd / 1e9:,.1f} G | {pct(kaplan_forward(x, blocks, n), fwd)} | "
            f"{pct(hoffmann_forward(x, n), fwd)} | {pct(narayanan_forward(x, n), fwd)} | "
            f"{train / 1e9:,.1f} G | {pct(palm_train(x, r.params_total, n), train)} |"
        )
    return "\n".join(rows) + "\n"


def korthikanti_layer_bytes(s: int, b: int, h: int, a: int, flash: bool, dropout: bool = True) -> int:
    """Korthikanti et al. 2022, §4.1: a GPT block keeps ``s b h (34 + 5 a s / h)`` bytes (16-bit
    activations, 1-byte dropout masks). Without dropout, ``s b h (32 + 2 a s / h)`` (no masks, no
    dropped copy of the probabilities); a fused attention kernel keeps no ``a s²`` tensors."""
    linear = 34 if dropout else 32
    quadratic = 0 if flash else (5 if dropout else 2) * a * s * s * b
    return s * b * h * linear + quadratic


def activation_table(spec: Spec, dropout: Mapping[str, float], s: int = 2048, b: int = 1) -> str:
    """A GPT-2 block's saved activations, node by node, against Korthikanti et al.'s closed form, with
    and without dropout (``dropout``: the overrides that set it)."""
    from archdsl.pipeline import analyze, load

    m = spec.model
    x = dims(m)
    assert x is not None
    with_dropout = load(spec.path, dict(dropout))
    rows = [
        f"| {m.name} block, bf16, s = {s:,}, b = {b} | exact (archdsl) | per s·b·h | "
        "Korthikanti 2022 | per s·b·h |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, sp, attention, policy in (
        ("dropout, materialised attention", with_dropout, "materialized", "none"),
        (
            "dropout, flash attention (the CPU kernel has no dropout: SDPA's math path)",
            with_dropout,
            "flash",
            "none",
        ),
        ("dropout, selective recomputation", with_dropout, "materialized", "selective"),
        ("dropout, full recomputation", with_dropout, "materialized", "full"),
        ("no dropout, materialised attention", spec, "materialized", "none"),
        ("no dropout, flash attention", spec, "flash", "none"),
    ):
        r = analyze(sp, b, s, dtype="bf16", attention=attention, recompute=policy)
        ours = next(layer.activation_bytes for layer in r.layers if layer.name == "h.1")
        if policy == "full":
            theirs = 2 * s * b * x.d
        else:
            flash = attention == "flash" or policy == "selective"
            theirs = korthikanti_layer_bytes(s, b, x.d, x.h, flash, dropout=sp is with_dropout)
        rows.append(
            f"| {label} | {ours:,} | {ours / (s * b * x.d):.2f} | {theirs:,} | {theirs / (s * b * x.d):.2f} |"
        )
    return "\n".join(rows) + "\n"
