"""Feed-forward kinds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import Ctx, Kind, Param, Shape, ShapeError, prod
from archdsl.lower.ctor import Ctor, ours, torch_nn

NN = "archdsl.kinds.ffn_nn"

# activation word -> torch.nn constructor (GELU's tanh form is GPT-2's "gelu_new"; relu2 is Primer's
# squared ReLU, So et al. 2021).
ACTIVATIONS: dict[str, Ctor] = {
    "relu": torch_nn("ReLU"),
    "gelu": torch_nn("GELU"),
    "gelu_tanh": torch_nn("GELU", approximate="tanh"),
    "silu": torch_nn("SiLU"),
    "relu2": ours(NN, "SquaredReLU"),
    "sigmoid": torch_nn("Sigmoid"),
}


def tokens(shape: Shape) -> Any:
    """Number of positions in a (B, ..., d) activation."""
    return prod(shape[:-1])


class MLP(Kind):
    """Two linear maps with an activation between: ``d -> hidden -> d``.

    Parameters ``2 d h`` (+ ``h + d`` biases); forward FLOPs ``2 N d h`` per linear, ``4 N d h`` for N
    positions.
    """

    name = "mlp"
    role = "ffn"
    params = (
        Param("hidden", "int", min=1, doc="inner width, typically 4 * d_model"),
        Param("activation", "enum", default="gelu", choices=tuple(ACTIVATIONS)),
        Param("bias", "bool", default=True),
        Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the output"),
    )

    def lora_parts(self, node: Node, ctx: Ctx) -> list[tuple[str, int, int]]:
        d, h = ctx.d_model, int(node["hidden"])
        return [("up", d, h), ("down", h, d)]

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, h = ctx.d_model, int(node["hidden"])
        lora = ctx.lora.params(self.lora_parts(node, ctx)) if ctx.lora is not None else 0
        return 2 * d * h + ((h + d) if node["bias"] else 0) + lora

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        return lora_trainable(self, node, ctx)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        n = tokens(ins[0])
        lora = ctx.lora.flops(self.lora_parts(node, ctx), n) if ctx.lora is not None else 0
        return 4 * n * ctx.d_model * node["hidden"] + lora

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d·h",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "MLP",
            d_model=ctx.d_model,
            hidden=node["hidden"],
            act=ACTIVATIONS[str(node["activation"])],
            bias=node["bias"],
            dropout=node["dropout"],
            **lora_arg(ctx),
        )


def lora_arg(ctx: Ctx) -> dict[str, Any]:
    return {"lora": ctx.lora.ctor_arg()} if ctx.lora is not None else {}


def lora_trainable(kind: Any, node: Node, ctx: Ctx) -> int:
    """All parameters train, unless the base is frozen: then only the LoRA updates do."""
    if not ctx.frozen:
        return int(kind.n_params(node, ctx))
    return ctx.lora.params(kind.lora_parts(node, ctx)) if ctx.lora is not None else 0


class MoE(Kind):
    """Sparse mixture of experts (Shazeer et al. 2017; Switch, Fedus et al. 2021; Mixtral, Jiang et al.
    2024; DeepSeekMoE, Dai et al. 2024): a linear router scores ``experts`` feed-forwards per token,
    softmax, the ``top_k`` best are kept (with ``normalize``, their weights renormalised to sum to 1),
    and the output is the weighted sum of those experts' outputs, plus ``shared`` always-on experts.
    Experts are MLPs or GLUs (``expert = glu``: ``activation`` gates, e.g. silu for SwiGLU). After each
    forward the module holds the Switch load-balancing loss ``E * sum_e f_e P_e`` as ``aux_loss``.

    Parameters: router ``d E`` + (E + shared) experts. Forward FLOPs for N positions: router ``2 N d E``
    + each token through k routed and all shared experts — exact whatever the routing, since every
    token meets exactly k routed experts. Active parameters per token: router + k + shared experts."""

    name = "moe"
    role = "ffn"
    params = (
        Param("experts", "int", min=1, doc="number of routed experts E"),
        Param("top_k", "int", default=2, min=1, doc="experts per token k"),
        Param("hidden", "int", min=1, doc="inner width of each expert"),
        Param("expert", "enum", default="mlp", choices=("mlp", "glu"), doc="expert feed-forward"),
        Param("activation", "enum", default="gelu", choices=tuple(ACTIVATIONS)),
        Param("bias", "bool", default=False, doc="biases in the experts"),
        Param("normalize", "bool", default=True, doc="renormalise the top-k weights to sum to 1"),
        Param("shared", "int", default=0, min=0, doc="always-active shared experts"),
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        if int(node["top_k"]) > int(node["experts"]):
            return [
                ShapeError(
                    f"top_k ({node['top_k']}) exceeds the number of experts ({node['experts']})",
                    help=f"choose top_k between 1 and {node['experts']}",
                    param="top_k",
                    code="E009",
                )
            ]
        return []

    def expert_params(self, node: Node, ctx: Ctx) -> int:
        d, h = ctx.d_model, int(node["hidden"])
        if node["expert"] == "glu":
            return 3 * d * h + ((2 * h + d) if node["bias"] else 0)
        return 2 * d * h + ((h + d) if node["bias"] else 0)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        e = int(node["experts"]) + int(node["shared"])
        return ctx.d_model * int(node["experts"]) + e * self.expert_params(node, ctx)

    def active_params(self, node: Node, ctx: Ctx) -> int:
        e = int(node["top_k"]) + int(node["shared"])
        return ctx.d_model * int(node["experts"]) + e * self.expert_params(node, ctx)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        n, d = tokens(ins[0]), ctx.d_model
        per_token = (6 if node["expert"] == "glu" else 4) * d * node["hidden"]
        return 2 * n * d * node["experts"] + n * (node["top_k"] + node["shared"]) * per_token

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·k·d·h", "n·d·E")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        act = ACTIVATIONS[str(node["activation"])]
        expert = ours(
            NN,
            "GatedMLP" if node["expert"] == "glu" else "MLP",
            d_model=ctx.d_model,
            hidden=node["hidden"],
            act=act,
            bias=node["bias"],
        )
        return ours(
            NN,
            "MoE",
            d_model=ctx.d_model,
            n_experts=node["experts"],
            top_k=node["top_k"],
            experts=[expert] * int(node["experts"]),
            shared=[expert] * int(node["shared"]),
            normalize=node["normalize"],
        )


class GLU(Kind):
    """Gated linear unit feed-forward (Dauphin et al. 2017; Shazeer 2020, "GLU Variants Improve
    Transformer"): ``down(act(gate(x)) * up(x))``. ``glu`` gates with a sigmoid, ``swiglu`` with SiLU
    (Llama, Mistral), ``geglu`` with GELU (``tanh = true``: Gemma's approximation), ``reglu`` with ReLU.
    Parameters ``3 d h`` (+ ``2 h + d`` biases); FLOPs ``6 N d h``."""

    role = "ffn"

    def __init__(self, name: str, gate: str, doc: str) -> None:
        self.name = name  # type: ignore[misc]
        self.gate = gate
        self.doc = doc  # type: ignore[misc]
        self.params = (  # type: ignore[misc]
            Param("hidden", "int", min=1, doc="inner width (Llama 2 7B: 11008)"),
            Param("bias", "bool", default=False),
            Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the output"),
            *(
                (Param("tanh", "bool", default=False, doc="tanh approximation of GELU"),)
                if gate == "gelu"
                else ()
            ),
        )

    def activation(self, node: Node) -> Ctor:
        if self.gate == "gelu" and node["tanh"]:
            return ACTIVATIONS["gelu_tanh"]
        return ACTIVATIONS[self.gate]

    def lora_parts(self, node: Node, ctx: Ctx) -> list[tuple[str, int, int]]:
        d, h = ctx.d_model, int(node["hidden"])
        return [("gate", d, h), ("up", d, h), ("down", h, d)]

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, h = ctx.d_model, int(node["hidden"])
        lora = ctx.lora.params(self.lora_parts(node, ctx)) if ctx.lora is not None else 0
        return 3 * d * h + ((2 * h + d) if node["bias"] else 0) + lora

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        return lora_trainable(self, node, ctx)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        n = tokens(ins[0])
        lora = ctx.lora.flops(self.lora_parts(node, ctx), n) if ctx.lora is not None else 0
        return 6 * n * ctx.d_model * node["hidden"] + lora

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d·h",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "GatedMLP",
            d_model=ctx.d_model,
            hidden=node["hidden"],
            act=self.activation(node),
            bias=node["bias"],
            dropout=node["dropout"],
            **lora_arg(ctx),
        )


GLUS = (
    GLU("glu", "sigmoid", "GLU feed-forward, sigmoid gate (Dauphin et al. 2017)."),
    GLU("swiglu", "silu", "SwiGLU feed-forward, SiLU gate (Shazeer 2020; Llama, Mistral)."),
    GLU("geglu", "gelu", "GeGLU feed-forward, GELU gate (Shazeer 2020; Gemma with tanh = true)."),
    GLU("reglu", "relu", "ReGLU feed-forward, ReLU gate (Shazeer 2020)."),
)

KINDS = (MLP(), MoE(), *GLUS)
