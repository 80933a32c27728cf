"""Activation memory for backward, derived node by node from the graph.

Each kind says what its module keeps (:class:`~archdsl.kinds.Saved`): which inputs, whether its
output, and the bytes of tensors it makes and keeps. Here those are put together: a tensor kept by
several components (the normalised input that feeds Q, K and V, say) is counted once, and a recompute
policy decides what stays:

* ``none``: everything the modules keep;
* ``selective``: without the attention core that can be recomputed cheaply (materialised scores and
  probabilities; Korthikanti et al. 2022, §4.2);
* ``full``: each block keeps only the tensors that enter it (its input; in a decoder block, also the
  encoder's output, counted once for all the blocks that read it) and recomputes the rest in backward
  (Chen et al. 2016). Tensors a layer outside the blocks keeps stay, as the head's input does.

Blocks the spec itself checkpoints (``checkpoint = true``) are treated as under ``full`` whatever the
policy. A block whose module keeps state across forwards (Transformer-XL's memory) is recomputed
too if asked, as ``torch.utils.checkpoint`` would; its module says not to. Nothing before the first
trainable weight of a frozen model is recorded. The test suite holds the totals to what PyTorch's
autograd keeps (``saved_tensors_hooks``), spec by spec and kind by kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from archdsl.cost.analysis import NodePlan, concrete, memo, node_act, plan, size_key
from archdsl.ir import Model
from archdsl.kinds import ActCfg, Saved
from archdsl.kinds.base import prod

POLICIES = ("none", "selective", "full")


@dataclass
class LayerMemory:
    name: str
    saved: Any = 0  # bytes kept for backward under the chosen policy
    core: Any = 0  # of which: the recomputable attention core


def block_layers(model: Model) -> dict[str, bool]:
    """Layer names of the blocks, each with whether the spec checkpoints it."""
    out: dict[str, bool] = {}
    for t in model.towers:  # a towers model's blocks, named by tower: `vision.h.0`
        out.update({f"{t.name}.{name}": ck for name, ck in block_layers(t).items()})
    for s in model.stacks:
        prefix = f"{s.role}." if model.type == "encoder_decoder" else ""
        for i in range(len(s.layers)):
            out[f"{prefix}h.{i}"] = bool(s.checkpoint and s.checkpoint[i])
    return out


@dataclass(frozen=True)
class _Recorded:
    """The component nodes autograd records (those on the gradient's path), read off the graph once:
    one representative node per class of equal nodes (``NodePlan.cls``), and each layer's nodes as the
    tuple of their classes — its *profile*: layers of equal profile keep equal bytes of their own."""

    nodes: tuple[NodePlan, ...]  # in graph order
    classes: dict[int, NodePlan]  # class -> a node of it
    profiles: dict[str, tuple[int, ...]]  # layer -> its nodes' classes, in order
    distinct: tuple[tuple[int, ...], ...]  # the profiles, each once


def _recorded(g: nx.DiGraph) -> _Recorded:
    if "archdsl_recorded" not in g.graph:
        nodes = tuple(p for p in plan(g) if p.output_grad)  # nothing before the first trainable weight
        profiles: dict[str, list[int]] = {}
        for p in nodes:
            profiles.setdefault(p.layer, []).append(p.cls)
        layers = {k: tuple(v) for k, v in profiles.items()}
        g.graph["archdsl_recorded"] = _Recorded(
            nodes, {p.cls: p for p in nodes}, layers, tuple(dict.fromkeys(layers.values()))
        )
    return g.graph["archdsl_recorded"]  # type: ignore[no-any-return]


#: a group of layers that keep the same: their profile (None: recomputed, nothing of their own kept),
#: and the tensors they pay for, as ((shape, token ids), how many)
_Group = tuple[tuple[int, ...] | None, tuple[tuple[tuple[Any, bool], int], ...]]


def _layout(
    g: nx.DiGraph,
    rec: _Recorded,
    flags: dict[int, tuple[tuple[bool, ...], bool]],
    flags_key: tuple[Any, ...],
    recomputed: frozenset[str],
) -> tuple[list[_Group], list[int]]:
    """The layers in groups that keep the same bytes: (the groups, each layer's group, in the order of
    ``_layer_names``). A layer pays for each tensor it is the first to keep and is not recomputed; a
    recomputed block keeps the tensors that enter it (its input, and in a decoder the encoder's
    output), unless a layer before has paid for them already. ``flags``: per class, which inputs its
    nodes keep, and whether their output (``flags_key``: the same as a key). The same at every size
    at which the kinds keep the same tensors, so cached."""
    key = ("archdsl_layout", flags_key, recomputed)
    if key in g.graph:
        return g.graph[key]  # type: ignore[no-any-return]
    keepers: dict[str, list[str]] = {}  # tensor -> the layers that keep it, in order
    for p in rec.nodes:
        inputs, output = flags[p.cls]
        for src, keep in zip(p.preds, inputs, strict=False):
            if keep:
                keepers.setdefault(src, []).append(p.layer)
        if output:
            keepers.setdefault(p.nid, []).append(p.layer)
    payer: dict[str, str] = {}
    for tensor, keeping in keepers.items():
        live = [name for name in keeping if name not in recomputed]
        if live:
            payer[tensor] = live[0]
    entering = _entering_all(g)
    names = _layer_names(g)
    for name in names:  # in the order of the graph: an encoder's blocks before a decoder's
        if name in recomputed and name in rec.profiles:
            for t in entering.get(name, ()):
                payer.setdefault(t, name)  # a checkpoint keeps the block's inputs
    paid: dict[str, dict[tuple[Any, bool], int]] = {}
    for tensor, name in payer.items():
        counts = paid.setdefault(name, {})
        a = g.nodes[tensor]
        shape = (a["shape"], a["op"] == "input" and len(a["shape"]) == 2)
        counts[shape] = counts.get(shape, 0) + 1
    groups: dict[_Group, int] = {}
    index = []
    for name in names:
        profile = None if name in recomputed else rec.profiles.get(name)
        index.append(groups.setdefault((profile, tuple(paid.get(name, {}).items())), len(groups)))
    g.graph[key] = out = list(groups), index
    return out


def saved_activations(
    g: nx.DiGraph, model: Model, sizes: Mapping[str, Any], act: ActCfg, policy: str = "none"
) -> dict[str, LayerMemory]:
    """Bytes kept for backward, per report layer.

    Each tensor is paid for once, by the first layer that keeps it and is not recomputed; a recomputed
    block keeps the tensors that enter it (its input, and in a decoder the encoder's output), unless a
    layer before has paid for them already, and nothing else."""
    return saved_by_policy(g, model, sizes, act, (policy,))[policy]


def saved_by_policy(
    g: nx.DiGraph,
    model: Model,
    sizes: Mapping[str, Any],
    act: ActCfg,
    policies: tuple[str, ...] = POLICIES,
) -> dict[str, dict[str, LayerMemory]]:
    """``saved_activations`` for several policies. What each class of equal nodes keeps is asked of
    its kind once, and each group of layers that keep the same (equal profiles, the same tensors paid
    for: a deep stack's blocks) is summed once."""
    rec = _recorded(g)
    cache = memo(g)
    skey = size_key(sizes)
    acts: dict[Any, Any] = {}
    kept: dict[int, Saved] = {}
    flags: dict[int, tuple[tuple[bool, ...], bool]] = {}  # per class: the inputs it keeps, its output
    for c, p in rec.classes.items():
        nact, akey = node_act(act, p, acts)
        key = ("saved", p.sig, skey, akey)
        if key not in cache:
            keeps = p.kind.saved(p.node, p.ctx, tuple(concrete(x, sizes) for x in p.shapes), nact)
            cache[key] = keeps, (tuple(bool(x) for x in keeps.inputs), bool(keeps.output))
        kept[c], flags[c] = cache[key]
    layout_key = tuple(flags.items())  # classes in the same order every call
    own: dict[tuple[int, ...], tuple[Any, Any]] = {}  # profile -> (bytes its nodes keep, of which core)
    for profile in rec.distinct:
        internal: Any = 0
        core: Any = 0
        for c in profile:
            internal += kept[c].internal
            core += kept[c].core
        own[profile] = internal, core
    size_of: dict[tuple[Any, bool], Any] = {}
    names = _layer_names(g)
    blocks = _blocks(g, model)
    out: dict[str, dict[str, LayerMemory]] = {}
    done: dict[str, tuple[list[tuple[Any, Any]], list[int]]] = {}  # policy -> its groups' values, index
    for policy in policies:
        if policy == "selective" and "none" in done:  # the same tensors, less the attention core
            values, index = done["none"]
            values = [(saved - core, 0) for saved, core in values]
            out[policy] = {name: LayerMemory(name, *values[i]) for name, i in zip(names, index, strict=True)}
            continue
        recomputed = frozenset(name for name, ck in blocks.items() if policy == "full" or ck)
        groups, index = _layout(g, rec, flags, layout_key, recomputed)
        values = []
        for profile, tensors in groups:
            saved, core = own[profile] if profile is not None else (0, 0)
            for shape, count in tensors:
                if shape not in size_of:
                    size_of[shape] = shape_bytes(shape, sizes, act.bytes)
                saved += size_of[shape] * count
            values.append((saved - core, 0) if policy == "selective" else (saved, core))
        out[policy] = {name: LayerMemory(name, *values[i]) for name, i in zip(names, index, strict=True)}
        done[policy] = values, index
    return out


def _blocks(g: nx.DiGraph, model: Model) -> dict[str, bool]:
    """``block_layers(model)``, kept with the graph of that model."""
    kept = g.graph.get("archdsl_blocks")
    if kept is None or kept[0] is not model:
        kept = g.graph["archdsl_blocks"] = model, block_layers(model)
    return kept[1]  # type: ignore[no-any-return]


def shape_bytes(shape: tuple[Any, bool], sizes: Mapping[str, Any], by: int) -> Any:
    """Bytes of a tensor given as (its shape in the graph's symbols, whether it holds token ids:
    int64) at ``sizes``, ``by`` bytes per element otherwise (a polynomial at symbolic sizes)."""
    dims, ids = shape
    return prod(tuple(sizes.get(d, d) if isinstance(d, str) else d for d in dims)) * (8 if ids else by)


def _layer_names(g: nx.DiGraph) -> list[str]:
    if "archdsl_layers" not in g.graph:
        names = dict.fromkeys(layer for _, layer in g.nodes(data="layer"))
        g.graph["archdsl_layers"] = [x for x in names if x not in ("input", "output")]
    return g.graph["archdsl_layers"]  # type: ignore[no-any-return]


def _entering_all(g: nx.DiGraph) -> dict[str, list[str]]:
    """For every layer, the tensors that enter it from outside (a block's input, the encoder output);
    read off the graph once."""
    if "archdsl_entering" not in g.graph:
        found: dict[str, set[str]] = {}
        layers = dict(g.nodes(data="layer"))
        for n, preds in g.pred.items():
            layer = layers[n]
            for p in preds:
                if layers[p] != layer:
                    found.setdefault(layer, set()).add(p)
        g.graph["archdsl_entering"] = {k: sorted(v) for k, v in found.items()}
    return g.graph["archdsl_entering"]  # type: ignore[no-any-return]
