"""Shape inference: walk the graph in topological order, asking each kind for its output shape.

Shapes are tuples of ints and the symbols ``"B"`` (batch), ``"T"`` (sequence) and ``"S"`` (encoder
sequence). A kind whose inputs do not fit raises :class:`~archdsl.kinds.ShapeError`; it becomes an E011
diagnostic pointing at the offending argument.
"""

from __future__ import annotations

import networkx as nx

from archdsl.diagnostics import Diagnostic
from archdsl.kinds import ShapeError


def inputs_of(g: nx.DiGraph, n: str) -> list[str]:
    ins = g.pred[n]  # source -> the edge's attributes
    return sorted(ins, key=lambda p: ins[p]["index"])


def infer_shapes(g: nx.DiGraph) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    failed: set[str] = set()
    order = list(nx.topological_sort(g))
    known: dict[tuple[object, ...], object] = {}  # a component's shape, by kind, node, context and inputs
    for n in order:
        a = g.nodes[n]
        preds = inputs_of(g, n)
        if any(p in failed for p in preds):
            failed.add(n)
            continue
        ins = [g.nodes[p]["shape"] for p in preds]
        op = a["op"]
        try:
            if op == "input":
                pass  # set by the builder
            elif op in ("output", "scale"):
                a["shape"] = ins[0]
            elif op == "add":
                if any(s != ins[0] for s in ins):
                    raise ShapeError(f"`{n}` adds tensors of shapes " + ", ".join(map(str, ins)))
                a["shape"] = ins[0]
            else:  # the repeated layers of a deep stack ask their kinds once
                key = (id(a["kind"]), id(a["node"]), id(a["ctx"]), tuple(ins))  # objects the graph holds
                if key not in known:
                    known[key] = a["kind"].out_shape(a["node"], a["ctx"], ins)
                a["shape"] = known[key]
        except ShapeError as e:
            node = a.get("node")
            span = node.span_of(e.param) if node is not None and e.param else a["span"]
            diags.append(Diagnostic(e.code, e.message, span, e.help))
            failed.add(n)
            continue
        for edge in g.succ[n].values():  # the edges out of n: their attributes
            edge["shape"] = a["shape"]
    g.graph["archdsl_topo"] = order  # the cost passes walk the graph in it too
    return dedupe(diags)


def dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Repeated layers share one source line; report each problem once per place."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for d in diags:
        key = (d.code, d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
