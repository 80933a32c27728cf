"""Input embeddings (tokens, image patches) and output heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError, chain_backward, prod
from archdsl.kinds.ffn import tokens
from archdsl.lower.ctor import Ctor, ours, torch_nn
from archdsl.trace import whole

#: the training loss's setting on every head that gives logits
LABEL_SMOOTHING = Param(
    "label_smoothing",
    "float",
    default=0.0,
    min=0.0,
    lt=1.0,
    doc="the training loss's label smoothing (Szegedy et al. 2016; 0.1 in Vaswani et al. 2017)",
)

NN = "archdsl.kinds.embed_nn"


def _needs_vocab(kind: str, ctx: Ctx) -> list[ShapeError]:
    if ctx.vocab < 1:
        return [
            ShapeError(
                f"`{kind}` needs the model's `vocab`", help="add `vocab = …` to the model", code="E007"
            )
        ]
    return []


class TokenEmbedding(Kind):
    """A ``vocab x d`` lookup table, optionally scaled by sqrt(d) (Vaswani et al. 2017 §3.4; Gemma) and
    with ``types`` token-type rows added (BERT's segment embeddings; the model reads type 0). A lookup is
    not a matmul, so it adds no FLOPs (FlopCounterMode agrees; Hoffmann et al. 2022 App. F counts it as
    one, which is why their totals run higher).

    With ``width = E`` (not d_model) the table (and the type rows) is ``vocab x E`` and a linear map
    ``E -> d`` (``project_in``; with ``project_bias`` a bias) joins it to the stack: right after the
    lookup (``project = early``: OPT-350m, positions added at d), or after the stack's positions and
    embedding norm, which then act at E (``project = late``: ALBERT's factorised embedding, Lan et al.
    2020 §3.1), or nowhere (``project = none``: the input stays E wide, the memory a stack's latent
    array cross-attends to — Perceiver, Jaegle et al. 2021). Heads decode at E: ``lm_head`` maps
    d -> E first (OPT's ``project_out``), ``mlm_head`` transforms d -> E. Parameters
    ``(vocab + types) E + E d (+ d)``; FLOPs ``2 N E d``."""

    name = "token_embedding"
    role = "embedding"
    token_table = True
    params = (
        Param("scale", "bool", default=False, doc="multiply by sqrt(d_model)"),
        Param("types", "int", default=0, min=0, doc="token-type (segment) embeddings, as BERT's"),
        Param(
            "width",
            "int",
            default=None,
            min=1,
            doc="the table's width when it is not d_model: a projection to d_model follows "
            "(OPT-350m: 512, ALBERT: 128)",
        ),
        Param(
            "project",
            "enum",
            default="early",
            choices=("early", "late", "none"),
            doc="where the projection to d_model sits: after the lookup (OPT), or after the stack's "
            "positions and embedding norm, which then act at `width` (ALBERT); or nowhere: the "
            "input stays `width` wide, the memory a stack's latents read (Perceiver)",
        ),
        Param("project_bias", "bool", default=False, doc="a bias on the projection (ALBERT: true)"),
    )

    def width(self, node: Node, ctx: Ctx) -> int | None:
        """The table's width where it differs from d_model."""
        w = node["width"]
        return None if w is None or w == ctx.d_model else int(w)

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        errs = _needs_vocab(self.name, ctx)
        if self.width(node, ctx) is None:
            for name, value in (("project", "late"), ("project", "none"), ("project_bias", True)):
                if node[name] == value:
                    v = "true" if value is True else value
                    errs.append(
                        ShapeError(
                            f"`{name} = {v}` but the table is d_model wide: there is no projection",
                            help=f"set `width` to the table's width, or drop `{name}`",
                            param=name,
                            code="E009",
                        )
                    )
        return errs

    def early(self, node: Node, ctx: Ctx) -> int | None:
        """The table's width when the projection follows the lookup (inside this module)."""
        w = self.width(node, ctx)
        return w if w is not None and node["project"] == "early" else None

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        w = self.width(node, ctx)
        return (*ins[0], w if w is not None and node["project"] != "early" else ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        w = self.width(node, ctx)
        table = (ctx.vocab + int(node["types"])) * (w or ctx.d_model)
        e = self.early(node, ctx)
        return table + (e * ctx.d_model + (ctx.d_model if node["project_bias"] else 0) if e else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        e = self.early(node, ctx)
        return 2 * prod(ins[0]) * e * ctx.d_model if e else 0  # ins[0]: the ids (B, T)

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """The projection's weight gradient and, for the table's, its input gradient: both when the
        weights train, none otherwise (token ids need no gradient)."""
        return 2 * self.flops(node, ctx, ins) if act.weight_grad else 0

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The token ids (int64); scaling by sqrt(d) keeps the scale (a 0-d tensor); the projection
        keeps its input (the looked-up rows)."""
        if not act.weight_grad:
            return Saved()
        e = self.early(node, ctx)
        proj = prod(ins[0]) * e * act.bytes if e else 0
        return Saved(inputs=(True,), internal=(act.bytes if node["scale"] else 0) + proj)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        w = self.width(node, ctx)
        if not node["scale"] and not node["types"] and w is None:
            return torch_nn("Embedding", ctx.vocab, ctx.d_model)
        args: dict[str, Any] = {
            "vocab": ctx.vocab,
            "d_model": ctx.d_model,
            "scale": node["scale"],
            "types": node["types"],
        }
        if w is not None:
            args["width"] = w
            if node["project"] == "early":
                args["project_in"] = torch_nn("Linear", w, ctx.d_model, bias=node["project_bias"])
        return ours(NN, "TokenEmbedding", **args)


class EmbeddingProjection(Kind):
    """The token embedding's late projection (``token_embedding(width = E, project = late)``): the
    stack's ``proj_emb``, ``E -> d`` after its positions and embedding norm (ALBERT's
    ``embedding_hidden_mapping_in``). Costed on its own; not a kind a spec names."""

    name = "token_embedding"
    role = "embedding"

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (*ins[0][:-1], ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        w = int(node["width"])
        return w * ctx.d_model + (ctx.d_model if node["project_bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return 2 * tokens(ins[0]) * int(node["width"]) * ctx.d_model

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Its input, for the weights' gradient."""
        return Saved(inputs=(act.weight_grad,))

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return torch_nn("Linear", int(node["width"]), ctx.d_model, bias=node["project_bias"])


EMBEDDING_PROJECTION = EmbeddingProjection()


class PatchEmbedding(Kind):
    """ViT's image input (Dosovitskiy et al. 2021): non-overlapping ``patch x patch`` patches, each
    projected to d by a strided convolution (CLIP's has no bias), with an optional learned class token
    in front.

    Input (B, channels, image, image) -> (B, (image/patch)^2 [+1], d). Parameters ``channels p^2 d``
    (+ d for the bias, + d for the class token); FLOPs ``2 B N channels p^2 d`` for N patches (one
    matmul per patch).
    """

    name = "patch_embedding"
    role = "embedding"
    params = (
        Param("image", "int", min=1, doc="image height and width in pixels"),
        Param("patch", "int", min=1, doc="patch height and width; must divide image"),
        Param("channels", "int", default=3, min=1),
        Param("cls_token", "bool", default=True, doc="prepend a learned class token"),
        Param("bias", "bool", default=True, doc="a bias on the patch projection (CLIP: none)"),
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        img, p = int(node["image"]), int(node["patch"])
        if img % p:
            return [
                ShapeError(
                    f"image ({img}) is not divisible by patch ({p})",
                    help="choose a patch size that tiles the image",
                    param="patch",
                )
            ]
        return []

    def n_patches(self, node: Node) -> int:
        return (int(node["image"]) // int(node["patch"])) ** 2

    def input_shape(self, node: Node, ctx: Ctx, seq: str) -> Shape:
        return ("B", node["channels"], node["image"], node["image"])

    def out_grid(self, node: Node, ctx: Ctx) -> tuple[int, int] | None:
        """The patches' grid, when no class token stands outside it."""
        side = whole(node["image"]) // whole(node["patch"])  # traced sizes stay traced (archdsl.trace)
        return None if node["cls_token"] else (side, side)

    def fixed_length(self, node: Node) -> tuple[int, str] | None:
        img, p, n = int(node["image"]), int(node["patch"]), self.n_patches(node)
        cls = " and the class token" if node["cls_token"] else ""
        length = n + (1 if node["cls_token"] else 0)
        return length, f"the {img} x {img} image gives {length} positions ({n} patches of {p} x {p}{cls})"

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (ins[0][0], self.n_patches(node) + (1 if node["cls_token"] else 0), ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        c, p, d = int(node["channels"]), int(node["patch"]), ctx.d_model
        return c * p * p * d + (d if node["bias"] else 0) + (d if node["cls_token"] else 0)

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The convolution keeps the pixels."""
        return Saved(inputs=(True,))

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        c, p = int(node["channels"]), int(node["patch"])
        return 2 * ins[0][0] * self.n_patches(node) * c * p * p * ctx.d_model

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        args: dict[str, Any] = {}
        if not node["bias"]:
            args["bias"] = False
        return ours(
            NN,
            "PatchEmbedding",
            channels=node["channels"],
            patch=node["patch"],
            d_model=ctx.d_model,
            cls_token=node["cls_token"],
            **args,
        )


class LMHead(Kind):
    """Projection to vocabulary logits, ``d x vocab``; ``tied`` reuses the token embedding's matrix
    (Press & Wolf 2017), so it adds no parameters. Forward FLOPs ``2 N d V`` for N positions. When the
    token table is ``E`` wide (``token_embedding(width = E)``) it decodes at E: a ``d -> E`` map
    first (OPT's ``project_out``, no bias), ``d E`` parameters and ``2 N d E`` FLOPs more."""

    name = "lm_head"
    role = "head"
    params = (
        Param("tied", "bool", default=True, doc="share the token embedding matrix"),
        Param("bias", "bool", default=False),
        Param(
            "softcap", "float", default=0.0, min=0.0, doc="cap logits at c * tanh(x / c) (Gemma 2); 0 is off"
        ),
        Param("rescale", "bool", default=False, doc="multiply by d^-0.5 first (T5 with tied embeddings)"),
        LABEL_SMOOTHING,
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        return _needs_vocab(self.name, ctx)

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (*ins[0][:-1], ctx.vocab)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        e = ctx.width or ctx.d_model
        proj = ctx.d_model * e if ctx.width else 0
        return proj + (0 if node["tied"] else ctx.vocab * e) + (ctx.vocab if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        e = ctx.width or ctx.d_model
        proj = 2 * tokens(ins[0]) * ctx.d_model * e if ctx.width else 0
        return proj + 2 * tokens(ins[0]) * e * ctx.vocab

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """As two linear maps in a row when it decodes at the table's width (``chain_backward``)."""
        if not ctx.width:
            return super().backward_flops(node, ctx, ins, act, mask_aware)
        n, e = tokens(ins[0]), ctx.width
        stages = [[("project_out", n, ctx.d_model, e)], [("lm_head", n, e, ctx.vocab)]]
        return chain_backward(None, stages, act.input_grad, act.weight_grad)[0]

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The projection keeps its input (a rescaled copy with ``rescale``); soft-capping keeps the
        capped logits (tanh keeps its output). At the table's width the d -> E map keeps the input and
        the vocabulary projection its output (or the rescaled copy of it)."""
        n = tokens(ins[0])
        keep = act.weight_grad
        capped = n * ctx.vocab * act.bytes if node["softcap"] else 0
        if ctx.width:
            return Saved(inputs=(keep,), internal=(n * ctx.width * act.bytes if keep else 0) + capped)
        internal = (n * ctx.d_model * act.bytes if node["rescale"] and keep else 0) + capped
        return Saved(inputs=(keep and not node["rescale"],), internal=internal)

    def shares_embedding(self, node: Node) -> bool:
        return bool(node["tied"])

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d·V",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        e = ctx.width or ctx.d_model
        if node["softcap"] or node["rescale"] or ctx.width:
            args: dict[str, Any] = {
                "d_in": e,
                "d_out": ctx.vocab,
                "bias": node["bias"],
                "cap": node["softcap"],
                "scale": ctx.d_model**-0.5 if node["rescale"] else 1.0,
            }
            if ctx.width:
                args["project_out"] = torch_nn("Linear", ctx.d_model, e, bias=False)
            return ours(NN, "OutputLinear", **args)
        return torch_nn("Linear", ctx.d_model, ctx.vocab, bias=node["bias"])


class Classifier(Kind):
    """Sequence classification: pool the sequence (the class token at position 0, or the mean over
    positions), then a linear map to ``classes`` logits: ``d classes (+ classes)`` parameters, FLOPs
    ``2 B d classes``. (B, T, d) -> (B, classes)."""

    name = "classifier"
    role = "head"
    params = (
        Param("classes", "int", min=1, doc="number of classes"),
        Param("pool", "enum", default="cls", choices=("cls", "mean")),
        Param("bias", "bool", default=True),
        LABEL_SMOOTHING,
    )

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (ins[0][0], node["classes"])

    def n_params(self, node: Node, ctx: Ctx) -> int:
        c = int(node["classes"])
        return ctx.d_model * c + (c if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return 2 * ins[0][0] * ctx.d_model * node["classes"]

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Class-token pooling hands the projection a view of the whole input (kept whole); mean
        pooling a new (B, d) tensor. A frozen projection (LoRA, adapters) keeps neither."""
        if not act.weight_grad:
            return Saved()
        if node["pool"] == "cls":
            return Saved(inputs=(True,))
        return Saved(internal=ins[0][0] * ctx.d_model * act.bytes)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "Classifier",
            d_model=ctx.d_model,
            classes=node["classes"],
            pool=node["pool"],
            bias=node["bias"],
        )


class Pooler(Kind):
    """BERT's pooler (Devlin et al. 2019): ``tanh(W h_0 + b)`` on the first position, (B, T, d) ->
    (B, d): ``d^2 + d`` parameters, ``2 B d^2`` FLOPs."""

    name = "pooler"
    role = "head"
    params = ()

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (ins[0][0], ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return ctx.d_model * ctx.d_model + ctx.d_model

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return 2 * ins[0][0] * ctx.d_model * ctx.d_model

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The dense map reads a view of the whole input (kept when its weights train); tanh keeps its
        output."""
        return Saved(inputs=(act.weight_grad,), internal=ins[0][0] * ctx.d_model * act.bytes)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "Pooler", d_model=ctx.d_model)


class MLMHead(Kind):
    """BERT's masked-LM head: a ``d x d`` transform, GELU, LayerNorm, then the vocabulary projection
    (tied to the token embedding by default) with its own bias. Parameters ``d^2 + 3d + V`` (+ ``V d``
    untied); FLOPs ``2 N d^2 + 2 N d V``. When the token table is ``E`` wide (ALBERT) the transform
    maps d -> E and the rest works at E: ``d E + 3E + V`` (+ ``V E``), ``2 N d E + 2 N E V``."""

    name = "mlm_head"
    role = "head"
    params = (
        Param("tied", "bool", default=True, doc="share the token embedding matrix"),
        Param("eps", "float", default=1e-12, gt=0.0, doc="the transform's LayerNorm eps"),
        Param("tanh", "bool", default=False, doc="GELU's tanh approximation (ALBERT's gelu_new)"),
        LABEL_SMOOTHING,
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        return _needs_vocab(self.name, ctx)

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (*ins[0][:-1], ctx.vocab)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, e, v = ctx.d_model, ctx.width or ctx.d_model, ctx.vocab
        return d * e + 3 * e + v + (0 if node["tied"] else v * e)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        n, d, e = tokens(ins[0]), ctx.d_model, ctx.width or ctx.d_model
        return 2 * n * d * e + 2 * n * e * ctx.vocab

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Its input, the transform's output (GELU's input), GELU's output (the norm's input), the
        norm's statistics and output (the projection's input); a frozen head (LoRA, adapters) keeps
        neither its input nor the norm's output, which only the weights' gradients read."""
        n, e = tokens(ins[0]), ctx.width or ctx.d_model
        kept = 3 if act.weight_grad else 2
        return Saved(inputs=(act.weight_grad,), internal=kept * n * e * act.bytes + 2 * n * 4)

    def shares_embedding(self, node: Node) -> bool:
        return bool(node["tied"])

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        args: dict[str, Any] = {"d_model": ctx.d_model, "vocab": ctx.vocab, "eps": node["eps"]}
        if ctx.width:
            args["width"] = ctx.width
        if node["tanh"]:
            args["tanh"] = True
        return ours(NN, "MLMHead", **args)


KINDS = (TokenEmbedding(), PatchEmbedding(), LMHead(), Classifier(), Pooler(), MLMHead())
