"""Generated over the registry, so every kind (today's and tomorrow's) is held to its implementation:
for random valid parameters, the analysed params equal the module's numel and the analysed forward FLOPs
equal FlopCounterMode, component by component."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_cost_vs_torch import assert_costs_match

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.ir import Block, Model, Node, Spec
from archdsl.kinds import REGISTRY, ROLES, Ctx, Kind, Param
from archdsl.measure import count_forward_flops

D_MODEL = 24  # many divisors: 1, 2, 3, 4, 6, 8, 12, 24
VOCAB = 37
CTX = Ctx(d_model=D_MODEL, vocab=VOCAB, type="decoder")


def param_strategy(p: Param) -> st.SearchStrategy[Any]:
    if p.type == "bool":
        return st.booleans()
    if p.type == "enum":
        return st.sampled_from(p.choices)
    if p.type == "int":
        lo = int(p.min if p.min is not None else 1)
        return st.integers(lo, lo + 24)
    lo = p.gt if p.gt is not None else (p.min or 0.0)
    return st.floats(min_value=max(lo, 1e-9), max_value=1.0, exclude_min=p.gt is not None)


def node_strategy(kind: Kind) -> st.SearchStrategy[Node]:
    fields = {p.name: param_strategy(p) for p in kind.params}
    return st.fixed_dictionaries(fields).map(
        lambda d: Node(kind.name, tuple((p.name, d[p.name]) for p in kind.params))
    )


BASE = {
    "embedding": Node("token_embedding", ()),
    "position": Node("learned", (("max_len", 32),)),
    "norm": Node("layernorm", (("eps", 1e-5), ("bias", True))),
    "attention": Node("mha", (("heads", 4), ("causal", True), ("bias", True))),
    "ffn": Node("mlp", (("hidden", 40), ("activation", "gelu"), ("bias", True))),
    "head": Node("lm_head", (("tied", False), ("bias", False))),
}


def model_with(node: Node, placement: str = "pre") -> Model:
    role = REGISTRY[node.kind].role
    c = {**BASE, role: node}
    blk = Block(placement, c["norm"], c["attention"], c["ffn"])
    return Model(
        "probe", "decoder", D_MODEL, VOCAB, c["embedding"], c["position"], (blk, blk), c["norm"], c["head"]
    )


def test_registry_is_complete() -> None:
    assert {k.role for k in REGISTRY.values()} == set(ROLES)
    for kind in REGISTRY.values():
        assert kind.name == kind.name.lower()
        # every kind can be lowered: a constructor exists for a default instance
        assert callable(kind.ctor)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_kind_cost_equals_its_implementation(name: str) -> None:
    kind = REGISTRY[name]

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
    @given(node=node_strategy(kind), seq_len=st.integers(1, 12), batch=st.integers(1, 2))
    def check(node: Node, seq_len: int, batch: int) -> None:
        spec = Spec(model_with(node), ())
        assume(archdsl.check(spec) == [])
        try:
            archdsl.analyze(spec, batch, seq_len)
        except SpecError:
            assume(False)  # e.g. a positional table shorter than seq_len
        assert_costs_match(spec, batch, seq_len)

    check()


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_placements_cost_the_same_and_differ_in_output(placement: str) -> None:
    spec = Spec(model_with(BASE["attention"], placement), ())
    assert_costs_match(spec, 2, 7)


def test_causal_kinds_do_not_look_ahead() -> None:
    """Perturbing tokens after position t leaves the logits up to t unchanged (decoder), and changes
    them in an encoder."""
    spec = Spec(model_with(BASE["attention"]), ())
    model = archdsl.build(spec).eval()
    idx = torch.randint(0, VOCAB, (1, 10))
    idx2 = idx.clone()
    idx2[0, 6:] = (idx2[0, 6:] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(idx), model(idx2)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])

    bidir = Node("mha", (("heads", 4), ("causal", False), ("bias", True)))
    enc = archdsl.build(Spec(model_with(bidir), ())).eval()
    with torch.no_grad():
        assert not torch.allclose(enc(idx)[:, :6], enc(idx2)[:, :6])


def test_sdpa_attention_flops_are_counted_per_module() -> None:
    spec = Spec(model_with(BASE["attention"]), ())
    _, per = count_forward_flops(archdsl.build(spec), torch.zeros(1, 5, dtype=torch.long))
    # 8 b n d^2 projections + 4 b n^2 d scores and values
    assert per["h.0.attn"] == 8 * 5 * D_MODEL**2 + 4 * 25 * D_MODEL
