"""Analysis: parameters and FLOPs from the graph view, node by node, through the registry.

Nothing here builds a module or imports torch. Conventions (stated in every report):

* parameters are counted once even when shared (a tied LM head adds none), as ``sum(p.numel())`` does;
* FLOPs are 2 per multiply-add, matmuls only (elementwise ops, norms, softmax and lookups add none), with
  attention scores and the value product over the full n x n even under a causal mask — the convention of
  ``torch.utils.flop_counter.FlopCounterMode``, which the tests hold the model to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from archdsl.diagnostics import Diagnostic, SpecError
from archdsl.graph import layer_order

CONVENTIONS = {
    "params": "each parameter counted once (tied weights once), as sum(p.numel()) over module.parameters()",
    "flops": (
        "dense: 2 FLOPs per multiply-add, matmuls only, attention over the full n x n (no causal halving); "
        "equals torch.utils.flop_counter.FlopCounterMode on the lowered module"
    ),
}

EMBEDDING_ROLES = ("embedding", "position")


@dataclass(frozen=True)
class Cost:
    """An additive cost value: parameters and forward FLOPs (ints, or sympy expressions)."""

    params: int = 0
    flops: Any = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.flops + other.flops)


@dataclass
class ComponentCost:
    path: str
    kind: str
    role: str
    params: int
    flops_forward: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "role": self.role,
            "params": self.params,
            "flops_forward": self.flops_forward,
        }


@dataclass
class LayerCost:
    name: str
    params: int = 0
    flops_forward: int = 0
    components: list[ComponentCost] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "flops_forward": self.flops_forward,
            "components": [c.to_dict() for c in self.components],
        }


@dataclass
class Report:
    model: str
    model_type: str
    batch: int
    seq_len: int
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "type": self.model_type,
            "settings": {"batch": self.batch, "seq_len": self.seq_len},
            "conventions": dict(CONVENTIONS),
            "params": {
                "total": self.params_total,
                "embedding": self.params_embedding,
                "non_embedding": self.params_total - self.params_embedding,
            },
            "flops": {"forward": self.flops_forward},
            "layers": [layer.to_dict() for layer in self.layers],
        }


def check_seq_len(g: nx.DiGraph, seq_len: int) -> list[Diagnostic]:
    ctx = g.graph["ctx"]
    diags = []
    for _n, a in g.nodes(data=True):
        if "kind" not in a:
            continue
        limit = a["kind"].max_seq_len(a["node"], ctx)
        if limit is not None and seq_len > limit:
            diags.append(
                Diagnostic(
                    "E014",
                    f"sequence length {seq_len} exceeds `{a['node'].kind}` max_len ({limit})",
                    a["node"].span_of("max_len"),
                    help=f"analyse with --seq {limit} or less, or raise max_len",
                )
            )
    return diags


def analyze_graph(g: nx.DiGraph, batch: int, seq_len: int) -> list[LayerCost]:
    diags = check_seq_len(g, seq_len)
    if diags:
        raise SpecError(diags)
    ctx = g.graph["ctx"]
    layers = {name: LayerCost(name) for name in layer_order(g)}
    for n in nx.topological_sort(g):
        a = g.nodes[n]
        if "kind" not in a:
            continue
        kind, node = a["kind"], a["node"]
        c = ComponentCost(
            path=n,
            kind=node.kind,
            role=kind.role,
            params=int(kind.n_params(node, ctx)),
            flops_forward=int(kind.flops(node, ctx, batch, seq_len)),
        )
        layer = layers[a["layer"]]
        layer.components.append(c)
        layer.params += c.params
        layer.flops_forward += c.flops_forward
    return list(layers.values())
