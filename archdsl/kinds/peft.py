"""Parameter-efficient fine-tuning, as spec-level options: LoRA on chosen projections and bottleneck
adapters after sublayers. With either, the base weights are frozen and only these train.

LoRA (Hu et al. 2022) adds ``(alpha / r) B A x`` to a projection ``W x``, with ``A: r x d_in`` and
``B: d_out x r`` (B starts at zero, so the model starts as the base). For a target of size
``d_out``: ``r (d_in + d_out)`` parameters and ``2 N r (d_in + d_out)`` FLOPs over N positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, chain_backward
from archdsl.kinds.ffn import ACTIVATIONS, tokens
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.peft_nn"

#: projection names LoRA can target: attention's q, k, v, o; feed-forward's up, down, gate
LORA_TARGETS = ("q", "k", "v", "o", "up", "down", "gate")


@dataclass(frozen=True)
class LoraConfig:
    r: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]

    def params(self, parts: Sequence[tuple[str, int, int]]) -> int:
        """LoRA parameters for the targeted ``(name, d_in, d_out)`` projections of one module."""
        return sum(self.r * (d_in + d_out) for name, d_in, d_out in parts if name in self.targets)

    def flops(self, parts: Sequence[tuple[str, int, int]], n: Any) -> Any:
        return sum(2 * n * self.r * (d_in + d_out) for name, d_in, d_out in parts if name in self.targets)

    def ctor_arg(self) -> dict[str, Any]:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout, "targets": list(self.targets)}


LORA_SETTINGS = (
    Param("r", "int", default=8, min=1, doc="rank of the update"),
    Param("alpha", "float", default=16.0, gt=0.0, doc="the update is scaled by alpha / r"),
    Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the update's input"),
)


def lora_parts(ctx: Ctx, parts: Sequence[tuple[str, int, int]]) -> tuple[int, Any]:
    """(LoRA parameters, LoRA FLOPs per position) a module with these projections gets in ``ctx``."""
    if ctx.lora is None:
        return 0, 0
    return ctx.lora.params(parts), ctx.lora.flops(parts, 1)


class Adapter(Kind):
    """A bottleneck adapter (Houlsby et al. 2019): ``x + up(act(down(x)))`` with a ``hidden``-wide
    bottleneck, placed after a sublayer. Parameters ``2 d h + h + d``; FLOPs ``4 N d h``. Adapters train
    while the base model stays frozen."""

    name = "adapter"
    role = "adapter"
    always_trains = True
    params = (
        Param("hidden", "int", default=64, min=1, doc="bottleneck width"),
        Param("activation", "enum", default="relu", choices=tuple(ACTIVATIONS)),
    )

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, h = ctx.d_model, int(node["hidden"])
        return 2 * d * h + h + d

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        return self.n_params(node, ctx)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return 4 * tokens(ins[0]) * ctx.d_model * node["hidden"]

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """Two linear maps in a chain (``chain_backward``): the bottleneck's gradient is needed for the
        first map's weights even where the adapter's input needs none (the first adapter of a frozen
        base)."""
        n, d, h = tokens(ins[0]), ctx.d_model, int(node["hidden"])
        stages = [[("down", n, d, h)], [("up", n, h, d)]]
        return chain_backward(None, stages, act.input_grad, act.weight_grad)[0]

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: Any) -> Saved:
        """Its input; the bottleneck activation (and its pre-activation, unless it keeps its output)."""
        from archdsl.kinds.ffn import act_saved

        n, h = tokens(ins[0]), int(node["hidden"])
        return Saved(
            inputs=(True,), internal=n * h * act.bytes + act_saved(str(node["activation"]), n, h, act.bytes)
        )

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d·h",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "Adapter",
            d_model=ctx.d_model,
            hidden=node["hidden"],
            act=ACTIVATIONS[str(node["activation"])],
        )


KINDS: tuple[Kind, ...] = (Adapter(),)


def lora_saved(
    ctx: Ctx, linears: Sequence[tuple[int, Sequence[str]]], n: Any, act: Any, input_grad: bool | None = None
) -> Any:
    """Bytes the LoRA updates of some linear maps keep for backward over n positions. ``linears``:
    each map's input width and the names of its output parts; ``input_grad``: whether their input needs
    a gradient (default: the component's input, ``act.input_grad``). Each adapted map keeps its rank-r
    activations (one r per adapted part) and, with dropout in training, the dropped input (and, when
    the input needs a gradient, dropout's mask)."""
    if ctx.lora is None:
        return 0
    grad = act.input_grad if input_grad is None else input_grad
    out: Any = 0
    for d_in, names in linears:
        adapted = sum(1 for name in names if name in ctx.lora.targets)
        if adapted:
            out += n * adapted * ctx.lora.r * act.bytes
            if ctx.lora.dropout and act.training:
                out += n * d_in * act.bytes * (2 if grad else 1)  # dropped input (and its mask)
    return out


def lora_reads_input(ctx: Ctx, names: Sequence[str]) -> bool:
    """Whether a LoRA update on this map keeps the map's own input (it does without dropout)."""
    return ctx.lora is not None and not ctx.lora.dropout and any(n in ctx.lora.targets for n in names)


def lora_on(ctx: Ctx, names: Sequence[str]) -> bool:
    return ctx.lora is not None and any(n in ctx.lora.targets for n in names)
