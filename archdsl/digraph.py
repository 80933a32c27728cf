"""The graph view's container: a directed graph with attributes on the graph, its nodes and its edges.

The parts of networkx's ``DiGraph`` the graph view uses, with the same names and the same orders (nodes
and neighbours in insertion order; ``topological_sort`` and ``find_cycle`` walk the graph as networkx
does, so diagnostics read the same), and the few algorithms the passes need. Its own rather than
networkx's: importing networkx costs more than everything else ``archdsl check`` does (it loads all of
its algorithms, and its backends' entry points, at import), and the passes and the analysis read the
graph node by node, which plain dictionaries make cheap.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

Attrs = dict[str, Any]


class NodeView:
    """``g.nodes``: iterate, test and count nodes; ``g.nodes[n]`` is n's attributes;
    ``g.nodes(data=True)`` gives (node, attributes) pairs, ``g.nodes(data="key")`` (node, value)."""

    __slots__ = ("_node",)

    def __init__(self, node: dict[Hashable, Attrs]) -> None:
        self._node = node

    def __getitem__(self, n: Hashable) -> Attrs:
        return self._node[n]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __contains__(self, n: object) -> bool:
        return n in self._node

    def __call__(self, data: bool | str = False, default: Any = None) -> Iterator[Any]:
        if data is False:
            return iter(self._node)
        if data is True:
            return iter(self._node.items())
        return ((n, a.get(data, default)) for n, a in self._node.items())


class EdgeView:
    """``g.edges``: iterate (u, v) pairs; ``g.edges[u, v]`` is the edge's attributes."""

    __slots__ = ("_succ",)

    def __init__(self, succ: dict[Hashable, dict[Hashable, Attrs]]) -> None:
        self._succ = succ

    def __getitem__(self, edge: tuple[Hashable, Hashable]) -> Attrs:
        u, v = edge
        return self._succ[u][v]

    def __iter__(self) -> Iterator[tuple[Hashable, Hashable]]:
        return ((u, v) for u, nbrs in self._succ.items() for v in nbrs)

    def __len__(self) -> int:
        return sum(len(nbrs) for nbrs in self._succ.values())

    def __contains__(self, edge: object) -> bool:
        if not isinstance(edge, tuple) or len(edge) != 2:
            return False
        u, v = edge
        return u in self._succ and v in self._succ[u]

    def __call__(self, n: Hashable | None = None) -> Iterator[tuple[Hashable, Hashable]]:
        """The edges out of ``n`` (all edges without it)."""
        if n is None:
            return iter(self)
        return ((n, v) for v in self._succ[n])


class DiGraph:
    """A directed graph: ``graph`` (the graph's attributes), nodes and edges with attribute dicts,
    ``pred`` and ``succ`` (node -> neighbour -> the edge's attributes), in insertion order."""

    def __init__(self, **attr: Any) -> None:
        self.graph: Attrs = dict(attr)
        self._node: dict[Hashable, Attrs] = {}
        self.succ: dict[Hashable, dict[Hashable, Attrs]] = {}
        self.pred: dict[Hashable, dict[Hashable, Attrs]] = {}
        self._nodes = NodeView(self._node)

    @property
    def nodes(self) -> NodeView:
        return self._nodes

    @property
    def edges(self) -> EdgeView:
        return EdgeView(self.succ)

    def out_edges(self, n: Hashable) -> Iterator[tuple[Hashable, Hashable]]:
        return ((n, v) for v in self.succ[n])

    def in_edges(self, n: Hashable) -> Iterator[tuple[Hashable, Hashable]]:
        return ((u, n) for u in self.pred[n])

    def add_node(self, n: Hashable, **attr: Any) -> None:
        if n not in self._node:
            self._node[n] = {}
            self.succ[n] = {}
            self.pred[n] = {}
        self._node[n].update(attr)

    def add_edge(self, u: Hashable, v: Hashable, **attr: Any) -> None:
        for n in (u, v):
            if n not in self._node:
                self.add_node(n)
        data = self.succ[u].get(v, {})
        data.update(attr)
        self.succ[u][v] = data
        self.pred[v][u] = data

    def remove_edge(self, u: Hashable, v: Hashable) -> None:
        try:
            del self.succ[u][v]
            del self.pred[v][u]
        except KeyError:
            raise KeyError(f"the edge {u}-{v} is not in the graph") from None

    def has_edge(self, u: Hashable, v: Hashable) -> bool:
        return u in self.succ and v in self.succ[u]

    def predecessors(self, n: Hashable) -> Iterator[Hashable]:
        return iter(self.pred[n])

    def successors(self, n: Hashable) -> Iterator[Hashable]:
        return iter(self.succ[n])

    def number_of_nodes(self) -> int:
        return len(self._node)

    def number_of_edges(self) -> int:
        return sum(len(nbrs) for nbrs in self.succ.values())

    def __contains__(self, n: object) -> bool:
        try:
            return n in self._node
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)


class CycleError(ValueError):
    """The graph has a cycle (where an order needs none)."""


def topological_sort(g: DiGraph) -> list[Hashable]:
    """The nodes, each after every node with an edge into it: generation by generation (the nodes
    without inputs, then those whose inputs are all placed, …), as networkx orders them. Raises
    :class:`CycleError` on a cycle."""
    indegree = {v: len(p) for v, p in g.pred.items() if p}
    generation = [v for v, p in g.pred.items() if not p]
    out: list[Hashable] = []
    while generation:
        out.extend(generation)
        following = []
        for node in generation:
            for child in g.succ[node]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    following.append(child)
                    del indegree[child]
        generation = following
    if indegree:
        raise CycleError("the graph has a cycle")
    return out


def is_directed_acyclic_graph(g: DiGraph) -> bool:
    try:
        topological_sort(g)
    except CycleError:
        return False
    return True


def find_cycle(g: DiGraph) -> list[tuple[Hashable, Hashable]]:
    """The edges of a cycle, found as networkx's ``find_cycle`` finds it (a depth-first walk over the
    edges from each node in turn, in insertion order). Raises :class:`CycleError` if there is none."""
    explored: set[Hashable] = set()
    for start in g:
        if start in explored:
            continue
        edges: list[tuple[Hashable, Hashable]] = []
        seen = {start}
        active = {start}
        previous_head = None
        for tail, head in _edge_dfs(g, start):
            if head in explored:
                continue
            if previous_head is not None and tail != previous_head:
                while True:  # back up the walk to the edge's tail
                    if not edges:
                        active = {tail}
                        break
                    active.remove(edges.pop()[1])
                    if edges and edges[-1][1] == tail:
                        break
            edges.append((tail, head))
            if head in active:
                for i, (t, _) in enumerate(edges):
                    if t == head:
                        return edges[i:]
                return edges  # pragma: no cover - the head is on the walk, so is an edge from it
            seen.add(head)
            active.add(head)
            previous_head = head
        explored.update(seen)
    raise CycleError("no cycle")


_DONE = object()


def _edge_dfs(g: DiGraph, start: Hashable) -> Iterator[tuple[Hashable, Hashable]]:
    """The edges reachable from ``start``, each once, depth first."""
    visited_edges: set[tuple[Hashable, Hashable]] = set()
    out: dict[Hashable, Iterator[Hashable]] = {}
    stack = [start]
    while stack:
        node = stack[-1]
        if node not in out:
            out[node] = iter(g.succ[node])
        child = next(out[node], _DONE)
        if child is _DONE:
            stack.pop()
            continue
        edge = (node, child)
        if edge not in visited_edges:
            visited_edges.add(edge)
            stack.append(child)
            yield edge


def descendants(g: DiGraph, source: Hashable) -> set[Hashable]:
    """The nodes a path from ``source`` reaches (never ``source`` itself)."""
    return _reach(g.succ, source)


def ancestors(g: DiGraph, source: Hashable) -> set[Hashable]:
    """The nodes with a path to ``source`` (never ``source`` itself)."""
    return _reach(g.pred, source)


def _reach(adj: dict[Hashable, dict[Hashable, Attrs]], source: Hashable) -> set[Hashable]:
    seen: set[Hashable] = set()
    todo = [source]
    while todo:
        for nbr in adj[todo.pop()]:
            if nbr not in seen:
                seen.add(nbr)
                todo.append(nbr)
    seen.discard(source)
    return seen
