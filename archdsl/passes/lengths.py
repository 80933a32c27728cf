"""Sequence lengths against the tables that bound them.

A component may support sequences up to a limit (``Kind.max_seq_len``): a positional table's
``max_len`` (learned, sinusoidal, RoPE's precomputed angles, acting in every self-attention of its
stack), or a kind's own (BigBird's random-block table). Token models take their length at run time —
``report`` checks the length it is asked for (``archdsl.cost.check_seq_len``) — but an image fixes it:
its patches (and a class token) are the sequence, so ``check`` can tell, and must, that it does not fit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import networkx as nx

from archdsl.diagnostics import Diagnostic
from archdsl.ir import Node
from archdsl.kinds import REGISTRY
from archdsl.passes.shapes import dedupe, inputs_of


def length_limits(g: nx.DiGraph) -> Iterator[tuple[str, Node, int]]:
    """Every component node with a length limit, as (graph node, the IR node whose ``max_len`` sets
    the limit, the limit). An attention's limit may come from its own table (BigBird), from the
    stack's positional scheme acting in it (RoPE), or both: each that binds is given."""
    limits: dict[tuple[int, int, int], int | None] = {}  # by the objects (repeated layers share them)
    for n, a in g.nodes(data=True):
        if "kind" not in a:
            continue
        kind, node, ctx = a["kind"], a["node"], a["ctx"]
        key = (id(kind), id(node), id(ctx))
        if key not in limits:
            limits[key] = kind.max_seq_len(node, ctx)
        limit = limits[key]
        if limit is None:
            continue
        pos = ctx.position if kind.role == "attention" and not node.get("cross", False) else None
        binding = False
        if pos is not None and REGISTRY[pos.kind].max_seq_len(pos, ctx) == limit:
            yield n, pos, limit  # the stack's scheme acting in this attention
            binding = True
        if not binding or node.get("max_len") == limit:
            yield n, node, limit  # its own table


def fixed_length_source(g: nx.DiGraph, length: int) -> str:
    """How the model input gives a fixed length (from the embedding that makes it)."""
    for _, a in g.nodes(data=True):
        if "kind" in a and a["kind"].role == "embedding":
            fixed = a["kind"].fixed_length(a["node"])
            if fixed is not None and fixed[0] == length:
                return fixed[1]
    return f"the model input gives {length} positions"


def check_fixed_lengths(g: nx.DiGraph) -> list[Diagnostic]:
    """E014 where the model input fixes the sequence length (an image's patches) past a limit: at the
    ``max_len`` that sets the limit, with how many positions the input gives."""
    diags = []
    for n, source, limit in length_limits(g):
        length: Any = g.nodes[inputs_of(g, n)[0]]["shape"][1]
        if not isinstance(length, int) or length <= limit:
            continue  # a symbolic length is the report's to check
        diags.append(
            Diagnostic(
                "E014",
                f"the input fixes the sequence length at {length}, past `{source.kind}` max_len ({limit})",
                source.span_of("max_len"),
                help=f"{fixed_length_source(g, length)}: set max_len = {length} or more",
            )
        )
    return dedupe(diags)
