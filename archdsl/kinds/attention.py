"""Attention kinds."""

from __future__ import annotations

from typing import Any

from archdsl.ir import Node, Value
from archdsl.kinds.base import Ctx, Kind, Param, Shape, ShapeError, divisors
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.attention_nn"


class MultiHeadAttention(Kind):
    """Multi-head scaled dot-product self-attention (Vaswani et al. 2017, §3.2.2).

    Parameters: a fused QKV projection ``d x 3d`` and an output projection ``d x d`` (plus biases):
    ``4 d^2 + 4 d``. Forward FLOPs at batch b, length n: projections ``2 b n (3 d^2 + d^2) = 8 b n d^2``;
    scores ``Q K^T`` and the value product ``A V`` over the full n x n, ``2 b n^2 d`` each, so
    ``4 b n^2 d`` (the dense convention: the causal mask does not halve it).
    """

    name = "mha"
    role = "attention"
    params = (
        Param("heads", "int", min=1, doc="number of attention heads; must divide d_model"),
        Param("causal", "bool", default=None, doc="mask future positions (default: true in a decoder)"),
        Param("bias", "bool", default=True, doc="bias on the QKV and output projections"),
    )

    def defaults(self, ctx: Ctx) -> dict[str, Value]:
        return {"causal": ctx.type == "decoder"}

    def out_shape(self, node: Node, ctx: Ctx, x: Shape) -> Shape:
        d, h = x[-1], node["heads"]
        assert isinstance(d, int) and isinstance(h, int)
        if d % h:
            raise ShapeError(
                f"d_model ({d}) is not divisible by heads ({h})",
                help="choose heads among " + ", ".join(map(str, divisors(d))) + ", …",
                param="heads",
            )
        return x

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        return 4 * d * d + (4 * d if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, b: Any, n: Any) -> Any:
        d = ctx.d_model
        return 8 * b * n * d * d + 4 * b * n * n * d

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "SelfAttention",
            d_model=ctx.d_model,
            n_heads=node["heads"],
            causal=node["causal"],
            bias=node["bias"],
        )


KINDS = (MultiHeadAttention(),)
