"""The graph view's container (archdsl.digraph): networkx's DiGraph interface and orders, the passes'
algorithms, and the model graphs built on it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import archdsl
from archdsl.digraph import (
    CycleError,
    DiGraph,
    ancestors,
    descendants,
    find_cycle,
    is_directed_acyclic_graph,
    topological_sort,
)
from archdsl.graph import build_graph
from archdsl.passes import run_passes

SPECS = Path(__file__).resolve().parent.parent / "specs"


def graph(edges: list[tuple[int, int]], nodes: list[int] | None = None) -> DiGraph:
    g = DiGraph(name="t")
    for n in nodes or []:
        g.add_node(n, layer=n % 3)
    for i, (u, v) in enumerate(edges):
        g.add_edge(u, v, index=i)
    return g


def test_nodes_edges_and_attributes_in_insertion_order() -> None:
    g = graph([(2, 1), (2, 0), (1, 0)], nodes=[2, 1, 0])
    assert g.graph == {"name": "t"}
    assert list(g) == list(g.nodes) == [2, 1, 0] and len(g) == len(g.nodes) == 3
    assert 1 in g and 1 in g.nodes and 7 not in g and [] not in g  # unhashable: not a node
    assert g.nodes[1] == {"layer": 1}
    assert list(g.nodes(data=True)) == [(2, {"layer": 2}), (1, {"layer": 1}), (0, {"layer": 0})]
    assert list(g.nodes(data="layer")) == [(2, 2), (1, 1), (0, 0)]
    assert list(g.nodes(data="missing", default=-1)) == [(2, -1), (1, -1), (0, -1)]
    assert list(g.edges) == [(2, 1), (2, 0), (1, 0)] and len(g.edges) == g.number_of_edges() == 3
    assert g.edges[2, 0] == {"index": 1} and (2, 0) in g.edges and (0, 2) not in g.edges
    assert list(g.predecessors(0)) == [2, 1] and list(g.successors(2)) == [1, 0]
    assert list(g.out_edges(2)) == [(2, 1), (2, 0)] and list(g.in_edges(0)) == [(2, 0), (1, 0)]
    assert g.pred[0] == {2: {"index": 1}, 1: {"index": 2}}
    g.succ[2][1]["shape"] = (1,)  # one attribute dict per edge, seen from both ends
    assert g.pred[1][2] == {"index": 0, "shape": (1,)} and g.edges[2, 1]["shape"] == (1,)
    g.add_edge(2, 1, index=5)  # an edge added again updates its attributes
    assert g.edges[2, 1] == {"index": 5, "shape": (1,)} and g.number_of_edges() == 3
    g.add_node(1, span=None)  # a node added again keeps its edges and adds attributes
    assert g.nodes[1] == {"layer": 1, "span": None} and g.has_edge(2, 1)
    g.remove_edge(2, 1)
    assert not g.has_edge(2, 1) and list(g.predecessors(1)) == []
    with pytest.raises(KeyError):
        g.remove_edge(2, 1)


def _is_order(g: DiGraph, order: list[int]) -> bool:
    at = {n: i for i, n in enumerate(order)}
    return sorted(order) == sorted(g) and all(at[u] < at[v] for u, v in g.edges)


def test_topological_sort_is_by_generations() -> None:
    # 3 and 0 have no inputs (first, in insertion order); then what only they feed; then the rest
    g = graph([(3, 1), (0, 2), (1, 2), (0, 4)], nodes=[3, 0, 1, 2, 4])
    assert topological_sort(g) == [3, 0, 1, 4, 2]
    assert is_directed_acyclic_graph(g)


@pytest.mark.parametrize("seed", range(5))
def test_random_graphs(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        n = rng.randint(1, 10)
        edges = [(rng.randrange(n), rng.randrange(n)) for _ in range(rng.randint(0, 20))]
        g = graph(edges, nodes=list(range(n)))
        try:
            order = topological_sort(g)
        except CycleError:
            cycle = find_cycle(g)
            assert cycle and not is_directed_acyclic_graph(g)
            assert all(g.has_edge(u, v) for u, v in cycle)
            assert all(a[1] == b[0] for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True))
        else:
            assert _is_order(g, order) and is_directed_acyclic_graph(g)
            with pytest.raises(CycleError):
                find_cycle(g)
        for x in range(n):  # reachability, against a closure computed the slow way
            reach = {v for u, v in edges if u == x}
            while True:
                more = reach | {v for u, v in edges if u in reach}
                if more == reach:
                    break
                reach = more
            assert descendants(g, x) == reach - {x}
            assert all(x in ancestors(g, v) for v in reach - {x})


def test_find_cycle_walks_depth_first_from_the_first_node() -> None:
    # from 0: 0 -> 1 -> 2 -> 1 closes the cycle 1 -> 2 -> 1 (0 -> 3 is never reached)
    g = graph([(0, 1), (1, 2), (2, 1), (0, 3), (3, 0)], nodes=[0, 1, 2, 3])
    assert find_cycle(g) == [(1, 2), (2, 1)]
    assert find_cycle(graph([(0, 0)])) == [(0, 0)]  # a self-loop


def test_model_graph_and_cycle_diagnostic() -> None:
    g = build_graph(archdsl.load(SPECS / "tiny.arch").model)
    assert isinstance(g, DiGraph) and run_passes(g) == []
    assert all("shape" in a for _, a in g.nodes(data=True))
    assert all("shape" in g.edges[u, v] for u, v in g.edges)
    g.add_edge("h.1.attn", "h.0.ln_1", index=1)
    [d] = run_passes(g)
    assert d.code == "E012"
    # the cycle as the walk meets it, from where the edge closes it
    assert d.message.startswith("the model graph has a cycle: h.0.ln_1 → h.0.attn → ")
    assert d.message.endswith("h.1.attn → h.0.ln_1")
