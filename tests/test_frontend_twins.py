"""The text and YAML forms of a spec elaborate to equal IR."""

from __future__ import annotations

from conftest import SPECS

import archdsl
from archdsl.ir import Model

TEXT = """
d = 48          # a comment
h = d / 16
model m {
  type = encoder
  d_model = d
  vocab = 2 ** 7 - 1
  embedding = token_embedding()
  position = sinusoidal(max_len = max(64, 2 * d))
  block {
    repeat = (1 + 2) // 2 + 1
    placement = post
    norm = layernorm(eps = 1e-6, bias = false)
    attention = mha(heads = h, bias = false)
    ffn = mlp(hidden = 4 * d, activation = relu)
  }
  head = lm_head(tied = false, bias = true)
}
"""

YAML = """
d: 48   # a comment
h: d / 16
model:
  name: m
  type: encoder
  d_model: d
  vocab: 2 ** 7 - 1
  embedding: {kind: token_embedding}
  position: {kind: sinusoidal, max_len: "max(64, 2 * d)"}
  block:
    repeat: (1 + 2) // 2 + 1
    placement: post
    norm:
      kind: layernorm
      eps: 1e-6
      bias: false
    attention: {kind: mha, heads: h, bias: false}
    ffn: {kind: mlp, hidden: 4 * d, activation: relu}
  head: {kind: lm_head, tied: false, bias: true}
"""


def test_gpt2_small_twins_elaborate_to_equal_ir() -> None:
    a = archdsl.load(SPECS / "gpt2_small.arch")
    b = archdsl.load(SPECS / "gpt2_small.yaml")
    assert a.model == b.model
    assert a.constants == b.constants
    eps = a.model.stacks[0].layers[0].sublayer("ln_1")["eps"]
    assert eps == 1e-5 and isinstance(eps, float)


def test_inline_twins_with_expressions(write_spec) -> None:  # type: ignore[no-untyped-def]
    a = archdsl.load(write_spec("m.arch", TEXT)).model
    b = archdsl.load(write_spec("m.yaml", YAML)).model
    assert a == b
    assert isinstance(a, Model)
    stack = a.stacks[0]
    blk = stack.layers[0]
    assert a.vocab == 127 and a.type == "encoder" and len(stack.layers) == 2
    assert stack.position is not None and stack.position["max_len"] == 96
    assert blk.sublayer("attn")["heads"] == 3
    # an encoder's attention defaults to bidirectional
    assert blk.sublayer("attn")["causal"] is False
    assert blk.sublayer("ln_1")["eps"] == 1e-6


def test_twins_differ_when_a_value_differs(write_spec) -> None:  # type: ignore[no-untyped-def]
    a = archdsl.load(write_spec("m.arch", TEXT)).model
    b = archdsl.load(write_spec("m.yaml", YAML.replace("eps: 1e-6", "eps: 1e-7"))).model
    assert a != b


def test_overrides_flow_through_derived_constants() -> None:
    s = archdsl.load(SPECS / "gpt2_small.arch", {"d_model": 64, "n_heads": "2 * 2"})
    blk = s.model.stacks[0].layers[0]
    assert s.model.d_model == 64
    assert blk.sublayer("mlp")["hidden"] == 256  # 4 * d_model follows the override
    assert blk.sublayer("attn")["heads"] == 4
