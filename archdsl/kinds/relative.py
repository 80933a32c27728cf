"""Relative positional schemes acting inside attention (ALiBi, T5 buckets, Shaw et al.), and
Transformer-XL attention with its own relative encoding and segment-level memory.

Positional kinds here have ``applies = "attention"``: they add nothing to the embeddings, and each
self-attention of the stack holds the scheme's module (T5: one table shared by the stack, held by the
stack as ``pos``). Their parameters and matmul FLOPs are counted through ``attention_params`` and
``attention_flops`` on the attention that uses them.
"""

from __future__ import annotations

from typing import Any

from archdsl.ir import Node, Value
from archdsl.kinds.attention import AttentionKind
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, ShapeError, chain_backward
from archdsl.lower.ctor import Ctor, Shared, ours

NN = "archdsl.kinds.relative_nn"


def _head_dims(attn: Node, ctx: Ctx) -> tuple[int, int, int]:
    """(heads, kv_heads, head size) of an attention node."""
    from archdsl.kinds import REGISTRY

    return REGISTRY[attn.kind].dims(attn, ctx)  # type: ignore[attr-defined, no-any-return]


class Alibi(Kind):
    """Attention with linear biases (Press et al. 2022, "Train Short, Test Long"): no position
    embeddings; every self-attention adds ``-m_h * (i - j)`` to the score of query i and key j <= i,
    with a fixed slope per head: ``m_h = 2^(-8h/H)`` for H heads a power of 2; otherwise the slopes of
    the closest smaller power of 2, P, then every other slope of the sequence for 2P (the authors'
    code; Hugging Face's ``build_alibi_tensor``). Without a causal mask the bias is symmetric,
    ``-m_h * |i - j|``. No parameters, no matmul FLOPs, no length limit."""

    name = "alibi"
    role = "position"
    applies = "attention"

    def attention_ctor(self, node: Node, ctx: Ctx, attn: Node) -> Ctor:
        h, _, _ = _head_dims(attn, ctx)
        return ours(NN, "ALiBi", n_heads=h)


class T5Bias(Kind):
    """T5's relative position bias (Raffel et al. 2020, §2.1): a learned scalar per head for each
    bucket of the offset ``j - i``, added to the scores. ``buckets`` buckets: bidirectional (encoders)
    give half to keys after the query; of the rest, half are exact offsets and half logarithmic bins up
    to ``max_distance``, beyond which offsets share the last bucket. One ``buckets x heads`` table per
    stack, shared by all its self-attentions (``buckets * heads`` parameters, counted once on the
    stack's ``pos``). No matmul FLOPs, no length limit. The bucket function is Hugging Face's
    ``T5Attention._relative_position_bucket``; T5 itself leaves scores unscaled (``score = dot``)."""

    name = "t5"
    role = "position"
    applies = "attention"
    params = (
        Param("buckets", "int", default=32, min=2, doc="number of relative-position buckets"),
        Param("max_distance", "int", default=128, min=2, doc="offsets at least this far share a bucket"),
        Param(
            "bidirectional",
            "bool",
            default=None,
            doc="buckets for keys after the query too (default: in an encoder)",
        ),
    )

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Value]:
        return {"bidirectional": ctx.stack == "encoder"}

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        b, dist = int(node["buckets"]), int(node["max_distance"])
        half = b // 2 if node["bidirectional"] else b  # buckets for one direction
        exact = half // 2
        if exact < 1:
            least = 4 if node["bidirectional"] else 2
            return [
                ShapeError(
                    f"t5 needs at least {least} buckets here, got {b}",
                    help="half of each direction's buckets are exact offsets; there must be at least one",
                    param="buckets",
                )
            ]
        if dist <= exact:
            return [
                ShapeError(
                    f"t5 max_distance ({dist}) must exceed the {exact} exact offsets",
                    help=f"the logarithmic buckets span offsets {exact} .. max_distance; "
                    f"set max_distance above {exact}",
                    param="max_distance",
                )
            ]
        return []

    def shared_table(self, node: Node) -> bool:
        return True

    def n_params(self, node: Node, ctx: Ctx) -> int:
        if ctx.attention is None:
            return 0
        h, _, _ = _head_dims(ctx.attention, ctx)
        return int(node["buckets"]) * h

    def attention_params(self, node: Node, ctx: Ctx, attn: Node) -> int:
        return 0  # the table lives on the stack

    def attention_saved(self, node: Node, ctx: Ctx, attn: Node, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """The table lookup keeps the bucket of every (query, key) pair (int64), in each attention, for
        the table's gradient: nothing when the table is frozen (LoRA, adapters)."""
        if not act.weight_grad:
            return Saved()
        return Saved(internal=n * m * 8, core=n * m * 8)

    def attention_ctor(self, node: Node, ctx: Ctx, attn: Node) -> Ctor:
        first = ctx.attention if ctx.attention is not None else attn
        h = _head_dims(first, ctx)[0] if first is not None else 0
        table = ours(
            NN,
            "T5RelativeBias",
            buckets=node["buckets"],
            max_distance=node["max_distance"],
            n_heads=h,
            bidirectional=node["bidirectional"],
        )
        return Shared(f"{ctx.stack}.pos", table)  # type: ignore[return-value]


class Shaw(Kind):
    """Relative position representations (Shaw et al. 2018): learned vectors a^K and a^V of the head
    size for the clipped offsets ``clip(j - i, -k, k)`` (2k + 1 of each, shared by the heads, per
    attention): ``e_ij = q_i . (k_j + a^K_{ij}) / sqrt(hs)`` and ``z_i = sum_j a_ij (v_j + a^V_{ij})``
    (``values = false`` drops a^V). Parameters ``(2k+1) hs`` per table; FLOPs ``2 b h n hs (2k+1)``
    per table (q against the table, the weights summed per offset against it), not per pair."""

    name = "shaw"
    role = "position"
    applies = "attention"
    params = (
        Param("k", "int", default=16, min=1, doc="clipping distance: offsets beyond ±k share a vector"),
        Param("values", "bool", default=True, doc="also add a^V to the values (eq. 3)"),
    )

    def tables(self, node: Node) -> int:
        return 2 if node["values"] else 1

    def attention_params(self, node: Node, ctx: Ctx, attn: Node) -> int:
        _, _, hs = _head_dims(attn, ctx)
        return self.tables(node) * (2 * int(node["k"]) + 1) * hs

    def attention_flops(self, node: Node, ctx: Ctx, attn: Node, b: Any, n: Any, m: Any) -> Any:
        h, _, hs = _head_dims(attn, ctx)
        return self.tables(node) * 2 * b * h * n * hs * (2 * int(node["k"]) + 1)

    def attention_saved(self, node: Node, ctx: Ctx, attn: Node, b: Any, n: Any, m: Any, act: ActCfg) -> Saved:
        """The key term: q against the a^K table keeps q for the table's gradient (a copy of the
        projection's view; bilinear scores hand it a new q W, kept already), and the gather by offset
        keeps its input, q . a^K for every offset (B, h, n, 2k + 1), and its (n, m) indices (int64).
        The value term: the scatter by offset keeps its own indices, and the weights summed per offset
        are kept by their product with the a^V table, for its gradient. Frozen tables (LoRA, adapters)
        need neither q nor the summed weights."""
        h, _, hs = _head_dims(attn, ctx)
        by, index, per_offset = act.bytes, n * m * 8, b * h * n * (2 * int(node["k"]) + 1)
        trains = act.weight_grad
        q = 0 if attn.get("score") == "bilinear" or not trains else b * n * h * hs * by
        internal = q + per_offset * by + index
        core = index
        if node["values"]:
            internal += index + (per_offset * by if trains else 0)
            core += index
        return Saved(internal=internal, core=core)

    def attention_ctor(self, node: Node, ctx: Ctx, attn: Node) -> Ctor:
        _, _, hs = _head_dims(attn, ctx)
        kwargs: dict[str, Any] = {"head_dim": hs, "k": node["k"], "values": node["values"]}
        if attn.get("score") == "dot":
            kwargs["scale"] = 1.0  # as the content scores
        return ours(NN, "ShawRelative", **kwargs)


class TransformerXL(AttentionKind):
    """Transformer-XL attention (Dai et al. 2019): segment-level recurrence and relative positions.
    Each layer keeps its inputs of the last ``mem_len`` positions (detached) and attends from the
    segment to ``[memory; segment]`` with ``A_ij = (q_i + u) . k_j + (q_i + v) . W_r R_{i-j}`` (R
    sinusoidal, u and v learned per layer), causal. The memory starts as ``mem_len`` zero positions,
    masked until filled, so costs are the same at every step: keys ``n + mem_len``. Parameters: the
    projections, ``W_r`` (d x heads·hs, no bias), u and v. FLOPs: the fused QKV projection over all
    ``n + mem_len`` positions (as the authors' code), the output projection over ``n``, ``W_r`` over
    ``n + mem_len`` distances, three ``n x (n + mem_len)`` products.
    Causal self-attention only; the stack's position must not act in attention (XL has its own). LoRA
    adapts ``q``, ``k``, ``v`` (over the memory too) and ``o``."""

    name = "xl"
    arities = (1,)
    stateful = True  # the memory moves on at every forward
    extra = (Param("mem_len", "int", min=0, doc="positions of the previous segment kept as memory"),)

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        errs = []
        if not node["cross"] and not node["causal"]:
            errs.append(
                ShapeError(
                    "`xl` attention is causal only",
                    help="Transformer-XL is a language model over a recurrent memory; drop `causal = false`",
                    param="causal",
                    code="E009",
                )
            )
        if ctx.position is not None:
            errs.append(
                ShapeError(
                    f"`xl` has its own relative positions; the stack's `{ctx.position.kind}` "
                    "would act in it too",
                    help="set the stack's `position = none` (or an additive table such as `learned`)",
                )
            )
        if ctx.d_model % 2:
            errs.append(
                ShapeError(
                    f"`xl` needs an even d_model for its sinusoids, got {ctx.d_model}",
                    help="sin and cos fill the two halves; make d_model even",
                )
            )
        return errs

    def core_params(self, node: Node, ctx: Ctx) -> int:
        h, _, hs = self.dims(node, ctx)
        return ctx.d_model * h * hs + 2 * h * hs  # W_r, u, v

    def keys(self, node: Node, n: Any) -> Any:
        return n + int(node["mem_len"])

    def projection_flops(self, node: Node, ctx: Ctx, ins: Any) -> Any:
        """The fused QKV projection over all ``n + mem_len`` positions (queries of the memory are
        computed and dropped, as in the authors' code), the output projection over ``n``."""
        b, n, _ = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        d, q, k = ctx.d_model, h * hs, kv * hs
        keys = self.keys(node, n)
        total = 2 * b * (keys * d * (q + 2 * k) + n * q * d)
        if ctx.lora is not None:
            x_side, kv_side = self.lora_parts(node, ctx)  # (q, o), (k, v)
            qkv = [p for p in x_side + kv_side if p[0] != "o"]
            total += ctx.lora.flops(qkv, b * keys) + ctx.lora.flops([p for p in x_side if p[0] == "o"], b * n)
        return total

    def projection_backward(self, node: Node, ctx: Ctx, ins: Any, act: ActCfg) -> tuple[Any, bool]:
        """The fused QKV projection reads [memory; x] — its input's gradient is computed for all
        n + mem_len rows, though only the segment's are used (the memory is detached) — then the
        output projection reads the segment's."""
        b, n, _ = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        d, q, k = ctx.d_model, h * hs, kv * hs
        keys = self.keys(node, n)
        qkv = [("q", b * keys, d, q), ("k", b * keys, d, k), ("v", b * keys, d, k)]
        proj, inner = chain_backward(ctx.lora, [qkv], act.input_grad, act.weight_grad)
        out, _ = chain_backward(ctx.lora, [[("o", b * n, q, d)]], inner, act.weight_grad)
        return proj + out, inner

    def calls_sdpa(self, node: Node, ctx: Ctx, act: ActCfg) -> bool:
        return False  # its scores have a position term: always explicit

    def one_sided_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Any:
        """W_r projects the sinusoids, a constant: only W_r's gradient, and only if it trains. When it
        does not (a frozen base), r is a constant too, and the position scores ``(q + v) rᵀ`` need
        only q's gradient."""
        if act.weight_grad:
            return self.r_proj_flops(node, ctx, m)
        h, _, hs = self.dims(node, ctx)
        return 2 * b * h * n * self.keys(node, m) * hs

    def no_grad_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg) -> Any:
        return 0 if act.weight_grad else self.r_proj_flops(node, ctx, m)

    def r_proj_flops(self, node: Node, ctx: Ctx, m: Any) -> Any:
        """W_r over the distances, once for the batch."""
        h, _, hs = self.dims(node, ctx)
        return 2 * self.keys(node, m) * ctx.d_model * h * hs

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        h, _, hs = self.dims(node, ctx)
        keys = self.keys(node, m)
        r_proj = self.r_proj_flops(node, ctx, m)
        return 6 * b * n * keys * h * hs + r_proj  # (q+u).k, (q+v).r, weights @ v

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Any) -> Any:
        b, n, _ = self._lengths(ins)
        h, _, hs = self.dims(node, ctx)
        r_proj = 2 * self.keys(node, n) * ctx.d_model * h * hs
        return self.projection_flops(node, ctx, ins) + 6 * b * h * hs * self.pairs(node, n, n) + r_proj

    def pairs(self, node: Node, n: Any, m: Any) -> Any:
        """Once the memory is full: each query sees all of it and the segment up to itself."""
        return n * (n + 1) // 2 + n * int(node["mem_len"])

    def saved(self, node: Node, ctx: Ctx, ins: Any, act: ActCfg) -> Saved:
        """Over K = n + mem_len keys: the fused projection's input [memory; x] (not x itself), where a
        qk-norm reads them the projection's outputs and the norms' statistics, W_r's input (the
        sinusoids, when W_r trains); q + u and q + v (the score matmuls' inputs; q + v only when r
        needs a gradient, W_r training), k and v repeated to every query head, r broadcast over the
        batch (a copy; with one head, r itself); the probabilities (and soft-capped scores), the causal
        mask (bool), dropout's tensors (the score-sized core); the out projection's input and the
        output dropout's mask."""
        from archdsl.kinds.peft import lora_on, lora_reads_input, lora_saved

        b, n, _ = self._lengths(ins)
        h, kv, hs = self.dims(node, ctx)
        q, k, d, by = h * hs, kv * hs, ctx.d_model, act.bytes
        keys = self.keys(node, n)
        proj = ["q", "k", "v"]
        internal: Any = b * keys * d * by if act.weight_grad or lora_reads_input(ctx, proj) else 0
        core: Any = 0
        core_grad = act.input_grad or act.weight_grad or lora_on(ctx, proj)
        if core_grad:
            norm = str(node["qk_norm"])
            if norm == "layernorm" or (norm == "rmsnorm" and by == 4):
                internal += b * keys * (q + 2 * k) * by  # the projection's output, the norms' input
            rq, rk = self.qk_norm_rows(node, ctx)  # statistics per position: 1, or one a head
            if norm == "rmsnorm":
                internal += (b * n * rq + b * keys * rk) * 4  # reciprocal rms (fp32)
                if by != 4:
                    internal += (b * n * q + b * keys * k) * 4  # the fp32 copies it computes in
                if act.weight_grad:
                    internal += (b * n * q + b * keys * k) * 4  # the normalised q, k
            elif norm == "layernorm":
                internal += 2 * (b * n * rq + b * keys * rk) * 4  # mean and reciprocal deviation (fp32)
            if act.weight_grad:
                internal += keys * d * by  # the sinusoids W_r reads
            # q + u, and q + v unless r is a constant (W_r frozen); k, v per head; r broadcast over the
            # batch (with one head the matmul folds the batch and keeps r itself)
            r_kept = (b if h > 1 else 1) * h * keys * hs
            internal += ((2 if act.weight_grad else 1) * b * h * n * hs + 2 * b * h * keys * hs + r_kept) * by
            scores = b * h * n * keys
            core = (
                scores * by * (2 if node["softcap"] else 1) + n * keys
            )  # probabilities (capped scores); mask
            if node["dropout"] and act.training:
                core += 2 * scores * by  # dropout's noise and the dropped probabilities
            internal += core
        if act.weight_grad or lora_reads_input(ctx, ["o"]):
            internal += b * n * q * by  # the out projection's input
        if node["out_dropout"] and act.training and (core_grad or lora_on(ctx, ["o"])):
            internal += b * n * d * by  # dropout's mask
        internal += lora_saved(ctx, [(d, proj)], b * keys, act)
        internal += lora_saved(ctx, [(q, ["o"])], b * n, act, input_grad=core_grad)
        return Saved(inputs=(False,), internal=internal, core=core)

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """The memory: ``mem_len`` inputs of width d per layer, whatever the context length."""
        return ctx.d_model * int(node["mem_len"])

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²", "mem_len·d²", "n²·d", "n·mem_len·d")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "XLAttention", mem_len=node["mem_len"], **self.common_ctor_args(node, ctx))


KINDS: tuple[Kind, ...] = (Alibi(), T5Bias(), Shaw(), TransformerXL())
