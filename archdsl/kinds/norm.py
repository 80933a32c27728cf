"""Normalisation kinds. Their arithmetic is elementwise, so they add no FLOPs under the matmul
convention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, prod
from archdsl.lower.ctor import Ctor, ours, torch_nn

NN = "archdsl.kinds.norm_nn"


def tokens(shape: Shape) -> Any:
    """Number of positions in a (B, ..., d) activation."""
    return prod(shape[:-1])


class LayerNorm(Kind):
    """Layer normalisation (Ba et al. 2016): ``d`` gains and, with ``bias``, ``d`` biases; with
    ``affine = false`` neither (OLMo 1's non-parametric LayerNorm): 0 parameters."""

    name = "layernorm"
    role = "norm"
    params = (
        Param("eps", "float", default=1e-5, gt=0.0),
        Param("bias", "bool", default=True),
        Param(
            "affine",
            "bool",
            default=True,
            doc="learned gains (and biases); false: none at all, as OLMo 1's LayerNorm",
        ),
    )

    def n_params(self, node: Node, ctx: Ctx) -> int:
        if not node["affine"]:
            return 0
        return ctx.d_model * (2 if node["bias"] else 1)

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Its input, and the mean and reciprocal deviation per position (fp32)."""
        return Saved(inputs=(True,), internal=2 * tokens(ins[0]) * 4)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        if not node["affine"]:  # no gains, so no biases either
            return torch_nn("LayerNorm", ctx.d_model, eps=node["eps"], elementwise_affine=False)
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

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Computed in fp32: the input (an fp32 copy of it in lower precision), the reciprocal rms per
        position and the normalised input (and, with the 1 + w gain, that gain)."""
        n, d = tokens(ins[0]), ctx.d_model
        internal = n * 4 + ((n * d * 4 + (d * 4 if node["offset"] else 0)) if act.weight_grad else 0)
        if act.bytes != 4:
            internal += n * d * 4
        return Saved(inputs=(act.bytes == 4,), internal=internal)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "RMSNorm", d_model=ctx.d_model, eps=node["eps"], offset=node["offset"])


KINDS: tuple[Kind, ...] = (LayerNorm(), RMSNorm())
