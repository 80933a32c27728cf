"""Absolute positional kinds (added to the token embeddings)."""

from __future__ import annotations

from collections.abc import Sequence

from archdsl.ir import Node
from archdsl.kinds.base import Ctx, Kind, Param, Shape, ShapeError
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.position_nn"


class Learned(Kind):
    """A trained ``max_len x d`` table (GPT-2, BERT, ViT): ``max_len * d`` parameters, no FLOPs."""

    name = "learned"
    role = "position"
    params = (Param("max_len", "int", min=1, doc="longest supported sequence (the context length)"),)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return int(node["max_len"]) * ctx.d_model

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        return int(node["max_len"])

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "LearnedPositions", max_len=node["max_len"], d_model=ctx.d_model)


class Sinusoidal(Kind):
    """Fixed sinusoids (Vaswani et al. 2017): no parameters; the table is precomputed to ``max_len``."""

    name = "sinusoidal"
    role = "position"
    params = (Param("max_len", "int", default=4096, min=1, doc="length of the precomputed table"),)

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        if ctx.d_model % 2:
            return [
                ShapeError(
                    f"sinusoidal positions need an even d_model, got {ctx.d_model}",
                    help="sin and cos fill alternate channels; make d_model even",
                )
            ]
        return []

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return ins[0]

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        return int(node["max_len"])

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "SinusoidalPositions", max_len=node["max_len"], d_model=ctx.d_model)


KINDS = (Learned(), Sinusoidal())
