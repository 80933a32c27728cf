"""Latent attention: DeepSeek's multi-head latent attention (MLA), whose decoding cache is a small
low-rank latent per position instead of every head's keys and values.

It keeps the multi-head shell of :class:`~archdsl.kinds.attention.AttentionKind` (checks, masks, the
stack's rotary scheme, soft-capping, dropout, the fused-or-explicit core) and replaces the projections,
the widths the core sees and the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.attention import AttentionKind
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError, chain_backward
from archdsl.lower.ctor import Ctor, ours
from archdsl.trace import whole

NN = "archdsl.kinds.latent_nn"


def one(x: Any) -> bool:
    """A size known to be 1 (a symbolic batch or length is taken to be larger: the polynomials hold
    from 2 on, as for the other attention kinds)."""
    return isinstance(x, int) and x == 1


class LatentAttention(AttentionKind):
    """Multi-head latent attention, MLA (DeepSeek-AI 2024, "DeepSeek-V2: A Strong, Economical, and
    Efficient Mixture-of-Experts Language Model", §2.1), as Hugging Face's ``DeepseekV2Attention`` /
    ``DeepseekV3Attention`` compute it: keys and values are decompressed per head from a ``kv_rank``-wide
    latent of each position, which — with one ``rope_dim``-wide rotary key shared by all heads — is all
    a decoder caches (``r + d_R`` per position against multi-head attention's ``h (d_h + d_R + d_v)``);
    queries are projected directly or through a ``q_rank``-wide latent; the stack's ``rope`` turns only
    the decoupled rope dims. Parameters ``d h (d_h + d_R)`` (or ``d r_q + r_q + r_q h (d_h + d_R)``)
    ``+ d (r + d_R) + r + r h (d_h + d_v) + h d_v d`` plus biases; FLOPs the five projections and ``4 b
    h n² w`` for the core, ``w = max(d_h + d_R, d_v)``. Self-attention only; no LoRA targets (under LoRA it
    stays frozen).

    For h heads, ``d_h = head_dim`` (the queries' and keys' content part, default d / h), ``d_R =
    rope_dim``, ``d_v = v_dim`` (default d_h), ``r = kv_rank`` and ``r_q = q_rank``:

    - queries ``q = W_q x`` (d -> h (d_h + d_R)), or with ``q_rank`` ``q = W_qb RMSNorm(W_qa x)``
      (d -> r_q -> h (d_h + d_R));
    - ``W_kva x`` (d -> r + d_R) gives the latent ``c = RMSNorm(·)`` and one rope key ``k_R`` shared by
      all heads; ``W_kvb c`` (r -> h (d_h + d_v)) gives each head's content key and value;
    - the stack's ``rope`` turns only ``q_R`` and ``k_R`` (decoupled RoPE; DeepSeek lays them out
      interleaved: ``rope(layout = interleaved)``); scores ``(q_C · k_C + q_R · k_R) / sqrt(d_h + d_R)``
      — times ``m(s, mscale_all_dim)²`` under YaRN (``rope(scaling = yarn)``) — then ``W_o`` (h d_v -> d).

    Biases (``bias``) on ``W_qa``, ``W_kva`` and ``W_o`` (``out_bias``), never on ``W_q``, ``W_qb``,
    ``W_kvb`` (Hugging Face's ``attention_bias``); the two latent norms' gains are the ``+ r_q`` and
    ``+ r`` of the count.

    The core runs over ``w``: the module pads the narrower of q·k and v with zeros to w so that one
    fused kernel takes them (``4 b h n² w`` FLOPs; mask-aware: over the pairs the mask keeps).
    Decoding caches ``[c, k_R]`` (``kv_cache``), absorbs ``W_kvb`` into the query and the output
    (§2.1.2) and never expands the cache; ``kv_cache_mha`` is what multi-head attention with these
    heads would cache."""

    name = "mla"
    extra = (
        Param(
            "kv_rank", "int", min=1, doc="width of the key-value latent c, what is cached (DeepSeek-V2: 512)"
        ),
        Param(
            "q_rank",
            "int",
            default=0,
            min=0,
            doc="width of the query latent (DeepSeek-V2: 1536); 0: queries projected directly (V2-Lite)",
        ),
        Param(
            "rope_dim",
            "int",
            default=64,
            min=0,
            doc="decoupled rotary dims: per query head, and one key shared by all heads (the stack's rope "
            "turns its `fraction` of them, in pairs)",
        ),
        Param("v_dim", "int", default=None, min=1, doc="value width per head (default: head_dim)"),
        Param("latent_eps", "float", default=1e-6, gt=0.0, doc="eps of the latents' RMSNorms"),
    )

    # -- parameters and checks ---------------------------------------------------------------------

    def sizes(self, node: Node, ctx: Ctx) -> tuple[int, int, int, int, int, int]:
        """(heads, d_h, d_R, d_v, r, r_q)."""
        h, _, dn = self.dims(node, ctx)
        dv = whole(node["v_dim"]) if node["v_dim"] is not None else dn
        return h, dn, whole(node["rope_dim"]), dv, whole(node["kv_rank"]), whole(node["q_rank"])

    def width(self, node: Node, ctx: Ctx) -> int:
        """w: the width q, k and v reach the core with (the narrower side padded with zeros)."""
        _, dn, dr, dv, _, _ = self.sizes(node, ctx)
        return max(dn + dr, dv)

    def rotary_width(self, node: Node, ctx: Ctx) -> int:
        return whole(node["rope_dim"])

    def validate_core(self, node: Node, ctx: Ctx) -> list[ShapeError]:
        errs = []
        if node["kv_heads"] != node["heads"]:
            errs.append(
                ShapeError(
                    f"`mla` gives every head its own keys and values (from the shared latent): kv_heads "
                    f"({node['kv_heads']}) must equal heads ({node['heads']})",
                    help="drop `kv_heads`; the latent cache is already smaller than grouped heads' keys",
                    param="kv_heads",
                    code="E009",
                )
            )
        if node["cross"]:
            errs.append(
                ShapeError(
                    "`mla` is self-attention: its latent comes from the sequence its queries come from",
                    help="use `mha` for cross-attention",
                    param="cross",
                    code="E009",
                )
            )
        if node["qk_norm"] != "none":
            errs.append(
                ShapeError(
                    "`mla` normalises its latents (RMSNorm), not q and k",
                    help="drop `qk_norm` (`latent_eps` sets the latents' norms' eps)",
                    param="qk_norm",
                    code="E009",
                )
            )
        pos = self.position(node, ctx)
        if pos is not None and not pos[0].rotates:
            errs.append(
                ShapeError(
                    f"`mla` turns its decoupled rope dims; the stack's `{pos[1].kind}` (a bias on the "
                    "scores) cannot act in it",
                    help="use `position = rope(…)`, or a table added to the embeddings (`learned`)",
                    code="E016",
                )
            )
        elif pos is not None and int(node["rope_dim"]) < 2:
            errs.append(
                ShapeError(
                    f"the stack's rope turns pairs of `mla`'s rope dims, but rope_dim is {node['rope_dim']}",
                    help="choose rope_dim = 64 (DeepSeek-V2), or any of at least 2",
                    param="rope_dim",
                )
            )
        return errs

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        """All of them; none in a frozen base (its projections are no LoRA targets)."""
        return 0 if ctx.frozen else self.n_params(node, ctx)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        h, dn, dr, dv, r, rq = self.sizes(node, ctx)
        bias = bool(node["bias"])
        if rq:
            q = d * rq + (rq if bias else 0) + rq + rq * h * (dn + dr)  # W_qa (+ bias), its norm, W_qb
        else:
            q = d * h * (dn + dr)
        kv = d * (r + dr) + ((r + dr) if bias else 0) + r + r * h * (dn + dv)  # W_kva (+ bias), norm, W_kvb
        return q + kv + h * dv * d + (d if node["out_bias"] else 0)

    # -- FLOPs ---------------------------------------------------------------------------------------

    def maps(self, node: Node, ctx: Ctx, n: Any) -> list[list[tuple[str, Any, int, int]]]:
        """The linear maps over n positions as ``chain_backward`` stages: those reading x, then those
        reading their (normalised) outputs. The output projection follows the core."""
        d = ctx.d_model
        h, dn, dr, dv, r, rq = self.sizes(node, ctx)
        kv_a, kv_b = ("kv_a", n, d, r + dr), ("kv_b", n, r, h * (dn + dv))
        if rq:
            return [[("q_a", n, d, rq), kv_a], [("q_b", n, rq, h * (dn + dr)), kv_b]]
        return [[("q", n, d, h * (dn + dr)), kv_a], [kv_b]]

    def projection_flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, _ = self._lengths(ins)
        h, _, _, dv, _, _ = self.sizes(node, ctx)
        total = 2 * b * n * h * dv * ctx.d_model  # the output projection
        for stage in self.maps(node, ctx, b * n):
            total += sum(2 * m * d_in * d_out for _, m, d_in, d_out in stage)
        return total

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any) -> Any:
        h = int(node["heads"])
        return 4 * b * n * m * h * self.width(node, ctx)

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, m = self._lengths(ins)
        core = 4 * b * int(node["heads"]) * self.width(node, ctx) * self.pairs(node, n, m)
        return self.projection_flops(node, ctx, ins) + core

    def projection_backward(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg
    ) -> tuple[Any, bool]:
        """The maps reading x, then those reading the latents (``chain_backward``), then the output
        projection; the core's operands need gradients once anything before them does or trains."""
        b, n, _ = self._lengths(ins)
        h, _, _, dv, _, _ = self.sizes(node, ctx)
        before, inner = chain_backward(None, self.maps(node, ctx, b * n), act.input_grad, act.weight_grad)
        out, _ = chain_backward(None, [[("o", b * n, h * dv, ctx.d_model)]], inner, act.weight_grad)
        return before + out, inner

    def recompute_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, selective: bool
    ) -> Any:
        """A fused kernel's backward recomputes the scores, ``2 b h n m w``; selective recomputation
        redoes a materialised core (see the shell)."""
        b, n, m = self._lengths(ins)
        if not self.projection_backward(node, ctx, ins, act)[1]:
            return 0
        if self.uses_fused_kernel(node, ctx, act):
            return 2 * b * int(node["heads"]) * n * m * self.width(node, ctx)
        if selective and self.saved(node, ctx, ins, act).core:
            return self.core_flops(node, ctx, b, n, m)
        return 0

    # -- the cache -----------------------------------------------------------------------------------

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """The normalised latent and the rotated rope key, shared by every head: ``r + d_R`` per
        position."""
        _, _, dr, _, r, _ = self.sizes(node, ctx)
        return (r + dr) * context

    def kv_cache_mha(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """Multi-head attention with these heads caches each head's key (``d_h + d_R``) and value."""
        h, dn, dr, dv, _, _ = self.sizes(node, ctx)
        return h * (dn + dr + dv) * context

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²", "n²·h·(d_h+d_R)")

    # -- what backward keeps -------------------------------------------------------------------------

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """What the module keeps (held to autograd in tests/test_memory.py), for m = n keys:

        - x, when the projections' weights train;
        - each latent norm (computed in fp32): its input — in fp32 a view of the down projection's
          whole output (``r + d_R`` wide for the key-value latent), else an fp32 copy of the latent —
          the reciprocal rms per position and, when its gain trains, the normalised latent; and the
          norm's output, the up projection's input, when that trains;
        - the core, over q, k and v of width w: the fused kernel keeps the new q and k, v (new where
          padded, else a view of ``W_kvb``'s whole output), its output and log-sum-exp; the explicit
          path keeps q, k and v copied per head (``explicit_saved``), the math path (dropout with the
          fused kernel asked for) the scaled q and k and v (a copy, or — where a batched matmul folds
          an unpadded v without copying: one head, one sequence or one position — ``W_kvb``'s
          output);
        - the output projection's input (when it trains): the heads side by side again, a copy — but
          where the fused kernel's own output already is laid out so (one head or one position, no
          padding of v);
        - the output dropout's mask.

        Nothing at all when nothing before the core needs a gradient or trains."""
        b, n, m = self._lengths(ins)
        h, dn, dr, dv, r, rq = self.sizes(node, ctx)
        w, by = self.width(node, ctx), act.bytes
        grads = self.projection_backward(node, ctx, ins, act)[1]
        if not grads:
            return Saved(inputs=(False,))
        internal: Any = 0
        for rank, width in ((r, r + dr), (rq, rq)):  # the key-value latent's norm, the query latent's
            if not rank:
                continue
            internal += b * n * (width * by if by == 4 else rank * 4) + b * n * 4  # input; 1 / rms
            if act.weight_grad:
                internal += b * n * rank * (4 + by)  # the normalised latent (fp32); the up map's input
        fused = self.uses_fused_kernel(node, ctx, act)
        v_view = dv == w  # v reaches the core unpadded: a view of W_kvb's output
        v_whole = b * m * h * (dn + dv) * by  # W_kvb's output
        if fused:
            v = v_whole if v_view else b * h * m * w * by
            internal += (b * h * (n + m) * w + b * h * n * w) * by + v + b * h * n * 4  # q, k, out; v; lse
            core: Any = 0
        else:
            body = self.explicit_saved(node, ctx, b, n, m, act, Saved())
            math = self.calls_sdpa(node, ctx, act)  # SDPA's math path keeps v itself where it folds
            v = v_whole if math and v_view and (h == 1 or one(b) or one(m)) else b * h * m * w * by
            internal += b * h * (n + m) * w * by + v + body.core  # q, k (copied or scaled); v; scores
            core = body.core
        if act.weight_grad and not (fused and v_view and (h == 1 or one(n))):
            internal += b * n * h * dv * by  # the output projection's input (the fused output, else)
        if node["out_dropout"] and act.training:
            internal += b * n * ctx.d_model * by  # dropout's mask
        return Saved(inputs=(act.weight_grad,), internal=internal, core=core)

    def explicit_saved(
        self, node: Node, ctx: Ctx, b: Any, n: Any, m: Any, act: ActCfg, scores: Saved
    ) -> Saved:
        """The score-sized tensors of the explicit and math paths (the recomputable core): the
        probabilities (and soft-capped scores), the causal mask (explicit path), dropout's noise and
        the dropped probabilities."""
        h, by = int(node["heads"]), act.bytes
        s = b * h * n * m
        core = s * by * (2 if node["softcap"] else 1)
        if node["causal"] and not self.calls_sdpa(node, ctx, act):
            core += n * m  # the mask (bool)
        if node["dropout"] and act.training:
            core += 2 * s * by
        return Saved(internal=core, core=core)

    # -- lowering ------------------------------------------------------------------------------------

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        h, dn, dr, dv, r, rq = self.sizes(node, ctx)
        args: dict[str, Any] = {
            "d_model": ctx.d_model,
            "n_heads": h,
            "head_dim": dn,
            "rope_dim": dr,
            "v_dim": dv,
            "kv_rank": r,
            "causal": node["causal"],
            "bias": node["bias"],
        }
        if rq:
            args["q_rank"] = rq
        if node["out_bias"] != node["bias"]:
            args["out_bias"] = node["out_bias"]
        pos = self.position(node, ctx)
        if pos is not None:
            args["pos"] = pos[0].attention_ctor(pos[1], ctx, node)
        if node["scale"] is not None:
            args["scale"] = node["scale"]
        elif pos is not None and pos[1]["scaling"] == "yarn":  # YaRN's mscale_all_dim (yarn_apply_mscale)
            args["scale"] = (dn + dr) ** -0.5 * pos[0].softmax_factor(pos[1])  # type: ignore[attr-defined]
        for name in ("softcap", "dropout", "out_dropout"):
            if node[name]:
                args[name] = node[name]
        if node["latent_eps"] != 1e-6:
            args["eps"] = node["latent_eps"]
        return ours(NN, "LatentAttention", **args)


#: the shared parameters, as latent attention reads them
_DOCS = {
    "kv_heads": "must equal heads: every head's keys and values come from the shared latent",
    "head_dim": "the content (no-rope) part of each query and key head, qk_nope_head_dim (default: "
    "d_model / heads)",
    "bias": "biases on the down projections (W_qa, W_kva) and the output projection (attention_bias)",
    "qk_norm": "not for mla: its latents are normalised instead",
    "scale": "score scale (default: 1 / sqrt(head_dim + rope_dim), times YaRN's m(s, mscale_all_dim)²)",
}
LatentAttention.params = tuple(replace(p, doc=_DOCS.get(p.name, p.doc)) for p in LatentAttention.params)

KINDS: tuple[Kind, ...] = (LatentAttention(),)
