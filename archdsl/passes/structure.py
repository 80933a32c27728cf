"""Structural checks: the graph is a DAG, and every op lies on a path from the input to the output."""

from __future__ import annotations

import networkx as nx

from archdsl.diagnostics import Diagnostic


def check_acyclic(g: nx.DiGraph) -> list[Diagnostic]:
    if nx.is_directed_acyclic_graph(g):
        return []
    cycle = [u for u, _v in nx.find_cycle(g)]
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


def check_connected(g: nx.DiGraph) -> list[Diagnostic]:
    inputs = [n for n, a in g.nodes(data=True) if a["op"] == "input"]
    if not inputs or "output" not in g:
        return [Diagnostic("E013", "the model graph has no input or no output")]
    fwd = set(inputs).union(*(nx.descendants(g, i) for i in inputs))
    back = nx.ancestors(g, "output") | {"output"}
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
