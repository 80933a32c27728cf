"""Attention kinds.

Every attention kind shares :class:`AttentionKind`: the query/key/value and output projections (with
grouped key/value heads, a head size independent of ``d_model``, biases, qk-norm), the stack's
positional scheme when it acts inside attention (RoPE, ALiBi, relative biases), soft-capping and
dropout. A kind only says how queries meet keys: which pairs, at what cost, with which module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from archdsl.ir import Node, Value
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError, chain_backward, divisors
from archdsl.kinds.peft import lora_on, lora_reads_input, lora_saved
from archdsl.lower.ctor import Ctor, ours, torch_nn
from archdsl.trace import whole

NN = "archdsl.kinds.attention_nn"


def _folds(heads: int, b: Any) -> bool:
    """Whether a batched matmul takes a (B, heads, n, hs) view of a projection's (B, n, heads * hs)
    output as it is, keeping the whole output: folding the batch and head dims into one needs no copy
    with a single head, or a batch of one. (A symbolic batch is taken to be larger: the polynomials
    hold for b >= 2, and at b = 1 the exact counts keep somewhat more — where the explicit path
    copies q, it then keeps the fused q, k, v output.)"""
    return heads == 1 or (isinstance(b, int) and b == 1)


COMMON = (
    Param("heads", "int", min=1, doc="number of query heads"),
    Param("kv_heads", "int", default=None, min=1, doc="key/value heads; must divide heads (default: heads)"),
    Param("head_dim", "int", default=None, min=1, doc="size of each head (default: d_model / heads)"),
    Param(
        "causal", "bool", default=None, doc="mask future positions (default: in a decoder's self-attention)"
    ),
    Param("cross", "bool", default=None, doc="attend to a second input (default: when applied to two)"),
    Param("bias", "bool", default=True, doc="biases on the Q, K, V and output projections"),
    Param(
        "out_bias",
        "bool",
        default=None,
        doc="bias on the output projection (default: as bias; Qwen 2: false)",
    ),
    Param(
        "qk_norm", "enum", default="none", choices=("none", "rmsnorm", "layernorm"), doc="normalise q and k"
    ),
    Param(
        "qk_norm_scope",
        "enum",
        default="full",
        choices=("full", "head"),
        doc="the qk-norm's width: the whole projection (OLMo 2), or each head with one gain of head_dim "
        "shared by all heads (Qwen 3)",
    ),
    Param("qk_eps", "float", default=1e-6, gt=0.0, doc="eps of the qk-norm"),
    Param("softcap", "float", default=0.0, min=0.0, doc="cap scores at c * tanh(s / c) (Gemma 2); 0 is off"),
    Param("scale", "float", default=None, gt=0.0, doc="score scale (default: 1 / sqrt(head_dim))"),
    Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the attention weights"),
    Param("out_dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the output"),
)


class AttentionKind(Kind):
    """Shared by every attention kind; subclasses define the core (which query-key pairs, how)."""

    role = "attention"
    arities = (1, 2)
    attends = True
    extra: tuple[Param, ...] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.params = COMMON + cls.extra

    # -- parameters --------------------------------------------------------------------------------

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Value]:
        return {"causal": ctx.stack == "decoder" and arity == 1, "cross": arity == 2}

    def resolve(self, params: dict[str, Value]) -> dict[str, Value]:
        if params.get("kv_heads") is None:
            params["kv_heads"] = params["heads"]
        if params.get("out_bias") is None:
            params["out_bias"] = params["bias"]
        return params

    #: as cross-attention, it reads a memory of another width than d_model (``Ctx.memory_width``)
    wide_memory: ClassVar[bool] = False

    def kv_in(self, node: Node, ctx: Ctx) -> int:
        """The width keys and values are projected from: a cross-attention's memory where it is not
        d_model wide (Perceiver's latents reading an input of its own width), else d_model."""
        wide = node["cross"] and ctx.memory_width is not None
        return whole(ctx.memory_width) if wide else ctx.d_model  # type: ignore[arg-type]

    def dims(self, node: Node, ctx: Ctx) -> tuple[int, int, int]:
        """(heads, kv_heads, head size)."""
        h, kv = whole(node["heads"]), whole(node["kv_heads"])  # traced sizes stay traced (archdsl.trace)
        hs = whole(node["head_dim"]) if node["head_dim"] is not None else ctx.d_model // h
        return h, kv, hs

    def rotary_width(self, node: Node, ctx: Ctx) -> int:
        """The per-head width a rotary scheme acting in this attention turns (``fraction`` of it): the
        head size (latent attention: its decoupled rope dims)."""
        return self.dims(node, ctx)[2]

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        errs = []
        d, h = ctx.d_model, whole(node["heads"])
        if node["head_dim"] is None and d % h:
            errs.append(
                ShapeError(
                    f"d_model ({d}) is not divisible by heads ({h})",
                    help="choose heads among " + ", ".join(map(str, divisors(d))) + ", … or set head_dim",
                    param="heads",
                )
            )
        kv = whole(node["kv_heads"])
        if h % kv:
            errs.append(
                ShapeError(
                    f"heads ({h}) is not divisible by kv_heads ({kv})",
                    help="each key/value head serves a whole group of query heads: choose kv_heads among "
                    + ", ".join(map(str, divisors(h))),
                    param="kv_heads",
                )
            )
        if bool(node["cross"]) != (arity == 2):
            errs.append(
                ShapeError(
                    f"`cross = {'true' if node['cross'] else 'false'}` but the attention is applied to "
                    f"{arity} tensor{'s' if arity != 1 else ''}",
                    help="cross-attention takes (x, memory); self-attention takes x",
                    param="cross",
                    code="E008",
                )
            )
        if node["cross"] and node["causal"]:
            errs.append(
                ShapeError(
                    "cross-attention cannot be causal",
                    help="queries and keys come from different sequences; drop `causal = true`",
                    param="causal",
                    code="E009",
                )
            )
        if arity == 2 and ctx.memory_width is not None and not self.wide_memory:
            errs.append(
                ShapeError(
                    f"`{self.name}` cross-attends to a memory d_model ({ctx.d_model}) wide; this one is "
                    f"{ctx.memory_width} wide",
                    help="read the latents' input with `mha` (scaled or dot-product scores), which "
                    "projects keys and values from its width",
                    code="E016",
                )
            )
        return errs + self.validate_core(node, ctx)

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        return []

    # -- shapes and costs --------------------------------------------------------------------------

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        d, h = ins[0][-1], int(node["heads"])
        if node["head_dim"] is None and isinstance(d, int) and d % h:
            raise ShapeError(
                f"d_model ({d}) is not divisible by heads ({h})",
                help="choose heads among " + ", ".join(map(str, divisors(d))) + ", …",
                param="heads",
            )
        kv = self.kv_in(node, ctx)
        if len(ins) == 2 and ins[1][-1] != kv:
            raise ShapeError(
                f"cross-attention reads a memory {ins[1][-1]} wide, but projects keys and values from {kv}"
            )
        return ins[0]

    def position(self, node: Node, ctx: Ctx) -> tuple[Kind, Node] | None:
        """The stack's positional scheme, when it acts inside this (self-)attention."""
        if ctx.position is None or node["cross"]:
            return None
        from archdsl.kinds import REGISTRY

        return REGISTRY[ctx.position.kind], ctx.position

    def lora_parts(
        self, node: Node, ctx: Ctx
    ) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
        """LoRA-targetable projections as (name, d_in, d_out): those fed by the queries' side (x) and
        by the keys' side (x, or the memory in cross-attention)."""
        d, m = ctx.d_model, self.kv_in(node, ctx)
        h, kv, hs = self.dims(node, ctx)
        q, k = h * hs, kv * hs
        return [("q", d, q), ("o", q, d)], [("k", m, k), ("v", m, k)]

    def input_names(self, node: Node, ctx: Ctx) -> tuple[list[str], list[str]]:
        """The LoRA names of the output parts of the projection that reads x (self-attention's fused
        one: q, k and v) and of the one that reads the memory (cross-attention's k and v)."""
        x_side, kv_side = self.lora_parts(node, ctx)
        x_names = [name for name, _, _ in x_side if name != "o"]
        mem_names = [name for name, _, _ in kv_side]
        return (x_names, mem_names) if node["cross"] else (x_names + mem_names, [])

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        if not ctx.frozen:
            return self.n_params(node, ctx)
        x_side, kv_side = self.lora_parts(node, ctx)
        return ctx.lora.params(x_side + kv_side) if ctx.lora is not None else 0

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, m = ctx.d_model, self.kv_in(node, ctx)
        h, kv, hs = self.dims(node, ctx)
        q, k = h * hs, kv * hs
        n = d * q + m * 2 * k + q * d + ((q + 2 * k) if node["bias"] else 0) + (d if node["out_bias"] else 0)
        if ctx.lora is not None:
            x_side, kv_side = self.lora_parts(node, ctx)
            n += ctx.lora.params(x_side + kv_side)
        if node["qk_norm"] != "none":
            wq, wk = self.qk_norm_widths(node, ctx)
            n += (wq + wk) * (2 if node["qk_norm"] == "layernorm" else 1)
        pos = self.position(node, ctx)
        if pos is not None:
            n += pos[0].attention_params(pos[1], ctx, node)
        return n + self.core_params(node, ctx)

    def core_params(self, node: Node, ctx: Ctx) -> int:
        return 0

    def per_head_norm(self, node: Node) -> bool:
        """Whether the qk-norm normalises each head over head_dim (Qwen 3) rather than the whole
        projection (OLMo 2)."""
        return node["qk_norm"] != "none" and node["qk_norm_scope"] == "head"

    def qk_norm_widths(self, node: Node, ctx: Ctx) -> tuple[int, int]:
        """The widths of the q-norm and the k-norm: head_dim each per head, else the projections'."""
        h, kv, hs = self.dims(node, ctx)
        return (hs, hs) if self.per_head_norm(node) else (h * hs, kv * hs)

    def qk_norm_rows(self, node: Node, ctx: Ctx) -> tuple[int, int]:
        """How many statistics (mean, rms) the q- and k-norms keep per position: one, or one a head."""
        h, kv, _ = self.dims(node, ctx)
        return (h, kv) if self.per_head_norm(node) else (1, 1)

    def _lengths(self, ins: Sequence[Shape]) -> tuple[Any, Any, Any]:
        b, n = ins[0][0], ins[0][1]
        m = ins[1][1] if len(ins) == 2 else n
        return b, n, m

    def projection_flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, m = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        d, q, k, w = ctx.d_model, h * hs, kv * hs, self.kv_in(node, ctx)
        total = 2 * b * (n * d * q + 2 * m * w * k + n * q * d)
        if ctx.lora is not None:
            x_side, kv_side = self.lora_parts(node, ctx)
            total += ctx.lora.flops(x_side, b * n) + ctx.lora.flops(kv_side, b * m)
        return total

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, m = self._lengths(ins)
        total = self.projection_flops(node, ctx, ins) + self.core_flops(node, ctx, b, n, m)
        pos = self.position(node, ctx)
        if pos is not None:
            total += pos[0].attention_flops(pos[1], ctx, node, b, n, m)
        return total

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, m = self._lengths(ins)
        h, _, hs = self.dims(node, ctx)
        core = 4 * b * h * hs * self.pairs(node, n, m)
        return self.projection_flops(node, ctx, ins) + core

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        """FLOPs of the scores and the weighted sum, as the module computes them."""
        h, _, hs = self.dims(node, ctx)
        return 4 * b * n * m * h * hs

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        """How many (query, key) pairs the mask keeps."""
        if node["cross"] or not node["causal"]:
            return n * m
        return n * (n + 1) // 2

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        _, kv, hs = self.dims(node, ctx)
        return 2 * kv * hs * context

    def kv_cache_mha(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """What multi-head attention with the same query heads and head sizes would cache: every
        head's key and value at every position (``kv_cache`` is smaller for grouped heads, windows,
        recurrent states and latent caches)."""
        h, _, hs = self.dims(node, ctx)
        return 2 * h * hs * context

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        if node["cross"]:
            return ("n·d²", "m·d²", "n·m·d")
        return ("n·d²", "n²·d")

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        pos = self.position(node, ctx)
        return pos[0].max_seq_len(pos[1], ctx) if pos is not None else None

    # -- what backward keeps ------------------------------------------------------------------------
    #
    # Derived from the modules (attention_nn.py) and held to autograd's saved tensors, on CPU, in
    # tests/test_memory.py. A tensor several autograd nodes keep (views of one storage) counts once.

    def rotated(self, node: Node, ctx: Ctx) -> bool:
        """Whether the stack's positional scheme turns q and k (RoPE): new, head-major q and k."""
        pos = self.position(node, ctx)
        return pos is not None and pos[0].rotates

    def q_view(self, node: Node, ctx: Ctx) -> bool:
        """Whether q reaches the core as a view of the projection's output (not normalised, rotated or
        otherwise made anew)."""
        return node["qk_norm"] == "none" and not self.rotated(node, ctx)

    def head_major_q(self, node: Node, ctx: Ctx) -> bool:
        """Whether the core gets a new, contiguous (B, h, n, hs) q (rotated) rather than a view of the
        projection's (B, n, h, hs) output (SDPA lays its output out as q is)."""
        return self.rotated(node, ctx)

    def calls_sdpa(self, node: Node, ctx: Ctx, act: ActCfg) -> bool:
        """Whether the module hands q, k, v to SDPA: flash attention asked for, and nothing SDPA cannot
        take — soft-capping, a prefix mask, a bias on the scores."""
        pos = self.position(node, ctx)
        scores_bias = pos is not None and not pos[0].rotates
        return act.flash and not node["softcap"] and not node.get("prefix", 0) and not scores_bias

    def uses_fused_kernel(self, node: Node, ctx: Ctx, act: ActCfg) -> bool:
        """Whether the module goes through SDPA's fused kernel (no n x m scores kept). SDPA's CPU
        kernel has no dropout: with dropout on the weights in training it runs the math path, which
        materialises the scores as the explicit path does."""
        return self.calls_sdpa(node, ctx, act) and not (node["dropout"] and act.training)

    def projection_backward(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg
    ) -> tuple[Any, bool]:
        """Backward FLOPs of the Q, K, V and output projections (and their LoRA updates), and whether
        the core's operands need gradients."""
        b, n, m = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        d, q, k, w = ctx.d_model, h * hs, kv * hs, self.kv_in(node, ctx)
        stage = [("q", b * n, d, q), ("k", b * m, w, k), ("v", b * m, w, k)]
        qkv, inner = chain_backward(ctx.lora, [stage], act.input_grad, act.weight_grad)
        out, _ = chain_backward(ctx.lora, [[("o", b * n, q, d)]], inner, act.weight_grad)
        return qkv + out, inner

    def one_sided_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Any:
        """Core FLOPs in products with a constant operand (random features, a fixed table): only the
        other operand needs a gradient. A positional scheme's tables are constants when frozen."""
        pos = self.position(node, ctx)
        if pos is None or act.weight_grad:
            return 0
        return pos[0].attention_flops(pos[1], ctx, node, b, n, m)

    def no_grad_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Any:
        """Core FLOPs whose results need no gradient (hashing for buckets): no backward at all."""
        return 0

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The projections as linear maps (``chain_backward``: input gradients where the input needs
        them, weight gradients where weights or LoRA updates train); the core's products — scores and
        weighted sums, both operands activations — 2 x once gradients flow inside, less the products
        with a constant operand (1 x) and those whose results need none (0 x)."""
        b, n, m = self._lengths(ins)
        proj, inner = self.projection_backward(node, ctx, ins, act)
        if not inner:
            return proj
        fwd = (self.flops_mask_aware if mask_aware else self.flops)(node, ctx, ins)
        core = fwd - self.projection_flops(node, ctx, ins)
        one = self.one_sided_flops(node, ctx, b, n, m, act)
        dead = self.no_grad_flops(node, ctx, b, n, m, act)
        return proj + 2 * (core - one - dead) + one

    def recompute_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, selective: bool
    ) -> Any:
        """A fused kernel's backward recomputes the scores ``Q Kᵀ``: ``2 b h n m hs``, half the core
        (PyTorch's ``sdpa_backward_flop_count`` counts five n x m products to the forward's two).
        Under selective recomputation an attention that keeps score-sized tensors drops them and
        redoes its core (Korthikanti et al. 2022, §4.2). Nothing when no gradient flows through the
        core (a frozen base whose only update is on the output projection, say)."""
        b, n, m = self._lengths(ins)
        if not self.projection_backward(node, ctx, ins, act)[1]:
            return 0
        if self.uses_fused_kernel(node, ctx, act):
            h, _, hs = self.dims(node, ctx)
            return 2 * b * h * n * m * hs
        if selective and self.saved(node, ctx, ins, act).core:
            return self.core_flops(node, ctx, b, n, m)
        return 0

    def own_keys(self, node: Node) -> bool:
        """Whether keys have a projection (and a qk-norm) of their own (not so in LSH attention)."""
        return True

    def keeps_projections(self, node: Node, ctx: Ctx, act: ActCfg, b: Any, n: Any) -> tuple[bool, bool]:
        """Whether the core keeps views of the query projection's output and of the key/value one (one
        tensor in self-attention). SDPA's fused kernel keeps q, k, v as they come. Where a batched matmul
        folds a view without copying it (``_folds``), the explicit path's scores keep q's view, and
        SDPA's math path v's (unless grouped heads repeat v)."""
        h, kv, _ = self.dims(node, ctx)
        if self.uses_fused_kernel(node, ctx, act):
            return self.q_view(node, ctx), True
        if not _folds(h, b):
            return False, False
        if self.calls_sdpa(node, ctx, act):
            return False, kv == h
        return self.q_view(node, ctx), False

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """What the module keeps: the projections' inputs (when their weights or LoRA updates train)
        and, when gradients flow through the core, the projections' outputs where a qk-norm or the core
        keeps views of them, the qk-norms' statistics, what the core keeps (``core_saved``), the
        positional scheme's tensors, the out projection's input (when its weights or LoRA update train
        and it is not a tensor the core keeps) and the output dropout's mask. Score-sized tensors are the
        recomputable core."""
        b, n, m = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        q, k, by = h * hs, kv * hs, act.bytes
        kk = k if self.own_keys(node) else 0  # the width of keys of their own (LSH shares q's)
        nk = 1 if self.own_keys(node) else 0
        cross = bool(node["cross"])
        proj, mem = self.input_names(node, ctx)
        # the core runs on gradients if the input needs them or the projections' updates train
        core_grad = self.projection_backward(node, ctx, ins, act)[1]
        keep_x = act.weight_grad or lora_reads_input(ctx, proj)
        keep_mem = cross and (act.weight_grad or lora_reads_input(ctx, mem))
        internal: Any = 0
        core: Any = 0
        if core_grad:
            norm = str(node["qk_norm"])
            reads = norm == "layernorm" or (norm == "rmsnorm" and by == 4)  # the norm keeps its input view
            keeps_q, keeps_kv = self.keeps_projections(node, ctx, act, b, n)
            if cross:  # the projections' outputs
                internal += (b * n * q if reads or keeps_q else 0) * by
                internal += (b * m * 2 * k if reads or keeps_kv else 0) * by
            elif reads or keeps_q or keeps_kv:
                internal += b * n * (q + kk + k) * by
            rq, rk = self.qk_norm_rows(node, ctx)  # statistics per position: 1, or one a head
            if norm == "rmsnorm":
                internal += (b * n * rq + b * m * nk * rk) * 4  # reciprocal rms of q and k (fp32)
                if by != 4:
                    internal += (b * n * q + b * m * kk) * 4  # the fp32 copies it computes in
                if act.weight_grad:
                    internal += (b * n * q + b * m * kk) * 4  # the normalised q, k the gains' gradients need
            elif norm == "layernorm":
                internal += 2 * (b * n * rq + b * m * nk * rk) * 4  # mean, reciprocal deviation (fp32)
            body = self.core_saved(node, ctx, b, n, m, act)
            internal += body.internal
            core += body.core
            pos = self.position(node, ctx)
            if pos is not None:
                extra = pos[0].attention_saved(pos[1], ctx, node, b, n, m, act)
                internal += extra.internal
                core += extra.core
            if node["out_dropout"] and act.training:
                internal += b * n * ctx.d_model * by  # dropout's mask
        elif node["out_dropout"] and act.training and lora_on(ctx, ["o"]):
            internal += b * n * ctx.d_model * by  # dropout's mask (the out projection's update trains)
        if (act.weight_grad or lora_reads_input(ctx, ["o"])) and (
            not core_grad or self.out_copy(node, ctx, act, n)
        ):
            internal += b * n * q * by  # the out projection's input, unless a tensor the core keeps
        internal += lora_saved(ctx, [(ctx.d_model, proj)], b * n, act)
        internal += lora_saved(ctx, [(q, ["o"])], b * n, act, input_grad=core_grad)  # its input: the core's
        if cross:
            internal += lora_saved(ctx, [(self.kv_in(node, ctx), mem)], b * m, act)
        return Saved(inputs=(keep_x, keep_mem) if cross else (keep_x,), internal=internal, core=core)

    def core_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """What ``attend`` keeps for n queries over m keys (``core``: the score-sized part). SDPA's fused
        kernel: q and k where they are new tensors (views of the projections otherwise, counted by
        ``saved``), its output and log-sum-exp. Otherwise see ``explicit_saved``."""
        h, kv, hs = self.dims(node, ctx)
        q, by = h * hs, act.bytes
        if not self.uses_fused_kernel(node, ctx, act):
            return self.explicit_saved(node, ctx, b, n, m, act, self.score_saved(node, ctx, b, n, m, act))
        new_k = node["qk_norm"] != "none" or self.rotated(node, ctx)
        out = ((0 if self.q_view(node, ctx) else b * n * q) + (b * m * kv * hs if new_k else 0)) * by
        out += b * n * q * by + b * h * n * 4  # output, log-sum-exp (fp32)
        return Saved(internal=out)

    def out_copy(self, node: Node, ctx: Ctx, act: ActCfg, n: Any = None) -> bool:
        """Whether the out projection reads a new tensor, not one the core keeps: the explicit path's
        output with the heads side by side again, or SDPA's output re-laid out when q was head-major
        (SDPA lays its output out as q is) — but with one head, or one position (``n``), head-major is
        token-major: no copy."""
        if not self.uses_fused_kernel(node, ctx, act):
            return True
        one = int(node["heads"]) == 1 or (isinstance(n, int) and n == 1)
        return self.head_major_q(node, ctx) and not one

    def score_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """What forming the scores keeps: q (a copy of the projection's view — the view itself where it
        folds, counted by ``saved`` — or the new q itself) and k repeated to every query head."""
        h, _, hs = self.dims(node, ctx)
        folded = _folds(h, b) and self.q_view(node, ctx) and not self.calls_sdpa(node, ctx, act)
        return Saved(internal=((0 if folded else b * n * h * hs) + b * h * m * hs) * act.bytes)

    def explicit_saved(
        self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg, scores: Saved
    ) -> Saved:
        """The explicit path (and SDPA's math path): what forming the scores keeps (``scores``); the
        probabilities (and the soft-capped scores, kept by tanh), the boolean mask of a causal or
        prefix self-attention (the math path adds it as a bias instead), dropout's noise and the dropped
        probabilities; and v repeated to every query head (the math path keeps v's view where it folds
        and no grouping repeats it)."""
        h, kv, hs = self.dims(node, ctx)
        by, math = act.bytes, self.calls_sdpa(node, ctx, act)
        s = b * h * n * m  # score entries
        v = 0 if math and _folds(h, b) and kv == h else b * h * m * hs
        out = v * by
        core = s * by * (2 if node["softcap"] else 1)  # probabilities (and capped scores)
        if (node["causal"] or node.get("prefix", 0)) and not node["cross"] and not math:
            core += n * m  # the mask (bool)
        if node["dropout"] and act.training:
            core += 2 * s * by  # dropout's noise and the dropped probabilities
        return Saved(internal=scores.internal + out + core, core=scores.core + core)

    # -- lowering ----------------------------------------------------------------------------------

    def common_ctor_args(self, node: Node, ctx: Ctx) -> dict[str, Any]:
        h, kv, hs = self.dims(node, ctx)
        args: dict[str, Any] = {
            "d_model": ctx.d_model,
            "n_heads": h,
            "n_kv_heads": kv,
            "head_dim": hs,
            "causal": node["causal"],
            "cross": node["cross"],
            "bias": node["bias"],
        }
        if node["out_bias"] != node["bias"]:
            args["out_bias"] = node["out_bias"]
        wq, wk = self.qk_norm_widths(node, ctx)  # the whole projection (OLMo 2), or head_dim (Qwen 3)
        if node["qk_norm"] == "rmsnorm":
            args["q_norm"] = ours("archdsl.kinds.norm_nn", "RMSNorm", d_model=wq, eps=node["qk_eps"])
            args["k_norm"] = ours("archdsl.kinds.norm_nn", "RMSNorm", d_model=wk, eps=node["qk_eps"])
        elif node["qk_norm"] == "layernorm":
            args["q_norm"] = torch_nn("LayerNorm", wq, eps=node["qk_eps"])
            args["k_norm"] = torch_nn("LayerNorm", wk, eps=node["qk_eps"])
        if self.per_head_norm(node):
            args["qk_norm_per_head"] = True
        pos = self.position(node, ctx)
        if pos is not None:
            args["pos"] = pos[0].attention_ctor(pos[1], ctx, node)
        if node["softcap"]:
            args["softcap"] = node["softcap"]
        if node["scale"] is not None:
            args["scale"] = node["scale"]
        if node["dropout"]:
            args["dropout"] = node["dropout"]
        if node["out_dropout"]:
            args["out_dropout"] = node["out_dropout"]
        if ctx.lora is not None:
            args["lora"] = ctx.lora.ctor_arg()
        return args

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "Attention", **self.common_ctor_args(node, ctx))


class MultiHeadAttention(AttentionKind):
    """Multi-head attention over every key (Vaswani et al. 2017, §3.2.2), self or cross, with grouped
    key/value heads (GQA, Ainslie et al. 2023; ``kv_heads = 1`` is MQA, Shazeer 2019). LoRA adapts ``q``,
    ``k``, ``v`` and ``o``, as in every attention kind.

    Scores: scaled dot product (default), unscaled ``dot``, ``additive`` (Bahdanau et al. 2015:
    ``w^T tanh(q + k)`` per head) or ``bilinear`` (Luong et al. 2015: ``q^T W k``, a ``hs x hs`` W per
    head). Masks: causal, bidirectional, or prefix-LM (``prefix = P``: the first P positions see each
    other; Raffel et al. 2020). Parameters ``d (q + 2 kv) + q d`` for ``q = heads * hs``, ``kv = kv_heads
    * hs`` (plus biases). FLOPs: projections, then ``4 b n m q`` for scores and values over the full
    n x m (a mask does not change the dense count)."""

    name = "mha"
    extra = (
        Param("score", "enum", default="scaled", choices=("scaled", "dot", "additive", "bilinear")),
        Param(
            "prefix", "int", default=0, min=0, doc="prefix-LM: the first `prefix` positions see each other"
        ),
    )
    wide_memory = True

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        errs = []
        if node["prefix"] and not node["causal"]:
            errs.append(
                ShapeError(
                    "`prefix` needs a causal mask",
                    help="a prefix-LM is causal after its prefix; drop `prefix` or set `causal = true`",
                    param="prefix",
                    code="E009",
                )
            )
        if node["cross"] and ctx.memory_width is not None and node["score"] in ("additive", "bilinear"):
            errs.append(
                ShapeError(
                    f"`score = {node['score']}` cross-attends to a memory d_model ({ctx.d_model}) wide; "
                    f"this one is {ctx.memory_width} wide",
                    help="use `score = scaled` (or `dot`) to read the latents' input",
                    param="score",
                    code="E016",
                )
            )
        return errs

    def core_params(self, node: Node, ctx: Ctx) -> int:
        h, _, hs = self.dims(node, ctx)
        return {"additive": h * hs, "bilinear": h * hs * hs}.get(str(node["score"]), 0)

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        h, _, hs = self.dims(node, ctx)
        extra = 2 * b * n * h * hs * hs if node["score"] == "bilinear" else 0
        return 4 * b * n * m * h * hs + extra

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        p = node["prefix"]
        if p and not node["cross"]:
            # the causal triangle, plus the prefix block's upper half: p(p-1)/2 more pairs
            p = min(p, n) if isinstance(n, int) else p
            return n * (n + 1) // 2 + p * (p - 1) // 2
        return super().pairs(node, n, m)

    def calls_sdpa(self, node: Node, ctx: Ctx, act: ActCfg) -> bool:
        return node["score"] != "additive" and super().calls_sdpa(node, ctx, act)

    def one_sided_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Any:
        """As the shell's; in a frozen base (LoRA, adapters) the score weights are constants too: the
        bilinear ``q W`` and the additive ``tanh(q + k) w`` need only their activation's gradient."""
        one = super().one_sided_flops(node, ctx, b, n, m, act)
        if act.weight_grad:
            return one
        h, _, hs = self.dims(node, ctx)
        if node["score"] == "bilinear":
            return one + 2 * b * n * h * hs * hs
        if node["score"] == "additive":
            return one + 2 * b * h * n * m * hs
        return one

    def regime(self, node: Node) -> tuple[int, int]:
        return 1, int(node["prefix"])  # a prefix longer than the sequence is cut to it

    def q_view(self, node: Node, ctx: Ctx) -> bool:
        return node["score"] != "bilinear" and super().q_view(node, ctx)  # bilinear: a new q W

    def head_major_q(self, node: Node, ctx: Ctx) -> bool:
        return node["score"] == "bilinear" or super().head_major_q(node, ctx)

    def keeps_projections(self, node: Node, ctx: Ctx, act: ActCfg, b: Any, n: Any) -> tuple[bool, bool]:
        if node["score"] == "additive":
            return False, False  # q and k only enter tanh(q + k); v is repeated
        keeps_q, keeps_kv = super().keeps_projections(node, ctx, act, b, n)
        # q W keeps q's view (where it folds) for W's gradient
        if node["score"] == "bilinear" and act.weight_grad and _folds(int(node["heads"]), b):
            keeps_q = keeps_q or super().q_view(node, ctx)
        return keeps_q, keeps_kv

    def core_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """As the shared core; bilinear scores' q W also keeps W broadcast over the batch (a copy, but
        where the matmul folds: one head, or a batch of one) and, when W trains, q (a copy of its view,
        or the view where it folds)."""
        s = super().core_saved(node, ctx, b, n, m, act)
        if node["score"] != "bilinear":
            return s
        h, _, hs = self.dims(node, ctx)
        q_kept = 0 if _folds(h, b) and super().q_view(node, ctx) else b * n * h * hs
        if not act.weight_grad:
            q_kept = 0  # W is frozen: q W needs only W for q's gradient
        w_copy = 0 if _folds(h, b) else b * h * hs * hs  # one head or a batch of one: W's view serves
        extra = w_copy + q_kept
        return Saved(internal=s.internal + extra * act.bytes, core=s.core)

    def score_saved(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """Additive scores keep tanh(q + k) per pair, head and channel (kept by tanh; laid out as q is,
        so unless q is head-major the batched matmul with w copies it for w's gradient, when w trains)
        and w broadcast per query (a copy), but no q or k."""
        if node["score"] != "additive":
            return super().score_saved(node, ctx, b, n, m, act)
        h, _, hs = self.dims(node, ctx)
        copied = act.weight_grad and not self.rotated(node, ctx)  # the copy w's gradient reads
        e = (2 if copied else 1) * b * h * n * m * hs * act.bytes
        return Saved(internal=e + b * h * n * hs * act.bytes, core=e)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        args = self.common_ctor_args(node, ctx)
        if node["prefix"]:
            args["prefix"] = node["prefix"]
        score = str(node["score"])
        if score == "dot" and node["scale"] is None:
            args["scale"] = 1.0
        if score in ("additive", "bilinear"):
            return ours(NN, f"{score.capitalize()}Attention", **args)
        if node["cross"] and ctx.memory_width is not None:  # Perceiver's latents reading their input
            return ours("archdsl.kinds.perceiver_nn", "WideCrossAttention", kv_width=ctx.memory_width, **args)
        return ours(NN, "Attention", **args)


KINDS: tuple[Kind, ...] = (MultiHeadAttention(),)
