"""Attention kinds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node, Value
from archdsl.kinds.base import Ctx, Kind, Param, Shape, ShapeError, divisors
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.attention_nn"


class MultiHeadAttention(Kind):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, §3.2.2), self or cross, with
    ``kv_heads`` key/value heads shared by groups of query heads (grouped-query attention, Ainslie et al.
    2023; ``kv_heads = 1`` is multi-query attention, Shazeer 2019).

    Self-attention is applied to one tensor, cross-attention to two (queries from the first, keys and
    values from the second: the encoder output in a decoder). With head size ``hs = d / heads`` and
    ``kv = kv_heads * hs``: parameters ``2 d^2 + 2 d kv`` (plus biases ``2 d + 2 kv``). Forward FLOPs for
    queries of length n and keys of length m: projections ``2 b (n d^2 + 2 m d kv + n d^2)``; scores
    ``Q K^T`` and the value product ``A V``, ``2 b n m d`` each, over the full n x m (the dense
    convention: a causal mask does not halve it; grouping shares keys, not work).
    """

    name = "mha"
    role = "attention"
    arities = (1, 2)
    params = (
        Param("heads", "int", min=1, doc="number of attention heads; must divide d_model"),
        Param(
            "causal",
            "bool",
            default=None,
            doc="mask future positions (default: in a decoder's self-attention)",
        ),
        Param("bias", "bool", default=True, doc="bias on the Q, K, V and output projections"),
        Param("cross", "bool", default=None, doc="attend to a second input (default: when applied to two)"),
        Param(
            "kv_heads", "int", default=None, min=1, doc="key/value heads; must divide heads (default: heads)"
        ),
        Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the attention weights"),
    )

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Value]:
        return {"causal": ctx.stack == "decoder" and arity == 1, "cross": arity == 2}

    def resolve(self, params: dict[str, Value]) -> dict[str, Value]:
        if params.get("kv_heads") is None:
            params["kv_heads"] = params["heads"]
        return params

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        errs = []
        d, h = ctx.d_model, int(node["heads"])
        if d % h:
            errs.append(
                ShapeError(
                    f"d_model ({d}) is not divisible by heads ({h})",
                    help="choose heads among " + ", ".join(map(str, divisors(d))) + ", …",
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
        return errs

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        d, h = ins[0][-1], int(node["heads"])
        if isinstance(d, int) and d % h:
            raise ShapeError(
                f"d_model ({d}) is not divisible by heads ({h})",
                help="choose heads among " + ", ".join(map(str, divisors(d))) + ", …",
                param="heads",
            )
        if len(ins) == 2 and ins[0][-1] != ins[1][-1]:
            raise ShapeError(f"cross-attention inputs have widths {ins[0][-1]} and {ins[1][-1]}")
        return ins[0]

    def kv_dim(self, node: Node, ctx: Ctx) -> int:
        return int(node["kv_heads"]) * (ctx.d_model // int(node["heads"]))

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, kv = ctx.d_model, self.kv_dim(node, ctx)
        return 2 * d * d + 2 * d * kv + ((2 * d + 2 * kv) if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, d = ins[0]
        m = ins[1][1] if len(ins) == 2 else n
        kv = self.kv_dim(node, ctx)
        return 2 * b * (n * d * d + 2 * m * d * kv + n * d * d) + 4 * b * n * m * d

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        common = {"d_model": ctx.d_model, "n_heads": node["heads"], "n_kv_heads": node["kv_heads"]}
        if node["cross"]:
            return ours(NN, "CrossAttention", **common, bias=node["bias"], dropout=node["dropout"])
        return ours(
            NN, "SelfAttention", **common, causal=node["causal"], bias=node["bias"], dropout=node["dropout"]
        )


KINDS = (MultiHeadAttention(),)
