"""Placement presets: sugar for the common block topologies, each expanding to the same dataflow a
``flow { … }`` section would give.

A preset block has the slots ``norm``, ``attention`` (or ``mixer``, a sequence mixer in its place),
``ffn`` and, in a decoder with an encoder, ``cross_attention``; ``attention`` and ``ffn`` may be
``none``. The sublayers are called (nanoGPT's names) ``attn`` (or ``mixer``), ``cross``, ``mlp`` and
``ln_1``, ``ln_2``, … in order; every norm position gets its own instance of the ``norm`` component.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archdsl.ir import Apply, Ref, Scale, Stmt, Sum, TExpr
from archdsl.kinds import Param

#: (name, slot, takes memory) for the sublayers of a preset block, in order
SUBLAYERS = (
    ("attn", "attention", False),
    ("mixer", "mixer", False),
    ("cross", "cross_attention", True),
    ("mlp", "ffn", False),
)


def _apply(layer: str, x: TExpr, memory: bool) -> Apply:
    return Apply(layer, (x, Ref("memory")) if memory else (x,))


def pre(subs: list[tuple[str, bool]], p: dict[str, float]) -> tuple[list[str], list[Stmt]]:
    norms, body = [], []
    for i, (name, mem) in enumerate(subs, start=1):
        norms.append(f"ln_{i}")
        body.append(Stmt("x", Sum((Ref("x"), _apply(name, Apply(f"ln_{i}", (Ref("x"),)), mem)))))
    return norms, body


def post(subs: list[tuple[str, bool]], p: dict[str, float]) -> tuple[list[str], list[Stmt]]:
    alpha = p.get("alpha", 1.0)
    norms, body = [], []
    for i, (name, mem) in enumerate(subs, start=1):
        norms.append(f"ln_{i}")
        residual: TExpr = Ref("x") if alpha == 1.0 else Scale(alpha, Ref("x"))
        body.append(Stmt("x", Apply(f"ln_{i}", (Sum((residual, _apply(name, Ref("x"), mem))),))))
    return norms, body


def sandwich(subs: list[tuple[str, bool]], p: dict[str, float]) -> tuple[list[str], list[Stmt]]:
    norms, body = [], []
    for i, (name, mem) in enumerate(subs, start=1):
        norms += [f"ln_{i}", f"post_ln_{i}"]
        inner = _apply(name, Apply(f"ln_{i}", (Ref("x"),)), mem)
        body.append(Stmt("x", Sum((Ref("x"), Apply(f"post_ln_{i}", (inner,))))))
    return norms, body


def parallel(subs: list[tuple[str, bool]], p: dict[str, float]) -> tuple[list[str], list[Stmt]]:
    if p.get("shared_norm"):
        terms = [_apply(name, Ref("h"), mem) for name, mem in subs]
        return ["ln_1"], [Stmt("h", Apply("ln_1", (Ref("x"),))), Stmt("x", Sum((Ref("x"), *terms)))]
    norms = [f"ln_{i}" for i in range(1, len(subs) + 1)]
    terms = [_apply(name, Apply(n, (Ref("x"),)), mem) for n, (name, mem) in zip(norms, subs, strict=True)]
    return norms, [Stmt("x", Sum((Ref("x"), *terms)))]


@dataclass(frozen=True)
class Placement:
    name: str
    params: tuple[Param, ...]
    expand: Callable[[list[tuple[str, bool]], dict[str, float]], tuple[list[str], list[Stmt]]]
    doc: str


PLACEMENTS: dict[str, Placement] = {
    p.name: p
    for p in (
        Placement(
            "pre",
            (),
            pre,
            "Norm before each sublayer, residual around it: x + f(norm(x)) (GPT-2; Xiong et al. 2020).",
        ),
        Placement("post", (), post, "Residual, then norm: norm(x + f(x)) (Vaswani et al. 2017; BERT)."),
        Placement(
            "sandwich",
            (),
            sandwich,
            "Norm before and after each sublayer: x + norm(f(norm(x))) (Ding et al. 2021; Gemma 2).",
        ),
        Placement(
            "parallel",
            (Param("shared_norm", "bool", default=False, doc="one norm feeds every sublayer (GPT-J, PaLM)"),),
            parallel,
            "Sublayers side by side from one input: x + attn(norm(x)) + mlp(norm(x)) (GPT-J; PaLM).",
        ),
        Placement(
            "deepnorm",
            (Param("alpha", "float", default=None, gt=0.0, doc="residual scale; default from the depth"),),
            post,
            "Post-norm with an up-weighted residual: norm(alpha * x + f(x)) (DeepNet, Wang et al. 2022).",
        ),
    )
}


def deepnorm_alpha(stack: str, n_enc: int, n_dec: int) -> float:
    """DeepNet's residual scale (Wang et al. 2022, Table 1): encoder-only or decoder-only stacks of N
    layers use (2N)^(1/4); in an encoder-decoder, the encoder uses 0.81 (N^4 M)^(1/16) and the decoder
    (3M)^(1/4), for N encoder and M decoder layers."""
    if n_enc and n_dec:
        return 0.81 * (n_enc**4 * n_dec) ** (1 / 16) if stack == "encoder" else (3 * n_dec) ** 0.25
    return (2 * (n_enc or n_dec)) ** 0.25
