"""A learned latent array as a stack's queries (Perceiver: Jaegle et al. 2021, "Perceiver: General
Perception with Iterative Attention", §2): the stack's blocks run over N latents, and the embedded input
— of any length n, at a width of its own — is the memory their cross-attentions read. A cross-attention
from the latents costs n·N·d, the blocks over the latents N²·d: linear in the input's length."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.perceiver_nn"


class LatentArray(Kind):
    """A learned ``length x d`` array (Perceiver's latent array, Jaegle et al. 2021 §2): the queries a
    stack's blocks start from, the same for every example, whatever the input. In a stack's
    ``latents`` slot, the embedded input (after its positions and embedding norm) becomes the memory the
    blocks' cross-attentions read. (B, n, c) -> (B, length, d): ``length d`` parameters, no FLOPs."""

    name = "latent_array"
    role = "latents"
    params = (Param("length", "int", min=1, doc="N: the number of latents"),)

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (ins[0][0], node["length"], ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return int(node["length"]) * ctx.d_model

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        return 0  # an expanded parameter: its gradient is a sum over the batch

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        return Saved()  # expanding keeps nothing

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "LatentArray", length=node["length"], d_model=ctx.d_model)


KINDS = (LatentArray(),)
