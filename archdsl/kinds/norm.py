"""Normalisation kinds. Their arithmetic is elementwise, so they add no FLOPs under the matmul
convention."""

from __future__ import annotations

from archdsl.ir import Node
from archdsl.kinds.base import Ctx, Kind, Param
from archdsl.lower.ctor import Ctor, ours, torch_nn

NN = "archdsl.kinds.norm_nn"


class LayerNorm(Kind):
    """Layer normalisation (Ba et al. 2016): ``d`` gains and, with ``bias``, ``d`` biases."""

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


class RMSNorm(Kind):
    """Root-mean-square normalisation (Zhang & Sennrich 2019; Llama): ``d`` gains, no centring. With
    ``offset`` the gain is stored as ``w`` and applied as ``1 + w`` (Gemma)."""

    name = "rmsnorm"
    role = "norm"
    params = (
        Param("eps", "float", default=1e-6, gt=0.0),
        Param("offset", "bool", default=False, doc="apply the gain as (1 + w), w initialised to 0 (Gemma)"),
    )

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return ctx.d_model

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "RMSNorm", d_model=ctx.d_model, eps=node["eps"], offset=node["offset"])


KINDS: tuple[Kind, ...] = (LayerNorm(), RMSNorm())
