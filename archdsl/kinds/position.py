"""Positional kinds: absolute tables added to the embeddings, and schemes acting inside attention."""

from __future__ import annotations

import math

from archdsl.ir import Node
from archdsl.kinds.base import Ctx, Kind, Param, ShapeError
from archdsl.lower.ctor import Ctor, ours
from archdsl.trace import whole

NN = "archdsl.kinds.position_nn"


class Learned(Kind):
    """A trained ``(offset + max_len) x d`` table (GPT-2, BERT, ViT): position p reads row
    ``offset + p``. ``offset`` rows come first and are never read by a sequence: OPT and RoBERTa start
    their positions at 2 (Hugging Face's ``OPTLearnedPositionalEmbedding`` offset; RoBERTa's
    ``padding_idx + 1``). ``(offset + max_len) * d`` parameters, no FLOPs."""

    name = "learned"
    role = "position"
    params = (
        Param("max_len", "int", min=1, doc="longest supported sequence (the context length)"),
        Param("offset", "int", default=0, min=0, doc="rows before position 0 (OPT, RoBERTa: 2)"),
    )

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return (int(node["max_len"]) + int(node["offset"])) * ctx.d_model

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        return whole(node["max_len"])

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        if node["offset"]:
            return ours(
                NN, "LearnedPositions", max_len=node["max_len"], d_model=ctx.d_model, offset=node["offset"]
            )
        return ours(NN, "LearnedPositions", max_len=node["max_len"], d_model=ctx.d_model)


class Sinusoidal(Kind):
    """Fixed sinusoids (Vaswani et al. 2017): no parameters; the table is precomputed to ``max_len``."""

    name = "sinusoidal"
    role = "position"
    params = (Param("max_len", "int", default=4096, min=1, doc="length of the precomputed table"),)

    def validate(self, node: Node, ctx: Ctx, arity: int = 1) -> list[ShapeError]:
        if ctx.d_model % 2:
            return [
                ShapeError(
                    f"sinusoidal positions need an even d_model, got {ctx.d_model}",
                    help="sin and cos fill alternate channels; make d_model even",
                )
            ]
        return []

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        return whole(node["max_len"])

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        return ours(NN, "SinusoidalPositions", max_len=node["max_len"], d_model=ctx.d_model)


class Rope(Kind):
    """Rotary position embedding (Su et al. 2021): q and k of every self-attention are rotated by an
    angle proportional to position, so scores depend on relative offsets. ``fraction`` rotates only the
    first part of each head (GPT-NeoX's rotary_pct); ``layout`` pairs channels as two halves (GPT-NeoX,
    Hugging Face Llama) or neighbours (GPT-J, Meta's Llama); ``scaling`` stretches the context: linear
    (Chen et al. 2023, position interpolation), Llama 3's frequency-dependent rule, or YaRN (Peng et al.
    2023, "YaRN: Efficient Context Window Extension of Large Language Models"; DeepSeek-V2). No
    parameters and no matmul FLOPs.

    YaRN, as Hugging Face's ``_compute_yarn_parameters`` (with its default ``truncate``) and DeepSeek's
    reference code compute it, for ``s = factor``, ``L = original_max_len``, base θ and the rotated width
    D: the frequencies ``θ^(-2i/D)`` of dimension pair i are blended from extrapolated (kept) and
    interpolated (divided by s) ones, ``inv_freq_i = f_i / s · r_i + f_i · (1 - r_i)``, with the ramp
    ``r_i = clamp((i - lo) / (hi - lo), 0, 1)`` between the dimensions ``lo = floor(c(beta_fast))`` and
    ``hi = ceil(c(beta_slow))`` (clamped to [0, D - 1]), where ``c(β) = D ln(L / (2π β)) / (2 ln θ)`` is
    the pair that turns β times over L positions. cos and sin are multiplied by the attention factor
    ``m(s, mscale) / m(s, mscale_all_dim)``, ``m(s, x) = 0.1 x ln s + 1`` (1 for s ≤ 1 or x = 0).
    ``mscale_all_dim`` also scales the softmax of latent attention (``mla``) by ``m(s, mscale_all_dim)²``
    (Hugging Face's ``yarn_apply_mscale``)."""

    name = "rope"
    role = "position"
    applies = "attention"
    rotates = True
    params = (
        Param("theta", "float", default=10000.0, gt=0.0, doc="base of the rotation frequencies"),
        Param("fraction", "float", default=1.0, gt=0.0, max=1.0, doc="share of each head that is rotated"),
        Param("layout", "enum", default="half", choices=("half", "interleaved")),
        Param("scaling", "enum", default="none", choices=("none", "linear", "llama3", "yarn")),
        Param("factor", "float", default=1.0, min=1.0, doc="context stretch for linear / llama3 / yarn"),
        Param("low_freq_factor", "float", default=1.0, gt=0.0, doc="llama3 scaling"),
        Param("high_freq_factor", "float", default=4.0, gt=0.0, doc="llama3 scaling"),
        Param(
            "original_max_len",
            "int",
            default=8192,
            min=1,
            doc="llama3 / yarn scaling: the pre-training context",
        ),
        Param("beta_fast", "float", default=32.0, gt=0.0, doc="yarn: rotations where extrapolation ends"),
        Param("beta_slow", "float", default=1.0, gt=0.0, doc="yarn: rotations where interpolation starts"),
        Param("mscale", "float", default=1.0, min=0.0, doc="yarn: attention factor numerator's slope"),
        Param(
            "mscale_all_dim",
            "float",
            default=0.0,
            min=0.0,
            doc="yarn: attention factor denominator's slope; mla's softmax scale grows by its square",
        ),
        Param("max_len", "int", default=4096, min=1, doc="longest supported sequence (tables precomputed)"),
    )

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        return whole(node["max_len"])

    def attention_ctor(self, node: Node, ctx: Ctx, attn: Node) -> Ctor:
        from archdsl.kinds import REGISTRY

        hs = REGISTRY[attn.kind].rotary_width(attn, ctx)  # type: ignore[attr-defined]
        kwargs = {
            "head_dim": hs,
            "max_len": node["max_len"],
            "theta": node["theta"],
            "fraction": node["fraction"],
            "interleaved": node["layout"] == "interleaved",
        }
        if node["scaling"] != "none":
            kwargs.update(scaling=node["scaling"], factor=node["factor"])
        if node["scaling"] == "llama3":
            kwargs.update(
                low_freq_factor=node["low_freq_factor"],
                high_freq_factor=node["high_freq_factor"],
                original_max_len=node["original_max_len"],
            )
        if node["scaling"] == "yarn":
            kwargs.update(
                original_max_len=node["original_max_len"],
                beta_fast=node["beta_fast"],
                beta_slow=node["beta_slow"],
                attention_factor=self.attention_factor(node),
            )
        return ours(NN, "RotaryEmbedding", **kwargs)

    def attention_factor(self, node: Node) -> float:
        """YaRN's factor on cos and sin, ``m(s, mscale) / m(s, mscale_all_dim)``; 1 otherwise."""
        if node["scaling"] != "yarn":
            return 1.0
        s = float(node["factor"])
        return yarn_mscale(s, float(node["mscale"])) / yarn_mscale(s, float(node["mscale_all_dim"]))

    def softmax_factor(self, node: Node) -> float:
        """What YaRN's ``mscale_all_dim`` multiplies a latent attention's softmax scale by:
        ``m(s, mscale_all_dim)²`` (1 without YaRN)."""
        if node["scaling"] != "yarn":
            return 1.0
        return yarn_mscale(float(node["factor"]), float(node["mscale_all_dim"])) ** 2


def yarn_mscale(scale: float, mscale: float) -> float:
    """YaRN's ``0.1 · mscale · ln(scale) + 1`` (Peng et al. 2023, Eq. 21 as DeepSeek generalises it);
    1 for ``scale <= 1``."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


KINDS: tuple[Kind, ...] = (Learned(), Sinusoidal(), Rope())
