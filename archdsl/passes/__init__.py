"""Validation passes over the graph view. Each is a pure function ``graph -> diagnostics``; the driver
runs them in order and stops after the first pass that finds errors (later passes assume earlier ones
held: shape inference needs an acyclic, connected graph)."""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from archdsl.diagnostics import Diagnostic
from archdsl.passes.lengths import check_fixed_lengths
from archdsl.passes.shapes import infer_shapes
from archdsl.passes.structure import check_acyclic, check_connected

Pass = Callable[[nx.DiGraph], list[Diagnostic]]

PASSES: tuple[tuple[str, Pass], ...] = (
    ("acyclic", check_acyclic),
    ("connected", check_connected),
    ("shapes", infer_shapes),
    ("lengths", check_fixed_lengths),  # a length the input fixes (an image), against the tables
)


def run_passes(g: nx.DiGraph) -> list[Diagnostic]:
    for _name, fn in PASSES:
        diags = fn(g)
        if diags:
            return sorted(diags, key=Diagnostic.sort_key)
    return []
