"""IR -> constructor tree, through the registry. :mod:`build` instantiates it, :mod:`emit` prints it."""

from __future__ import annotations

from archdsl.graph import ctx_of
from archdsl.ir import Block, Model, Node
from archdsl.kinds import REGISTRY, Ctx
from archdsl.lower.ctor import Ctor, ModuleList, Repeat, ours, torch_nn

MODEL_NN = "archdsl.lower.model_nn"
BLOCK_CLASS = {"pre": "PreNormBlock", "post": "PostNormBlock"}


def _comp(node: Node | None, ctx: Ctx) -> Ctor:
    return torch_nn("Identity") if node is None else REGISTRY[node.kind].ctor(node, ctx)


def _block(blk: Block, ctx: Ctx) -> Ctor:
    return ours(
        MODEL_NN,
        BLOCK_CLASS[blk.placement],
        ln_1=_comp(blk.norm, ctx),
        attn=_comp(blk.attention, ctx),
        ln_2=_comp(blk.norm, ctx),
        mlp=_comp(blk.ffn, ctx),
    )


def _layers(model: Model, ctx: Ctx) -> ModuleList:
    """Consecutive equal blocks become one ``Repeat`` (a list comprehension in emitted code)."""
    runs: list[list[Block | int]] = []
    for blk in model.layers:
        if runs and runs[-1][0] == blk:
            runs[-1][1] += 1  # type: ignore[operator]
        else:
            runs.append([blk, 1])
    return ModuleList(tuple(Repeat(_block(b, ctx), int(n)) for b, n in runs))  # type: ignore[arg-type]


def lower(model: Model) -> Ctor:
    ctx = ctx_of(model)
    return ours(
        MODEL_NN,
        "Transformer",
        wte=_comp(model.embedding, ctx),
        wpe=_comp(model.position, ctx),
        h=_layers(model, ctx),
        ln_f=_comp(model.final_norm, ctx),
        lm_head=_comp(model.head, ctx),
        tie_weights=REGISTRY[model.head.kind].shares_embedding(model.head),
    )
