"""Language constructs: presets are sugar for flows, patterns, overrides, sharing, composition,
encoder-decoders, image inputs — each elaborates, builds and behaves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SPECS, model_inputs

import archdsl
from archdsl.diagnostics import SpecError

HEAD = """
model m {
  type = decoder
  d_model = 32
  vocab = 50
  embedding = token_embedding()
  position = learned(max_len = 64)
"""


def load(tmp_path: Path, text: str, name: str = "m.arch", overrides=None) -> archdsl.Spec:  # type: ignore[no-untyped-def]
    p = tmp_path / name
    p.write_text(text)
    return archdsl.load(p, overrides)


def errors(tmp_path: Path, text: str, name: str = "m.arch") -> list[archdsl.Diagnostic]:
    p = tmp_path / name
    p.write_text(text)
    return archdsl.check(p)


def preset_spec(placement: str, extra: str = "") -> str:
    return (
        HEAD
        + f"""
  block {{
    repeat = 2
    placement = {placement}
    norm = layernorm(eps = 1e-5)
    attention = mha(heads = 4)
    ffn = mlp(hidden = 64)
  }}
  head = lm_head()
}}
"""
    )


def flow_spec(norms: list[str], flow: str) -> str:
    decl = "\n".join(f"    {n} = layernorm(eps = 1e-5)" for n in norms)
    return (
        HEAD
        + f"""
  block {{
    repeat = 2
    attn = mha(heads = 4)
    mlp = mlp(hidden = 64)
{decl}
    flow {{
{flow}
    }}
  }}
  head = lm_head()
}}
"""
    )


FLOWS = {
    "pre": (["ln_1", "ln_2"], "x = x + attn(ln_1(x))\n x = x + mlp(ln_2(x))"),
    "post": (["ln_1", "ln_2"], "x = ln_1(x + attn(x))\n x = ln_2(x + mlp(x))"),
    "sandwich": (
        ["ln_1", "post_ln_1", "ln_2", "post_ln_2"],
        "x = x + post_ln_1(attn(ln_1(x)))\n x = x + post_ln_2(mlp(ln_2(x)))",
    ),
    "parallel": (["ln_1", "ln_2"], "x = x + attn(ln_1(x)) + mlp(ln_2(x))"),
    "parallel(shared_norm = true)": (["ln_1"], "h = ln_1(x)\n x = x + attn(h) + mlp(h)"),
    "deepnorm(alpha = 1.5)": (["ln_1", "ln_2"], "x = ln_1(1.5 * x + attn(x))\n x = ln_2(1.5 * x + mlp(x))"),
}


@pytest.mark.parametrize("placement", list(FLOWS))
def test_presets_are_sugar_for_the_same_flow(tmp_path: Path, placement: str) -> None:
    norms, flow = FLOWS[placement]
    a = load(tmp_path, preset_spec(placement), "a.arch").model
    b = load(tmp_path, flow_spec(norms, flow), "b.arch").model
    assert a == b
    others = [p for p in FLOWS if p != placement]
    for other in others:
        assert load(tmp_path, preset_spec(other), "c.arch").model != a


def test_deepnorm_default_alpha_follows_depth(tmp_path: Path) -> None:
    m = load(tmp_path, preset_spec("deepnorm")).model
    stmt = m.stacks[0].layers[0].body[0]
    assert stmt.value.args[0].terms[0].factor == pytest.approx((2 * 2) ** 0.25)  # (2N)^(1/4), N = 2


def test_flow_blocks_run_and_differ_from_presets(tmp_path: Path) -> None:
    spec = archdsl.load(SPECS / "olmo2_style.arch", {"n_layers": 2, "d_model": 32, "n_heads": 4, "vocab": 50})
    blk = spec.model.stacks[0].layers[0]
    assert [n for n, _ in blk.sublayers] == ["attn", "n1", "mlp", "n2"]
    model = archdsl.build(spec)
    src = archdsl.emit_source(spec)
    assert "h = x + self.n1(self.attn(x, mask=mask, pos=pos))" in src and "class Olmo2Block(nn.Module)" in src
    assert model(torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, 50)


def test_macaron_half_steps(tmp_path: Path) -> None:
    spec = archdsl.load(SPECS / "macaron.arch", {"n_layers": 1, "d_model": 32, "n_heads": 4, "vocab": 50})
    src = archdsl.emit_source(spec)
    assert "x = x + 0.5 * self.ffn1(self.ln_ff1(x))" in src


def test_layer_patterns_and_overrides() -> None:
    spec = archdsl.load(SPECS / "local_global.arch")
    layers = spec.model.stacks[0].layers
    assert [b.label for b in layers] == ["local", "local", "global"] * 4
    assert layers[0] == layers[1] != layers[2]
    m = archdsl.load(SPECS / "moe_first_dense.arch").model.stacks[0].layers
    assert [b.label for b in m] == ["dense", "dense"] + ["moe"] * 9 + ["layer_11"]
    assert m[0].sublayer("mlp").kind == "mlp" and m[2].sublayer("mlp").kind == "moe"
    assert m[10].sublayer("mlp")["top_k"] == 2 and m[11].sublayer("mlp")["top_k"] == 4


def test_weight_sharing_counts_one_block(tmp_path: Path) -> None:
    spec = archdsl.load(SPECS / "albert_like.arch", {"n_layers": 4, "d_model": 32, "n_heads": 4, "vocab": 50})
    assert spec.model.stacks[0].instances == (0, 0, 0, 0)
    unshared = load(
        tmp_path,
        (SPECS / "albert_like.arch").read_text().replace("shared    = true", ""),
        "u.arch",
        {"n_layers": 4, "d_model": 32, "n_heads": 4, "vocab": 50},
    )
    r, u = archdsl.analyze(spec, seq_len=8), archdsl.analyze(unshared, seq_len=8)
    block = sum(c.params for c in u.layers[1].components)
    assert u.params_total - r.params_total == 3 * block
    assert r.flops_forward == u.flops_forward  # sharing saves parameters, not compute
    model = archdsl.build(spec)
    assert model.h[0] is model.h[3]


def test_extends_reproduces_the_base_with_overrides() -> None:
    medium = archdsl.load(SPECS / "gpt2_medium.arch")
    small = archdsl.load(SPECS / "gpt2_small.arch", {"n_layers": 24, "d_model": 1024, "n_heads": 16})
    assert medium.model.name == "gpt2_medium"
    assert medium.model.stacks == small.model.stacks
    assert archdsl.analyze(medium).params_total == 354_823_168


def test_extends_cycle_and_escape(tmp_path: Path) -> None:
    (tmp_path / "a.arch").write_text('extends "b.arch"\n')
    (tmp_path / "b.arch").write_text('extends "a.arch"\n')
    [d] = archdsl.check(tmp_path / "a.arch")
    assert d.code == "E018" and "a.arch → b.arch → a.arch" in d.message
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.arch").write_text('extends "../a.arch"\n')
    [d] = archdsl.check(sub / "c.arch")
    assert d.code == "E017" and d.span is not None and d.span.line == 1
    (tmp_path / "d.arch").write_text('extends "nope.arch"\n')
    [d] = archdsl.check(tmp_path / "d.arch")
    assert d.code == "E017" and "cannot read" in d.message


def test_import_names_are_checked(tmp_path: Path) -> None:
    (tmp_path / "lib.arch").write_text(
        "block dense { norm = layernorm() attention = mha(heads = 4) ffn = mlp(hidden = 8) }"
    )
    ds = errors(tmp_path, 'import dens from "lib.arch"\n' + HEAD + "layers = [dense] * 2\nhead = lm_head() }")
    assert ds[0].code == "E003" and ds[0].help == "did you mean `dense`?"


def test_dotted_overrides(tmp_path: Path) -> None:
    spec = archdsl.load(
        SPECS / "gpt2_small.arch", {"model.block.attention.heads": 6, "model.block.repeat": 2}
    )
    blk = spec.model.stacks[0].layers[0]
    assert blk.sublayer("attn")["heads"] == 6 and len(spec.model.stacks[0].layers) == 2
    spec = archdsl.load(SPECS / "moe_first_dense.arch", {"moe.ffn.top_k": 1})
    assert spec.model.stacks[0].layers[5].sublayer("mlp")["top_k"] == 1
    with pytest.raises(SpecError) as e:
        archdsl.load(SPECS / "gpt2_small.arch", {"model.blok.attention.heads": 6})
    assert e.value.diagnostics[0].code == "E015" and "did you mean `block`?" == e.value.diagnostics[0].help


def test_encoder_decoder_wiring() -> None:
    spec = archdsl.load(
        SPECS / "vaswani_base.arch", {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "vocab": 50}
    )
    enc, dec = spec.model.encoder, spec.model.decoder
    assert enc is not None and dec is not None
    assert enc.layers[0].sublayer("attn")["causal"] is False
    assert (
        dec.layers[0].sublayer("attn")["causal"] is True and dec.layers[0].sublayer("cross")["cross"] is True
    )
    model = archdsl.build(spec).eval()
    src, tgt = model_inputs(spec, 1, 9)
    src2 = src.clone()
    src2[0, -1] = (src2[0, -1] + 1) % 50
    tgt2 = tgt.clone()
    tgt2[0, -1] = (tgt2[0, -1] + 1) % 50
    with torch.no_grad():
        base = model(src, tgt)
        assert not torch.allclose(base[:, 0], model(src2, tgt)[:, 0])  # every target sees the whole source
        torch.testing.assert_close(base[:, :-1], model(src, tgt2)[:, :-1])  # but not later targets


def test_image_input() -> None:
    spec = archdsl.load(
        SPECS / "vit_b16.arch", {"image": 32, "patch": 8, "d_model": 32, "n_heads": 4, "n_layers": 1}
    )
    model = archdsl.build(spec)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)
    assert archdsl.analyze(archdsl.load(SPECS / "vit_b16.arch")).params_total == 86_567_656


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ("x = x + attn(ln_1(y))", "E003", "no tensor `y`"),
        ("x = x + attn(x)", "E013", "sublayer `ln_1` is never used"),
        ("x = x + attn(ln_1(x))\n x = x + mlp(x, x)", "E008", "applied to 2 tensors"),
        ("x = attn(x) * mlp(x)", "E008", "two tensors cannot be multiplied"),
        ("x = x + attn(ln_1(x))\n h = mlp(x)", "E013", "never used"),
        ("x = x + atn(ln_1(x))", "E003", "no sublayer `atn`"),
    ],
)
def test_flow_errors(tmp_path: Path, body: str, code: str, needle: str) -> None:
    text = (
        HEAD
        + f"""
  block {{
    repeat = 1
    attn = mha(heads = 4)
    mlp = mlp(hidden = 8)
    ln_1 = layernorm()
    flow {{
      {body}
      x = x + mlp(x)
    }}
  }}
  head = lm_head()
}}
"""
    )
    ds = errors(tmp_path, text)
    assert any(d.code == code and needle in d.message for d in ds), ds
    assert all(d.span is not None for d in ds)


YAML_MOE = """
import:
  - {from: lib/blocks.arch, blocks: [dense, moe]}
vocab: 32000
context: 2048
d_model: 768
n_heads: 12
experts: 16
n_dense: 2
n_layers: 12
model:
  name: moe_first_dense
  type: decoder
  d_model: d_model
  vocab: vocab
  embedding: {kind: token_embedding}
  position: {kind: learned, max_len: context}
  layers: "[dense] * n_dense + [moe] * (n_layers - n_dense)"
  layer:
    11:
      ffn: {kind: moe, experts: experts, top_k: 4, hidden: 4 * d_model}
  final_norm: {kind: layernorm, eps: 1e-5}
  head: {kind: lm_head, tied: true}
"""


def test_yaml_form_of_imports_patterns_and_overrides() -> None:
    p = SPECS / "_twin_test.yaml"
    try:
        p.write_text(YAML_MOE)
        assert archdsl.load(p).model == archdsl.load(SPECS / "moe_first_dense.arch").model
    finally:
        p.unlink()


def block_spec(slots: str, position: str = "learned(max_len = 64)", placement: str = "pre") -> str:
    return f"""
model m {{
  d_model = 32
  vocab = 50
  embedding = token_embedding()
  position = {position}
  block {{
    repeat = 2
    placement = {placement}
    norm = rmsnorm()
    {slots}
  }}
  final_norm = rmsnorm()
  head = lm_head()
}}
"""


@pytest.mark.parametrize("placement", ["pre", "post", "sandwich", "parallel"])
def test_ffn_none_is_a_block_without_a_feed_forward(tmp_path: Path, placement: str) -> None:
    """`ffn = none` leaves the feed-forward out: the block is norm, attention and residual only, and
    costs exactly the full block less its feed-forward and that feed-forward's norm."""
    full = load(
        tmp_path, block_spec("attention = mha(heads = 4)\n ffn = mlp(hidden = 64)", placement=placement)
    )
    bare = load(
        tmp_path, block_spec("attention = mha(heads = 4)\n ffn = none", placement=placement), "b.arch"
    )
    blk = bare.model.stacks[0].layers[0]
    assert sorted(n for n, _ in blk.sublayers) == sorted(
        ["ln_1", "attn"] + (["post_ln_1"] if placement == "sandwich" else [])
    )
    mlp_params = 32 * 64 + 64 + 64 * 32 + 32 + 32 * (2 if placement == "sandwich" else 1)  # mlp + its norms
    assert archdsl.analyze(full, seq_len=8).params_total - archdsl.analyze(bare, seq_len=8).params_total == (
        2 * mlp_params
    )
    model = archdsl.build(bare).eval()
    idx = torch.randint(0, 50, (2, 8))
    assert model(idx).shape == (2, 8, 50)
    assert not any(name.endswith("mlp") for name, _ in model.named_modules())


def test_mixer_slot_names_the_sublayer_mixer(tmp_path: Path) -> None:
    """`mixer = …` is the attention slot under the sublayer name `mixer`: the same costs, the same
    module under another name."""
    a = load(tmp_path, block_spec("attention = mha(heads = 4)\n ffn = mlp(hidden = 64)"))
    m = load(tmp_path, block_spec("mixer = mha(heads = 4)\n ffn = mlp(hidden = 64)"), "b.arch")
    assert [n for n, _ in m.model.stacks[0].layers[0].sublayers] == ["ln_1", "mixer", "ln_2", "mlp"]
    ra, rm = archdsl.analyze(a, seq_len=8), archdsl.analyze(m, seq_len=8)
    assert (ra.params_total, ra.flops_forward) == (rm.params_total, rm.flops_forward)
    torch.manual_seed(0)
    ma = archdsl.build(a, seed=0).eval()
    mm = archdsl.build(m, seed=0).eval()
    mm.load_state_dict({k.replace(".attn.", ".mixer."): v for k, v in ma.state_dict().items()})
    idx = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(ma(idx), mm(idx))


@pytest.mark.parametrize(
    ("slots", "position", "code", "needle"),
    [
        ("attention = mha(heads = 4)\n mixer = mha(heads = 2)\n ffn = none", None, "E016", "not both"),
        ("ffn = mlp(hidden = 8)", None, "E007", "block needs `attention` (or a sequence `mixer`"),
        ("attention = none\n ffn = none", None, "E007", "block has no sublayer"),
        ("attention = mha(heads = 4)", None, "E007", "block needs `ffn`"),
        ("mixer = mamba(d_state = 4)\n ffn = none", "rope()", "E016", "no layer of this stack attends"),
        (
            "attention = retention(heads = 2)\n ffn = none",
            "alibi()",
            "E016",
            "no layer of this stack attends",
        ),
    ],
)
def test_slot_errors(tmp_path: Path, slots: str, position: str | None, code: str, needle: str) -> None:
    text = block_spec(slots, position or "learned(max_len = 64)")
    ds = errors(tmp_path, text)
    assert any(d.code == code and needle in d.message for d in ds), ds
    assert all(d.span is not None for d in ds)


def test_norm_none_in_a_preset_block_is_refused(tmp_path: Path) -> None:
    ds = errors(
        tmp_path,
        block_spec("attention = mha(heads = 4)\n ffn = none").replace("rmsnorm()\n    a", "none\n    a"),
    )
    assert [(d.code, d.message) for d in ds] == [("E008", "a preset block needs its `norm`")]


def test_none_overrides_a_base_block(tmp_path: Path) -> None:
    """A block built on another can drop its feed-forward, or swap attention for a mixer."""
    text = """
block dense {
  norm = rmsnorm()
  attention = mha(heads = 4)
  ffn = mlp(hidden = 64)
}
block bare {
  base = dense
  attention = none
  mixer = mha(heads = 2)
  ffn = none
}
model m {
  d_model = 32
  vocab = 50
  embedding = token_embedding()
  position = learned(max_len = 64)
  layers = [dense, bare] * 2
  head = lm_head()
}
"""
    spec = load(tmp_path, text)
    names = [[n for n, _ in b.sublayers] for b in spec.model.stacks[0].layers]
    assert names == [["ln_1", "attn", "ln_2", "mlp"], ["ln_1", "mixer"]] * 2
    assert archdsl.build(spec)(torch.randint(0, 50, (1, 5))).shape == (1, 5, 50)


def test_a_position_acting_in_attention_acts_in_the_attention_layers_of_a_hybrid(tmp_path: Path) -> None:
    """RoPE in a stack of Mamba and attention layers: accepted, and it turns q and k of the attention
    layers only (a flow block without attention at all keeps working with it, as it always did)."""
    text = """
block ssm {
  norm  = rmsnorm()
  mixer = mamba(d_state = 4, chunk = 4)
  ffn   = none
}
block attn {
  norm      = rmsnorm()
  attention = mha(heads = 4)
  ffn       = swiglu(hidden = 48)
}
model hybrid {
  d_model    = 32
  vocab      = 50
  embedding  = token_embedding()
  position   = rope(max_len = 64)
  layers     = [ssm, ssm, attn] * 2
  final_norm = rmsnorm()
  head       = lm_head()
}
"""
    spec = load(tmp_path, text)
    model = archdsl.build(spec).eval()
    rotary = [name for name, m in model.named_modules() if type(m).__name__ == "RotaryEmbedding"]
    assert rotary and all(name.split(".")[2] == "attn" for name in rotary), rotary
    with torch.no_grad():
        assert model(torch.randint(0, 50, (2, 9))).shape == (2, 9, 50)
