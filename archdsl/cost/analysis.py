"""Costs node by node over the graph view, through the registry — at concrete sizes (exact integers) and
at symbolic ones (polynomials in batch ``b`` and lengths ``n``, ``m``).

The graph's shapes hold the symbols ``B`` (batch), ``T`` (the sequence; an encoder-decoder's target) and
``S`` (an encoder-decoder's source). Polynomials name them ``b`` and ``n`` — and, in an encoder-decoder,
``n`` for the encoder's length and ``m`` for the decoder's. Each kind's cost function is called twice:
with integers, for the exact count at the sizes asked for (window kinds are piecewise: dense below their
window), and with :class:`~archdsl.cost.poly.Poly` sizes, for the polynomial (their regime past the
window). Results are cached on the (node, context, shapes) key, so the repeated layers of a deep stack
cost one evaluation.

Nothing here builds a module or imports torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import networkx as nx

from archdsl.cost.poly import B, M, N, Poly
from archdsl.cost.regime import Piecewise, component_kv, total
from archdsl.ir import Model
from archdsl.kinds import ActCfg, Ctx
from archdsl.kinds.base import Shape
from archdsl.passes.shapes import inputs_of

EMBEDDING_ROLES = ("embedding", "position")


def symbols(model: Model) -> dict[str, Poly]:
    """The graph's shape symbols as polynomial variables."""
    if model.type == "encoder_decoder":
        return {"B": B, "S": N, "T": M}
    return {"B": B, "T": N, "S": N}


def concrete(shape: tuple[Any, ...], sizes: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sizes.get(d, d) if isinstance(d, str) else d for d in shape)


def exact(x: Any) -> int | Fraction:
    """A count as an int (a Fraction only when a kind's count is not whole, e.g. pairs averaged over
    heads)."""
    if isinstance(x, Fraction):
        return x.numerator if x.denominator == 1 else x
    return int(x)


# -- gradient flow ---------------------------------------------------------------------------------


def weights_train(a: Mapping[str, Any]) -> bool:
    """Whether a component's own weights train: not in a frozen base (LoRA, adapters), unless the kind
    always trains (adapters). A tied head's weight is the token embedding's, which trains with it."""
    return not a["ctx"].frozen or a["kind"].always_trains


def gradient_flow(
    g: nx.DiGraph,
    preds: Mapping[str, tuple[str, ...]] | None = None,
    trains: Callable[[str], tuple[bool, bool]] | None = None,
) -> dict[str, tuple[bool, bool, bool, tuple[bool, ...]]]:
    """For every component node: (its input needs a gradient, its own weights train, its output needs
    a gradient, and per input whether it needs one where its inputs differ — else ()). Nothing before
    the first trainable weight needs one: autograd records no backward for it. ``preds`` (each node's
    inputs) and ``trains`` (a component's (own weights train, it trains something)) where known."""
    grad: dict[str, bool] = {}
    out: dict[str, tuple[bool, bool, bool, tuple[bool, ...]]] = {}
    for n in topological_order(g):
        a = g.nodes[n]
        grads = tuple(grad[p] for p in (preds[n] if preds is not None else inputs_of(g, n)))
        input_grad = any(grads)
        if "kind" not in a:
            grad[n] = input_grad
            continue
        own, trains_any = trains(n) if trains is not None else _trains(a)
        grad[n] = input_grad or trains_any
        out[n] = (input_grad, own, grad[n], grads if len(set(grads)) > 1 else ())
    return out


def _trains(a: Mapping[str, Any]) -> tuple[bool, bool]:
    """(its own weights train, it trains a weight: its own, or the embedding a tied head shares)."""
    kind, node, ctx = a["kind"], a["node"], a["ctx"]
    own = weights_train(a)
    return own, kind.trainable_params(node, ctx) > 0 or (own and kind.shares_embedding(node))


def topological_order(g: nx.DiGraph) -> list[str]:
    """The nodes in a topological order (kept from shape inference, which walks the graph in one)."""
    if "archdsl_topo" not in g.graph:
        g.graph["archdsl_topo"] = list(nx.topological_sort(g))
    return g.graph["archdsl_topo"]  # type: ignore[no-any-return]


# -- one component ---------------------------------------------------------------------------------


def _node_costs(
    kind: Any, node: Any, ctx: Ctx, ins: tuple[Shape, ...], act: ActCfg, selective: bool
) -> tuple:
    """(forward, mask-aware forward, backward, mask-aware backward, recompute) of one component."""
    return (
        kind.flops(node, ctx, ins),
        kind.flops_mask_aware(node, ctx, ins),
        kind.backward_flops(node, ctx, ins, act),
        kind.backward_flops(node, ctx, ins, act, mask_aware=True),
        kind.recompute_flops(node, ctx, ins, act, selective),
    )


def memo(g: nx.DiGraph) -> dict[Any, Any]:
    """A graph's cache of node results, keyed by the node's signature (``NodePlan.sig``), the sizes
    and the settings: a deep stack of equal layers, or a sweep over lengths, costs each distinct
    evaluation once."""
    return g.graph.setdefault("archdsl_memo", {})  # type: ignore[no-any-return]


def size_key(sizes: Mapping[str, Any]) -> tuple[Any, ...]:
    return (sizes.get("B"), sizes.get("T"), sizes.get("S"))


def node_act(
    act: ActCfg, p: Any, cache: dict[Any, tuple[ActCfg, tuple[Any, ...]]]
) -> tuple[ActCfg, tuple[Any, ...]]:
    """``act`` with the node's gradient flow, and a plain tuple of it to key caches with (cheaper to
    hash than the dataclass)."""
    key = (id(act), p.input_grad, p.own_grad, p.input_grads)
    if key not in cache:
        cfg = ActCfg(act.bytes, act.flash, act.training, p.input_grad, p.own_grad, p.input_grads)
        cache[key] = cfg, (act.bytes, act.flash, act.training, p.input_grad, p.own_grad, p.input_grads)
    return cache[key]


@dataclass
class ComponentCost:
    """One graph node: a component applied once (a module applied twice appears as ``path`` and
    ``path#2``; ``module`` is the module it lowers to). Integers are exact counts at the report's
    sizes; ``*_poly`` the same counts as polynomials."""

    path: str
    module: str
    kind: str
    role: str
    layer: str
    params: int
    trainable: int
    active: int
    flops_forward: int
    flops_mask_aware: int | Fraction
    flops_backward: int
    flops_backward_mask_aware: int | Fraction
    flops_recompute: int
    kv_cache_elements: int  # per sequence, for incremental decoding
    forward_poly: Poly
    mask_aware_poly: Poly
    backward_poly: Poly
    backward_mask_aware_poly: Poly
    recompute_poly: Poly
    kv_cache_poly: Poly  # elements per sequence
    big_o: tuple[str, ...] = ()
    #: what multi-head attention with the same heads and head sizes would cache, per sequence
    kv_cache_mha_elements: int = 0

    def to_dict(self, sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
        """JSON-ready; with the report's ``sizes``, also whether the polynomial gives the count."""
        exact = {}
        if sizes is not None:
            exact["forward_poly_exact"] = self.forward_poly(**sizes) == self.flops_forward
        return {
            "path": self.path,
            "module": self.module,
            "kind": self.kind,
            "role": self.role,
            "params": self.params,
            "params_trainable": self.trainable,
            "params_active": self.active,
            "flops_forward": self.flops_forward,
            "flops_forward_mask_aware": jsonable(self.flops_mask_aware),
            "flops_backward": self.flops_backward,
            "flops_recompute": self.flops_recompute,
            "forward_poly": self.forward_poly.expr(),
            **exact,
            "big_o": big_o_text(self.big_o),
        }


def jsonable(x: int | Fraction) -> int | float:
    return x if isinstance(x, int) else float(x)


@dataclass
class Sizes:
    """Concrete sizes for the shape symbols, and the matching polynomial variables."""

    values: dict[str, int]
    symbols: dict[str, Poly]


@dataclass(frozen=True)
class NodePlan:
    """What a report needs of one component node, whatever the sizes: read off the graph once."""

    nid: str
    kind: Any
    node: Any
    ctx: Ctx
    layer: str
    module: str
    shapes: tuple[Shape, ...]  # its inputs' shapes, in the graph's symbols
    input_grad: bool
    own_grad: bool
    output_grad: bool  # its output needs a gradient: it is on autograd's graph
    input_grads: tuple[bool, ...]  # per input, where they differ (else ())
    sig: int  # equal for nodes of equal kind, parameters, context and input shapes (repeated layers)
    cls: int  # equal for nodes of equal ``sig`` and gradient flow: every cost and saved tensor is equal
    preds: tuple[str, ...]  # the nodes its inputs come from
    params: int
    trainable: int
    active: int
    caches: bool  # a decoder's attention or recurrent component: it keeps a KV cache or a state

    @property
    def counts(self) -> tuple[int, int, int]:
        """(params, trainable, active): the parameter fields of its :class:`ComponentCost`."""
        return self.params, self.trainable, self.active


def plan(g: nx.DiGraph) -> list[NodePlan]:
    """The component nodes in graph order, with their shapes, gradient flow and parameter counts;
    computed once per graph (a sweep reuses it). Nodes of equal signature (the repeated layers of a
    deep stack) ask their kind for their parameter counts once."""
    if "archdsl_plan" in g.graph:
        return g.graph["archdsl_plan"]  # type: ignore[no-any-return]
    preds = {n: tuple(inputs_of(g, n)) for n in g.nodes}
    sigs: dict[tuple[Any, ...], int] = {}
    same: dict[tuple[Any, ...], int] = {}  # by the objects' identity: repeated layers share them
    sig_of: dict[str, int] = {}
    for n, a in g.nodes(data=True):
        if "kind" in a:
            kind, node, ctx = a["kind"], a["node"], a["ctx"]
            shapes = tuple(g.nodes[p]["shape"] for p in preds[n])
            key = (id(kind), id(node), id(ctx), shapes)
            if key not in same:  # by value: equal nodes written apart share one too
                # the kind itself too: one IR node may be costed by two kinds (ALBERT's table and projection)
                same[key] = sigs.setdefault((id(kind), node.kind, node, ctx, shapes), len(sigs))
            sig_of[n] = same[key]
    per_sig: dict[int, Any] = {}

    def of_sig(n: str) -> Any:
        """(own weights train, it trains, params, trainable, active, caches) of a node's signature."""
        sig = sig_of[n]
        if sig not in per_sig:
            a = g.nodes[n]
            kind, node, ctx = a["kind"], a["node"], a["ctx"]
            per_sig[sig] = (
                *_trains(a),
                int(kind.n_params(node, ctx)),
                int(kind.trainable_params(node, ctx)),
                int(kind.active_params(node, ctx)),
                (kind.role == "attention" or kind.recurrent) and ctx.stack == "decoder",
            )
        return per_sig[sig]

    flow = gradient_flow(g, preds, lambda n: of_sig(n)[:2])
    out = []
    classes: dict[tuple[Any, ...], int] = {}
    for n in g.nodes:
        a = g.nodes[n]
        if "kind" not in a:
            continue
        sig = sig_of[n]
        _, _, params, trainable, active, caches = of_sig(n)
        owner = a["owner"]
        out.append(
            NodePlan(
                nid=n,
                kind=a["kind"],
                node=a["node"],
                ctx=a["ctx"],
                layer=a["layer"],
                module=a["path"],
                shapes=tuple(g.nodes[p]["shape"] for p in preds[n]),
                input_grad=flow[n][0],
                own_grad=flow[n][1],
                output_grad=flow[n][2],
                input_grads=flow[n][3],
                sig=sig,
                cls=classes.setdefault((sig, *flow[n]), len(classes)),
                preds=preds[n],
                params=params if owner else 0,
                trainable=trainable if owner else 0,
                active=active if owner else 0,
                caches=caches,
            )
        )
    g.graph["archdsl_plan"] = out
    return out


def layer_members(g: nx.DiGraph) -> dict[str, tuple[int, ...]]:
    """Each layer's component nodes, as positions in the plan (the layers in the order the plan meets
    them: a report's rows)."""
    if "archdsl_layer_members" not in g.graph:
        members: dict[str, list[int]] = {}
        for i, p in enumerate(plan(g)):
            members.setdefault(p.layer, []).append(i)
        g.graph["archdsl_layer_members"] = {k: tuple(v) for k, v in members.items()}
    return g.graph["archdsl_layer_members"]  # type: ignore[no-any-return]


def params_total(g: nx.DiGraph) -> int:
    """The model's parameter count (what ``Report.params_total`` reports), from the plan alone."""
    return sum(p.params for p in plan(g))


def poly_regime(g: nx.DiGraph) -> tuple[int, int]:
    """(m, t): the model's polynomials equal its exact counts for lengths that are multiples of m and
    above t — the lcm of its components' blocks and the largest of their dense thresholds."""
    if "archdsl_regime" not in g.graph:
        multiple, above = 1, 0
        for p in plan(g):
            m, t = p.kind.regime(p.node)
            multiple, above = math.lcm(multiple, m), max(above, t)
        g.graph["archdsl_regime"] = multiple, above
    return g.graph["archdsl_regime"]  # type: ignore[no-any-return]


def free_length(g: nx.DiGraph) -> bool:
    """Whether some input's length is not fixed by the input itself (token ids, not an image): then a
    length an input fixes (an image's patches, a latent array) is named N beside it, n."""
    if "archdsl_free_length" not in g.graph:
        g.graph["archdsl_free_length"] = any(
            a["op"] == "input" and any(d in ("T", "S") for d in a["shape"]) for _, a in g.nodes(data=True)
        )
    return g.graph["archdsl_free_length"]  # type: ignore[no-any-return]


def context_limit(g: nx.DiGraph) -> int | None:
    """The longest length the model takes: its shortest positional table (``max_len``), or None. In a
    model whose inputs fix some lengths but not all (CLIP's image and text towers), only the tables
    that bound a length the input does not fix."""
    if "archdsl_context" not in g.graph:
        mixed = free_length(g)
        limits = [
            p.kind.max_seq_len(p.node, p.ctx)
            for p in plan(g)
            if not mixed or any(isinstance(s[1], str) for s in p.shapes if len(s) > 1)
        ]
        known = [x for x in limits if x is not None]
        g.graph["archdsl_context"] = min(known) if known else None
    return g.graph["archdsl_context"]  # type: ignore[no-any-return]


def kv_piecewise(g: nx.DiGraph, model: Model) -> Piecewise | None:
    """KV-cache elements per sequence, piecewise in the lengths (see :mod:`archdsl.cost.regime`):
    the sum of every caching component's pieces in the length its keys come from. None where some
    component's count has no such form (it is then stated with the model's regime)."""
    key = "archdsl_kv_piecewise"
    if key not in g.graph:
        sym = symbols(model)
        limit = context_limit(g)
        parts: dict[int, Piecewise | None] = {}
        out = []
        for p in plan(g):
            if not p.caches:
                continue
            if p.sig not in parts:
                length = p.shapes[-1][1]

                def count(context: Any, p: NodePlan = p) -> Any:
                    return p.kind.kv_cache(p.node, p.ctx, context)

                if isinstance(length, str):
                    var = "m" if sym[length] is M else "n"
                    parts[p.sig] = component_kv(count, var, p.kind.regime(p.node), limit)
                else:  # a length fixed by the input
                    parts[p.sig] = Piecewise.of(Poly.lift(count(length)))
            out.append(parts[p.sig])
        g.graph[key] = total(out)
    return g.graph[key]  # type: ignore[no-any-return]


def _symbolic(
    p: NodePlan, sym: Mapping[str, Poly], act: ActCfg, selective: bool, mixed: bool = False
) -> tuple[Any, ...]:
    """A node's polynomials: forward, mask-aware, backward, mask-aware backward, the kind's own
    recomputation, KV-cache elements per sequence, and its growth terms (``mixed``: the model has a
    length its input does not fix besides this node's fixed one, which is then called N)."""
    shapes = tuple(concrete(s, sym) for s in p.shapes)
    pf, pm, pb, pbm, pr = (Poly.lift(x) for x in _node_costs(p.kind, p.node, p.ctx, shapes, act, selective))
    pkv = Poly.lift(p.kind.kv_cache(p.node, p.ctx, shapes[-1][1])) if p.caches else Poly()
    declared = tuple(p.kind.big_o(p.node, p.ctx))
    if len(shapes[0]) > 1 and isinstance(shapes[0][1], Poly):
        growth = growth_terms(declared, pf, _renaming(shapes))
    elif mixed and len(shapes[0]) > 1:  # CLIP's image patches, Perceiver's latents: N, beside n
        growth = growth_terms(declared, pf, _renaming(shapes, fixed="N"))
    else:  # a length fixed by the input (a ViT's patches): the kind's terms, in that length
        growth = declared
    return pf, pm, pb, pbm, pr, pkv, growth


def component_costs(
    g: nx.DiGraph, sizes: Sizes, act: ActCfg, policy: str, recomputed: set[str]
) -> list[ComponentCost]:
    """Every component node's costs. ``recomputed``: the layers whose forward backward redoes whole
    (full recomputation, or blocks the spec checkpoints). Each class of equal nodes (``NodePlan.cls``)
    is costed once; its nodes differ only in their names."""
    selective = policy == "selective"
    cache = memo(g)
    acts: dict[Any, Any] = {}
    skey = size_key(sizes.values)
    mixed = free_length(g)
    costs: dict[tuple[int, bool], tuple[Any, ...]] = {}
    out = []
    for p in plan(g):
        again = p.layer in recomputed
        values = costs.get((p.cls, again))
        if values is None:
            values = costs[p.cls, again] = _class_costs(
                p, cache, acts, act, sizes, skey, selective, mixed, again
            )
        out.append(ComponentCost(p.nid, p.module, p.node.kind, p.kind.role, p.layer, *p.counts, *values))
    return out


def _class_costs(
    p: NodePlan,
    cache: dict[Any, Any],
    acts: dict[Any, Any],
    act: ActCfg,
    sizes: Sizes,
    skey: tuple[Any, ...],
    selective: bool,
    mixed: bool,
    again: bool,
) -> tuple[Any, ...]:
    """The fields of a node's :class:`ComponentCost` after its names and parameter counts, in order
    (``again``: its layer's forward is recomputed whole)."""
    nact, akey = node_act(act, p, acts)
    key = ("sym", p.sig, akey, selective)
    if key not in cache:
        cache[key] = _symbolic(p, sizes.symbols, nact, selective, mixed)
    pf, pm, pb, pbm, pr, pkv, growth = cache[key]
    key = ("costs", p.sig, skey, akey, selective)
    if key not in cache:
        ins = tuple(concrete(s, sizes.values) for s in p.shapes)
        kv = p.kind.kv_cache(p.node, p.ctx, ins[-1][1]) if p.caches else 0
        kv_mha = p.kind.kv_cache_mha(p.node, p.ctx, ins[-1][1]) if p.caches else 0
        cache[key] = (*_node_costs(p.kind, p.node, p.ctx, ins, nact, selective), kv, kv_mha)
    fwd, mask, bwd, bwd_mask, rec, kv, kv_mha = cache[key]
    if again:  # the whole forward again, and the kernel's own recomputation
        rec, pr = rec + fwd, pr + pf
    return (
        int(fwd),
        exact(mask),
        int(bwd),
        exact(bwd_mask),
        int(rec),
        int(kv),
        pf,
        pm,
        pb,
        pbm,
        pr,
        pkv,
        growth,
        int(kv_mha),
    )


# -- big-O, read off the polynomial -----------------------------------------------------------------

_DEGREE = re.compile(r"^(n|m)([²³]?)$")


def _renaming(sym: tuple[Shape, ...], fixed: str | None = None) -> dict[str, str]:
    """A kind's growth terms call its query length ``n`` and its keys' ``m``; the report calls an
    encoder-decoder's decoder length m, and a length the input fixes ``fixed`` (N) where it has
    another that it does not. The names the kind's n and m take here."""

    def name(shape: Shape) -> str:
        if not isinstance(shape[1], Poly):
            return fixed or "n"
        return "m" if shape[1] is M else "n"

    queries = name(sym[0]) if len(sym[0]) > 1 else "n"
    keys = "n" if queries == "m" else "m" if queries == "n" else queries
    if len(sym) > 1 and len(sym[1]) > 1:
        keys = name(sym[1])
    return {"n": queries, "m": keys}


def _term_degree(term: str) -> tuple[int, int]:
    deg = [0, 0]
    for token in term.split("·"):
        found = _DEGREE.match(token)
        if found:
            deg[0 if found[1] == "n" else 1] += {"": 1, "²": 2, "³": 3}[found[2]]
    return deg[0], deg[1]


def _rename(term: str, names: Mapping[str, str]) -> str:
    def one(token: str) -> str:
        found = _DEGREE.match(token)
        return names[found[1]] + found[2] if found else token

    return "·".join(one(t) for t in term.split("·"))


def growth_terms(declared: tuple[str, ...], poly: Poly, names: Mapping[str, str]) -> tuple[str, ...]:
    """A component's growth: the terms its kind declares (``n·d²``, ``n²·d``: the factors the
    polynomial's numbers hide), kept where the polynomial has a term of that degree in the lengths;
    degrees the kind does not name appear bare (``n²``)."""
    degrees = {(k[1], k[2]) for k in poly.terms}
    kept = []
    covered = set()
    for term in declared:
        t = _rename(term, names)
        deg = _term_degree(t)
        if deg in degrees:
            kept.append(t)
            covered.add(deg)
    for dn, dm in sorted(degrees - covered - {(0, 0)}, reverse=True):
        kept.append(_bare(dn, dm))
    return tuple(kept)


def _bare(dn: int, dm: int) -> str:
    sup = {1: "", 2: "²", 3: "³"}
    parts = [v + sup.get(e, f"^{e}") for v, e in (("n", dn), ("m", dm)) if e]
    return "·".join(parts)


def leading_terms(terms: tuple[str, ...]) -> tuple[str, ...]:
    """The terms no other exceeds in both lengths' degrees: what dominates for long sequences."""
    degs = {t: _term_degree(t) for t in terms}
    return tuple(
        t
        for t, (a, b) in degs.items()
        if not any((c, d) != (a, b) and c >= a and d >= b for c, d in degs.values())
    )


def big_o_text(terms: tuple[str, ...]) -> str:
    """``O(n²·d + n·d²)`` from growth terms (``O(1)`` when there are none)."""
    return f"O({' + '.join(terms)})" if terms else "O(1)"


def poly_sum(polys: tuple[Poly, ...], sums: dict[tuple[Poly, ...], Poly]) -> Poly:
    """The sum of ``polys``, made once per ``sums``: equal layers of a deep stack hold the same
    polynomial objects (their nodes' classes are costed once), so their sums are one sum."""
    out = sums.get(polys)
    if out is None:
        out = sums[polys] = Poly.sum(polys)
    return out


@dataclass
class LayerCost:
    """A report row: the embedding, a block (``h.3``, ``encoder.h.0``), the final norm, the head."""

    name: str
    components: list[ComponentCost] = field(default_factory=list)
    activation_bytes: int = 0
    activation_poly: Poly = field(default_factory=Poly)
    kv_cache_bytes: int = 0
    #: sums of polynomials made so far, shared by the layers of a report (see :func:`poly_sum`)
    sums: dict[tuple[Poly, ...], Poly] = field(default_factory=dict, repr=False, compare=False)
    _totals: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _counted: int = field(default=0, repr=False, compare=False)  # components when _totals was made

    def total(self, attr: str) -> Any:
        """A component attribute summed over the layer (once, unless components are added)."""
        if self._counted != len(self.components):
            self._totals.clear()
            self._counted = len(self.components)
        if attr not in self._totals:
            if attr.endswith("poly"):
                self._totals[attr] = poly_sum(tuple(getattr(c, attr) for c in self.components), self.sums)
            else:
                self._totals[attr] = sum(getattr(c, attr) for c in self.components)
        return self._totals[attr]

    @property
    def params(self) -> int:
        return self.total("params")

    @property
    def flops_forward(self) -> int:
        return self.total("flops_forward")

    @property
    def big_o(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for c in self.components for t in c.big_o))
