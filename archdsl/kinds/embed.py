"""Token embeddings and output heads."""

from __future__ import annotations

from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import Ctx, Kind, Param, Shape
from archdsl.lower.ctor import Ctor, torch_nn


class TokenEmbedding(Kind):
    """A ``vocab x d`` lookup table. A lookup is not a matmul, so it adds no FLOPs (FlopCounterMode
    agrees; Hoffmann et al. 2022 App. F counts it as one, which is why their totals run higher)."""

    name = "token_embedding"
    role = "embedding"
    params = ()

    def out_shape(self, node: Node, ctx: Ctx, x: Shape) -> Shape:
        return (*x, ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return ctx.vocab * ctx.d_model

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return torch_nn("Embedding", ctx.vocab, ctx.d_model)


class LMHead(Kind):
    """Projection to vocabulary logits, ``d x vocab``; ``tied`` reuses the token embedding's matrix
    (Press & Wolf 2017), so it adds no parameters. Forward FLOPs ``2 b n d V``."""

    name = "lm_head"
    role = "head"
    params = (
        Param("tied", "bool", default=True, doc="share the token embedding matrix"),
        Param("bias", "bool", default=False),
    )

    def out_shape(self, node: Node, ctx: Ctx, x: Shape) -> Shape:
        return (*x[:-1], ctx.vocab)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return (0 if node["tied"] else ctx.vocab * ctx.d_model) + (ctx.vocab if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, b: Any, n: Any) -> Any:
        return 2 * b * n * ctx.d_model * ctx.vocab

    def shares_embedding(self, node: Node) -> bool:
        return bool(node["tied"])

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return torch_nn("Linear", ctx.d_model, ctx.vocab, bias=node["bias"])


KINDS = (TokenEmbedding(), LMHead())
