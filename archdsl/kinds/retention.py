"""RetNet's multi-scale retention (Sun et al. 2023, "Retentive Network: A Successor to Transformer for
Large Language Models"), a sequence mixer with a parallel, a chunkwise and a recurrent form.

Retention replaces attention's softmax by an exponential decay per head: ``o_n = Σ_{m<=n} γ^{n-m}
(q_n · k_m) v_m``, which is the recurrence ``S_n = γ S_{n-1} + k_nᵀ v_n, o_n = q_n S_n`` — so a decoder
keeps a state of ``d_k x d_v`` per head instead of a growing KV cache. The arithmetic follows
Microsoft's reference, torchscale (``torchscale/component/multiscale_retention.py`` and
``torchscale/architecture/retnet.py``, as of the paper's release); where the paper and torchscale
differ, torchscale is followed, as stated in :class:`Retention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError, chain_backward, divisors
from archdsl.kinds.mixer import MixerKind
from archdsl.lower.ctor import Ctor, ours
from archdsl.trace import whole

NN = "archdsl.kinds.retention_nn"

#: torchscale's ``recurrent_chunk_size``
DEFAULT_CHUNK = 512


def padded(n: Any, c: int) -> Any:
    """``n`` rounded up to a whole number of chunks of ``c``: ``c * ceil(n / c)``."""
    return (n + c - 1) // c * c


class Retention(MixerKind):
    """Gated multi-scale retention (Sun et al. 2023, §2.2; torchscale's ``MultiScaleRetention``): per
    head h a decay ``γ_h = 1 - 2^(-5-h)`` in place of a softmax, q and k turned by their position, a
    group norm per head and a swish gate, values and gate at ``d_v = value_factor · d``. Parameters
    ``2 d² + 3 d d_v`` (+ ``3 d + 2 d_v`` biases). Training runs the parallel form (core ``2 b n² (d +
    d_v)`` FLOPs, O(n²)) or the chunkwise one (O(n c)), with equal outputs; a decoder keeps a state of
    ``d d_v / h`` elements per sequence, constant in the context, and decodes by the recurrent form.

    With ``h`` heads, ``d_k = d / h`` and ``d_v / h`` per head: ``Q = (X W_Q) ⊙ Θ``, ``K = (X W_K) ⊙ Θ
    / sqrt(d_k)``, ``V = X W_V``, ``retention(X)_n = Σ_{m<=n} γ^{n-m} (Q_n · K_m) V_m / sqrt(Σ_{i=0}^{n}
    γ^i)``, ``Y = GroupNorm_h(retention(X))``, ``MSR(X) = (swish(X W_G) ⊙ Y) W_O``. Θ turns the pairs
    (2i, 2i+1) of q and k at position n by ``n θ_i``, ``θ_i = 10000^(-i / (d_k/2 - 1))`` (torchscale's
    angles; the paper's xPos-like ``e^{inθ}``; d_k must be even). GroupNorm is per head, without affine
    parameters (torchscale: ``LayerNorm(d_v / h, elementwise_affine=False)``, eps 1e-6; ``norm =
    rmsnorm`` is its later RMSNorm). torchscale at the paper's release has biases on all five
    projections (``bias = true``); its later versions none.

    **Normalisation, paper vs torchscale.** The paper (§2.2) normalises the decay mask
    ``D̃_nm = D_nm / sqrt(Σ_i D_ni)`` and then the scores ``R̃_nm = R_nm / max(|Σ_i R_ni|, 1)``;
    torchscale's parallel form does both (the second detached: ``|Σ_i R_ni|`` at the paper's release,
    ``Σ_i |R_ni|`` clamped to [1, 5·10⁴] later), its recurrent form only the first (a running
    ``scale``), its chunkwise form other per-row scales (the decay normalised within the chunk, the
    larger of the chunk's and the state's detached scales). Each is a positive scale of a head's output
    row, which the group norm removes (exactly but for its eps): torchscale's own three forms agree only
    up to that. Here all
    three forms compute one quantity, torchscale's recurrent form's — the decay normalisation
    ``1 / sqrt(Σ_{i=0}^{n} γ^i)`` of absolute position n, applied to q, and no data-dependent score
    normalisation — so that they agree to rounding.

    **Forms.** ``form = parallel`` (training, as the paper's models): ``(Q Kᵀ ⊙ D) V`` over n x n, FLOPs
    ``2 b n² (d + d_v)``, O(n²) like attention. ``form = chunkwise`` (§2.1, eq. 7), chunks of
    ``c = min(chunk, n)`` over ``n_p = c ceil(n / c)``: the decayed scores inside each chunk ``2 b n_p c
    (d + d_v)``, each chunk's state ``K_jᵀ (ζ ⊙ V_j)`` for every chunk but the last ``2 b (n_p - c) d
    d_v / h``, and the state of the chunks before read by ``(Q_j ⊙ ξ) S_j``, the same again: O(n c) time
    and memory. Decoding continues the recurrence (eq. 6) from a state of ``h d_k (d_v / h) = d d_v /
    h`` elements per sequence, constant in the context: a prompt or chunk in the training form plus the
    state, one token by the recurrent form. All matmuls; the decays, rotations, norms and the gate are
    elementwise (0 FLOPs). A fused kernel (torchscale's, or flash-linear-attention's) does the same
    products without padding the last chunk. LoRA does not adapt its projections.
    """

    name = "retention"
    params = (
        Param("heads", "int", min=1, doc="retention heads h: d_model / h must be even (the rotation)"),
        Param("value_factor", "int", default=2, min=1, doc="value and gate width / d_model (paper: 2)"),
        Param(
            "form",
            "enum",
            default="parallel",
            choices=("parallel", "chunkwise"),
            doc="training form: n x n decayed scores, or chunks carrying a state",
        ),
        Param("chunk", "int", default=None, min=1, doc=f"chunkwise: chunk length (default {DEFAULT_CHUNK})"),
        Param("bias", "bool", default=True, doc="biases on the projections (torchscale as published)"),
        Param(
            "norm",
            "enum",
            default="layernorm",
            choices=("layernorm", "rmsnorm"),
            doc="the per-head group norm (no affine)",
        ),
        Param("eps", "float", default=1e-6, gt=0.0, doc="eps of the group norm"),
    )

    # -- sizes --------------------------------------------------------------------------------------

    def dims(self, node: Node, ctx: Ctx) -> tuple[int, int, int]:
        """(heads, the value width d_v of all heads, key head size d_k)."""
        h = whole(node["heads"])
        return h, whole(node["value_factor"]) * ctx.d_model, ctx.d_model // h

    def chunk(self, node: Node) -> int | None:
        """The chunk length of the chunkwise form (None: the parallel form, one chunk of n)."""
        if node["form"] == "parallel":
            return None
        return int(node["chunk"]) if node["chunk"] is not None else DEFAULT_CHUNK

    def blocks(self, node: Node, n: Any) -> tuple[Any, Any, bool]:
        """(c, n_p, whether there are several chunks): the chunk length the module runs at this length,
        n padded to whole chunks. A symbolic n is taken to be long (several chunks)."""
        c = self.chunk(node)
        if c is None:
            return n, n, False
        if isinstance(n, int):
            c = min(c, n)
            return c, padded(n, c), n > c
        return c, padded(n, c), True

    # -- checks -------------------------------------------------------------------------------------

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        errs = []
        d, h = ctx.d_model, int(node["heads"])
        if d % h:
            errs.append(
                ShapeError(
                    f"d_model ({d}) is not divisible by heads ({h})",
                    help="choose heads among " + ", ".join(map(str, divisors(d))),
                    param="heads",
                )
            )
        elif (d // h) % 2:
            even = [k for k in divisors(d, limit=64) if (d // k) % 2 == 0][:12]
            errs.append(
                ShapeError(
                    f"retention turns pairs of query and key dimensions, so d_model / heads must be even; "
                    f"it is {d // h}",
                    help="choose heads among " + ", ".join(map(str, even))
                    if even
                    else "d_model is odd: no head count gives even heads",
                    param="heads",
                )
            )
        if node["form"] == "parallel" and node["chunk"] is not None:
            errs.append(
                ShapeError(
                    "`chunk` sets the chunk length of `form = chunkwise`",
                    help="drop `chunk`, or set `form = chunkwise`",
                    param="chunk",
                    code="E009",
                )
            )
        return errs

    # -- costs --------------------------------------------------------------------------------------

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        _, dv, _ = self.dims(node, ctx)
        return 2 * d * d + 3 * d * dv + ((3 * d + 2 * dv) if node["bias"] else 0)

    def projection_flops(self, node: Node, ctx: Ctx, b: Any, n: Any) -> Any:
        """q, k (d -> d), v and the gate (d -> d_v), the output (d_v -> d)."""
        d = ctx.d_model
        _, dv, _ = self.dims(node, ctx)
        return 2 * b * n * (2 * d * d + 3 * d * dv)

    def core_flops(self, node: Node, ctx: Ctx, b: Any, n: Any) -> Any:
        """The decayed scores and their values inside each chunk, then (several chunks) the chunks'
        states and their reads."""
        d = ctx.d_model
        h, dv, _ = self.dims(node, ctx)
        c, n_p, several = self.blocks(node, n)
        total = 2 * b * n_p * c * (d + dv)
        if several:
            total += 4 * b * (n_p - c) * (d * dv // h)
        return total

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b, n, _ = ins[0]
        return self.projection_flops(node, ctx, b, n) + self.core_flops(node, ctx, b, n)

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        """Only the (query, key) pairs the causal decay keeps inside each chunk (``c (c + 1) / 2`` per
        whole chunk, ``r (r + 1) / 2`` for a last chunk of r), states over the real keys of the chunks
        a later one reads, and reads by the queries after the first chunk."""
        b, n, _ = ins[0]
        d = ctx.d_model
        h, dv, _ = self.dims(node, ctx)
        c, n_p, several = self.blocks(node, n)
        if self.chunk(node) is None:
            kept = n * (n + 1) // 2
        else:
            whole_chunks = n // c
            r = n - whole_chunks * c
            kept = whole_chunks * (c * (c + 1) // 2) + r * (r + 1) // 2
        total = self.projection_flops(node, ctx, b, n) + 2 * b * kept * (d + dv)
        if several:
            total += 2 * b * ((n_p - c) + (n - c)) * (d * dv // h)
        return total

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The projections as linear maps (input gradients where the input needs them, weight gradients
        where the weights train); the core's products, both operands activations, 2 x once gradients
        flow inside."""
        b, n, _ = ins[0]
        d = ctx.d_model
        _, dv, _ = self.dims(node, ctx)
        m = b * n
        proj, inner = chain_backward(
            None,
            [[("q", m, d, d), ("k", m, d, d), ("v", m, d, dv), ("gate", m, d, dv)], [("o", m, dv, d)]],
            act.input_grad,
            act.weight_grad,
        )
        if not inner:
            return proj
        fwd = (self.flops_mask_aware if mask_aware else self.flops)(node, ctx, ins)
        return proj + 2 * (fwd - self.projection_flops(node, ctx, b, n))

    def recompute_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, selective: bool
    ) -> Any:
        """Under selective recomputation the decayed scores (the core) are dropped and their chunk
        products redone (Korthikanti et al. 2022, §4.2)."""
        b, n, _ = ins[0]
        if not selective or not (act.input_grad or act.weight_grad):
            return 0
        d = ctx.d_model
        _, dv, _ = self.dims(node, ctx)
        c, n_p, _ = self.blocks(node, n)
        return 2 * b * n_p * c * (d + dv)

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """What autograd keeps, over n_p = n padded to whole chunks of c (n_p = c = n in the parallel
        form): the input (the projections', when their weights train); the rotation's cos and sin
        (n d_k each) and the decay normalisation (n h); the chunked q, k (b n_p d each) and v (b n_p d_v);
        the decay mask (h c²) and the decayed scores (b h n_p c) — the score-sized core; with several
        chunks, the key decay (h c) and the decayed keys of all chunks but the last (b (n_p - c) d), the
        chunk decay (h, from three chunks on), the query decay (h c), the decayed queries after the first
        chunk (b (n_p - c) d) and the states before them (b (n_p / c - 1) d d_v / h); the group norm's
        input (b n_p d_v) and statistics (fp32: mean and rstd, 2 b h n_p; rmsnorm: rstd, b h n_p); the
        gate's input and swish (b n d_v each) and the normalised retention (b n_p d_v); and the output
        projection's input (b n d_v, when its weights train). Nothing when no gradient flows here."""
        b, n, _ = ins[0]
        d, by = ctx.d_model, act.bytes
        h, dv, dk = self.dims(node, ctx)
        if not (act.input_grad or act.weight_grad):
            return Saved(inputs=(False,))
        c, n_p, several = self.blocks(node, n)
        out = 2 * n * dk + n * h  # cos, sin; the normalisation
        out += b * n_p * (2 * d + dv)  # chunked q, k, v
        if several:
            out += h * c + b * (n_p - c) * d  # key decay, decayed keys
            out += h * c + b * (n_p - c) * d  # query decay, decayed queries
            out += b * (n_p // c - 1) * (d * dv // h)  # the states before them
            if not isinstance(n, int) or n_p // c >= 3:
                out += h  # the chunk decay, once a state is carried past a chunk
        out += b * n_p * dv + 2 * b * n * dv + b * n_p * dv  # norm input; gate input and swish; retention
        if act.weight_grad:
            out += b * n * dv  # the output projection's input
        core = (h * c * c + b * h * n_p * c) * by  # the decay mask and the decayed scores
        stats = 1 if node["norm"] == "rmsnorm" else 2  # rstd; or mean and rstd
        internal = out * by + stats * b * h * n_p * 4 + core  # + the norm's statistics (fp32)
        return Saved(inputs=(act.weight_grad,), internal=internal, core=core)

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """The recurrent state S, ``h d_k (d_v / h) = d d_v / h`` elements per sequence, whatever the
        context."""
        h, dv, _ = self.dims(node, ctx)
        return ctx.d_model * dv // h

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        # c = chunk, h = heads
        if self.chunk(node) is None:
            return ("n·d²", "n²·d")
        return ("n·d²", "n·c·d", "n·d²/h")

    def regime(self, node: Node) -> tuple[int, int]:
        """Chunkwise: whole chunks, more than one (a single chunk is the parallel form, without states)."""
        c = self.chunk(node)
        return (1, 0) if c is None else (c, c)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        h, dv, _ = self.dims(node, ctx)
        return ours(
            NN,
            "MultiScaleRetention",
            d_model=ctx.d_model,
            n_heads=h,
            value_dim=dv,
            form=node["form"],
            chunk=node["chunk"] if node["chunk"] is not None else DEFAULT_CHUNK,
            bias=node["bias"],
            norm=node["norm"],
            eps=node["eps"],
        )


KINDS: tuple[Kind, ...] = (Retention(),)
