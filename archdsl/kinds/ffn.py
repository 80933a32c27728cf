"""Feed-forward kinds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError, chain_backward, prod
from archdsl.lower.ctor import Ctor, ours, torch_nn

NN = "archdsl.kinds.ffn_nn"

# activation word -> torch.nn constructor (GELU's tanh form is GPT-2's "gelu_new"; relu2 is Primer's
# squared ReLU, So et al. 2021; quick_gelu is CLIP's x * sigmoid(1.702 x), Radford et al. 2021).
ACTIVATIONS: dict[str, Ctor] = {
    "relu": torch_nn("ReLU"),
    "gelu": torch_nn("GELU"),
    "gelu_tanh": torch_nn("GELU", approximate="tanh"),
    "silu": torch_nn("SiLU"),
    "relu2": ours(NN, "SquaredReLU"),
    "sigmoid": torch_nn("Sigmoid"),
    "quick_gelu": ours(NN, "QuickGELU"),
}


def tokens(shape: Shape) -> Any:
    """Number of positions in a (B, ..., d) activation."""
    return prod(shape[:-1])


#: activations whose backward needs their output (so the next layer's saved input is the same tensor)
KEEPS_OUTPUT = ("relu", "sigmoid")


def act_saved(activation: str, n: Any, h: Any, by: int) -> Any:
    """Bytes an activation between two linear maps adds: its input, or nothing when it keeps its output
    (which the next map keeps anyway); squared ReLU keeps relu's output besides; quick GELU its input
    and the sigmoid's output (the product keeps both)."""
    if activation == "quick_gelu":
        return 2 * n * h * by
    return 0 if activation in KEEPS_OUTPUT else n * h * by


class MLP(Kind):
    """Two linear maps with an activation between: ``d -> hidden -> d``. LoRA adapts ``up`` and
    ``down``.

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

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """Two linear maps in a chain (``chain_backward``), each with its LoRA update."""
        n, d, h = tokens(ins[0]), ctx.d_model, int(node["hidden"])
        stages = [[("up", n, d, h)], [("down", n, h, d)]]
        return chain_backward(ctx.lora, stages, act.input_grad, act.weight_grad)[0]

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Its input (the first map's, when its weights or LoRA update train); where the hidden layer
        runs on gradients, the activation's input (its output for relu, sigmoid) and dropout's mask;
        the hidden activation (the second map's input, when its weights or update train)."""
        from archdsl.kinds.peft import lora_on, lora_reads_input, lora_saved  # peft imports this module

        n, h, by = tokens(ins[0]), int(node["hidden"]), act.bytes
        activation = str(node["activation"])
        grads = act.input_grad or act.weight_grad or lora_on(ctx, ["up"])  # the hidden layer's
        kept = act.weight_grad or lora_reads_input(ctx, ["down"])  # the second map keeps its input
        internal = act_saved(activation, n, h, by) if grads else 0  # the activation's input
        if kept or (grads and activation in KEEPS_OUTPUT):
            internal += n * h * by  # the hidden activation
        if node["dropout"] and act.training and (grads or lora_on(ctx, ["down"])):
            internal += n * ctx.d_model * by  # dropout's mask
        internal += lora_saved(ctx, [(ctx.d_model, ["up"])], n, act)
        internal += lora_saved(ctx, [(h, ["down"])], n, act, input_grad=grads)
        return Saved(inputs=(act.weight_grad or lora_reads_input(ctx, ["up"]),), internal=internal)

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
    softmax, the ``top_k`` best are kept (with ``normalize``, their weights renormalised to sum to 1;
    then scaled by ``routed_scale``, DeepSeek's ``routed_scaling_factor``), and the output is the
    weighted sum of those experts' outputs, plus ``shared`` always-on experts of width ``shared_hidden``
    (default ``hidden``; DeepSeek-V2's ``n_shared_experts`` are one expert of ``n_shared_experts *
    moe_intermediate_size``: ``shared = 1, shared_hidden = 2 * hidden`` for two). Experts are MLPs or
    GLUs (``expert = glu``: ``activation`` gates, e.g. silu for SwiGLU). After each
    forward the module holds the Switch load-balancing loss ``E * sum_e f_e P_e`` as ``aux_loss``. LoRA's
    ``up``, ``down`` and (GLU experts) ``gate`` adapt every expert, routed and shared, as they adapt a
    dense feed-forward; the router stays frozen.

    Parameters: router ``d E`` + E experts + the shared ones. Forward FLOPs for N positions: router
    ``2 N d E`` + each token through k routed and all shared experts — exact whatever the routing, since
    every token meets exactly k routed experts. Active parameters per token: router + k routed + the
    shared experts (with their LoRA updates)."""

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
        Param(
            "shared_hidden",
            "int",
            default=None,
            min=1,
            doc="inner width of each shared expert (default: hidden; DeepSeek-V2: one of 2 * hidden)",
        ),
        Param(
            "routed_scale",
            "float",
            default=1.0,
            gt=0.0,
            doc="factor on the routed experts' weights (DeepSeek's routed_scaling_factor)",
        ),
        Param(
            "aux_loss",
            "float",
            default=0.01,
            min=0.0,
            doc="coefficient of the load-balancing loss added to the training loss (Fedus et al. 2021)",
        ),
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

    def expert(self, node: Node, shared: bool = False) -> tuple[Any, Node]:
        """One expert (routed, or ``shared``) as a kind of its own and its node: an ``mlp``, or a gated
        feed-forward with ``activation`` as its gate. Its costs (LoRA updates included) are the
        expert's, over the tokens it sees."""
        h, activation, bias = int(node["hidden"]), str(node["activation"]), node["bias"]
        if shared and node["shared_hidden"] is not None:
            h = int(node["shared_hidden"])
        if node["expert"] == "glu":
            return GLU("glu", activation, ""), Node("glu", (("hidden", h), ("bias", bias), ("dropout", 0.0)))
        return MLP(), Node(
            "mlp", (("hidden", h), ("activation", activation), ("bias", bias), ("dropout", 0.0))
        )

    def expert_params(self, node: Node, ctx: Ctx, shared: bool = False) -> int:
        kind, expert = self.expert(node, shared)
        return int(kind.n_params(expert, ctx))

    def n_params(self, node: Node, ctx: Ctx) -> int:
        routed = int(node["experts"]) * self.expert_params(node, ctx)
        shared = int(node["shared"]) * self.expert_params(node, ctx, shared=True)
        return ctx.d_model * int(node["experts"]) + routed + shared

    def active_params(self, node: Node, ctx: Ctx) -> int:
        routed = int(node["top_k"]) * self.expert_params(node, ctx)
        shared = int(node["shared"]) * self.expert_params(node, ctx, shared=True)
        return ctx.d_model * int(node["experts"]) + routed + shared

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        """All of them; in a frozen base, the experts' LoRA updates (the router stays frozen)."""
        if not ctx.frozen:
            return self.n_params(node, ctx)
        kind, expert = self.expert(node)
        shared_kind, shared = self.expert(node, shared=True)
        routed = int(node["experts"]) * int(kind.trainable_params(expert, ctx))
        return routed + int(node["shared"]) * int(shared_kind.trainable_params(shared, ctx))

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        """The router, each token through its k routed experts and every shared one."""
        n, d = tokens(ins[0]), ctx.d_model
        kind, expert = self.expert(node)
        total = 2 * n * d * node["experts"] + kind.flops(expert, ctx, ((n * node["top_k"], d),))
        if node["shared"]:
            kind, shared = self.expert(node, shared=True)
            total += kind.flops(shared, ctx, ((n * node["shared"], d),))
        return total

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The router as a linear map (its input's gradient, its weight's when it trains), and each
        token's experts as the expert kind's backward (with their LoRA updates)."""
        n, d = tokens(ins[0]), ctx.d_model
        kind, expert = self.expert(node)
        router = 2 * n * d * node["experts"] * (int(act.input_grad) + int(act.weight_grad))
        total = router + kind.backward_flops(expert, ctx, ((n * node["top_k"], d),), act)
        if node["shared"]:
            kind, shared = self.expert(node, shared=True)
            total += kind.backward_flops(shared, ctx, ((n * node["shared"], d),), act)
        return total

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·k·d·h", "n·d·E")

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Where the routing runs on gradients (its input needs them, or the router trains): the
        routing probabilities (fp32), the top-k indices (int64) and, when they are renormalised, the
        top-k weights and their sum; the load-balancing loss's assignment shares (E, fp32); and per
        routed (token, expert) pair the expert's output (its product with the weight keeps it). Where
        the experts' outputs need gradients (also when only their LoRA updates train): per pair the
        index pair (int64 x 2), the weight and the weighted output (``index_add_`` keeps it). And what
        each expert keeps over the tokens it sees, as the expert kind says: the gathered inputs when
        their first maps (or updates) read them, the hidden activations. Whatever the routing, every
        token meets exactly k experts; shared experts see every token."""
        from archdsl.kinds.peft import lora_on  # peft imports this module

        n, d, by = tokens(ins[0]), ctx.d_model, act.bytes
        e, k, shared = int(node["experts"]), int(node["top_k"]), int(node["shared"])
        kind, expert = self.expert(node)
        names = [name for name, _, _ in kind.lora_parts(expert, ctx)]
        routing = act.input_grad or act.weight_grad
        outputs = routing or lora_on(ctx, names)
        routed = kind.saved(expert, ctx, ((n * k, d),), act)
        internal = routed.internal + (n * k * d * by if routed.inputs[0] else 0)  # gathered inputs
        keeps_x = act.weight_grad  # the router's input
        if shared:
            shared_kind, shared_expert = self.expert(node, shared=True)
            s = shared_kind.saved(shared_expert, ctx, ((n * shared, d),), act)
            internal += s.internal
            keeps_x = keeps_x or s.inputs[0]
        if routing:
            internal += n * (e * 4 + k * 8 + (k * 4 + 4 if node["normalize"] else 0)) + e * 4
            internal += n * k * d * by  # the experts' outputs
        if outputs:
            internal += n * k * (16 + 4 + d * by)
        return Saved(inputs=(keeps_x,), internal=internal)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        act = ACTIVATIONS[str(node["activation"])]

        def expert(hidden: Any) -> Ctor:
            return ours(
                NN,
                "GatedMLP" if node["expert"] == "glu" else "MLP",
                d_model=ctx.d_model,
                hidden=hidden,
                act=act,
                bias=node["bias"],
                **lora_arg(ctx),
            )

        shared_hidden = node["hidden"] if node["shared_hidden"] is None else node["shared_hidden"]
        extra = {"routed_scale": node["routed_scale"]} if node["routed_scale"] != 1.0 else {}
        return ours(
            NN,
            "MoE",
            d_model=ctx.d_model,
            n_experts=node["experts"],
            top_k=node["top_k"],
            experts=[expert(node["hidden"])] * int(node["experts"]),
            shared=[expert(shared_hidden)] * int(node["shared"]),
            normalize=node["normalize"],
            aux_coef=node["aux_loss"],
            **extra,
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

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """Gate and up maps on the input, then the down map (``chain_backward``), with LoRA updates."""
        n, d, h = tokens(ins[0]), ctx.d_model, int(node["hidden"])
        stages = [[("gate", n, d, h), ("up", n, d, h)], [("down", n, h, d)]]
        return chain_backward(ctx.lora, stages, act.input_grad, act.weight_grad)[0]

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Its input (when the gate's or up map's weights or LoRA updates train). Where the gate runs
        on gradients: the activation's input (its output for relu, sigmoid) and the up projection (the
        product's other factor); where the up map does: the gate (act(gate x)); the product (the down
        map's input, when its weights or update train); dropout's mask."""
        from archdsl.kinds.peft import lora_on, lora_reads_input, lora_saved  # peft imports this module

        n, h, by = tokens(ins[0]), int(node["hidden"]), act.bytes
        gate = act.input_grad or act.weight_grad or lora_on(ctx, ["gate"])  # act(gate x) needs a gradient
        up = act.input_grad or act.weight_grad or lora_on(ctx, ["up"])  # up x needs a gradient
        internal = (act_saved(self.gate, n, h, by) + n * h * by) if gate else 0  # activation's input; up x
        if up or (gate and self.gate in KEEPS_OUTPUT):
            internal += n * h * by  # the gate
        if act.weight_grad or lora_reads_input(ctx, ["down"]):
            internal += n * h * by  # the product
        if node["dropout"] and act.training and (gate or up or lora_on(ctx, ["down"])):
            internal += n * ctx.d_model * by  # dropout's mask
        internal += lora_saved(ctx, [(ctx.d_model, ["gate"]), (ctx.d_model, ["up"])], n, act)
        internal += lora_saved(ctx, [(h, ["down"])], n, act, input_grad=gate or up)
        return Saved(inputs=(act.weight_grad or lora_reads_input(ctx, ["gate", "up"]),), internal=internal)

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
    GLU("glu", "sigmoid", "GLU feed-forward, sigmoid gate (Dauphin et al. 2017). LoRA: gate, up, down."),
    GLU(
        "swiglu",
        "silu",
        "SwiGLU feed-forward, SiLU gate (Shazeer 2020; Llama, Mistral). LoRA: gate, up, down.",
    ),
    GLU(
        "geglu",
        "gelu",
        "GeGLU feed-forward, GELU gate (Shazeer 2020; Gemma with tanh = true). LoRA: gate, up, down.",
    ),
    GLU("reglu", "relu", "ReGLU feed-forward, ReLU gate (Shazeer 2020). LoRA: gate, up, down."),
)

KINDS = (MLP(), MoE(), *GLUS)
