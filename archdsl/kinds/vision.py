"""Hierarchical vision kinds: attention within windows of the token grid (Swin), patch merging between
stages, and a convolutional stem that makes the token grid (LeViT, CvT).

These kinds read the 2-D grid their tokens lie on from the context (``Ctx.grid``): an image embedding
without a class token gives it (``patch_embedding(cls_token = false)``, ``conv_stem``), and each stage's
transition hands the next stage its own (see ``Stage`` in :mod:`archdsl.ir`). Grids are fixed by the
image, so their costs are exact integers in the lengths; the polynomials are in the batch ``b`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from archdsl.ir import Node, Value
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError, chain_backward, divisors
from archdsl.kinds.peft import lora_on, lora_reads_input, lora_saved
from archdsl.lower.ctor import Ctor, ours
from archdsl.trace import whole

NN = "archdsl.kinds.vision_nn"

NEEDS_GRID = (
    "the tokens must lie on a grid: an image embedding without a class token "
    "(`patch_embedding(…, cls_token = false)`, `conv_stem(…)`)"
)


def _no_grid(kind: str) -> ShapeError:
    return ShapeError(
        f"`{kind}` reads a grid of tokens, but this model has none", help=NEEDS_GRID, code="E016"
    )


def _grid_length(kind: str, ctx: Ctx, ins: Sequence[Shape]) -> tuple[int, int]:
    """The context's grid, checked against the length of the input it describes."""
    if ctx.grid is None:
        raise _no_grid(kind)
    rows, cols = ctx.grid
    n = ins[0][1]
    if isinstance(n, int) and n != rows * cols:
        raise ShapeError(
            f"`{kind}` reads a {rows} x {cols} grid ({rows * cols} tokens), but its input has {n}",
            help="a tensor on a grid keeps its length until a stage's transition changes it",
        )
    return rows, cols


def _up(n: int, m: int) -> int:
    """n rounded up to a multiple of m."""
    return -(-n // m) * m


@dataclass(frozen=True)
class Windows:
    """Where a window attention's windows fall: the grid (``rows`` x ``cols``), the window ``size`` and
    ``shift`` it uses there (a window larger than the grid shrinks to it, unshifted), and the grid padded
    to whole windows (``padded_rows`` x ``padded_cols``)."""

    rows: int
    cols: int
    size: int
    shift: int
    padded_rows: int
    padded_cols: int

    @property
    def tokens(self) -> int:
        """Positions attention runs over per image, padding included."""
        return self.padded_rows * self.padded_cols

    @property
    def copies(self) -> bool:
        """Whether cutting the windows makes a new tensor: padding, the cyclic shift, or windows side by
        side along a row (one window across is a view of the input)."""
        return (
            self.shift > 0
            or self.padded_rows != self.rows
            or self.padded_cols != self.cols
            or self.padded_cols != self.size
        )

    def kept_pairs(self) -> int:
        """(query, key) pairs the shifted-window mask keeps per image and head. Cyclically shifted by s,
        the last window along an axis holds two regions of the image, ``M - s`` and ``s`` rows (or
        columns) that may not attend to each other; the others one region of M. A window keeps the
        pairs within each (row region, column region), so the count is a product over the axes of
        ``sum over windows of sum over regions of size²`` (without a shift: ``P M`` along an axis of
        P, every pair)."""
        m, s = self.size, self.shift
        last = (m - s) ** 2 + s**2 if s else m * m

        def axis(p: int) -> int:
            return (p // m - 1) * m * m + last

        return axis(self.padded_rows) * axis(self.padded_cols)


class WindowAttention(Kind):
    """Swin's window attention (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using
    Shifted Windows", §3.2): multi-head self-attention within non-overlapping ``M x M`` windows of the
    token grid, with a learned relative position bias ``B`` from a ``(2M - 1)² x heads`` table indexed by
    the relative coordinates of query and key: ``softmax(q kᵀ / sqrt(hs) + B + mask) v``. Every other
    layer of a stage shifts the windows by ``M / 2`` (a cyclic shift of the grid, ``torch.roll``); the
    mask keeps each window's tokens from attending across the regions the shift brought together
    (-100 on the scores, as Hugging Face's ``SwinLayer``). A grid the window does not tile is padded with
    zeros on the bottom and right (``pad = true``, Hugging Face); a grid no larger than the window takes
    a window of its size, unshifted (Liu et al.'s code; the table is then sized for that window;
    transformers 5 fails on a grid smaller than its window). q, k, v and the output are separate linear
    maps (Hugging Face's ``q_proj``, …), over every padded position. With ``q = heads · hs`` and
    ``T = B H_p W_p`` positions: parameters ``4 d q + 3 q + d`` (biases as set) ``+ (2M - 1)² heads``;
    FLOPs ``2 T (3 d q + q d)`` for the projections and
    ``4 T M² q`` for scores and values. The scores carry the bias, which SDPA's fused kernel does not
    take: they are always materialised. Bidirectional (an encoder's), no decoding; LoRA adapts ``q``,
    ``k``, ``v`` and ``o``, as in every attention kind. O(n d² + n M² d): linear in the grid."""

    name = "swin"
    role = "attention"
    attends = True  # queries meet keys (though no positional scheme acts in it: its bias is its own)
    reads_grid = True
    params = (
        Param("heads", "int", min=1, doc="number of heads"),
        Param("head_dim", "int", default=None, min=1, doc="size of each head (default: d_model / heads)"),
        Param("window", "int", default=7, min=1, doc="M: windows of M x M tokens (Swin: 7)"),
        Param(
            "shift",
            "bool",
            default=None,
            doc="shift the windows by M / 2 (default: on the odd layers of its stage, as Swin alternates)",
        ),
        Param("bias", "bool", default=True, doc="biases on the Q, K and V projections (qkv_bias)"),
        Param("out_bias", "bool", default=True, doc="bias on the output projection"),
        Param("scale", "float", default=None, gt=0.0, doc="score scale (default: 1 / sqrt(head_dim))"),
        Param("pad", "bool", default=True, doc="pad a grid the window does not tile (false: refuse it)"),
        Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the attention weights"),
        Param("out_dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the output"),
    )

    def per_layer(self, node: Node, index: int) -> Node:
        """An unset ``shift`` is decided by the layer: layers 1, 3, 5, … of a stage shift their windows
        (Hugging Face's ``SwinStage``: ``shift_size = 0 if i % 2 == 0 else window_size // 2``)."""
        if node["shift"] is not None:
            return node
        params = tuple((k, (index % 2 == 1) if k == "shift" else v) for k, v in node.params)
        return Node(node.kind, params, node.span, node.param_spans)

    def dims(self, node: Node, ctx: Ctx) -> tuple[int, int]:
        """(heads, head size)."""
        h = whole(node["heads"])
        return h, whole(node["head_dim"]) if node["head_dim"] is not None else ctx.d_model // h

    def windows(self, node: Node, ctx: Ctx) -> Windows:
        assert ctx.grid is not None
        rows, cols = ctx.grid
        m = whole(node["window"])  # traced sizes stay traced: an emitted file follows its config
        if min(rows, cols) <= m:  # one window holds the grid's short side: no shift (Liu et al.)
            m, shift = min(rows, cols), 0
        else:
            shift = m // 2 if node["shift"] else 0
        return Windows(rows, cols, m, shift, _up(rows, m), _up(cols, m))

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        errs = []
        d, h = ctx.d_model, int(node["heads"])
        if node["head_dim"] is None and d % h:
            errs.append(
                ShapeError(
                    f"d_model ({d}) is not divisible by heads ({h})",
                    help="choose heads among " + ", ".join(map(str, divisors(d))) + ", … or set head_dim",
                    param="heads",
                )
            )
        if ctx.stack == "decoder":
            errs.append(
                ShapeError(
                    "window attention is bidirectional: it has no place in a decoder",
                    help="use it in `type = encoder` (or the encoder of an encoder_decoder)",
                    code="E016",
                )
            )
        if ctx.position is not None:
            errs.append(
                ShapeError(
                    f"`swin` biases its scores by its own relative positions; the stack's "
                    f"`{ctx.position.kind}` would not act in it",
                    help="drop the stack's `position` (Swin has none), or use `mha` with it",
                    code="E016",
                )
            )
        if ctx.grid is None:
            errs.append(_no_grid(self.name))
        elif not node["pad"]:
            w = self.windows(node, ctx)
            if (w.padded_rows, w.padded_cols) != (w.rows, w.cols):
                errs.append(
                    ShapeError(
                        f"the {w.rows} x {w.cols} grid is not tiled by {w.size} x {w.size} windows",
                        help="choose a window that divides the grid, or set `pad = true` (zero padding on "
                        "the bottom and right, as Hugging Face's Swin)",
                        param="window",
                    )
                )
        return errs

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        _grid_length(self.name, ctx, ins)
        if ins[0][-1] != ctx.d_model:
            raise ShapeError(f"`swin` reads width {ctx.d_model}, but its input is {ins[0][-1]} wide")
        return ins[0]

    def lora_parts(
        self, node: Node, ctx: Ctx
    ) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
        """LoRA-targetable projections as (name, d_in, d_out): those reading the windows (q, k, v)
        and the output's (o)."""
        d = ctx.d_model
        h, hs = self.dims(node, ctx)
        return [("q", d, h * hs), ("k", d, h * hs), ("v", d, h * hs)], [("o", h * hs, d)]

    def all_parts(self, node: Node, ctx: Ctx) -> list[tuple[str, int, int]]:
        windows, out = self.lora_parts(node, ctx)
        return [*windows, *out]

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d = ctx.d_model
        h, hs = self.dims(node, ctx)
        q = h * hs
        m = self.windows(node, ctx).size if ctx.grid is not None else int(node["window"])
        biases = (3 * q if node["bias"] else 0) + (d if node["out_bias"] else 0)
        lora = ctx.lora.params(self.all_parts(node, ctx)) if ctx.lora is not None else 0
        return 4 * d * q + biases + (2 * m - 1) ** 2 * h + lora

    def trainable_params(self, node: Node, ctx: Ctx) -> int:
        if not ctx.frozen:
            return self.n_params(node, ctx)
        return ctx.lora.params(self.all_parts(node, ctx)) if ctx.lora is not None else 0

    def projection_flops(self, node: Node, ctx: Ctx, b: Any) -> Any:
        h, hs = self.dims(node, ctx)
        t = b * self.windows(node, ctx).tokens
        lora = ctx.lora.flops(self.all_parts(node, ctx), t) if ctx.lora is not None else 0
        return 2 * t * 4 * ctx.d_model * h * hs + lora

    def core_flops(self, node: Node, ctx: Ctx, b: Any) -> Any:
        """``Q Kᵀ`` and ``P V`` in every window: ``4 T M² q``."""
        w = self.windows(node, ctx)
        h, hs = self.dims(node, ctx)
        return 4 * b * w.tokens * w.size * w.size * h * hs

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        b = ins[0][0]
        return self.projection_flops(node, ctx, b) + self.core_flops(node, ctx, b)

    def flops_mask_aware(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        """Over the pairs the shifted-window mask keeps (``Windows.kept_pairs``)."""
        b = ins[0][0]
        h, hs = self.dims(node, ctx)
        return self.projection_flops(node, ctx, b) + 4 * b * h * hs * self.windows(node, ctx).kept_pairs()

    def projection_backward(self, node: Node, ctx: Ctx, b: Any, act: ActCfg) -> tuple[Any, bool]:
        """Backward FLOPs of the Q, K, V and output projections (and their LoRA updates), and whether
        the core runs on gradients (``chain_backward``)."""
        d = ctx.d_model
        h, hs = self.dims(node, ctx)
        t, q = b * self.windows(node, ctx).tokens, h * hs
        stage = [("q", t, d, q), ("k", t, d, q), ("v", t, d, q)]
        qkv, inner = chain_backward(ctx.lora, [stage], act.input_grad, act.weight_grad)
        out, _ = chain_backward(ctx.lora, [[("o", t, q, d)]], inner, act.weight_grad)
        return qkv + out, inner

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The projections as linear maps (with their LoRA updates); the core's products, both
        operands activations, 2 x once gradients flow inside. Gathering the bias is no matmul."""
        b = ins[0][0]
        proj, inner = self.projection_backward(node, ctx, b, act)
        if not inner:
            return proj
        fwd = (self.flops_mask_aware if mask_aware else self.flops)(node, ctx, ins)
        return proj + 2 * (fwd - self.projection_flops(node, ctx, b))

    def recompute_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, selective: bool
    ) -> Any:
        """Selective recomputation drops the probabilities and redoes the core (Korthikanti et al.
        2022, §4.2); there is no fused kernel to recompute anything otherwise."""
        if selective and self.projection_backward(node, ctx, ins[0][0], act)[1]:
            return self.core_flops(node, ctx, ins[0][0])
        return 0

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The windows q, k and v read (a new tensor once padded, shifted or cut side by side; the input
        itself otherwise), when their weights train; where gradients flow, q, k and v as the score and
        value products keep them (copies of the heads' views, or the views: the same bytes), the
        probabilities (softmax keeps them; with dropout also its noise and the dropped ones: the
        recomputable core); the output projection's input when its weights train; the output dropout's
        mask. The bias gather keeps only its index (a buffer), the mask and the shift nothing. LoRA
        updates keep their rank-r activations (and, with dropout, their dropped inputs); a map's input
        stays for its update's gradient too."""
        qkv = ["q", "k", "v"]
        if not (act.input_grad or act.weight_grad or lora_on(ctx, [*qkv, "o"])):
            return Saved()
        w = self.windows(node, ctx)
        b, by, d = ins[0][0], act.bytes, ctx.d_model
        h, hs = self.dims(node, ctx)
        t, q = b * w.tokens, h * hs
        core_grad = self.projection_backward(node, ctx, b, act)[1]
        internal: Any = 0
        keep_windows = act.weight_grad or lora_reads_input(ctx, qkv)
        if keep_windows and w.copies:
            internal += t * d * by  # the windows
        core: Any = 0
        if core_grad:
            scores = t * h * w.size * w.size  # probabilities: (B nW, h, M², M²)
            core = scores * by
            if node["dropout"] and act.training:
                core += 2 * scores * by  # dropout's noise and the dropped probabilities
            internal += 3 * t * q * by + core
        if act.weight_grad or lora_reads_input(ctx, ["o"]):
            internal += t * q * by  # the output projection's input
        if node["out_dropout"] and act.training and (core_grad or lora_on(ctx, ["o"])):
            internal += b * w.rows * w.cols * d * by  # dropout's mask
        internal += lora_saved(ctx, [(d, [name]) for name in qkv], t, act)  # three maps, three updates
        internal += lora_saved(ctx, [(q, ["o"])], t, act, input_grad=core_grad)
        return Saved(inputs=(keep_windows and not w.copies,), internal=internal, core=core)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²", "n·M²·d")

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        w = self.windows(node, ctx)
        h, hs = self.dims(node, ctx)
        args: dict[str, Any] = {
            "d_model": ctx.d_model,
            "n_heads": h,
            "head_dim": hs,
            "rows": w.rows,
            "cols": w.cols,
            "window": w.size,
            "shift": w.shift,
        }
        if not node["bias"]:
            args["bias"] = False
        if not node["out_bias"]:
            args["out_bias"] = False
        if node["scale"] is not None:
            args["scale"] = node["scale"]
        if node["dropout"]:
            args["dropout"] = node["dropout"]
        if node["out_dropout"]:
            args["out_dropout"] = node["out_dropout"]
        if ctx.lora is not None:
            args["lora"] = ctx.lora.ctor_arg()
        return ours(NN, "WindowAttention", **args)


def _merged(grid: tuple[int, int] | None) -> tuple[int, int] | None:
    """The grid after merging 2 x 2 neighbourhoods (an odd side padded)."""
    return None if grid is None else ((grid[0] + 1) // 2, (grid[1] + 1) // 2)


class PatchMerging(Kind):
    """Swin's patch merging (Liu et al. 2021, §3.1), a transition between stages: each 2 x 2
    neighbourhood of the grid is concatenated (4 C channels, in Hugging Face's order: (0, 0), (1, 0),
    (0, 1), (1, 1)), normalised (LayerNorm over 4 C) and mapped to the next stage's width ``C'`` by a
    linear map without bias: an ``H x W`` grid becomes ``ceil(H / 2) x ceil(W / 2)`` (an odd side is
    padded with zeros first, as Hugging Face's ``SwinPatchMerging``; ``pad = false`` refuses it).
    Parameters ``8 C + 4 C C'`` (``+ C'`` with ``bias``); FLOPs ``2 B H' W' 4 C C'``."""

    name = "patch_merging"
    role = "transition"
    reads_grid = True
    params = (
        Param("eps", "float", default=1e-5, gt=0.0, doc="eps of the LayerNorm over the merged 4 C channels"),
        Param("bias", "bool", default=False, doc="a bias on the reduction (Swin: none)"),
        Param("pad", "bool", default=True, doc="pad a grid with an odd side (false: refuse it)"),
    )

    def out_grid(self, node: Node, ctx: Ctx) -> tuple[int, int] | None:
        return _merged(ctx.grid)

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        if ctx.grid is None:
            return [_no_grid(self.name)]
        rows, cols = ctx.grid
        if not node["pad"] and (rows % 2 or cols % 2):
            return [
                ShapeError(
                    f"patch merging halves the grid, but it is {rows} x {cols}",
                    help="set `pad = true` (an odd side gets a row or column of zeros, as Hugging Face's "
                    "Swin), or choose an image that halves evenly",
                    param="pad",
                )
            ]
        return []

    def _sizes(self, ctx: Ctx) -> tuple[int, int, int]:
        """(merged positions per image, the width read, the width written)."""
        rows, cols = _merged(ctx.grid) or (0, 0)
        return rows * cols, ctx.d_in or ctx.d_model, ctx.d_model

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        _grid_length(self.name, ctx, ins)
        n, c_in, c_out = self._sizes(ctx)
        if ins[0][-1] != c_in:
            raise ShapeError(f"`patch_merging` reads width {c_in}, but its input is {ins[0][-1]} wide")
        return (ins[0][0], n, c_out)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        _, c_in, c_out = self._sizes(ctx)
        return 8 * c_in + 4 * c_in * c_out + (c_out if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        n, c_in, c_out = self._sizes(ctx)
        return 2 * ins[0][0] * n * 4 * c_in * c_out

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The reduction, a linear map whose input (the norm's output) needs a gradient when the
        merging's input does or the norm's gains train."""
        n, c_in, c_out = self._sizes(ctx)
        grad = act.input_grad or act.weight_grad
        return chain_backward(None, [[("reduction", ins[0][0] * n, 4 * c_in, c_out)]], grad, act.weight_grad)[
            0
        ]

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The merged tensor (the norm's input, a new one: the concatenation), the norm's mean and
        reciprocal deviation per position (fp32), and the norm's output (the reduction's input) when
        the reduction's weights train."""
        if not (act.input_grad or act.weight_grad):
            return Saved()
        n, c_in, _ = self._sizes(ctx)
        b, by = ins[0][0], act.bytes
        merged = b * n * 4 * c_in * by
        return Saved(internal=merged + 2 * b * n * 4 + (merged if act.weight_grad else 0))

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        assert ctx.grid is not None
        rows, cols = ctx.grid
        _, c_in, c_out = self._sizes(ctx)
        args: dict[str, Any] = {"rows": rows, "cols": cols, "d_in": c_in, "d_out": c_out, "eps": node["eps"]}
        if node["bias"]:
            args["bias"] = True
        return ours(NN, "PatchMerging", **args)


STEM_ACTIVATIONS = ("none", "hardswish", "relu", "gelu", "silu")
KEEPS_INPUT = ("hardswish", "gelu", "silu")  # their backward reads their input (ReLU's its output)


@dataclass(frozen=True)
class StemLayer:
    """One convolution of a stem: channels in and out, and the grid side before and after."""

    c_in: int
    c_out: int
    side_in: int
    side_out: int


class ConvStem(Kind):
    """A convolutional stem that makes the token grid from an image: ``layers`` convolutions of
    ``kernel x kernel``, ``stride`` and ``padding``, each followed by a norm (BatchNorm over channels, or
    LayerNorm over each position's channels), an activation between them (not after the last). The last
    gives ``d_model`` channels and each one before ``1 / growth`` of the next's. LeViT's stem (Graham et
    al. 2021, §4.1; Hugging Face's ``LevitPatchEmbeddings``) is ``conv_stem(layers = 4, kernel = 3,
    stride = 2, padding = 1, norm = batchnorm, activation = hardswish)``, d / 8 -> d / 4 -> d / 2 -> d;
    CvT's convolutional token embedding (Wu et al. 2021, §3.1; ``CvtEmbeddings``) is ``conv_stem(kernel
    = 7, stride = 4, padding = 2, norm = layernorm)``. The output tokens lie on the grid the last
    convolution gives (``side' = (side + 2 p - k) // s + 1`` each), row-major. Parameters ``sum c_in k²
    c_out`` (+ ``c_out`` biases, + ``2 c_out`` for each norm); FLOPs ``2 B
    side'² c_out c_in k²`` per convolution (FlopCounterMode's count: every output position and tap)."""

    name = "conv_stem"
    role = "embedding"
    params = (
        Param("image", "int", min=1, doc="image height and width in pixels"),
        Param("channels", "int", default=3, min=1),
        Param("layers", "int", default=1, min=1, max=16, doc="how many convolutions (LeViT: 4, CvT: 1)"),
        Param("kernel", "int", default=3, min=1, doc="kernel height and width"),
        Param("stride", "int", default=2, min=1),
        Param("padding", "int", default=None, min=0, doc="zero padding on each side (default: kernel // 2)"),
        Param("growth", "int", default=2, min=1, doc="each convolution's width times this is the next's"),
        Param(
            "norm",
            "enum",
            default="batchnorm",
            choices=("batchnorm", "layernorm", "none"),
            doc="after each convolution (LeViT: batchnorm, CvT: layernorm)",
        ),
        Param("activation", "enum", default="none", choices=STEM_ACTIVATIONS, doc="between the convolutions"),
        Param("bias", "bool", default=None, doc="biases on the convolutions (default: without batchnorm)"),
    )

    def resolve(self, params: dict[str, Value]) -> dict[str, Value]:
        if params.get("padding") is None:
            params["padding"] = whole(params["kernel"]) // 2
        if params.get("bias") is None:
            params["bias"] = params["norm"] != "batchnorm"
        return params

    def sides(self, node: Node) -> list[int]:
        """The grid's side before the first convolution (the image) and after each (below 1 where the
        image is too small for them)."""
        k, s, p = whole(node["kernel"]), whole(node["stride"]), whole(node["padding"])
        out = [whole(node["image"])]
        for _ in range(int(node["layers"])):
            out.append((out[-1] + 2 * p - k) // s + 1)
        return out

    def stem(self, node: Node, d_model: int) -> list[StemLayer]:
        """The convolutions, in order: the last gives d_model channels, each before 1 / growth of the
        next's."""
        n, g, sides = int(node["layers"]), whole(node["growth"]), self.sides(node)
        widths = [whole(node["channels"]), *(d_model // g ** (n - 1 - i) for i in range(n))]
        return [StemLayer(widths[i], widths[i + 1], sides[i], sides[i + 1]) for i in range(n)]

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        n, g = int(node["layers"]), int(node["growth"])
        if ctx.d_model % g ** (n - 1):
            return [
                ShapeError(
                    f"d_model ({ctx.d_model}) is not divisible by growth ** (layers - 1) ({g} ** {n - 1})",
                    help=f"the first of {n} convolutions is d_model / {g} ** {n - 1} wide: choose d_model, "
                    "growth or layers so that it divides",
                    param="growth" if any(k == "growth" for k, _ in node.param_spans) else "layers",
                )
            ]
        k, p = int(node["kernel"]), int(node["padding"])
        sides = self.sides(node)
        for i in range(n):
            if sides[i + 1] < 1:
                return [
                    ShapeError(
                        f"convolution {i + 1} of the stem reads a {sides[i]} x {sides[i]} grid, smaller than "
                        f"its {k} x {k} kernel (padding {p})",
                        help="use fewer layers, a smaller kernel, more padding or a larger image",
                        param="image",
                    )
                ]
        return []

    def input_shape(self, node: Node, ctx: Ctx, seq: str) -> Shape:
        return ("B", node["channels"], node["image"], node["image"])

    def out_grid(self, node: Node, ctx: Ctx) -> tuple[int, int] | None:
        side = self.sides(node)[-1]
        return side, side

    def fixed_length(self, node: Node) -> tuple[int, str] | None:
        img, side, n = int(node["image"]), self.sides(node)[-1], int(node["layers"])
        convs = f"{n} convolution{'s' if n > 1 else ''}"
        return (
            side * side,
            f"the {img} x {img} image gives {side * side} positions (a {side} x {side} grid after {convs})",
        )

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        side = self.sides(node)[-1]
        return (ins[0][0], side * side, ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        per_conv = int(bool(node["bias"])) + (0 if node["norm"] == "none" else 2)
        k2 = int(node["kernel"]) ** 2
        return sum(c.c_in * c.c_out * k2 + c.c_out * per_conv for c in self.stem(node, ctx.d_model))

    def conv_flops(self, node: Node, ctx: Ctx, b: Any) -> list[Any]:
        k2 = int(node["kernel"]) ** 2
        return [2 * b * c.side_out**2 * c.c_out * c.c_in * k2 for c in self.stem(node, ctx.d_model)]

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return sum(self.conv_flops(node, ctx, ins[0][0]))

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """Each convolution's forward again for its input's gradient (not the pixels') and for its
        weight's, when they train; past the first trainable weight every input needs one."""
        total: Any = 0
        grad = act.input_grad
        for f in self.conv_flops(node, ctx, ins[0][0]):
            total += f * (int(grad) + int(act.weight_grad))
            grad = grad or act.weight_grad
        return total

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Each convolution keeps its input (the first, the pixels; a convolution keeps it whichever
        gradient it needs); the norm its input and statistics (BatchNorm per channel, LayerNorm per
        position; fp32); an activation between its input, the norm's output (ReLU its output, the next
        convolution's input, kept anyway)."""
        if not (act.input_grad or act.weight_grad):
            return Saved()
        b, by = ins[0][0], act.bytes
        norm, activation = str(node["norm"]), str(node["activation"])
        layers = self.stem(node, ctx.d_model)
        internal: Any = 0
        for i, c in enumerate(layers):
            e = b * c.c_out * c.side_out**2 * by  # a tensor of this convolution's output's size
            if norm == "batchnorm":
                internal += e + 2 * c.c_out * 4
            elif norm == "layernorm":
                internal += e + 2 * b * c.side_out**2 * 4
            if i < len(layers) - 1:
                internal += e  # the next convolution's input
                if activation in KEEPS_INPUT:
                    internal += e  # the activation's input
        return Saved(inputs=(True,), internal=internal)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d²",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        layers = self.stem(node, ctx.d_model)
        return ours(
            NN,
            "ConvStem",
            widths=[node["channels"], *(c.c_out for c in layers)],
            kernel=node["kernel"],
            stride=node["stride"],
            padding=node["padding"],
            norm=node["norm"],
            activation=node["activation"],
            bias=node["bias"],
        )


KINDS: tuple[Kind, ...] = (WindowAttention(), PatchMerging(), ConvStem())
