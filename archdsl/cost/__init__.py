"""Analysis: parameters, FLOPs and memory from the graph view, node by node, through the registry.

Nothing here builds a module or imports torch. :mod:`archdsl.cost.analysis` costs each node (exact
integers at given sizes; polynomials in b, n, m), :mod:`archdsl.cost.memory` the activations backward
keeps, :mod:`archdsl.cost.report` puts a report together, :mod:`archdsl.cost.compare` sets variants side
by side and solves for crossovers, :mod:`archdsl.cost.render` and :mod:`archdsl.cost.html` print them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx

from archdsl.cost.analysis import ComponentCost, LayerCost, big_o_text, concrete
from archdsl.cost.poly import Poly
from archdsl.cost.report import CONVENTIONS, DTYPES, POLICIES, Report, Settings, build_report
from archdsl.diagnostics import Diagnostic, SpecError
from archdsl.passes.lengths import length_limits
from archdsl.passes.shapes import inputs_of

__all__ = [
    "CONVENTIONS",
    "DTYPES",
    "POLICIES",
    "ComponentCost",
    "LayerCost",
    "Poly",
    "Report",
    "Settings",
    "big_o_text",
    "build_report",
    "check_seq_len",
    "ensure_seq_len",
]


def check_seq_len(g: nx.DiGraph, sizes: Mapping[str, Any]) -> list[Diagnostic]:
    """E014 for a length past a positional table's ``max_len`` (or a scheme's limit), at the
    ``max_len`` that sets the limit (``length_limits``: the stack's rotary table, say, or BigBird's
    own). A length the input fixes (an image) is ``check``'s already (``check_fixed_lengths``)."""
    diags = []
    if "archdsl_length_limits" not in g.graph:  # the same for every length of a sweep
        g.graph["archdsl_length_limits"] = [
            (g.nodes[inputs_of(g, n)[0]]["shape"], node, limit) for n, node, limit in length_limits(g)
        ]
    for shape, node, limit in g.graph["archdsl_length_limits"]:
        length = concrete(shape, sizes)[1]
        if isinstance(length, int) and length > limit:
            d = Diagnostic(
                "E014",
                f"sequence length {length} exceeds `{node.kind}` max_len ({limit})",
                node.span_of("max_len"),
                help=f"analyse with a length of {limit} or less, or raise max_len",
            )
            if d not in diags:
                diags.append(d)
    return diags


def ensure_seq_len(g: nx.DiGraph, sizes: Mapping[str, Any]) -> None:
    diags = check_seq_len(g, sizes)
    if diags:
        raise SpecError(diags)
