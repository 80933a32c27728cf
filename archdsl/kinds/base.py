"""What every component kind declares, in one place: parameter schema, checks, shape rule, cost and
PyTorch constructor.

A kind is a subclass of :class:`Kind` registered in :mod:`archdsl.kinds`. Elaboration validates spec
arguments against ``params`` and calls ``defaults`` / ``validate``; the graph passes call ``out_shape``;
analysis calls ``n_params`` and ``flops`` with the node's input shapes; lowering calls ``ctor``. Costs
are written with ``+ - * //`` only, so they work on integers and, unchanged, on sympy symbols.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from archdsl.ir import Node, Value
from archdsl.lower.ctor import Ctor

REQUIRED: Any = object()

# The role each kind plays; slots in a model or block accept kinds of one role.
ROLES = ("embedding", "position", "norm", "attention", "ffn", "head", "adapter", "transition", "latents")


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a kind: type ``int | float | bool | enum``, default, bounds, doc.

    A default of ``None`` means "decided by context" (:meth:`Kind.defaults`)."""

    name: str
    type: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    min: float | None = None  # inclusive
    gt: float | None = None  # exclusive lower bound
    max: float | None = None  # inclusive
    lt: float | None = None  # exclusive upper bound
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Ctx:
    """What a component knows of its surroundings: the residual width, the vocabulary size, which
    stack it sits in (``decoder`` or ``encoder``), and the stack's positional scheme when that scheme
    acts inside attention (RoPE, ALiBi, relative biases). In a stack of stages (Swin, PVT) the width is
    the stage's; image models also know the 2-D grid their tokens lie on."""

    d_model: int
    vocab: int
    stack: str = "decoder"
    position: Node | None = None
    #: for a positional scheme with one table shared by the stack (T5): the stack's self-attention
    attention: Node | None = None
    #: the spec's LoRA settings (a ``peft.LoraConfig``), when it has them
    lora: Any = None
    #: the base weights are frozen (the spec has LoRA or adapters): only those train
    frozen: bool = False
    #: the token table's width where it is not ``d_model`` (``token_embedding(width = …)``): a
    #: projection joins the two, and heads decode at this width (OPT-350m, ALBERT)
    width: int | None = None
    #: the (rows, columns) grid the tokens it reads lie on, row-major (an image's patches, and what
    #: each stage's transition makes of them); None for sequences (and an image with a class token)
    grid: tuple[int, int] | None = None
    #: a transition between stages (Swin's patch merging): the width it reads, the stage before's; it
    #: writes ``d_model``, the width of the stage it enters
    d_in: int | None = None

    def stage(self, d_model: int, grid: tuple[int, int] | None) -> Ctx:
        """This context in a stage of another width and grid."""
        return replace(self, d_model=d_model, grid=grid, d_in=None)

    def entering(self, d_model: int) -> Ctx:
        """The context of the transition from this stage into one ``d_model`` wide: it reads this
        stage's width and grid."""
        return replace(self, d_in=self.d_model, d_model=d_model)

    #: the width of the memory a stack's cross-attentions read where it is not ``d_model``: the input
    #: of a stack that runs over latents, kept at its table's width (Perceiver)
    memory_width: int | None = None


Shape = tuple[Any, ...]  # ints and symbols: "B" (batch), "T" (sequence), "S" (encoder sequence)


@dataclass(frozen=True)
class ActCfg:
    """How activations are kept for backward: bytes per element of the activation dtype, whether
    attention goes through a fused (flash) kernel or materialises its scores, whether dropout is active
    (training) — and, per component, whether its inputs need gradients (not before the first trainable
    weight of a frozen model) and whether its own weights train (not in a frozen base)."""

    bytes: int = 4
    flash: bool = True
    training: bool = True
    input_grad: bool = True
    weight_grad: bool = True
    #: per input, where they differ (a towers model's head when one tower trains nothing); else ()
    input_grads: tuple[bool, ...] = ()

    def grads(self, n: int) -> tuple[bool, ...]:
        """Whether each of ``n`` inputs needs a gradient."""
        return self.input_grads or (self.input_grad,) * n


@dataclass(frozen=True)
class Saved:
    """What a component keeps for backward. ``inputs[i]``: it keeps input i whole (the tensor is
    counted once however many components keep it); ``output``: it keeps its own output; ``internal``:
    bytes of other tensors it makes and keeps; ``core``: the part of ``internal`` that selective
    recomputation drops (materialised attention scores and probabilities; Korthikanti et al. 2022)."""

    inputs: tuple[bool, ...] = ()
    output: bool = False
    internal: Any = 0
    core: Any = 0


class ShapeError(Exception):
    """A shape rule's or a check's complaint; ``param`` names the argument to point the caret at."""

    def __init__(self, message: str, help: str | None = None, param: str | None = None, code: str = "E011"):
        super().__init__(message)
        self.message = message
        self.help = help
        self.param = param
        self.code = code


class Kind:
    name: ClassVar[str]
    role: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    doc: ClassVar[str] = ""
    #: how many tensors the component takes when applied (attention: 1 for self, 2 for cross)
    arities: ClassVar[tuple[int, ...]] = (1,)
    #: positional kinds: "embedding" (added to the embeddings) or "attention" (acts on scores / q, k)
    applies: ClassVar[str] = "embedding"
    #: the module keeps state across forwards (Transformer-XL's memory): it cannot be recomputed
    stateful: ClassVar[bool] = False
    #: its weights train even when the base model is frozen (adapters)
    always_trains: ClassVar[bool] = False
    #: positional kinds acting in attention: it turns q and k (RoPE) rather than biasing the scores
    rotates: ClassVar[bool] = False
    #: embeddings: it has a (vocab, d_model) table that a tied head can share
    token_table: ClassVar[bool] = False
    #: it mixes positions (a convolution over time): its forward takes the padding mask
    reads_mask: ClassVar[bool] = False
    #: attention kinds: queries meet keys, so the stack's positional scheme acting in attention (RoPE,
    #: ALiBi, relative biases) acts in it; sequence mixers in the attention slot that are recurrences
    #: over positions (Mamba, RWKV, retention) know order without one
    attends: ClassVar[bool] = False
    #: a kind outside the attention role whose module keeps a decoding state in a decoder (RWKV's
    #: channel mix keeps the previous token): ``kv_cache`` counts it, ``setup_cache`` allocates it
    recurrent: ClassVar[bool] = False
    #: what a decoder keeps for it is a recurrent state of fixed size (a mixer's, linear attention's
    #: running sums), not keys and values: reports call it a state
    state_cache: ClassVar[bool] = False
    #: it reads the 2-D grid its tokens lie on (``Ctx.grid``): it needs an image model without a class
    #: token (Swin's window attention, a transition between stages)
    reads_grid: ClassVar[bool] = False

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Value]:
        """Defaults that depend on where and how the component is used (e.g. causal in a decoder)."""
        return {}

    def resolve(self, params: dict[str, Value]) -> dict[str, Value]:
        """Defaults that depend on other parameters (``kv_heads`` defaults to ``heads``)."""
        return params

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        """Checks across parameters, context and use (``arity``: how many tensors it is applied to),
        run when the spec is elaborated."""
        return []

    def input_shape(self, node: Node, ctx: Ctx, seq: str) -> Shape:
        """For embeddings: the shape of the model input they read (``seq`` names the length)."""
        return ("B", seq)

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return ins[0]

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return 0

    def active_params(self, node: Node, ctx: Ctx) -> int:
        """Parameters one token uses (fewer than ``n_params`` for a mixture of experts)."""
        return self.n_params(node, ctx)

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        """Parameters that train: all of them, or none when the base is frozen (LoRA, adapters);
        kinds with LoRA-adapted projections count those."""
        return 0 if ctx.frozen else self.n_params(node, ctx)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        """Forward FLOPs for inputs of the given (concrete or symbolic) shapes: 2 per multiply-add,
        matmuls only, attention over the full n x n (the FlopCounterMode convention)."""
        return 0

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        """Forward FLOPs counting only the products a mask keeps (causal: n(n+1)/2 query-key pairs,
        a window: about n w). The same as ``flops`` for components without masks."""
        return self.flops(node, ctx, ins)

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """FLOPs of this component's backward (2 per multiply-add), in the dense convention or, with
        ``mask_aware``, over the pairs the masks keep. A matmul's gradient with respect to one operand
        costs as much as the matmul; by default every operand needs one when gradients flow here (its
        input needs a gradient or its weights train): twice the forward (Kaplan et al. 2020, §2.1).
        By default the component's matmuls all multiply its input (or what it made of it) by its
        weights: one gradient for the input if it needs one, one for the weights if they train (so a
        ViT's patch projection, whose pixels need none, costs 1 x). Kinds with products of two
        activations (attention), constant operands (random features, fixed tables) or LoRA updates
        say more. Tested against FlopCounterMode."""
        f = (self.flops_mask_aware if mask_aware else self.flops)(node, ctx, ins)
        return f * (int(act.input_grad) + int(act.weight_grad))

    def recompute_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, selective: bool
    ) -> Any:
        """FLOPs its backward redoes beyond the forward: a fused (flash) attention kernel recomputes
        its scores; under selective recomputation (Korthikanti et al. 2022, §4.2) an attention that
        materialises them redoes its core. None for other components."""
        return 0

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """What the module keeps for backward at these input shapes (default: nothing, as an
        elementwise add keeps nothing)."""
        return Saved()

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """Elements cached per sequence for incremental decoding at a given context length: keys and
        values (attention), or a recurrent mixer's state (constant in the context)."""
        return 0

    def kv_cache_mha(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """Elements multi-head attention with the same heads and head sizes would cache per sequence
        (the baseline the report compares ``kv_cache`` with): by default ``kv_cache`` itself."""
        return self.kv_cache(node, ctx, context)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        """The growth terms of this component's time, in n (sequence), d (width) and its own sizes."""
        return ()

    def regime(self, node: Node) -> tuple[int, int]:
        """(m, t): the polynomial of this component's costs equals its exact counts for lengths that
        are multiples of m (the block it pads to) and above t (where it stops attending densely, or
        a prefix fits). Kinds that pad or switch say so; the report states the model's regime."""
        return 1, 0

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        """Longest sequence this component supports, if it has a limit."""
        return None

    def out_grid(self, node: Node, ctx: Ctx) -> tuple[int, int] | None:
        """The (rows, columns) grid of the tokens it outputs: an image embedding's (its patches, with
        no class token), a transition's (Swin's patch merging halves it); the rest keep the grid they
        read (``ctx.grid``)."""
        return ctx.grid

    def per_layer(self, node: Node, index: int) -> Node:
        """The node as layer ``index`` of its stage (of its stack, without stages) uses it: a kind whose
        parameter defaults to "by the layer" resolves it here, at elaboration (Swin shifts its windows
        on every other layer). Most kinds return the node unchanged."""
        return node

    def fixed_length(self, node: Node) -> tuple[int, str] | None:
        """For embeddings whose input fixes the sequence length (an image's patches): the length, and
        how the input gives it, in words. ``check`` holds it to every limit (``max_seq_len``)."""
        return None

    # -- positional kinds that act inside attention (applies = "attention") --------------------------

    def attention_params(self, node: Node, ctx: Ctx, attn: Node) -> int:
        """Parameters this scheme adds to one attention module."""
        return 0

    def attention_flops(self, node: Node, ctx: Ctx, attn: Node, b: Any, n: Any, m: Any) -> Any:
        """Matmul FLOPs this scheme adds to one attention of n queries over m keys."""
        return 0

    def attention_saved(self, node: Node, ctx: Ctx, attn: Node, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """What this scheme's module keeps for backward in one attention of n queries over m keys
        (``internal``; ``core``: the part that is score-sized, which selective recomputation drops)."""
        return Saved()

    def attention_ctor(self, node: Node, ctx: Ctx, attn: Node) -> Ctor:
        """The module one attention holds (``rotate(q, k)`` and ``bias(q, k)``). A scheme whose table
        the whole stack shares returns ``Shared(f"{ctx.stack}.pos", …)``; the stack holds it as ``pos``."""
        raise NotImplementedError

    def shared_table(self, node: Node) -> bool:
        """True for a positional scheme whose parameters the whole stack shares (T5's relative bias):
        its parameters are counted once, on the stack's ``pos`` module, not per attention."""
        return False

    def shares_embedding(self, node: Node) -> bool:
        """True for a head that reuses the token embedding matrix (weight tying)."""
        return False

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        raise NotImplementedError

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def chain_backward(
    lora: Any, stages: Sequence[Sequence[tuple[str, Any, int, int]]], input_grad: bool, weight_grad: bool
) -> tuple[Any, bool]:
    """Backward FLOPs of linear maps applied in stages — each stage's maps ``(name, positions, d_in,
    d_out)`` read the same tensor, the first stage the component's input, each later stage what the
    one before made — and whether the last stage's output needs a gradient.

    A map ``Y = X W`` of forward F costs F for ``dX`` (if X needs a gradient) and F for ``dW`` (if W
    trains). A LoRA update ``(X A) B`` on it (``lora``: a ``LoraConfig``; its A and B train) costs
    ``dA`` and ``dB`` always, ``d(X A)`` always (A trains) and ``dX`` through A if X needs it. A stage's
    output needs a gradient if its input does, or its weights or updates train."""
    total: Any = 0
    grad = input_grad
    for stage in stages:
        adapted = False
        for name, n, d_in, d_out in stage:
            total += 2 * n * d_in * d_out * (int(grad) + int(weight_grad))
            if lora is not None and name in lora.targets:
                fa, fb = 2 * n * d_in * lora.r, 2 * n * lora.r * d_out
                total += fa * (1 + int(grad)) + 2 * fb
                adapted = True
        grad = grad or weight_grad or adapted
    return total, grad


def divisors(n: int, limit: int = 12, search: int = 100_000) -> list[int]:
    """The smallest ``limit`` divisors of ``n`` (for help texts), found among the first ``search``
    candidates and their cofactors: bounded work even for ``n`` near 2**63."""
    small = [k for k in range(1, min(math.isqrt(n), search) + 1) if n % k == 0]
    return sorted({*small, *(n // k for k in small)})[:limit]


def prod(xs: Sequence[Any]) -> Any:
    out: Any = 1
    for x in xs:
        out = out * x
    return out
