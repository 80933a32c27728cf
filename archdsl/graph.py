"""The model as a networkx graph: nodes are ops, edges are tensors.

The graph is a *view* derived from the IR. Component nodes carry their IR :class:`~archdsl.ir.Node`
(``node``), the registry kind (``kind``), the module path they lower to (``path``, e.g. ``h.3.attn``) and
the layer they belong to (``layer``, e.g. ``h.3``); structural nodes are ``input``, ``add`` and
``output``. Shape inference (:mod:`archdsl.passes`) fills ``shape`` on every node.
"""

from __future__ import annotations

import networkx as nx

from archdsl.ir import Block, Model, Node
from archdsl.kinds import REGISTRY, Ctx


def ctx_of(model: Model) -> Ctx:
    return Ctx(d_model=model.d_model, vocab=model.vocab, type=model.type)


class _Builder:
    def __init__(self, model: Model) -> None:
        self.g = nx.DiGraph(model=model.name, ctx=ctx_of(model))

    def op(self, name: str, op: str, layer: str, inputs: list[str], node: Node | None = None) -> str:
        attrs: dict[str, object] = {"op": op, "layer": layer, "span": None}
        if node is not None:
            attrs.update(kind=REGISTRY[node.kind], node=node, span=node.span)
        self.g.add_node(name, **attrs)
        for i, src in enumerate(inputs):
            self.g.add_edge(src, name, index=i)
        return name

    def comp(self, path: str, node: Node, layer: str, x: str) -> str:
        return self.op(path, node.kind, layer, [x], node)

    def block(self, i: int, blk: Block, x: str) -> str:
        """Pre-norm: x + f(norm(x)); post-norm: norm(x + f(x)) — for attention, then the FFN."""
        p = f"h.{i}"
        for j, (name, node) in enumerate((("attn", blk.attention), ("mlp", blk.ffn)), start=1):
            ln = f"{p}.ln_{j}"
            if blk.placement == "pre":
                y = self.comp(f"{p}.{name}", node, p, self.comp(ln, blk.norm, p, x))
                x = self.op(f"{p}.add_{j}", "add", p, [x, y])
            else:
                y = self.comp(f"{p}.{name}", node, p, x)
                s = self.op(f"{p}.add_{j}", "add", p, [x, y])
                x = self.comp(ln, blk.norm, p, s)
        return x


def build_graph(model: Model) -> nx.DiGraph:
    b = _Builder(model)
    x = b.op("input", "input", "input", [])
    x = b.comp("wte", model.embedding, "embedding", x)
    if model.position is not None:
        x = b.comp("wpe", model.position, "embedding", x)
    for i, blk in enumerate(model.layers):
        x = b.block(i, blk, x)
    if model.final_norm is not None:
        x = b.comp("ln_f", model.final_norm, "ln_f", x)
    x = b.comp("lm_head", model.head, "lm_head", x)
    b.op("output", "output", "output", [x])
    return b.g


def layer_order(g: nx.DiGraph) -> list[str]:
    """Layer names in the order their first node appears in the graph."""
    seen: dict[str, None] = {}
    for n in nx.topological_sort(g):
        layer = g.nodes[n]["layer"]
        if layer not in ("input", "output"):
            seen.setdefault(layer, None)
    return list(seen)
