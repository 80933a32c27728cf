"""Structural checks: the graph is a DAG, and every op lies on a path from the input to the output."""

from __future__ import annotations

from archdsl.diagnostics import Diagnostic
from archdsl.digraph import DiGraph, ancestors, descendants, find_cycle, is_directed_acyclic_graph


def check_acyclic(g: DiGraph) -> list[Diagnostic]:
    if is_directed_acyclic_graph(g):
        return []
    cycle = [u for u, _v in find_cycle(g)]
    first = next((n for n in cycle if g.nodes[n].get("span") is not None), cycle[0])
    chain = " → ".join([*cycle, cycle[0]])
    return [
        Diagnostic(
            "E012",
            f"the model graph has a cycle: {chain}",
            g.nodes[first].get("span"),
            help="a tensor cannot depend on itself; break the loop",
        )
    ]


def check_connected(g: DiGraph) -> list[Diagnostic]:
    inputs = [n for n, a in g.nodes(data=True) if a["op"] == "input"]
    if not inputs or "output" not in g:
        return [Diagnostic("E013", "the model graph has no input or no output")]
    fwd = set(inputs).union(*(descendants(g, i) for i in inputs))
    back = ancestors(g, "output") | {"output"}
    problems = {
        n: (
            f"`{n}` is not reachable from the model input"
            if n not in fwd
            else f"the output of `{n}` is never used"
        )
        for n in g.nodes
        if n not in fwd or n not in back
    }
    return [
        Diagnostic("E013", msg, g.nodes[n].get("span"), help="connect it to the data flow, or remove it")
        for n, msg in problems.items()
    ]
