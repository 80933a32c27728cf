"""State-space sequence mixers: Mamba's selective SSM (Gu & Dao 2023).

A mixer in a block's ``attention`` or ``mixer`` slot (see :mod:`archdsl.kinds.mixer`): causal by
construction, no positional scheme acts in it, and a decoder keeps a constant-size state instead of a
KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node, Value
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, chain_backward
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
    )

    def defaults(self, ctx: Ctx, arity: int) -> dict[str, Value]:
        return {"dt_rank": -(-ctx.d_model // 16)}

    def dims(self, node: Node, ctx: Ctx) -> tuple[int, int, int, int]:
        """(E, N, k, R): inner width, state size, conv width, Δ's rank."""
        e = whole(node["expand"]) * ctx.d_model
        return e, whole(node["d_state"]), whole(node["d_conv"]), whole(node["dt_rank"])

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        e, n, k, r = self.dims(node, ctx)
        total = 3 * d * e + e * k + e * (r + 2 * n) + r * e + e * n + 2 * e  # + Δ's bias and D
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
        internal += (2 if act.weight_grad else 1) * e * n * by
        internal += b * chunks(n_seq, int(node["chunk"])) * e * n * max(by, 4)
        return Saved(inputs=(act.weight_grad,), internal=internal)

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
        )


KINDS: tuple[Kind, ...] = (Mamba(),)
