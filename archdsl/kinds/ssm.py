"""State-space sequence mixers: Mamba's selective SSM (Gu & Dao 2023) and Mamba-2's state-space
dual (Dao & Gu 2024).

A mixer in a block's ``attention`` or ``mixer`` slot (see :mod:`archdsl.kinds.mixer`): causal by
construction, no positional scheme acts in it, and a decoder keeps a constant-size state instead of a
KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node, Value
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError, chain_backward, divisors
from archdsl.kinds.ffn import tokens
from archdsl.kinds.mixer import MixerKind
from archdsl.lower.ctor import Ctor, ours
from archdsl.trace import whole

NN = "archdsl.kinds.ssm_nn"


def chunks(n: Any, c: int) -> Any:
    """How many chunks of ``c`` positions cover ``n``: ``ceil(n / c)``."""
    return (n + c - 1) // c


class Mamba(MixerKind):
    """Mamba's selective state-space mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
    Selective State Spaces", §3.4, Fig. 3, Algorithm 2), as Hugging Face's ``MambaMixer``: a gated
    in-projection to ``E = expand · d`` channels, a causal depthwise convolution of width ``k =
    d_conv``, and a diagonal linear recurrence whose step Δ and input and output maps B, C depend on
    the input (state ``N = d_state`` per channel, Δ of rank ``R = dt_rank``), then an out-projection.
    Causal by construction; no positional scheme acts in it. Parameters ``3 d E + E k + E (R + 2N) +
    R E + E N + 3E``; forward FLOPs ``2 N' (3 d E + E (R + 2N) + R E + E k + E N)`` for N' positions;
    a decoder keeps ``E (k - 1 + N)`` numbers per sequence, whatever the context.

        x, z = in_proj(h)                            d -> 2E
        x = silu(conv1d(x))                          causal depthwise convolution of width k (bias)
        Δ, B, C = x_proj(x)                          E -> R + 2N
        Δ = softplus(dt_proj(Δ))                     R -> E (bias)
        h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t x_t B_t,    y_t = h_t C_t + D ⊙ x_t      A = -exp(A_log): E x N
        out = out_proj(y ⊙ silu(z))                  E -> d

    Parameters ``3 d E + E k + E (R + 2N) + R E + E N + 2E`` (in/out projections, conv, x_proj,
    dt_proj, A_log, conv and Δ biases, D), plus ``2E + d`` with ``bias`` and less ``E`` without
    ``conv_bias``. Forward FLOPs for N' positions: ``2 N' (3 d E + E (R + 2N) + R E)`` for the
    projections, ``2 N' E k`` for the convolution, ``2 N' E N`` for reading the states (y = h C,
    a batched matmul); the scan itself (exponentials, products, sums) is elementwise: 0 FLOPs in the
    convention. Backward: each linear map and the convolution once per operand that needs a gradient;
    the scan's hand-written backward contracts four (E, N) products per position (the gradients of C,
    of Δ through the decay, of Δx through B, of B) and, when A trains, a fifth (A's): ``2 N' E N`` each.
    Training runs the scan in chunks of ``chunk`` positions (a parallel prefix scan within a chunk, the
    state carried between chunks; no loop over tokens) and keeps the chunk-boundary states for
    backward: O(n) time and memory. A decoder keeps ``E (k - 1 + N)`` numbers per sequence: the
    convolution's last k - 1 inputs and the SSM state, whatever the context.

    Its projections are no LoRA targets: under LoRA it stays frozen. Padding (the mask) feeds zeros
    to the convolution and Δ = 0 to the scan, so a padded position leaves the state unchanged.
    """

    name = "mamba"
    params = (
        Param("d_state", "int", default=16, min=1, doc="N: the SSM state per channel (HF state_size)"),
        Param(
            "d_conv", "int", default=4, min=1, doc="k: width of the causal depthwise conv (HF conv_kernel)"
        ),
        Param("expand", "int", default=2, min=1, doc="d_inner = expand · d_model (HF expand)"),
        Param(
            "dt_rank",
            "int",
            default=None,
            min=1,
            doc="R: rank of Δ's projection (HF time_step_rank; default ceil(d_model / 16))",
        ),
        Param("conv_bias", "bool", default=True, doc="bias on the convolution (HF use_conv_bias)"),
        Param("bias", "bool", default=False, doc="biases on the in- and out-projections (HF use_bias)"),
        Param("chunk", "int", default=256, min=1, doc="chunk length of the training scan"),
        Param(
            "dt_bc_norm",
            "bool",
            default=False,
            doc="RMSNorm Δ, B and C after x_proj (Jamba; HF dt_/b_/c_layernorm)",
        ),
        Param("norm_eps", "float", default=1e-6, gt=0.0, doc="eps of those norms (Jamba: rms_norm_eps)"),
    )

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Value]:
        return {"dt_rank": -(-ctx.d_model // 16)}

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        if node["norm_eps"] != 1e-6 and not node["dt_bc_norm"]:
            return [
                ShapeError(
                    "`norm_eps` is the eps of the norms on Δ, B and C, which `dt_bc_norm = false` leaves out",
                    help="drop `norm_eps`, or write `dt_bc_norm = true` (Jamba)",
                    param="norm_eps",
                    code="E009",
                )
            ]
        return []

    def dims(self, node: Node, ctx: Ctx) -> tuple[int, int, int, int]:
        """(E, N, k, R): inner width, state size, conv width, Δ's rank."""
        e = whole(node["expand"]) * ctx.d_model
        return e, whole(node["d_state"]), whole(node["d_conv"]), whole(node["dt_rank"])

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        e, n, k, r = self.dims(node, ctx)
        total = 3 * d * e + e * k + e * (r + 2 * n) + r * e + e * n + 2 * e  # + Δ's bias and D
        if node["dt_bc_norm"]:
            total += r + 2 * n  # the gains of the norms on Δ, B and C
        if node["conv_bias"]:
            total += e
        if node["bias"]:
            total += 2 * e + d
        return int(total)

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        return 0 if ctx.frozen else self.n_params(node, ctx)

    def linear_maps(self, node: Node, ctx: Ctx, m: Any) -> list[list[tuple[str, Any, int, int]]]:
        """The linear maps in the order they run, as ``chain_backward`` stages: in_proj, x_proj,
        dt_proj, out_proj (the convolution and the scan between are counted apart)."""
        d = ctx.d_model
        e, n, _, r = self.dims(node, ctx)
        return [
            [("in_proj", m, d, 2 * e)],
            [("x_proj", m, e, r + 2 * n)],
            [("dt_proj", m, r, e)],
            [("out_proj", m, e, d)],
        ]

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        m = tokens(ins[0])
        e, n, k, _ = self.dims(node, ctx)
        linear = sum(2 * mm * a * b for stage in self.linear_maps(node, ctx, m) for _, mm, a, b in stage)
        return linear + 2 * m * e * k + 2 * m * e * n

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The linear maps in a chain; the convolution once for its input's gradient (whenever the
        input or the in-projection trains) and once for its weights'; the scan's four contractions
        whenever anything before it needs a gradient, and A's when it trains."""
        m = tokens(ins[0])
        e, n, k, _ = self.dims(node, ctx)
        linear, grad = chain_backward(None, self.linear_maps(node, ctx, m), act.input_grad, act.weight_grad)
        conv = 2 * m * e * k * (int(grad) + int(act.weight_grad))
        scan = 2 * m * e * n * (4 * int(grad) + int(act.weight_grad))
        return linear + conv + scan

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """What backward keeps, for N' = b n positions (``by`` bytes each unless said):

        - the block's input (the in-projection's, when its weights train);
        - the in-projection's output x, z (2E per position: the gate's SiLU keeps z, a view of it);
        - the convolution's zero-padded input (b E (n + k - 1)) and its output (SiLU's input);
        - x after the SiLU (the x-projection's and the scan's input, and D's);
        - x_proj's output (Δ's projection reads a view of it, the scan B and C);
        - softplus's input and Δ;
        - A = -exp(A_log) and exp's output (E N each, when A trains: else only A);
        - the chunk-boundary states (b ceil(n / chunk) E N, fp32 or wider);
        - y + D x and silu(z) (the gating product's operands) and the gated y (out_proj's input, when
          its weights train).

        Nothing when neither its input nor its weights need gradients.
        """
        b, m, by = ins[0][0], tokens(ins[0]), act.bytes
        n_seq = ins[0][1]
        e, n, k, r = self.dims(node, ctx)
        grad = act.input_grad or act.weight_grad
        if not grad:
            return Saved(inputs=(False,))
        per_token = 2 * e + e + e + (r + 2 * n) + 2 * e + 2 * e + (e if act.weight_grad else 0)
        internal = m * per_token * by + b * e * (n_seq + k - 1) * by
        if node["dt_bc_norm"]:
            internal += m * self.norms_saved(r, n, by, act)
        internal += (2 if act.weight_grad else 1) * e * n * by
        internal += b * chunks(n_seq, int(node["chunk"])) * e * n * max(by, 4)
        return Saved(inputs=(act.weight_grad,), internal=internal)

    @staticmethod
    def norms_saved(r: int, n: int, by: int, act: ActCfg) -> int:
        """Bytes per position that Jamba's norms on Δ, B and C add to what backward keeps (the RMSNorm
        kind's own account, at widths R, N, N): the reciprocal rms of each (fp32), the normalised
        inputs where the gains train (fp32), fp32 copies of the inputs below fp32 (whose own output
        the x-projection then no longer keeps), and their outputs — the scan keeps the normalised B
        and C, Δ's projection the normalised Δ where its weights train."""
        w = r + 2 * n
        out = 3 * 4 + (w * 4 if act.weight_grad else 0) + ((w * 4 - w * by) if by != 4 else 0)
        return out + (2 * n + (r if act.weight_grad else 0)) * by

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """The convolution's last k - 1 inputs and the SSM state, E (k - 1 + N), whatever the context."""
        e, n, k, _ = self.dims(node, ctx)
        return e * (k - 1 + n)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        # s = d_state, k = d_conv
        return ("n·d²", "n·d·s", "n·d·k")

    def regime(self, node: Node) -> tuple[int, int]:
        """Whole chunks: the kept boundary states are one per chunk."""
        return int(node["chunk"]), 0

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "Mamba",
            d_model=ctx.d_model,
            d_inner=node["expand"] * ctx.d_model,
            d_state=node["d_state"],
            d_conv=node["d_conv"],
            dt_rank=node["dt_rank"],
            conv_bias=node["conv_bias"],
            bias=node["bias"],
            chunk=node["chunk"],
            **({"norm_eps": node["norm_eps"]} if node["dt_bc_norm"] else {}),
        )


class Mamba2(MixerKind):
    """Mamba-2's SSD mixer (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient
    Algorithms Through Structured State Space Duality", §7, Fig. 6), as Hugging Face's
    ``Mamba2Mixer``: one in-projection gives the gate z, the SSM input x (``E = heads · head_dim``
    channels), B and C (``n_groups`` groups of ``N = d_state``, each shared by heads / n_groups heads)
    and one step Δ per head; x, B and C pass a causal depthwise convolution of width ``k = d_conv``;
    the recurrence has a scalar decay per head, so it runs as the state-space dual in chunks of
    ``chunk`` positions (masked attention within a chunk, states between chunks); then a gated RMSNorm
    of y ⊙ silu(z) over the groups and the out-projection. Parameters ``d (2E + 2GN + H) + (E + 2GN)
    (k + 1) + 3H + E + E d``; a decoder keeps ``(E + 2GN)(k - 1) + H P N`` numbers per sequence.

        z, xBC, Δ = in_proj(h)                  d -> E + (E + 2 G N) + H
        x, B, C = silu(conv1d(xBC))             causal depthwise convolution, width k (bias)
        Δ = softplus(Δ + dt_bias)
        y = SSD(x, Δ, A = -exp(A_log), B, C) + D x     A, D, dt_bias: one per head
        out = out_proj(RMSNorm_G(y ⊙ silu(z)))

    Forward FLOPs for b sequences of n positions: the projections ``2 b n d (2E + 2GN + H) + 2 b n E
    d``, the convolution ``2 b n (E + 2GN) k``, and the SSD's batched matmuls over the padded length
    ``n_p = L ceil(n / L)``, ``L = min(chunk, n)``: ``C B^T`` per group and chunk ``2 b n_p L G N``, the
    masked scores times Δx ``2 b n_p L H P``, the chunks' states ``2 b n_p H P N``, and reading the
    state before each chunk from the second on ``2 b (n_p - L) H P N``. Exponentials, the segment sums
    and the carry between chunks are elementwise: 0. Backward: every matmul twice (both operands come
    from the input) where anything before it needs a gradient, the linear maps and the convolution as
    usual. O(n · chunk) time and memory within chunks, O(n) across them.

    Padding (the mask) feeds zeros to the convolution and Δ = 0 to the scan, as ``mamba``.
    """

    name = "mamba2"
    params = (
        Param(
            "heads", "int", default=None, min=1, doc="H (HF num_heads; default expand · d_model / head_dim)"
        ),
        Param("head_dim", "int", default=64, min=1, doc="P: channels per head (HF head_dim)"),
        Param("expand", "int", default=2, min=1, doc="E = expand · d_model = heads · head_dim (HF expand)"),
        Param(
            "n_groups", "int", default=1, min=1, doc="G: groups of B and C; must divide heads (HF n_groups)"
        ),
        Param("d_state", "int", default=128, min=1, doc="N: the state per channel (HF state_size)"),
        Param(
            "d_conv", "int", default=4, min=1, doc="k: width of the causal depthwise conv (HF conv_kernel)"
        ),
        Param("conv_bias", "bool", default=True, doc="bias on the convolution (HF use_conv_bias)"),
        Param("bias", "bool", default=False, doc="biases on the in- and out-projections (HF use_bias)"),
        Param("eps", "float", default=1e-5, gt=0.0, doc="eps of the gated RMSNorm (HF layer_norm_epsilon)"),
        Param("chunk", "int", default=256, min=1, doc="chunk length of the SSD (HF chunk_size)"),
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        errs = []
        e, p = int(node["expand"]) * ctx.d_model, int(node["head_dim"])
        h = node["heads"]
        if h is None and e % p:
            errs.append(
                ShapeError(
                    f"expand · d_model ({e}) is not divisible by head_dim ({p})",
                    help="choose head_dim among " + ", ".join(map(str, divisors(e))) + ", …",
                    param="head_dim",
                )
            )
            return errs
        h = int(h) if h is not None else e // p
        if node["heads"] is not None and h * p != e:
            errs.append(
                ShapeError(
                    f"heads · head_dim ({h} · {p} = {h * p}) must be expand · d_model ({e})",
                    help=f"drop `heads` (it follows: {e // p})" if e % p == 0 else "change heads or head_dim",
                    param="heads",
                )
            )
        g = int(node["n_groups"])
        if h % g:
            errs.append(
                ShapeError(
                    f"heads ({h}) is not divisible by n_groups ({g})",
                    help="each group's B and C serve a whole number of heads: choose n_groups among "
                    + ", ".join(map(str, divisors(h))),
                    param="n_groups",
                )
            )
        return errs

    def dims(self, node: Node, ctx: Ctx) -> tuple[int, int, int, int, int, int]:
        """(E, H, P, G, N, k)."""
        e = whole(node["expand"]) * ctx.d_model
        p = whole(node["head_dim"])
        h = whole(node["heads"]) if node["heads"] is not None else e // p
        return e, h, p, whole(node["n_groups"]), whole(node["d_state"]), whole(node["d_conv"])

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        e, h, _, g, n, k = self.dims(node, ctx)
        conv = e + 2 * g * n
        total = d * (e + conv + h) + conv * k + 3 * h + e + e * d
        if node["conv_bias"]:
            total += conv
        if node["bias"]:
            total += e + conv + h + d
        return int(total)

    def linear_maps(self, node: Node, ctx: Ctx, m: Any) -> list[list[tuple[str, Any, int, int]]]:
        d = ctx.d_model
        e, h, _, g, n, _ = self.dims(node, ctx)
        return [[("in_proj", m, d, 2 * e + 2 * g * n + h)], [("out_proj", m, e, d)]]

    def ssd_flops(self, node: Node, ctx: Ctx, b: Any, n_seq: Any) -> Any:
        _, h, p, g, n, _ = self.dims(node, ctx)
        c = int(node["chunk"])
        L = min(c, n_seq) if isinstance(n_seq, int) else c  # a symbolic length is taken to be long
        nc = chunks(n_seq, L)
        states = 4 * b * nc * L * h * p * n if not isinstance(n_seq, int) or nc > 1 else 0
        return 2 * b * nc * L * L * (g * n + h * p) + states

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        m = tokens(ins[0])
        e, _, _, g, n, k = self.dims(node, ctx)
        linear = sum(2 * mm * a * o for stage in self.linear_maps(node, ctx, m) for _, mm, a, o in stage)
        return linear + 2 * m * (e + 2 * g * n) * k + self.ssd_flops(node, ctx, ins[0][0], ins[0][1])

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The linear maps in a chain; the convolution once for its input's gradient and once for its
        weights'; the SSD's matmuls twice (both operands come from the input) when anything before
        them needs a gradient."""
        m = tokens(ins[0])
        e, _, _, g, n, k = self.dims(node, ctx)
        linear, grad = chain_backward(None, self.linear_maps(node, ctx, m), act.input_grad, act.weight_grad)
        conv = 2 * m * (e + 2 * g * n) * k * (int(grad) + int(act.weight_grad))
        return linear + conv + 2 * self.ssd_flops(node, ctx, ins[0][0], ins[0][1]) * int(grad)

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """What backward keeps, for b sequences of n positions (N' = b n), in the model's dtype
        (``by`` bytes) unless said:

        - the block's input (when the in-projection's weights train); the in-projection's output
          (E + C + H per position, C = E + 2GN: the gate's SiLU keeps z, a view of it; in lower
          precision it keeps an fp32 copy of z instead, E);
        - the convolution's zero-padded input (b C (n + k - 1)) and output, x, B, C after the SiLU
          (C each per position); softplus's input (H); A = -exp(A_log)'s exp (H, when A trains);
        - in the SSD (fp32, or wider: in lower precision it keeps fp32 copies of x, Δ and A), Δ and A
          (H per position, H), and over the padded length n_p = L ceil(n / L), L = min(chunk, n),
          with nc = n_p / L chunks: Δx in chunks and Δx decayed to each chunk's end (a copy in the
          layout of its matmul) (H P each per position), the decays to the chunk's end (H), B and C
          (G N each); C B^T (nc G L² per sequence), the segment decays and the masked scores
          (nc H L² each), the two (L, L) boolean masks; with several chunks, each chunk's total decay
          (nc H), the states carried into chunks 2 … nc ((nc - 1) H P N), their stack (nc H P N) and,
          per position, the states read out (H P) and the decays from the chunk's start (H);
        - the gated RMSNorm (fp32): y, silu(z), the grouped y ⊙ silu(z) and its reciprocal rms per
          group (E, E, E, G per position), and, when its gain trains, the normalised output (E, back
          in ``by``) and out_proj's input (E).

        Nothing when neither its input nor its weights need gradients."""
        b, m, by = ins[0][0], tokens(ins[0]), act.bytes
        n_seq = ins[0][1]
        e, h, p, g, n, k = self.dims(node, ctx)
        grad = act.input_grad or act.weight_grad
        if not grad:
            return Saved(inputs=(False,))
        conv = e + 2 * g * n
        f = max(by, 4)  # the SSD's and the norm's compute dtype
        c = int(node["chunk"])
        L = min(c, n_seq) if isinstance(n_seq, int) else c  # a symbolic length is taken to be long
        nc = chunks(n_seq, L)
        n_p = nc * L
        out = m * (e + conv + h) * by if by == 4 else m * e * 4  # z (a view of the in-projection)
        out += b * conv * (n_seq + k - 1) * by + 2 * m * conv * by + m * h * by  # conv; softplus's input
        out += m * h * f + h * f + (h * by if act.weight_grad else 0)  # Δ and A as the SSD reads them; exp
        if by < f:
            out += m * e * f  # x as the SSD reads it (in lower precision, an fp32 copy)
        ssd = b * n_p * (h * p + 2 * g * n) + b * nc * L * L * (g + 2 * h)
        if not isinstance(n_seq, int) or nc > 1:  # (a symbolic length is long: several chunks)
            ssd += b * n_p * 2 * (h * p + h) + b * nc * h + b * (2 * nc - 1) * h * p * n
        out += ssd * f + 2 * L * L  # + the masks (bool)
        out += m * (3 * e + g) * 4  # the norm's y, silu(z), y ⊙ silu(z), 1 / rms
        if act.weight_grad:
            out += 2 * m * e * by  # the normalised output (the gain's operand); out_proj's input
        return Saved(inputs=(act.weight_grad,), internal=out)

    def kv_cache(self, node: Node, ctx: Ctx, context: Any) -> Any:
        """The convolution's last k - 1 inputs (x, B, C) and the SSM state (H P N), whatever the
        context."""
        e, h, p, g, n, k = self.dims(node, ctx)
        return (e + 2 * g * n) * (k - 1) + h * p * n

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        # c = chunk, s = d_state, k = d_conv
        return ("n·d²", "n·c·d", "n·d·s", "n·d·k")

    def regime(self, node: Node) -> tuple[int, int]:
        """Whole chunks (the SSD pads to them), and more than one: a single chunk has no states to
        carry."""
        c = int(node["chunk"])
        return c, c

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        e = node["expand"] * ctx.d_model
        return ours(
            NN,
            "Mamba2",
            d_model=ctx.d_model,
            heads=node["heads"] if node["heads"] is not None else e // node["head_dim"],
            head_dim=node["head_dim"],
            n_groups=node["n_groups"],
            d_state=node["d_state"],
            d_conv=node["d_conv"],
            conv_bias=node["conv_bias"],
            bias=node["bias"],
            chunk=node["chunk"],
            eps=node["eps"],
        )


KINDS: tuple[Kind, ...] = (Mamba(), Mamba2())
