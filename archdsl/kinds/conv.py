"""Convolution kinds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node, Value
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape
from archdsl.kinds.ffn import tokens
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.conv_nn"


class ConformerConv(Kind):
    """The Conformer convolution module (Gulati et al. 2020, "Conformer: Convolution-augmented
    Transformer for Speech Recognition", §2.2, Fig. 2): pointwise conv ``d -> 2d``, GLU, depthwise conv
    of width ``k = kernel``, BatchNorm (or LayerNorm), SiLU, pointwise conv ``d -> d``, dropout; (B, T, d)
    -> (B, T, d). Parameters ``3 d² + d k + 2 d`` (+ ``4 d`` biases). Forward FLOPs for N positions, as
    FlopCounterMode counts convolutions (2 per multiply-add over every output position and kernel tap):
    ``2 N (2 d² + d k + d²)``. Its convolutions are no LoRA targets: under LoRA it stays frozen.

    ``causal = true`` pads ``k - 1`` positions on the left only, so no output sees a later input
    (default: in a decoder); otherwise the padding is split, the extra one on the right for an even
    ``k``. BatchNorm mixes positions only through its statistics while training; in eval mode, or with
    ``norm = layernorm``, the module is causal whenever its convolution is.
    """

    name = "conformer_conv"
    role = "ffn"
    reads_mask = True
    params = (
        Param("kernel", "int", default=31, min=1, doc="depthwise kernel size k (Conformer: 31)"),
        Param("causal", "bool", default=None, doc="pad on the left only (default: in a decoder)"),
        Param("norm", "enum", default="batchnorm", choices=("batchnorm", "layernorm"), doc="after the conv"),
        Param("bias", "bool", default=True, doc="biases on the three convolutions"),
        Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the output"),
    )

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Value]:
        return {"causal": ctx.stack == "decoder"}

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, k = ctx.d_model, int(node["kernel"])
        return 3 * d * d + d * k + 2 * d + (4 * d if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        d = ctx.d_model
        return 2 * tokens(ins[0]) * (3 * d * d + d * node["kernel"])

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Its input (the first pointwise conv reads a view of it), the first conv's output (GLU's
        input, 2d wide), the padded GLU output (the depthwise conv's input, n + k - 1 positions), the
        norm's input and statistics (BatchNorm: per channel, fp32; LayerNorm, over channels: a
        contiguous copy of its input and per position), the norm's output (SiLU's input), SiLU's output
        (the second conv's input) and dropout's mask. The convolutions keep their inputs for their
        weights' gradients."""
        b, n, d, by = ins[0][0], tokens(ins[0]), ctx.d_model, act.bytes
        k = int(node["kernel"])
        conv_in = act.input_grad or act.weight_grad  # a convolution keeps its input even when frozen
        internal = n * 2 * d * by  # GLU's input
        if conv_in:  # the depthwise conv's (padded) and the second conv's inputs
            internal += b * d * (ins[0][1] + k - 1) * by + n * d * by
        internal += n * d * by  # the norm's input (LayerNorm: a contiguous copy of the transposed one)
        internal += 2 * d * 4 if node["norm"] == "batchnorm" else 2 * n * 4  # mean, 1 / std (fp32)
        internal += n * d * by  # SiLU's input
        if node["dropout"] and act.training:
            internal += n * d * by  # dropout's mask
        return Saved(inputs=(conv_in,), internal=internal)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²", "n·d·k")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "ConformerConv",
            d_model=ctx.d_model,
            kernel=node["kernel"],
            causal=node["causal"],
            norm=node["norm"],
            bias=node["bias"],
            dropout=node["dropout"],
        )


KINDS: tuple[Kind, ...] = (ConformerConv(),)
