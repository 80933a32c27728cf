"""Feed-forward kinds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import Ctx, Kind, Param, Shape, ShapeError, prod
from archdsl.lower.ctor import Ctor, ours, torch_nn

NN = "archdsl.kinds.ffn_nn"

# activation word -> torch.nn constructor (GELU's tanh form is GPT-2's "gelu_new").
ACTIVATIONS: dict[str, Ctor] = {
    "relu": torch_nn("ReLU"),
    "gelu": torch_nn("GELU"),
    "gelu_tanh": torch_nn("GELU", approximate="tanh"),
}


def tokens(shape: Shape) -> Any:
    """Number of positions in a (B, ..., d) activation."""
    return prod(shape[:-1])


class MLP(Kind):
    """Two linear maps with an activation between: ``d -> hidden -> d``.

    Parameters ``2 d h`` (+ ``h + d`` biases); forward FLOPs ``2 N d h`` per linear, ``4 N d h`` for N
    positions.
    """

    name = "mlp"
    role = "ffn"
    params = (
        Param("hidden", "int", min=1, doc="inner width, typically 4 * d_model"),
        Param("activation", "enum", default="gelu", choices=tuple(ACTIVATIONS)),
        Param("bias", "bool", default=True),
        Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the output"),
    )

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, h = ctx.d_model, int(node["hidden"])
        return 2 * d * h + ((h + d) if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return 4 * tokens(ins[0]) * ctx.d_model * node["hidden"]

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "MLP",
            d_model=ctx.d_model,
            hidden=node["hidden"],
            act=ACTIVATIONS[str(node["activation"])],
            bias=node["bias"],
            dropout=node["dropout"],
        )


class MoE(Kind):
    """Sparse mixture of experts (Shazeer et al. 2017; Switch, Fedus et al. 2021; Mixtral, Jiang et al.
    2024): a linear router scores ``experts`` MLPs per token, softmax, the ``top_k`` best are kept (and,
    with ``normalize``, their weights renormalised to sum to 1), and the token's output is the weighted sum
    of those experts' outputs.

    Parameters: router ``d E`` + E experts of ``2 d h`` (+ biases). Forward FLOPs for N positions:
    router ``2 N d E`` + each token through k experts, ``4 N k d h`` — exact whatever the routing, since
    every token is processed by exactly k experts.
    """

    name = "moe"
    role = "ffn"
    params = (
        Param("experts", "int", min=1, doc="number of experts E"),
        Param("top_k", "int", default=2, min=1, doc="experts per token k"),
        Param("hidden", "int", min=1, doc="inner width of each expert"),
        Param("activation", "enum", default="gelu", choices=tuple(ACTIVATIONS)),
        Param("bias", "bool", default=False, doc="biases in the experts"),
        Param("normalize", "bool", default=True, doc="renormalise the top-k weights to sum to 1"),
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        if int(node["top_k"]) > int(node["experts"]):
            return [
                ShapeError(
                    f"top_k ({node['top_k']}) exceeds the number of experts ({node['experts']})",
                    help=f"choose top_k between 1 and {node['experts']}",
                    param="top_k",
                    code="E009",
                )
            ]
        return []

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, h, e = ctx.d_model, int(node["hidden"]), int(node["experts"])
        return d * e + e * (2 * d * h + ((h + d) if node["bias"] else 0))

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        n, d = tokens(ins[0]), ctx.d_model
        return 2 * n * d * node["experts"] + 4 * n * node["top_k"] * d * node["hidden"]

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "MoE",
            d_model=ctx.d_model,
            hidden=node["hidden"],
            n_experts=node["experts"],
            top_k=node["top_k"],
            act=ACTIVATIONS[str(node["activation"])],
            bias=node["bias"],
            normalize=node["normalize"],
        )


KINDS = (MLP(), MoE())
