"""Feed-forward kinds."""

from __future__ import annotations

from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import Ctx, Kind, Param
from archdsl.lower.ctor import Ctor, ours, torch_nn

NN = "archdsl.kinds.ffn_nn"

# activation word -> torch.nn constructor (GELU's tanh form is GPT-2's "gelu_new").
ACTIVATIONS: dict[str, Ctor] = {
    "relu": torch_nn("ReLU"),
    "gelu": torch_nn("GELU"),
    "gelu_tanh": torch_nn("GELU", approximate="tanh"),
}


class MLP(Kind):
    """Two linear maps with an activation between: ``d -> hidden -> d``.

    Parameters ``2 d h`` (+ ``h + d`` biases); forward FLOPs ``2 b n d h`` per linear, ``4 b n d h``.
    """

    name = "mlp"
    role = "ffn"
    params = (
        Param("hidden", "int", min=1, doc="inner width, typically 4 * d_model"),
        Param("activation", "enum", default="gelu", choices=tuple(ACTIVATIONS)),
        Param("bias", "bool", default=True),
    )

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, h = ctx.d_model, node["hidden"]
        assert isinstance(h, int)
        return 2 * d * h + ((h + d) if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, b: Any, n: Any) -> Any:
        return 4 * b * n * ctx.d_model * node["hidden"]

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "MLP",
            d_model=ctx.d_model,
            hidden=node["hidden"],
            act=ACTIVATIONS[str(node["activation"])],
            bias=node["bias"],
        )


KINDS = (MLP(),)
