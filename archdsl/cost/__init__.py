"""Analysis: parameters and FLOPs from the graph view, node by node, through the registry.

Nothing here builds a module or imports torch. Conventions (stated in every report):

* parameters are counted once even when shared (a tied LM head, a module shared between layers), as
  ``sum(p.numel())`` over ``module.parameters()`` does;
* FLOPs are 2 per multiply-add, matmuls only (elementwise ops, norms, softmax and lookups add none), with
  attention scores and the value product over the full n x n even under a causal mask — the convention of
  ``torch.utils.flop_counter.FlopCounterMode``, which the tests hold the model to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from archdsl.diagnostics import Diagnostic, SpecError
from archdsl.graph import layer_order
from archdsl.passes.shapes import inputs_of

CONVENTIONS = {
    "params": (
        "each parameter counted once (tied or shared weights once), "
        "as sum(p.numel()) over module.parameters()"
    ),
    "flops": (
        "dense: 2 FLOPs per multiply-add, matmuls only; attention as the module computes it: the full "
        "n x n for dense kinds (no causal halving), the computed blocks for windowed or sparse ones; "
        "equals torch.utils.flop_counter.FlopCounterMode on the lowered module"
    ),
}

EMBEDDING_ROLES = ("embedding", "position")


@dataclass
class ComponentCost:
    path: str  # the graph node (a module applied twice appears as `path` and `path#2`)
    module: str  # the module it lowers to
    kind: str
    role: str
    params: int
    flops_forward: int
    trainable: int = 0
    active: int = 0
    big_o: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "module": self.module,
            "kind": self.kind,
            "role": self.role,
            "params": self.params,
            "params_trainable": self.trainable,
            "params_active": self.active,
            "flops_forward": self.flops_forward,
            "big_o": big_o_text(self.big_o),
        }


@dataclass
class LayerCost:
    name: str
    params: int = 0
    flops_forward: int = 0
    components: list[ComponentCost] = field(default_factory=list)

    @property
    def big_o(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for c in self.components for t in c.big_o))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "flops_forward": self.flops_forward,
            "big_o": big_o_text(self.big_o),
            "components": [c.to_dict() for c in self.components],
        }


@dataclass
class Report:
    model: str
    model_type: str
    batch: int
    seq_len: int
    src_len: int | None
    layers: list[LayerCost]
    n_blocks: int
    d_model: int
    vocab: int

    @property
    def params_total(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def params_embedding(self) -> int:
        return sum(c.params for layer in self.layers for c in layer.components if c.role in EMBEDDING_ROLES)

    @property
    def flops_forward(self) -> int:
        return sum(layer.flops_forward for layer in self.layers)

    @property
    def params_trainable(self) -> int:
        return sum(c.trainable for layer in self.layers for c in layer.components)

    @property
    def params_active(self) -> int:
        return sum(c.active for layer in self.layers for c in layer.components)

    def to_dict(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"batch": self.batch, "seq_len": self.seq_len}
        if self.src_len is not None:
            settings["src_len"] = self.src_len
        return {
            "model": self.model,
            "type": self.model_type,
            "settings": settings,
            "conventions": dict(CONVENTIONS),
            "params": {
                "total": self.params_total,
                "embedding": self.params_embedding,
                "non_embedding": self.params_total - self.params_embedding,
                "trainable": self.params_trainable,
                "active": self.params_active,
            },
            "flops": {"forward": self.flops_forward},
            "layers": [layer.to_dict() for layer in self.layers],
        }


def big_o_text(terms: tuple[str, ...]) -> str:
    """``O(n²·d + n·d²)`` from a component's or a layer's growth terms (``O(1)`` when it has none)."""
    return f"O({' + '.join(terms)})" if terms else "O(1)"


def concrete(shape: tuple[Any, ...], sizes: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sizes.get(d, d) if isinstance(d, str) else d for d in shape)


def check_seq_len(g: nx.DiGraph, sizes: Mapping[str, Any]) -> list[Diagnostic]:
    diags = []
    for n, a in g.nodes(data=True):
        if "kind" not in a:
            continue
        node, ctx = a["node"], a["ctx"]
        limit = a["kind"].max_seq_len(node, ctx)
        if limit is not None and a["kind"].role == "attention" and ctx.position is not None:
            node = ctx.position  # the stack's rotary table, say, sets this attention's limit
        if limit is None:
            continue
        length = concrete(g.nodes[inputs_of(g, n)[0]]["shape"], sizes)[1]
        if isinstance(length, int) and length > limit:
            diags.append(
                Diagnostic(
                    "E014",
                    f"sequence length {length} exceeds `{node.kind}` max_len ({limit})",
                    node.span_of("max_len"),
                    help=f"analyse with a length of {limit} or less, or raise max_len",
                )
            )
    return _unique(diags)


def _unique(diags: list[Diagnostic]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for d in diags:
        if d not in out:
            out.append(d)
    return out


def analyze_graph(g: nx.DiGraph, sizes: Mapping[str, Any]) -> list[LayerCost]:
    """Per-layer costs with the symbolic sizes (``B``, ``T``, ``S``) bound to ``sizes``."""
    diags = check_seq_len(g, sizes)
    if diags:
        raise SpecError(diags)
    layers = {name: LayerCost(name) for name in layer_order(g)}
    for n in g.nodes:
        a = g.nodes[n]
        if "kind" not in a:
            continue
        kind, node, ctx = a["kind"], a["node"], a["ctx"]
        ins = [concrete(g.nodes[p]["shape"], sizes) for p in inputs_of(g, n)]
        c = ComponentCost(
            path=n,
            module=a["path"],
            kind=node.kind,
            role=kind.role,
            params=int(kind.n_params(node, ctx)) if a["owner"] else 0,
            flops_forward=int(kind.flops(node, ctx, ins)),
            trainable=int(kind.trainable_params(node, ctx)) if a["owner"] else 0,
            active=int(kind.active_params(node, ctx)) if a["owner"] else 0,
            big_o=tuple(kind.big_o(node, ctx)),
        )
        layer = layers[a["layer"]]
        layer.components.append(c)
        layer.params += c.params
        layer.flops_forward += c.flops_forward
    return list(layers.values())
