"""Attention kinds.

Every attention kind shares :class:`AttentionKind`: the query/key/value and output projections (with
grouped key/value heads, a head size independent of ``d_model``, biases, qk-norm), the stack's
positional scheme when it acts inside attention (RoPE, ALiBi, relative biases), soft-capping and
dropout. A kind only says how queries meet keys: which pairs, at what cost, with which module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node, Value
from archdsl.kinds.base import Ctx, Kind, Param, Shape, ShapeError, divisors
from archdsl.lower.ctor import Ctor, ours, torch_nn

NN = "archdsl.kinds.attention_nn"

COMMON = (
    Param("heads", "int", min=1, doc="number of query heads"),
    Param("kv_heads", "int", default=None, min=1, doc="key/value heads; must divide heads (default: heads)"),
    Param("head_dim", "int", default=None, min=1, doc="size of each head (default: d_model / heads)"),
    Param(
        "causal", "bool", default=None, doc="mask future positions (default: in a decoder's self-attention)"
    ),
    Param("cross", "bool", default=None, doc="attend to a second input (default: when applied to two)"),
    Param("bias", "bool", default=True, doc="biases on the Q, K, V and output projections"),
    Param(
        "out_bias",
        "bool",
        default=None,
        doc="bias on the output projection (default: as bias; Qwen 2: false)",
    ),
    Param(
        "qk_norm", "enum", default="none", choices=("none", "rmsnorm", "layernorm"), doc="normalise q and k"
    ),
    Param("qk_eps", "float", default=1e-6, gt=0.0, doc="eps of the qk-norm"),
    Param("softcap", "float", default=0.0, min=0.0, doc="cap scores at c * tanh(s / c) (Gemma 2); 0 is off"),
    Param("scale", "float", default=None, gt=0.0, doc="score scale (default: 1 / sqrt(head_dim))"),
    Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the attention weights"),
    Param("out_dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the output"),
)


class AttentionKind(Kind):
    """Shared by every attention kind; subclasses define the core (which query-key pairs, how)."""

    role = "attention"
    arities = (1, 2)
    extra: tuple[Param, ...] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.params = COMMON + cls.extra

    # -- parameters --------------------------------------------------------------------------------

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Value]:
        return {"causal": ctx.stack == "decoder" and arity == 1, "cross": arity == 2}

    def resolve(self, params: dict[str, Value]) -> dict[str, Value]:
        if params.get("kv_heads") is None:
            params["kv_heads"] = params["heads"]
        if params.get("out_bias") is None:
            params["out_bias"] = params["bias"]
        return params

    def dims(self, node: Node, ctx: Ctx) -> tuple[int, int, int]:
        """(heads, kv_heads, head size)."""
        h, kv = int(node["heads"]), int(node["kv_heads"])
        hs = int(node["head_dim"]) if node["head_dim"] is not None else ctx.d_model // h
        return h, kv, hs

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        errs = []
        d, h = ctx.d_model, int(node["heads"])
        if node["head_dim"] is None and d % h:
            errs.append(
                ShapeError(
                    f"d_model ({d}) is not divisible by heads ({h})",
                    help="choose heads among " + ", ".join(map(str, divisors(d))) + ", … or set head_dim",
                    param="heads",
                )
            )
        kv = int(node["kv_heads"])
        if h % kv:
            errs.append(
                ShapeError(
                    f"heads ({h}) is not divisible by kv_heads ({kv})",
                    help="each key/value head serves a whole group of query heads: choose kv_heads among "
                    + ", ".join(map(str, divisors(h))),
                    param="kv_heads",
                )
            )
        if bool(node["cross"]) != (arity == 2):
            errs.append(
                ShapeError(
                    f"`cross = {'true' if node['cross'] else 'false'}` but the attention is applied to "
                    f"{arity} tensor{'s' if arity != 1 else ''}",
                    help="cross-attention takes (x, memory); self-attention takes x",
                    param="cross",
                    code="E008",
                )
            )
        if node["cross"] and node["causal"]:
            errs.append(
                ShapeError(
                    "cross-attention cannot be causal",
                    help="queries and keys come from different sequences; drop `causal = true`",
                    param="causal",
                    code="E009",
                )
            )
        return errs + self.validate_core(node, ctx)

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        return []

    # -- shapes and costs --------------------------------------------------------------------------

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        d, h = ins[0][-1], int(node["heads"])
        if node["head_dim"] is None and isinstance(d, int) and d % h:
            raise ShapeError(
                f"d_model ({d}) is not divisible by heads ({h})",
                help="choose heads among " + ", ".join(map(str, divisors(d))) + ", …",
                param="heads",
            )
        if len(ins) == 2 and ins[0][-1] != ins[1][-1]:
            raise ShapeError(f"cross-attention inputs have widths {ins[0][-1]} and {ins[1][-1]}")
        return ins[0]

    def position(self, node: Node, ctx: Ctx) -> tuple[Kind, Node] | None:
        """The stack's positional scheme, when it acts inside this (self-)attention."""
        if ctx.position is None or node["cross"]:
            return None
        from archdsl.kinds import REGISTRY

        return REGISTRY[ctx.position.kind], ctx.position

    def lora_parts(
        self, node: Node, ctx: Ctx
    ) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
        """LoRA-targetable projections as (name, d_in, d_out): those fed by the queries' side (x) and
        by the keys' side (x, or the memory in cross-attention)."""
        d = ctx.d_model
        h, kv, hs = self.dims(node, ctx)
        q, k = h * hs, kv * hs
        return [("q", d, q), ("o", q, d)], [("k", d, k), ("v", d, k)]

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        if not ctx.frozen:
            return self.n_params(node, ctx)
        x_side, kv_side = self.lora_parts(node, ctx)
        return ctx.lora.params(x_side + kv_side) if ctx.lora is not None else 0

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        h, kv, hs = self.dims(node, ctx)
        q, k = h * hs, kv * hs
        n = d * (q + 2 * k) + q * d + ((q + 2 * k) if node["bias"] else 0) + (d if node["out_bias"] else 0)
        if ctx.lora is not None:
            x_side, kv_side = self.lora_parts(node, ctx)
            n += ctx.lora.params(x_side + kv_side)
        if node["qk_norm"] != "none":
            n += (q + k) * (2 if node["qk_norm"] == "layernorm" else 1)
        pos = self.position(node, ctx)
        if pos is not None:
            n += pos[0].attention_params(pos[1], ctx, node)
        return n + self.core_params(node, ctx)

    def core_params(self, node: Node, ctx: Ctx) -> int:
        return 0

    def _lengths(self, ins: Sequence[Shape]) -> tuple[Any, Any, Any]:
        b, n = ins[0][0], ins[0][1]
        m = ins[1][1] if len(ins) == 2 else n
        return b, n, m

    def projection_flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, m = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        d, q, k = ctx.d_model, h * hs, kv * hs
        total = 2 * b * (n * d * q + 2 * m * d * k + n * q * d)
        if ctx.lora is not None:
            x_side, kv_side = self.lora_parts(node, ctx)
            total += ctx.lora.flops(x_side, b * n) + ctx.lora.flops(kv_side, b * m)
        return total

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, m = self._lengths(ins)
        total = self.projection_flops(node, ctx, ins) + self.core_flops(node, ctx, b, n, m)
        pos = self.position(node, ctx)
        if pos is not None:
            total += pos[0].attention_flops(pos[1], ctx, node, b, n, m)
        return total

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, m = self._lengths(ins)
        h, _, hs = self.dims(node, ctx)
        core = 4 * b * h * hs * self.pairs(node, n, m)
        return self.projection_flops(node, ctx, ins) + core

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        """FLOPs of the scores and the weighted sum, as the module computes them."""
        h, _, hs = self.dims(node, ctx)
        return 4 * b * n * m * h * hs

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        """How many (query, key) pairs the mask keeps."""
        if node["cross"] or not node["causal"]:
            return n * m
        return n * (n + 1) // 2

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        _, kv, hs = self.dims(node, ctx)
        return 2 * kv * hs * context

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        if node["cross"]:
            return ("n·d²", "m·d²", "n·m·d")
        return ("n·d²", "n²·d")

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        pos = self.position(node, ctx)
        return pos[0].max_seq_len(pos[1], ctx) if pos is not None else None

    # -- lowering ----------------------------------------------------------------------------------

    def common_ctor_args(self, node: Node, ctx: Ctx) -> dict[str, Any]:
        h, kv, hs = self.dims(node, ctx)
        args: dict[str, Any] = {
            "d_model": ctx.d_model,
            "n_heads": h,
            "n_kv_heads": kv,
            "head_dim": hs,
            "causal": node["causal"],
            "cross": node["cross"],
            "bias": node["bias"],
        }
        if node["out_bias"] != node["bias"]:
            args["out_bias"] = node["out_bias"]
        if node["qk_norm"] == "rmsnorm":  # over the whole projection, as OLMo 2
            args["q_norm"] = ours("archdsl.kinds.norm_nn", "RMSNorm", d_model=h * hs, eps=node["qk_eps"])
            args["k_norm"] = ours("archdsl.kinds.norm_nn", "RMSNorm", d_model=kv * hs, eps=node["qk_eps"])
        elif node["qk_norm"] == "layernorm":
            args["q_norm"] = torch_nn("LayerNorm", h * hs, eps=node["qk_eps"])
            args["k_norm"] = torch_nn("LayerNorm", kv * hs, eps=node["qk_eps"])
        pos = self.position(node, ctx)
        if pos is not None:
            args["pos"] = pos[0].attention_ctor(pos[1], ctx, node)
        if node["softcap"]:
            args["softcap"] = node["softcap"]
        if node["scale"] is not None:
            args["scale"] = node["scale"]
        if node["dropout"]:
            args["dropout"] = node["dropout"]
        if node["out_dropout"]:
            args["out_dropout"] = node["out_dropout"]
        if ctx.lora is not None:
            args["lora"] = ctx.lora.ctor_arg()
        return args

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "Attention", **self.common_ctor_args(node, ctx))


class MultiHeadAttention(AttentionKind):
    """Multi-head attention over every key (Vaswani et al. 2017, §3.2.2), self or cross, with grouped
    key/value heads (GQA, Ainslie et al. 2023; ``kv_heads = 1`` is MQA, Shazeer 2019).

    Scores: scaled dot product (default), unscaled ``dot``, ``additive`` (Bahdanau et al. 2015:
    ``w^T tanh(q + k)`` per head) or ``bilinear`` (Luong et al. 2015: ``q^T W k``, a ``hs x hs`` W per
    head). Masks: causal, bidirectional, or prefix-LM (``prefix = P``: the first P positions see each
    other; Raffel et al. 2020). Parameters ``d (q + 2 kv) + q d`` for ``q = heads * hs``, ``kv = kv_heads
    * hs`` (plus biases). FLOPs: projections, then ``4 b n m q`` for scores and values over the full
    n x m (a mask does not change the dense count)."""

    name = "mha"
    extra = (
        Param("score", "enum", default="scaled", choices=("scaled", "dot", "additive", "bilinear")),
        Param(
            "prefix", "int", default=0, min=0, doc="prefix-LM: the first `prefix` positions see each other"
        ),
    )

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        if node["prefix"] and not node["causal"]:
            return [
                ShapeError(
                    "`prefix` needs a causal mask",
                    help="a prefix-LM is causal after its prefix; drop `prefix` or set `causal = true`",
                    param="prefix",
                    code="E009",
                )
            ]
        return []

    def core_params(self, node: Node, ctx: Ctx) -> int:
        h, _, hs = self.dims(node, ctx)
        return {"additive": h * hs, "bilinear": h * hs * hs}.get(str(node["score"]), 0)

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        h, _, hs = self.dims(node, ctx)
        extra = 2 * b * n * h * hs * hs if node["score"] == "bilinear" else 0
        return 4 * b * n * m * h * hs + extra

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        p = node["prefix"]
        if p and not node["cross"]:
            # the causal triangle, plus the prefix block's upper half: p(p-1)/2 more pairs
            p = min(p, n) if isinstance(n, int) else p
            return n * (n + 1) // 2 + p * (p - 1) // 2
        return super().pairs(node, n, m)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        args = self.common_ctor_args(node, ctx)
        if node["prefix"]:
            args["prefix"] = node["prefix"]
        score = str(node["score"])
        if score == "dot" and node["scale"] is None:
            args["scale"] = 1.0
        if score in ("additive", "bilinear"):
            return ours(NN, f"{score.capitalize()}Attention", **args)
        return ours(NN, "Attention", **args)


KINDS: tuple[Kind, ...] = (MultiHeadAttention(),)
