"""The complexity report: parameters, FLOPs and memory of a spec, per layer, per stack and in total, at
given sizes and as polynomials — from the graph alone (nothing built, torch never imported).

Conventions (each stated in every report; derivations and citations in docs/cost-model.md):

* 2 FLOPs per multiply-add, matmuls only. *Dense*: attention over the full n x n (what the lowered
  module computes, and what FlopCounterMode counts on it). *Mask-aware*: only the (query, key) pairs the
  masks keep (causal n(n+1)/2, a window about n w, LSH buckets, linear attention's state).
* Backward: each matmul's gradient with respect to each operand that needs one costs the matmul —
  2 x forward, less where weights are frozen or operands constant. Recomputation: a fused attention
  kernel recomputes its scores; ``selective`` redoes the attention core; ``full`` every block's forward.
  Training step = forward + backward + recomputation.
* Memory: weights, gradients and AdamW states (m, v in fp32; with 16-bit weights, an fp32 master copy
  too: 16 bytes per trained parameter either way); activations saved for backward, node by node;
  KV cache for incremental decoding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

import networkx as nx

from archdsl.cost.analysis import (
    EMBEDDING_ROLES,
    LayerCost,
    Sizes,
    big_o_text,
    component_costs,
    context_limit,
    jsonable,
    kv_piecewise,
    layer_members,
    leading_terms,
    memo,
    plan,
    poly_regime,
    poly_sum,
    symbols,
)
from archdsl.cost.memory import block_layers, saved_activations, saved_by_policy, shape_bytes
from archdsl.cost.poly import B, Poly
from archdsl.cost.regime import Piecewise, Regime
from archdsl.ir import Model
from archdsl.kinds import REGISTRY, ActCfg

#: bytes per element of the dtypes weights, activations and the KV cache can be kept in
DTYPES = {"fp32": 4, "bf16": 2, "fp16": 2}
#: bytes per parameter of stored weights, for the by-dtype table (int4: two per byte)
WEIGHT_FORMATS: dict[str, Fraction] = {
    "fp32": Fraction(4),
    "bf16": Fraction(2),
    "fp16": Fraction(2),
    "int8": Fraction(1),
    "int4": Fraction(1, 2),
}
POLICIES = ("none", "selective", "full")
ATTENTION = ("flash", "materialized")
#: Hoffmann et al. 2022: compute-optimal training uses about 20 tokens per parameter (Table 3)
CHINCHILLA_TOKENS_PER_PARAM = 20

CONVENTIONS = {
    "params": (
        "each parameter counted once (tied or shared weights once), as sum(p.numel()) over "
        "module.parameters(); embedding = token embedding + positional table"
    ),
    "flops": (
        "dense: 2 FLOPs per multiply-add, matmuls only; attention as the module computes it: the full "
        "n x n for dense kinds (no causal halving), the computed blocks for windowed or sparse ones; "
        "equals torch.utils.flop_counter.FlopCounterMode on the lowered module"
    ),
    "flops_mask_aware": "only the (query, key) products the masks keep (causal: n(n+1)/2 pairs)",
    "backward": (
        "each matmul's gradient for each operand that needs one costs the matmul: 2 x forward, "
        "less for frozen weights (LoRA) and constant operands"
    ),
    "recompute": (
        "fused (flash) attention recomputes its scores in backward; selective recomputes the "
        "materialised attention core (Korthikanti et al. 2022); full recomputes every block's forward"
    ),
    "memory": (
        "weights and gradients in the chosen dtype; AdamW m and v in fp32, plus an fp32 master copy "
        "with 16-bit weights (16 bytes per trained parameter either way); activations saved for "
        "backward node by node (a tensor kept by several ops once); KV cache (or a recurrent mixer's "
        "state) for incremental decoding "
        "at the given batch and context"
    ),
    "peaks": (
        "inference: weights + KV cache + the largest op's inputs and output; training: weights + "
        "gradients + optimizer states + saved activations + the largest op's inputs and output"
    ),
}

_BLOCK = re.compile(r"^(?:(\w+)\.)?h\.\d+$")  # `h.3`, `encoder.h.0`, a tower's `vision.h.11`


@dataclass(frozen=True)
class Settings:
    """What a report is for: sizes, the dtype of weights, activations and cache, the recompute policy
    and how attention runs (a fused flash kernel, or materialised scores)."""

    batch: int = 1
    seq_len: int = 1024
    src_len: int | None = None  # an encoder-decoder's source length (default: seq_len)
    dtype: str = "fp32"
    recompute: str = "none"
    attention: str = "flash"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.recompute not in POLICIES:
            raise ValueError(f"recompute must be one of {', '.join(POLICIES)}, got {self.recompute!r}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")
        if self.batch < 1 or self.seq_len < 1 or (self.src_len is not None and self.src_len < 1):
            raise ValueError(f"batch and lengths must be positive, got {self.batch}, {self.seq_len}")

    @property
    def bytes(self) -> int:
        return DTYPES[self.dtype]

    def act(self, attention: str | None = None) -> ActCfg:
        return ActCfg(bytes=self.bytes, flash=(attention or self.attention) == "flash", training=True)


def size_values(model: Model, s: Settings) -> dict[str, int]:
    return {"B": s.batch, "T": s.seq_len, "S": s.src_len or s.seq_len}


def symbol_legend(model: Model) -> dict[str, str]:
    if model.type == "encoder_decoder":
        return {"b": "batch", "n": "encoder (source) length", "m": "decoder (target) length"}
    if model.towers:
        return {"b": "batch (of every tower)", "n": "sequence length of the towers that read token ids"}
    return {"b": "batch", "n": "sequence length"}


@dataclass
class Report:
    model: str
    model_type: str
    settings: Settings
    layers: list[LayerCost]
    n_blocks: int
    d_model: int
    vocab: int
    legend: dict[str, str]
    memory: dict[str, Any] = field(default_factory=dict)
    stack_roles: tuple[str, ...] = ()
    regime: tuple[int, int] = (1, 0)  # the polynomials hold for lengths that are multiples of [0], above [1]
    context: int | None = None  # the longest length the model takes (its positional table), if limited
    kv_pieces: Piecewise | None = None  # the KV cache in bytes, piecewise in the lengths (None: unknown)
    #: a towers model's towers: name, d_model, vocab (0: an image) and the length its input fixes (or None)
    towers: tuple[dict[str, Any], ...] = ()
    _flops: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _rebuild: Callable[[Settings], Report] | None = field(default=None, repr=False, compare=False)
    _others: dict[int, Report] = field(default_factory=dict, repr=False, compare=False)
    _sums: dict[tuple[Poly, ...], Poly] = field(default_factory=dict, repr=False, compare=False)
    _totals: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- where the polynomials hold ------------------------------------------------------------------

    @property
    def flops_regime(self) -> Regime:
        """Where every FLOPs polynomial (and every per-layer one) equals the exact count."""
        return Regime(*self.regime)

    @property
    def activation_regime(self) -> Regime:
        """Where ``activation_poly`` (and every layer's) holds: the FLOPs regime, and b >= 2 (a batch
        of one lets batched matmuls keep views of a projection's output instead of copies: that batch
        has its own polynomial, ``activation_poly_batch_1``, in the FLOPs regime)."""
        return Regime(*self.regime, min_batch=2)

    @property
    def activation_poly_here(self) -> Poly:
        """The activation polynomial of this report's batch (b = 1 has its own), in the lengths'
        regime."""
        m = self.memory
        if self.batch == 1 and not self.batch_1_agrees:
            return m["activation_poly_batch_1"]  # type: ignore[no-any-return]
        return m["activation_poly"]  # type: ignore[no-any-return]

    @property
    def batch_1_agrees(self) -> bool:
        """Whether the b >= 2 activation polynomial gives the b = 1 one too."""
        m = self.memory
        return m["activation_poly"].with_batch(1) == m["activation_poly_batch_1"]  # type: ignore[no-any-return]

    @property
    def kv_regime(self) -> Regime:
        """Where ``kv_cache_poly`` holds: from the first length of its last piece, where the
        piecewise form is known; else the model's regime."""
        poly = self.memory.get("kv_cache_poly")
        if self.kv_pieces is not None:
            for piece in self.kv_pieces.pieces:
                if all(hi is None for _, _, hi in piece.bounds) and piece.poly == poly:
                    return Regime(1, max((lo - 1 for _, lo, _ in piece.bounds), default=0))
        return self.flops_regime

    @property
    def lengths(self) -> tuple[str, ...]:
        """The polynomials' length variables."""
        return ("n", "m") if self.model_type == "encoder_decoder" else ("n",)

    def at(self, seq_len: int) -> Report:
        """The report at another length, with the same settings (computed once)."""
        if seq_len == self.seq_len:
            return self
        if seq_len not in self._others:
            if self._rebuild is None:
                raise ValueError("this report cannot be recomputed at another length")
            self._others[seq_len] = self._rebuild(replace(self.settings, seq_len=seq_len))
        return self._others[seq_len]

    # -- compatibility: the figures the first reports had -----------------------------------------

    @property
    def batch(self) -> int:
        return self.settings.batch

    @property
    def seq_len(self) -> int:
        return self.settings.seq_len

    @property
    def src_len(self) -> int | None:
        return (
            (self.settings.src_len or self.settings.seq_len) if self.model_type == "encoder_decoder" else None
        )

    def total(self, attr: str) -> Any:
        """A component attribute summed over the model (as ``LayerCost.total`` over a layer; once per
        report and attribute)."""
        if attr not in self._totals:
            if attr.endswith("poly"):
                self._totals[attr] = poly_sum(tuple(layer.total(attr) for layer in self.layers), self._sums)
            else:
                self._totals[attr] = sum(layer.total(attr) for layer in self.layers)
        return self._totals[attr]

    @property
    def params_total(self) -> int:
        return self.total("params")

    @property
    def params_embedding(self) -> int:
        return sum(c.params for layer in self.layers for c in layer.components if c.role in EMBEDDING_ROLES)

    @property
    def params_trainable(self) -> int:
        return self.total("trainable")

    @property
    def params_active(self) -> int:
        return self.total("active")

    @property
    def flops_forward(self) -> int:
        return self.total("flops_forward")

    # -- sections -----------------------------------------------------------------------------------

    def sizes(self) -> dict[str, int]:
        """The report's sizes under the polynomials' names (b, n, and m)."""
        return _sizes_of(self.model_type, self.settings)

    def tokens(self) -> int:
        """Tokens in one step: batch x length (an encoder-decoder: both sequences)."""
        s = self.sizes()
        return s["b"] * (s["n"] + s.get("m", 0))

    def params(self) -> dict[str, int]:
        total, emb = self.params_total, self.params_embedding
        return {
            "total": total,
            "embedding": emb,
            "non_embedding": total - emb,
            "trainable": self.params_trainable,
            "active": self.params_active,
        }

    def flops(self) -> dict[str, Any]:
        """The FLOPs section (computed once)."""
        if self._flops is None:
            self._flops = self._flops_section()
        return self._flops

    def _flops_section(self) -> dict[str, Any]:
        fwd, bwd, rec = (
            self.total("flops_forward"),
            self.total("flops_backward"),
            self.total("flops_recompute"),
        )
        fm, bm = self.total("flops_mask_aware"), self.total("flops_backward_mask_aware")
        pf, pb, pr = self.total("forward_poly"), self.total("backward_poly"), self.total("recompute_poly")
        pfm, pbm = self.total("mask_aware_poly"), self.total("backward_mask_aware_poly")
        train, train_mask = fwd + bwd + rec, fm + bm + rec
        sizes = self.sizes()
        tokens = self.tokens()
        n_opt = self.params_active
        d_opt = CHINCHILLA_TOKENS_PER_PARAM * n_opt
        per_token = Fraction(train, tokens)
        return {
            "forward": fwd,
            "backward": bwd,
            "recompute": rec,
            "train_step": train,
            "forward_mask_aware": jsonable(fm),
            "backward_mask_aware": jsonable(bm),
            "train_step_mask_aware": jsonable(train_mask),
            "forward_poly": pf,
            "forward_mask_aware_poly": pfm,
            "backward_poly": pb,
            "train_step_poly": pf + pb + pr,
            "train_step_mask_aware_poly": pfm + pbm + pr,
            "poly_regime": self.flops_regime.to_dict(),
            "poly_exact": pf(**sizes) == fwd,
            "mask_aware_poly_exact": pfm(**sizes) == fm,
            "forward_poly_exact": pf(**sizes) == fwd,
            "forward_mask_aware_poly_exact": pfm(**sizes) == fm,
            "backward_poly_exact": pb(**sizes) == bwd,
            "train_step_poly_exact": (pf + pb + pr)(**sizes) == train,
            "train_step_mask_aware_poly_exact": (pfm + pbm + pr)(**sizes) == train_mask,
            "tokens_per_step": tokens,
            "per_token": {"forward": float(Fraction(fwd, tokens)), "train_step": float(per_token)},
            "chinchilla": {
                "params": n_opt,
                "tokens": d_opt,
                "train_flops": int(per_token * d_opt),
                "train_flops_6nd": 6 * n_opt * d_opt,
            },
        }

    def stacks(self) -> list[dict[str, Any]]:
        """Per stack (its blocks): parameters, FLOPs and their polynomial."""
        out = []
        for role in self.stack_roles:
            rows = [
                r
                for r in self.layers
                if (m := _BLOCK.match(r.name)) and (m[1] or self.stack_roles[0]) == role
            ]
            fp = poly_sum(tuple(r.total("forward_poly") for r in rows), self._sums)
            flops = sum(r.flops_forward for r in rows)
            out.append(
                {
                    "name": role,
                    "blocks": len(rows),
                    "params": sum(r.params for r in rows),
                    "flops_forward": flops,
                    "forward_poly": fp,
                    "forward_poly_exact": fp(**self.sizes()) == flops,
                    "activation_bytes": sum(r.activation_bytes for r in rows),
                    "kv_cache_bytes": sum(r.kv_cache_bytes for r in rows),
                }
            )
        return out

    def layer_dict(self, r: LayerCost) -> dict[str, Any]:
        sizes = self.sizes()
        fp = r.total("forward_poly")
        return {
            "name": r.name,
            "params": r.params,
            "flops_forward": r.flops_forward,
            "flops_forward_mask_aware": jsonable(r.total("flops_mask_aware")),
            "flops_backward": r.total("flops_backward"),
            "flops_recompute": r.total("flops_recompute"),
            "forward_poly": fp,
            "forward_poly_exact": fp(**sizes) == r.flops_forward,
            "activation_bytes": r.activation_bytes,
            "activation_poly": r.activation_poly,
            "activation_poly_exact": r.activation_poly(**sizes) == r.activation_bytes,
            "kv_cache_bytes": r.kv_cache_bytes,
            "big_o": big_o_text(r.big_o),
            "big_o_leading": big_o_text(leading_terms(r.big_o)),
            "components": [c.to_dict(sizes) for c in r.components],
        }

    def to_dict(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        if self.model_type != "encoder_decoder":
            settings.pop("src_len")
        else:
            settings["src_len"] = self.src_len
        settings["optimizer"] = "adamw"
        settings["symbols"] = dict(self.legend)
        out = plain(
            {
                "model": self.model,
                "type": self.model_type,
                "settings": settings,
                "conventions": dict(CONVENTIONS),
                "params": self.params(),
                "flops": self.flops(),
                "memory": dict(self.memory),
                "stacks": self.stacks(),
                **({"towers": list(self.towers)} if self.towers else {}),
            }
        )
        out["layers"] = [self._plain_layer(r) for r in self.layers]
        return out  # type: ignore[no-any-return]

    def _plain_layer(self, r: LayerCost) -> dict[str, Any]:
        """``plain(self.layer_dict(r))``, its components (JSON-ready already) not walked again."""
        d = self.layer_dict(r)
        components = d.pop("components")
        out = plain(d)
        out["components"] = components
        return out  # type: ignore[no-any-return]


_LEAVES = frozenset((int, float, str, bool, type(None)))


def plain(x: Any) -> Any:
    """JSON-ready: polynomials as expressions (``36864*b*n**2 + …``, which sympy.sympify reads),
    fractions as floats."""
    if type(x) in _LEAVES:  # most of a report: numbers and names, as they are
        return x
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    if isinstance(x, Poly):
        return x.expr()
    if isinstance(x, Fraction):
        return float(x)
    return x


# -- assembly ----------------------------------------------------------------------------------------


def largest_op_bytes(g: nx.DiGraph, sizes: Mapping[str, int], by: int) -> int:
    """The most any one op holds at once in a forward: its inputs and its output (the LM head's
    hidden states and logits, typically)."""
    best = 0
    for op in _op_tensors(g):
        held = sum(shape_bytes(t, sizes, by) for t in op)
        best = max(best, int(held))
    return best


def _op_tensors(g: nx.DiGraph) -> list[tuple[tuple[Any, bool], ...]]:
    """Each distinct op's tensors as (shape, token ids): its inputs', then its output's (a deep stack
    has thousands of ops and a handful of these); read off the graph once."""
    if "archdsl_op_tensors" not in g.graph:

        def tensor(n: str) -> tuple[Any, bool]:
            a = g.nodes[n]
            return a["shape"], a["op"] == "input" and len(a["shape"]) == 2

        ops = {
            (*(tensor(p) for p in g.predecessors(n)), tensor(n)): None
            for n in g.nodes
            if "kind" in g.nodes[n]
        }
        g.graph["archdsl_op_tensors"] = list(ops)
    return g.graph["archdsl_op_tensors"]  # type: ignore[no-any-return]


def _sizes_of(model_type: str, s: Settings) -> dict[str, int]:
    if model_type == "encoder_decoder":
        return {"b": s.batch, "n": s.src_len or s.seq_len, "m": s.seq_len}
    return {"b": s.batch, "n": s.seq_len}


def memory_section(
    g: nx.DiGraph,
    model: Model,
    s: Settings,
    rows: list[LayerCost],
    params: int,
    trainable: int,
    saved: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, Any]:
    """``saved``: the layers' saved activations, by attention mode and recompute policy."""
    sizes = size_values(model, s)
    by = s.bytes
    weights = params * by
    grads = trainable * by
    optimizer = trainable * (8 + (4 if by < 4 else 0))
    matrix: dict[str, dict[str, int]] = {policy: {} for policy in POLICIES}
    for attention in ATTENTION:
        for policy, layers in saved[attention].items():
            matrix[policy][attention] = int(sum(lm.saved for lm in layers.values()))
    activations = matrix[s.recompute][s.attention]
    kv = sum(r.kv_cache_bytes for r in rows)
    kv_mha = sum(c.kv_cache_mha_elements for r in rows for c in r.components) * s.batch * by
    largest = largest_op_bytes(g, sizes, by)
    # the polynomials are the same at every length of a sweep: summed once per graph and settings
    act_poly = once(g, ("act_poly", s.act(), s.recompute), lambda: Poly.sum(r.activation_poly for r in rows))
    kv_poly = once(
        g,
        ("kv_poly", by),
        lambda: Poly.sum(c.kv_cache_poly for r in rows for c in r.components) * by * B,
    )
    at = _sizes_of(model.type, s)
    return {
        "weights_bytes": weights,
        "weights_by_dtype": {k: int(params * v) for k, v in WEIGHT_FORMATS.items()},
        "grads_bytes": grads,
        "optimizer_bytes": optimizer,
        "activation_bytes": activations,
        "activation_poly": act_poly,
        "activation_poly_exact": act_poly(**at) == activations,
        "activations_by_policy": matrix,
        "kv_cache_bytes": kv,
        "kv_cache_poly": kv_poly,
        "kv_cache_poly_exact": kv_poly(**at) == kv,
        "kv_cache_mha_bytes": kv_mha,
        "kv_cache_mha_ratio": kv / kv_mha if kv_mha else None,
        "largest_op_bytes": largest,
        "train_peak_bytes": weights + grads + optimizer + activations + largest,
        "infer_peak_bytes": weights + kv + largest,
    }


def build_report(g: nx.DiGraph, model: Model, s: Settings) -> Report:
    """The report at settings ``s`` for a checked graph."""
    values = size_values(model, s)
    sym = symbols(model)
    blocks = block_layers(model)
    recomputed = {name for name, ck in blocks.items() if s.recompute == "full" or ck}
    comps = component_costs(g, Sizes(values, sym), s.act(), s.recompute, recomputed)
    sums = once(g, ("sums",), dict)  # the polynomials' sums, made once for a sweep
    rows = {  # the report's rows, in the order the graph meets their layers
        layer: LayerCost(layer, [comps[i] for i in at], sums=sums) for layer, at in layer_members(g).items()
    }
    saved = {attention: saved_by_policy(g, model, values, s.act(attention)) for attention in ATTENTION}
    act = saved[s.attention][s.recompute]
    act_sym = activation_polys(g, model, sym, s)
    for name, lm in act.items():
        if name in rows:
            rows[name].activation_bytes = int(lm.saved)
            rows[name].activation_poly = Poly.lift(act_sym[name].saved)
    elements: dict[str, int] = {}  # KV cache per sequence, by layer: only caching components have one
    for i in once(g, ("caching",), lambda: [k for k, p in enumerate(plan(g)) if p.caches]):
        elements[comps[i].layer] = elements.get(comps[i].layer, 0) + comps[i].kv_cache_elements
    for r in rows.values():
        r.kv_cache_bytes = elements.get(r.name, 0) * s.batch * s.bytes
    layers = list(rows.values())
    report = Report(
        model=model.name,
        model_type=model.type,
        settings=s,
        layers=layers,
        n_blocks=model.n_layers,
        d_model=model.d_model,
        vocab=model.vocab,
        legend=symbol_legend(model),
        stack_roles=tuple(t.name for t in model.towers) or tuple(st.role for st in model.stacks),
        regime=poly_regime(g),
        context=context_limit(g),
        towers=tower_summary(model),
        _rebuild=lambda other: build_report(g, model, other),
        _sums=sums,
    )
    params = once(g, ("params",), lambda: (report.params_total, report.params_trainable))
    report.memory = memory_section(g, model, s, layers, *params, saved)
    add_regimes(report, g, model, sym)
    return report


def tower_summary(model: Model) -> tuple[dict[str, Any], ...]:
    """Each tower of a towers model: its name, width, vocabulary (0: it reads images) and the length
    its input fixes (an image's patches and class token; None: token ids of any length)."""
    out = []
    for t in model.towers:
        assert t.embedding is not None
        fixed = REGISTRY[t.embedding.kind].fixed_length(t.embedding)
        out.append({"name": t.name, "d_model": t.d_model, "vocab": t.vocab, "length": fixed and fixed[0]})
    return tuple(out)


def add_regimes(r: Report, g: nx.DiGraph, model: Model, sym: Mapping[str, Any]) -> None:
    """Where the memory polynomials hold: the activations' regime and their own polynomial at b = 1,
    and the KV cache's pieces (exact at every length) and the regime of its polynomial."""
    m, s, sizes = r.memory, r.settings, r.sizes()
    one = activation_polys(g, model, {**sym, "B": 1}, s)
    act_one = once(
        g,
        ("act_poly_1", s.act(), s.recompute),
        lambda: Poly.sum(lm.saved for lm in one.values()),
    )
    m["activation_poly_regime"] = r.activation_regime.to_dict()
    m["activation_poly_batch_1"] = act_one
    m["activation_poly_batch_1_exact"] = act_one(**sizes) == m["activation_bytes"] if s.batch == 1 else None
    r.kv_pieces = kv_bytes_piecewise(g, model, s, sizes, m["kv_cache_bytes"])
    m["kv_cache_poly_regime"] = r.kv_regime.to_dict()
    m["kv_cache_piecewise"] = r.kv_pieces.to_list() if r.kv_pieces else None


def activation_polys(g: nx.DiGraph, model: Model, sym: Mapping[str, Any], s: Settings) -> Mapping[str, Any]:
    """The layers' saved activations as polynomials, for the symbolic sizes ``sym`` (the batch a
    variable, or 1: with a batch of one, batched matmuls may keep views instead of copies); the same
    for every length of a sweep, so computed once per graph."""
    key = ("archdsl_activation_poly", tuple(sym.values()), s.act(), s.recompute)
    if key not in g.graph:
        g.graph[key] = saved_activations(g, model, sym, s.act(), s.recompute)
    return g.graph[key]  # type: ignore[no-any-return]


def kv_bytes_piecewise(
    g: nx.DiGraph, model: Model, s: Settings, sizes: Mapping[str, int], kv: int
) -> Piecewise | None:
    """The KV cache in bytes, piecewise in the lengths (elements x batch x bytes); None where it is
    not known, or (a guard) where the piece for these sizes does not give the exact figure."""
    elements = kv_piecewise(g, model)
    if elements is None:
        return None
    out = once(g, ("kv_pieces", s.bytes), lambda: elements.map(lambda p: p * s.bytes * B))
    return out if out.at(sizes)(**sizes) == kv else None


def once(g: nx.DiGraph, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """``make()``, computed once per graph and ``key`` (a figure every length of a sweep shares)."""
    cache = memo(g)
    key = ("once", *key)
    if key not in cache:
        cache[key] = make()
    return cache[key]
