"""Input embeddings (tokens, image patches) and output heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError
from archdsl.kinds.ffn import tokens
from archdsl.lower.ctor import Ctor, ours, torch_nn

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
    one, which is why their totals run higher)."""

    name = "token_embedding"
    role = "embedding"
    token_table = True
    params = (
        Param("scale", "bool", default=False, doc="multiply by sqrt(d_model)"),
        Param("types", "int", default=0, min=0, doc="token-type (segment) embeddings, as BERT's"),
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        return _needs_vocab(self.name, ctx)

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (*ins[0], ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return (ctx.vocab + int(node["types"])) * ctx.d_model

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The token ids (int64); scaling by sqrt(d) keeps the scale (a 0-d tensor)."""
        if not act.weight_grad:
            return Saved()
        return Saved(inputs=(True,), internal=act.bytes if node["scale"] else 0)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        if not node["scale"] and not node["types"]:
            return torch_nn("Embedding", ctx.vocab, ctx.d_model)
        return ours(
            NN,
            "TokenEmbedding",
            vocab=ctx.vocab,
            d_model=ctx.d_model,
            scale=node["scale"],
            types=node["types"],
        )


class PatchEmbedding(Kind):
    """ViT's image input (Dosovitskiy et al. 2021): non-overlapping ``patch x patch`` patches, each
    projected to d by a strided convolution, with an optional learned class token in front.

    Input (B, channels, image, image) -> (B, (image/patch)^2 [+1], d). Parameters ``channels p^2 d + d``
    (+ d for the class token); FLOPs ``2 B N channels p^2 d`` for N patches (one matmul per patch).
    """

    name = "patch_embedding"
    role = "embedding"
    params = (
        Param("image", "int", min=1, doc="image height and width in pixels"),
        Param("patch", "int", min=1, doc="patch height and width; must divide image"),
        Param("channels", "int", default=3, min=1),
        Param("cls_token", "bool", default=True, doc="prepend a learned class token"),
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

    def fixed_length(self, node: Node) -> tuple[int, str] | None:
        img, p, n = int(node["image"]), int(node["patch"]), self.n_patches(node)
        cls = " and the class token" if node["cls_token"] else ""
        length = n + (1 if node["cls_token"] else 0)
        return length, f"the {img} x {img} image gives {length} positions ({n} patches of {p} x {p}{cls})"

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (ins[0][0], self.n_patches(node) + (1 if node["cls_token"] else 0), ctx.d_model)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        c, p, d = int(node["channels"]), int(node["patch"]), ctx.d_model
        return c * p * p * d + d + (d if node["cls_token"] else 0)

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The convolution keeps the pixels."""
        return Saved(inputs=(True,))

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        c, p = int(node["channels"]), int(node["patch"])
        return 2 * ins[0][0] * self.n_patches(node) * c * p * p * ctx.d_model

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(
            NN,
            "PatchEmbedding",
            channels=node["channels"],
            patch=node["patch"],
            d_model=ctx.d_model,
            cls_token=node["cls_token"],
        )


class LMHead(Kind):
    """Projection to vocabulary logits, ``d x vocab``; ``tied`` reuses the token embedding's matrix
    (Press & Wolf 2017), so it adds no parameters. Forward FLOPs ``2 N d V`` for N positions."""

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
        return (0 if node["tied"] else ctx.vocab * ctx.d_model) + (ctx.vocab if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return 2 * tokens(ins[0]) * ctx.d_model * ctx.vocab

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """The projection keeps its input (a rescaled copy with ``rescale``); soft-capping keeps the
        capped logits (tanh keeps its output)."""
        n = tokens(ins[0])
        keep = act.weight_grad
        internal = (n * ctx.d_model * act.bytes if node["rescale"] and keep else 0) + (
            n * ctx.vocab * act.bytes if node["softcap"] else 0
        )
        return Saved(inputs=(keep and not node["rescale"],), internal=internal)

    def shares_embedding(self, node: Node) -> bool:
        return bool(node["tied"])

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("n·d·V",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        if node["softcap"] or node["rescale"]:
            return ours(
                NN,
                "OutputLinear",
                d_in=ctx.d_model,
                d_out=ctx.vocab,
                bias=node["bias"],
                cap=node["softcap"],
                scale=ctx.d_model**-0.5 if node["rescale"] else 1.0,
            )
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
        pooling a new (B, d) tensor."""
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
        """The dense map reads a view of the whole input; tanh keeps its output."""
        return Saved(inputs=(True,), internal=ins[0][0] * ctx.d_model * act.bytes)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "Pooler", d_model=ctx.d_model)


class MLMHead(Kind):
    """BERT's masked-LM head: a ``d x d`` transform, GELU, LayerNorm, then the vocabulary projection
    (tied to the token embedding by default) with its own bias. Parameters ``d^2 + 3d + V`` (+ ``V d``
    untied); FLOPs ``2 N d^2 + 2 N d V``."""

    name = "mlm_head"
    role = "head"
    params = (
        Param("tied", "bool", default=True, doc="share the token embedding matrix"),
        Param("eps", "float", default=1e-12, gt=0.0, doc="the transform's LayerNorm eps"),
        LABEL_SMOOTHING,
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        return _needs_vocab(self.name, ctx)

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (*ins[0][:-1], ctx.vocab)

    def n_params(self, node: Node, ctx: Ctx) -> int:
        d, v = ctx.d_model, ctx.vocab
        return d * d + 3 * d + v + (0 if node["tied"] else v * d)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        n, d = tokens(ins[0]), ctx.d_model
        return 2 * n * d * d + 2 * n * d * ctx.vocab

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """Its input, the transform's output (GELU's input), GELU's output (the norm's input), the
        norm's statistics and output (the projection's input)."""
        n, d = tokens(ins[0]), ctx.d_model
        return Saved(inputs=(True,), internal=3 * n * d * act.bytes + 2 * n * 4)

    def shares_embedding(self, node: Node) -> bool:
        return bool(node["tied"])

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "MLMHead", d_model=ctx.d_model, vocab=ctx.vocab, eps=node["eps"])


KINDS = (TokenEmbedding(), PatchEmbedding(), LMHead(), Classifier(), Pooler(), MLMHead())
