"""Normalisation kinds."""

from __future__ import annotations

from archdsl.ir import Node
from archdsl.kinds.base import Ctx, Kind, Param
from archdsl.lower.ctor import Ctor, torch_nn


class LayerNorm(Kind):
    """Layer normalisation (Ba et al. 2016): ``d`` gains and, with ``bias``, ``d`` biases.

    Its arithmetic is elementwise, so it adds no FLOPs under the matmul convention.
    """

    name = "layernorm"
    role = "norm"
    params = (
        Param("eps", "float", default=1e-5, gt=0.0),
        Param("bias", "bool", default=True),
    )

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return ctx.d_model * (2 if node["bias"] else 1)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return torch_nn("LayerNorm", ctx.d_model, eps=node["eps"], bias=node["bias"])


KINDS = (LayerNorm(),)
