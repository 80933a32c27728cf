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

from archdsl.cost.analysis import concrete, memo, node_act, plan, size_key
from archdsl.ir import Model
from archdsl.kinds import ActCfg, Saved
from archdsl.kinds.base import prod

POLICIES = ("none", "selective", "full")


@dataclass
class LayerMemory:
    name: str
    saved: Any = 0  # bytes kept for backward under the chosen policy
    core: Any = 0  # of which: the recomputable attention core


def tensor_bytes(g: nx.DiGraph, n: str, sizes: Mapping[str, Any], by: int) -> Any:
    """Bytes of the tensor node ``n`` makes, at ``by`` bytes per element (token ids: int64). Cached by
    shape: a deep stack has thousands of tensors but a handful of shapes (and symbolic sizes make
    each product a polynomial)."""
    a = g.nodes[n]
    ids = a["op"] == "input" and len(a["shape"]) == 2
    key = ("shape_bytes", a["shape"], ids, size_key(sizes), by)
    cache = memo(g)
    if key not in cache:
        shape = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in a["shape"])
        cache[key] = prod(shape) * (8 if ids else by)
    return cache[key]


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


@dataclass
class _Pass:
    """What every node keeps at one set of sizes, before a recompute policy is applied."""

    internal: dict[str, Any]  # by layer: bytes of tensors the layer's nodes make and keep
    core: dict[str, Any]  # by layer: of which the recomputable attention core
    keepers: dict[str, list[str]]  # tensor (its producing node) -> the layers that keep it, in order
    with_grad: set[str]  # layers some of whose nodes run on gradients


def _pass(g: nx.DiGraph, sizes: Mapping[str, Any], act: ActCfg) -> _Pass:
    internal: dict[str, Any] = {}
    core: dict[str, Any] = {}
    keepers: dict[str, list[str]] = {}
    with_grad: set[str] = set()
    cache = memo(g)
    acts: dict[Any, Any] = {}
    skey = size_key(sizes)
    for p in plan(g):
        if not p.output_grad:
            continue  # nothing before the first trainable weight is recorded by autograd
        with_grad.add(p.layer)
        nact, akey = node_act(act, p, acts)
        key = ("saved", p.sig, skey, akey)
        if key not in cache:
            cache[key] = p.kind.saved(p.node, p.ctx, tuple(concrete(s, sizes) for s in p.shapes), nact)
        s: Saved = cache[key]
        internal[p.layer] = internal.get(p.layer, 0) + s.internal
        core[p.layer] = core.get(p.layer, 0) + s.core
        for src, keep in zip(p.preds, s.inputs, strict=False):
            if keep:
                keepers.setdefault(src, []).append(p.layer)
        if s.output:
            keepers.setdefault(p.nid, []).append(p.layer)
    return _Pass(internal, core, keepers, with_grad)


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
    """``saved_activations`` for several policies, from one pass over the graph."""
    raw = _pass(g, sizes, act)
    blocks = block_layers(model)
    names = _layer_names(g)
    entering = _entering_all(g)
    cache = memo(g)
    skey = size_key(sizes)
    out: dict[str, dict[str, LayerMemory]] = {}
    for policy in policies:
        recomputed = {name for name, ck in blocks.items() if policy == "full" or ck}
        if policy == "selective" and "none" in out:  # the same tensors, less the attention core
            out[policy] = {name: LayerMemory(name, lm.saved - lm.core, 0) for name, lm in out["none"].items()}
            continue
        layers = {name: LayerMemory(name) for name in names}
        for name, layer in layers.items():
            if name not in recomputed:
                layer.saved += raw.internal.get(name, 0)
                layer.core += raw.core.get(name, 0)
        payer: dict[str, str] = {}
        for tensor, keeping in raw.keepers.items():
            live = [name for name in keeping if name not in recomputed]
            if live:
                payer[tensor] = live[0]
        for name in layers:  # in the order of the graph: an encoder's blocks before a decoder's
            if name in recomputed and name in raw.with_grad:
                for p in entering.get(name, ()):
                    payer.setdefault(p, name)  # a checkpoint keeps the block's inputs
        for tensor, name in payer.items():
            key = ("bytes", tensor, skey, act.bytes)
            if key not in cache:
                cache[key] = tensor_bytes(g, tensor, sizes, act.bytes)
            layers[name].saved += cache[key]
        if policy == "selective":
            for layer in layers.values():
                layer.saved -= layer.core
                layer.core = 0
        out[policy] = layers
    return out


def _layer_names(g: nx.DiGraph) -> list[str]:
    if "archdsl_layers" not in g.graph:
        names = dict.fromkeys(g.nodes[n]["layer"] for n in g.nodes)
        g.graph["archdsl_layers"] = [x for x in names if x not in ("input", "output")]
    return g.graph["archdsl_layers"]  # type: ignore[no-any-return]


def _entering_all(g: nx.DiGraph) -> dict[str, list[str]]:
    """For every layer, the tensors that enter it from outside (a block's input, the encoder output);
    read off the graph once."""
    if "archdsl_entering" not in g.graph:
        found: dict[str, set[str]] = {}
        for n in g.nodes:
            layer = g.nodes[n]["layer"]
            for p in g.predecessors(n):
                if g.nodes[p]["layer"] != layer:
                    found.setdefault(layer, set()).add(p)
        g.graph["archdsl_entering"] = {k: sorted(v) for k, v in found.items()}
    return g.graph["archdsl_entering"]  # type: ignore[no-any-return]
