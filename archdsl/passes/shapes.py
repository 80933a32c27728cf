"""Shape inference: walk the graph in topological order, asking each kind for its output shape.

Shapes are tuples of ints and the symbols ``"B"`` (batch) and ``"T"`` (sequence length). A kind whose
inputs do not fit raises :class:`~archdsl.kinds.ShapeError`; it becomes an E011 diagnostic pointing at
the offending argument.
"""

from __future__ import annotations

import networkx as nx

from archdsl.diagnostics import Diagnostic
from archdsl.kinds import ShapeError


def infer_shapes(g: nx.DiGraph) -> list[Diagnostic]:
    ctx = g.graph["ctx"]
    diags: list[Diagnostic] = []
    failed: set[str] = set()
    for n in nx.topological_sort(g):
        a = g.nodes[n]
        preds = sorted(g.predecessors(n), key=lambda p: g.edges[p, n]["index"])
        if any(p in failed for p in preds):
            failed.add(n)
            continue
        ins = [g.nodes[p]["shape"] for p in preds]
        op = a["op"]
        if op == "input":
            a["shape"] = ("B", "T")
        elif op in ("output",):
            a["shape"] = ins[0]
        elif op == "add":
            if ins[0] != ins[1]:
                diags.append(
                    Diagnostic("E011", f"`{n}` adds tensors of shapes {ins[0]} and {ins[1]}", a["span"])
                )
                failed.add(n)
                continue
            a["shape"] = ins[0]
        else:
            node = a["node"]
            try:
                a["shape"] = a["kind"].out_shape(node, ctx, ins[0])
            except ShapeError as e:
                span = node.span_of(e.param) if e.param else node.span
                diags.append(Diagnostic("E011", e.message, span, e.help))
                failed.add(n)
                continue
        for _, dst in g.out_edges(n):
            g.edges[n, dst]["shape"] = a["shape"]
    return _dedupe(diags)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Repeated layers share one source line; report each problem once per place."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for d in diags:
        key = (d.code, d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
