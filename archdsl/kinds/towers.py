"""Heads of towers models (``type = towers``): a tower's pooled projection into the embedding space
the towers share, and the model's head that combines the towers' embeddings (CLIP's contrastive
logits; Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archdsl.ir import Node
from archdsl.kinds.base import ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError
from archdsl.lower.ctor import Ctor, ours

NN = "archdsl.kinds.towers_nn"

#: how a projection head pools a tower's sequence to one vector
POOLS = ("cls", "mean", "eos", "argmax")


class Projection(Kind):
    """A tower's head: pool the tower's sequence to one vector, then a linear map ``d -> width`` into
    the embedding space the towers share (CLIP's ``visual_projection`` and ``text_projection``,
    without a bias). Pooling: the class token (``cls``, position 0: CLIP's vision tower, after its
    ``post_layernorm``, the tower's final norm), the mean over real tokens (``mean``), the first
    position that holds ``eos_id`` (``eos``: CLIP's text tower, at its end-of-text token), or the
    position of the largest token id (``argmax``: the original CLIP, whose end-of-text token is the
    vocabulary's last — Hugging Face's ``CLIPTextModel`` when ``eos_token_id == 2``). Parameters
    ``d width (+ width)``; FLOPs ``2 B d width``. (B, T, d) -> (B, width)."""

    name = "projection"
    role = "head"
    params = (
        Param(
            "width",
            "int",
            default=None,
            min=1,
            doc="the shared embedding width (default: the towers model's d_model)",
        ),
        Param("pool", "enum", default="cls", choices=POOLS, doc="how the sequence becomes one vector"),
        Param("eos_id", "int", default=None, min=0, doc="`pool = eos` only: the end-of-sequence token's id"),
        Param("bias", "bool", default=False, doc="a bias on the projection (CLIP: none)"),
    )

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        errs = []
        if node["width"] is None:
            errs.append(
                ShapeError(
                    "`projection` needs the shared embedding `width`",
                    help="set `width = …`, or the towers model's `d_model`",
                    code="E007",
                )
            )
        pool, eos = node["pool"], node["eos_id"]
        if pool == "eos" and eos is None:
            errs.append(
                ShapeError(
                    "`pool = eos` needs the end-of-sequence token's `eos_id`",
                    help="e.g. eos_id = 49407 (CLIP's end-of-text token)",
                    param="pool",
                    code="E007",
                )
            )
        if eos is not None and pool != "eos":
            errs.append(
                ShapeError(
                    f"`eos_id` is read only with `pool = eos`, not `pool = {pool}`",
                    help="drop `eos_id`, or set `pool = eos`",
                    param="eos_id",
                    code="E009",
                )
            )
        if pool in ("eos", "argmax") and ctx.vocab < 1:
            errs.append(
                ShapeError(
                    f"`pool = {pool}` reads token ids, but the tower has no `vocab`",
                    help="pool an image tower's class token (`pool = cls`) or its mean",
                    param="pool",
                    code="E016",
                )
            )
        if eos is not None and ctx.vocab and int(eos) >= ctx.vocab:
            errs.append(
                ShapeError(
                    f"`eos_id` ({eos}) is not a token id: the vocabulary has {ctx.vocab}",
                    help=f"choose an id below {ctx.vocab}",
                    param="eos_id",
                    code="E009",
                )
            )
        return errs

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        return (ins[0][0], node["width"])

    def n_params(self, node: Node, ctx: Ctx) -> int:
        e = int(node["width"])
        return ctx.d_model * e + (e if node["bias"] else 0)

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return 2 * ins[0][0] * ctx.d_model * node["width"]

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """What the projection's weight gradient reads: the class token, a view of the whole input
        (kept whole), or the pooled (B, d) tensor mean pooling and gathering make; gathering at one
        position per row (``eos``, ``argmax``) also keeps its two index vectors (int64) for the input's
        gradient."""
        b, d, by = ins[0][0], ctx.d_model, act.bytes
        pool = node["pool"]
        if pool == "cls":
            return Saved(inputs=(act.weight_grad,))
        pooled = b * d * by if act.weight_grad else 0
        indices = 2 * b * 8 if pool != "mean" and act.input_grad else 0
        return Saved(internal=pooled + indices)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("d·e",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        args: dict[str, Any] = {"d_model": ctx.d_model, "width": node["width"], "pool": node["pool"]}
        if node["pool"] == "eos":
            args["eos_id"] = node["eos_id"]
        if node["bias"]:
            args["bias"] = True
        return ours(NN, "Projection", **args)


class Contrastive(Kind):
    """CLIP's contrastive head (Radford et al. 2021, §2.3, Fig. 3): the two towers' embeddings
    L2-normalised (a norm below 1e-12 counts as 1e-12: a zero embedding stays zero), their cosine
    similarities scaled by a learned temperature, ``logits = exp(t) â b̂ᵀ`` — (B_a, e) and (B_b, e)
    -> (B_a, B_b), logits_per_image with the first tower's rows (its transpose
    is logits_per_text). ``t`` starts at ``logit_scale``, ln(1 / 0.07) = 2.6592 (Hugging Face's
    ``logit_scale_init_value``). The training loss is the symmetric cross-entropy over the pairs on the
    diagonal, ``(CE(logits, i) + CE(logitsᵀ, i)) / 2``. One parameter; FLOPs ``2 B_a B_b e``,
    quadratic in the batch."""

    name = "contrastive"
    role = "head"
    arities = (2,)
    params = (
        Param(
            "logit_scale",
            "float",
            default=2.6592,
            doc="initial log inverse temperature t (CLIP: ln(1 / 0.07) = 2.6592)",
        ),
    )

    def out_shape(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Shape:
        if ins[0][-1] != ins[1][-1]:
            raise ShapeError(
                f"the towers embed at widths {ins[0][-1]} and {ins[1][-1]}; `contrastive` compares "
                "embeddings of one width",
                help="give both towers' projections the same `width` (the model's d_model by default)",
            )
        return (ins[0][0], ins[1][0])

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return 1

    def flops(self, node: Node, ctx: Ctx, ins: Sequence[Shape]) -> Any:
        return 2 * ins[0][0] * ins[1][0] * ins[0][-1]

    def backward_flops(
        self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg, mask_aware: bool = False
    ) -> Any:
        """Both operands of the similarity matmul are activations: one forward's worth for each
        tower's embeddings that need a gradient (a tower of a frozen base may train nothing); the
        temperature's gradient is elementwise."""
        return self.flops(node, ctx, ins) * sum(act.grads(2))

    def saved(self, node: Node, ctx: Ctx, ins: Sequence[Shape], act: ActCfg) -> Saved:
        """For a tower's embeddings that need a gradient: them, their norm and the norm clamped away
        from 0 (``F.normalize``; the division keeps the embeddings and the clamped norm), and the other
        side's normalised embeddings (the matmul's operand for its gradient); the scale exp(t), a
        scalar, where anything needs a gradient; the unscaled logits when t trains."""
        (ba, e), (bb, _) = ins[0], ins[1]
        by = act.bytes
        ga, gb = act.grads(2)
        internal = 2 * ((ba if ga else 0) + (bb if gb else 0)) * by  # the norms, plain and clamped
        internal += ((bb if ga else 0) + (ba if gb else 0)) * e * by  # the normalised operands
        if ga or gb or act.weight_grad:
            internal += by  # exp(t)
        if act.weight_grad:
            internal += ba * bb * by
        return Saved(inputs=(ga, gb), internal=internal)

    def big_o(self, node: Node, ctx: Ctx) -> tuple[str, ...]:
        return ("b²·e",)

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "Contrastive", logit_scale=node["logit_scale"])


KINDS = (Projection(), Contrastive())
