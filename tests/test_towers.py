"""Towers models (``type = towers``, CLIP): the language (text and YAML forms, ``--set`` paths),
diagnostics, each tower's own length in the analysis, frozen bases across towers, export with a batch
per tower, and the heads' costs and saved activations held to their modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SPECS, TINY, model_inputs
from test_cost_vs_torch import assert_costs_match, assert_train_step_matches
from test_memory import measured, predicted

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.ir import Node
from archdsl.kinds import REGISTRY, ActCfg, Ctx
from archdsl.lower.build import build_module
from archdsl.measure import count_forward_flops, saved_bytes

CLIP = SPECS / "clip_vit_b32.arch"

TEXT = """
width = 16

model duo {
  type    = towers
  d_model = width
  head    = contrastive()

  tower image {
    d_model   = 24
    embedding = patch_embedding(image = 8, patch = 4, bias = false)
    position  = learned(max_len = 5)

    block {
      repeat    = 2
      norm      = layernorm()
      attention = mha(heads = 4)
      ffn       = mlp(hidden = 40, activation = quick_gelu)
    }

    final_norm = layernorm()
    head       = projection(pool = cls)
  }

  tower caption {
    d_model   = 20
    vocab     = 50
    embedding = token_embedding()
    position  = learned(max_len = 32)

    block {
      repeat    = 3
      norm      = layernorm()
      attention = mha(heads = 5, causal = true)
      ffn       = mlp(hidden = 40)
    }

    final_norm = layernorm()
    head       = projection(pool = eos, eos_id = 49)
  }
}
"""

YAML = """
width: 16
model:
  name: duo
  type: towers
  d_model: width
  head: {kind: contrastive}
  tower:
    image:
      d_model: 24
      embedding: {kind: patch_embedding, image: 8, patch: 4, bias: false}
      position: {kind: learned, max_len: 5}
      block:
        repeat: 2
        norm: {kind: layernorm}
        attention: {kind: mha, heads: 4}
        ffn: {kind: mlp, hidden: 40, activation: quick_gelu}
      final_norm: {kind: layernorm}
      head: {kind: projection, pool: cls}
    caption:
      d_model: 20
      vocab: 50
      embedding: {kind: token_embedding}
      position: {kind: learned, max_len: 32}
      block:
        repeat: 3
        norm: {kind: layernorm}
        attention: {kind: mha, heads: 5, causal: true}
        ffn: {kind: mlp, hidden: 40}
      final_norm: {kind: layernorm}
      head: {kind: projection, pool: eos, eos_id: 49}
"""


def load(write_spec, text: str = TEXT, name: str = "duo.arch", **overrides: object) -> archdsl.Spec:  # type: ignore[no-untyped-def]
    return archdsl.load(write_spec(name, text), overrides or None)


def errors(write_spec, text: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(code, message) of every diagnostic, each placed in the file."""
    path = write_spec("bad.arch", text)
    diags = archdsl.check(path)
    assert diags and all(d.span is not None and d.span.file == str(path) for d in diags), diags
    return [(d.code, d.message) for d in diags]


# -- the language -------------------------------------------------------------------------------------


def test_text_and_yaml_forms_are_one_model(write_spec) -> None:  # type: ignore[no-untyped-def]
    text, yaml = load(write_spec).model, load(write_spec, YAML, "duo.yaml").model
    assert text == yaml
    assert text.type == "towers" and text.d_model == 16 and text.embedding is None and text.stacks == ()
    assert [t.name for t in text.towers] == ["image", "caption"]
    image, caption = text.towers
    assert (image.d_model, image.vocab, caption.d_model, caption.vocab) == (24, 0, 20, 50)
    assert image.head["width"] == caption.head["width"] == 16  # the model's d_model
    assert text.n_layers == 5 and len(text.all_stacks) == 2


def test_fmt_round_trips_a_towers_model(write_spec) -> None:  # type: ignore[no-untyped-def]
    from archdsl.fmt import to_text, to_yaml
    from archdsl.frontend import parse_source

    tree = parse_source(TEXT, "duo.arch")
    as_yaml = to_yaml(tree)
    assert "tower:\n    image:\n" in as_yaml
    back = to_text(parse_source(as_yaml, "duo.yaml"))
    assert back == to_text(tree)
    assert load(write_spec, as_yaml, "again.yaml").model == load(write_spec).model


def test_set_reaches_into_a_tower(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load(
        write_spec,
        **{"model.tower.caption.block.repeat": 1, "model.tower.image.head.pool": "mean", "width": 8},
    )
    image, caption = spec.model.towers
    assert len(caption.stacks[0].layers) == 1 and len(image.stacks[0].layers) == 2
    assert image.head["pool"] == "mean" and image.head["width"] == caption.head["width"] == 8
    with pytest.raises(SpecError, match="no `tower audio` here"):
        load(write_spec, **{"model.tower.audio.d_model": 4})


def test_a_block_definition_serves_towers_of_different_widths(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Blocks are elaborated per tower: one named block in both towers takes each tower's width."""
    text = TEXT.replace(
        "width = 16",
        "width = 16\n\nblock enc {\n  norm = layernorm()\n  attention = "
        "mha(heads = 4)\n  ffn = mlp(hidden = 40)\n}",
    )
    text = text.replace(
        """    block {
      repeat    = 3
      norm      = layernorm()
      attention = mha(heads = 5, causal = true)
      ffn       = mlp(hidden = 40)
    }""",
        "    layers = [enc] * 2",
    )
    spec = load(write_spec, text)
    caption = spec.model.towers[1]
    assert len(caption.stacks[0].layers) == 2
    assert archdsl.check(spec) == []
    assert_costs_match(spec, 2, 7)


BAD = {
    "one_tower": (
        lambda t: t.split("  tower caption")[0] + "}\n",
        ("E007", "a towers model needs two or more `tower NAME { … }` sections, found 1"),
    ),
    "model_embedding": (
        lambda t: t.replace(
            "  head    = contrastive()", "  head    = contrastive()\n  embedding = token_embedding()"
        ),
        ("E016", "in a towers model, `embedding` belongs in a `tower NAME { }` section"),
    ),
    "model_block": (
        lambda t: t.replace("  head    = contrastive()", "  head    = contrastive()\n  block { repeat = 1 }"),
        ("E016", "in a towers model, `block` belongs in a `tower NAME { }` section"),
    ),
    "lm_head_combines": (
        lambda t: t.replace("head    = contrastive()", "head    = lm_head()"),
        ("E016", "`lm_head` cannot combine 2 towers"),
    ),
    "tower_classifier": (
        lambda t: t.replace("head       = projection(pool = cls)", "head       = classifier(classes = 3)"),
        ("E016", "a tower's head pools it into the shared embedding space; `classifier` does not"),
    ),
    "tower_without_head": (
        lambda t: t.replace("    head       = projection(pool = cls)\n", ""),
        ("E007", "tower `image` needs `head`"),
    ),
    "tower_without_width": (
        lambda t: t.replace("    d_model   = 24\n", ""),
        ("E007", "tower `image` needs `d_model`"),
    ),
    "eos_without_id": (
        lambda t: t.replace("pool = eos, eos_id = 49", "pool = eos"),
        ("E007", "`pool = eos` needs the end-of-sequence token's `eos_id`"),
    ),
    "eos_id_without_eos": (
        lambda t: t.replace("pool = eos, eos_id = 49", "pool = mean, eos_id = 49"),
        ("E009", "`eos_id` is read only with `pool = eos`, not `pool = mean`"),
    ),
    "eos_id_past_vocab": (
        lambda t: t.replace("eos_id = 49", "eos_id = 50"),
        ("E009", "`eos_id` (50) is not a token id: the vocabulary has 50"),
    ),
    "image_pooled_at_eos": (
        lambda t: t.replace("projection(pool = cls)", "projection(pool = argmax)"),
        ("E016", "`pool = argmax` reads token ids, but the tower has no `vocab`"),
    ),
    "widths_differ": (
        lambda t: t.replace("projection(pool = cls)", "projection(pool = cls, width = 12)"),
        ("E011", "the towers embed at widths 12 and 16; `contrastive` compares embeddings of one width"),
    ),
    "tower_named_head": (
        lambda t: t.replace("tower image", "tower head"),
        ("E009", "`head` is an attribute of a towers model's module and cannot name a tower"),
    ),
    "tower_named_forward": (
        lambda t: t.replace("tower image", "tower forward"),
        ("E009", "`forward` is an attribute of every nn.Module and cannot name a tower"),
    ),
    "tower_twice": (
        lambda t: t.replace("tower caption", "tower image"),
        ("E010", "entry `tower image` is defined twice"),
    ),
    "image_table_too_short": (
        lambda t: t.replace("learned(max_len = 5)", "learned(max_len = 4)"),
        ("E014", "the input fixes the sequence length at 5, past `learned` max_len (4)"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_diagnostics(case: str, write_spec) -> None:  # type: ignore[no-untyped-def]
    edit, expected = BAD[case]
    text = edit(TEXT)
    assert text != TEXT
    assert errors(write_spec, text) == [expected]  # and no follow-on errors


def test_towers_heads_and_sections_belong_to_towers_models(write_spec) -> None:  # type: ignore[no-untyped-def]
    tiny = (SPECS / "tiny.arch").read_text()
    got = errors(write_spec, tiny.replace("lm_head(tied = false)", "contrastive()"))
    assert ("E016", "`contrastive` combines the towers of a model of `type = towers`") in got
    got = errors(write_spec, tiny.replace("lm_head(tied = false)", "projection(width = 8)"))
    assert got[0][0] == "E016" and "is a tower's head" in got[0][1]
    got = errors(write_spec, tiny.replace("  final_norm", "  tower t { d_model = 4 }\n  final_norm", 1))
    assert ("E016", "`tower NAME { }` sections belong to `type = towers`") in got


# -- analysis -----------------------------------------------------------------------------------------


def test_each_tower_has_its_own_length(write_spec) -> None:  # type: ignore[no-untyped-def]
    """The image's length is its patches (N), the caption's is --seq (n); rows are named by tower."""
    spec = load(write_spec)
    short, long = archdsl.analyze(spec, batch=2, seq_len=8), archdsl.analyze(spec, batch=2, seq_len=16)
    rows = {r.name: r for r in short.layers}
    assert list(rows) == [
        "image.embedding",
        "image.h.0",
        "image.h.1",
        "image.ln_f",
        "image.head",
        "caption.embedding",
        "caption.h.0",
        "caption.h.1",
        "caption.h.2",
        "caption.ln_f",
        "caption.head",
        "head",
    ]
    other = {r.name: r for r in long.layers}
    for name, row in rows.items():
        same = row.flops_forward == other[name].flops_forward
        assert same == (not name.startswith("caption.h.")), name
    assert rows["image.h.0"].big_o == ("N·d²", "N²·d", "N·d·h")
    assert rows["caption.h.0"].big_o == ("n·d²", "n²·d", "n·d·h")
    assert rows["head"].big_o == ("b²·e",)
    # the contrastive head: 2 b² e, quadratic in the batch
    assert rows["head"].total("forward_poly").expr() == "32*b**2"
    assert [s["name"] for s in short.stacks()] == ["image", "caption"]
    assert [s["blocks"] for s in short.stacks()] == [2, 3]
    assert short.context == 32  # the caption's table; the image's (5) bounds no length --seq sets
    assert archdsl.pipeline.default_seq_len(spec) == 32
    assert short.flops()["poly_exact"] and short.memory["activation_poly_exact"]
    with pytest.raises(SpecError, match="sequence length 33 exceeds `learned` max_len \\(32\\)"):
        archdsl.analyze(spec, seq_len=33)
    assert short.to_dict()["towers"] == [
        {"name": "image", "d_model": 24, "vocab": 0, "length": 5},
        {"name": "caption", "d_model": 20, "vocab": 50, "length": None},
    ]


@pytest.mark.parametrize(("batch", "seq_len"), [(1, 4), (3, 11)])
def test_costs_and_activations_equal_the_module(write_spec, batch: int, seq_len: int) -> None:  # type: ignore[no-untyped-def]
    spec = load(write_spec)
    assert_costs_match(spec, batch, seq_len)
    assert_train_step_matches(spec, batch, seq_len)
    total, per = measured(spec, batch, seq_len)
    assert predicted(spec, batch, seq_len, ActCfg()) == total, per


LORA = TEXT.replace("  head    = contrastive()", "  head    = contrastive()\n\n  lora {\n    r = 2\n  }")
ADAPTER = TEXT.replace(
    "      ffn       = mlp(hidden = 40)\n",
    "      ffn       = mlp(hidden = 40)\n      adapter   = adapter(hidden = 4)\n",
)


@pytest.mark.parametrize("text", [LORA, ADAPTER], ids=["lora", "adapter_in_one_tower"])
def test_a_frozen_base_freezes_every_tower(write_spec, text: str) -> None:  # type: ignore[no-untyped-def]
    """LoRA on the model, or an adapter in one tower: every tower's base (and the temperature) is
    frozen; the analysis trains what the module trains, and costs what it costs."""
    spec = load(write_spec, text)
    assert spec.model.frozen and all(t.frozen for t in spec.model.towers)
    model = archdsl.build(spec)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert not model.head.logit_scale.requires_grad and not model.image.wpe.weight.requires_grad
    r = archdsl.analyze(spec, batch=2, seq_len=9)
    assert 0 < r.params_trainable == trainable < r.params_total
    assert_costs_match(spec, 2, 9)
    assert_train_step_matches(spec, 2, 9)
    total, per = measured(spec, 2, 9)
    assert predicted(spec, 2, 9, ActCfg()) == pytest.approx(total, rel=0.05), per


def test_export_takes_a_batch_per_tower() -> None:
    spec = archdsl.load(CLIP, TINY["clip_vit_b32"])
    program = archdsl.pipeline.export_program(spec).module()
    model = archdsl.build(spec).eval()
    for images, texts, length in [(2, 5, 7), (1, 1, 1), (4, 3, 32)]:
        pixels = torch.randn(images, 3, 32, 32)
        ids = torch.randint(0, 99, (texts, length))
        got, want = program(pixels, ids), model(pixels, ids)
        assert got[0].shape == (images, texts)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)


def test_inputs_are_named_by_tower() -> None:
    from archdsl.graph import input_shapes, input_vocabs

    model = archdsl.load(CLIP).model
    assert input_shapes(model) == {"vision": ("B", 3, 224, 224), "text": ("B", "T")}
    assert input_vocabs(model) == {"vision": 0, "text": 49408}
    src = archdsl.pipeline.example_inputs_source(archdsl.load(CLIP, TINY["clip_vit_b32"]))
    assert "text = torch.randint(0, 99, (2, 16))" in src and "out = model(vision, text)" in src


# -- the heads, kind by kind --------------------------------------------------------------------------


def _head(name: str, ctx: Ctx, **params: object) -> Node:
    kind = REGISTRY[name]
    values = {p.name: p.default for p in kind.params if not p.required}
    values.update(params)
    node = Node(name, tuple(kind.resolve(values).items()))
    assert kind.validate(node, ctx, max(kind.arities)) == []
    return node


@pytest.mark.parametrize("pool", ["cls", "mean", "eos", "argmax"])
def test_projection_keeps_what_its_module_keeps(pool: str) -> None:
    ctx = Ctx(d_model=12, vocab=30, stack="encoder")
    node = _head("projection", ctx, width=7, pool=pool, eos_id=5 if pool == "eos" else None)
    kind = REGISTRY["projection"]
    module = build_module(kind.ctor(node, ctx), seed=0).train()
    for b, n in [(2, 9), (3, 4)]:
        x = torch.randn(b, n, 12, requires_grad=True)
        idx = torch.randint(0, 30, (b, n))
        total, _ = saved_bytes(module, x, idx)
        s = kind.saved(node, ctx, [(b, n, 12)], ActCfg())
        assert s.internal + (b * n * 12 * 4 if s.inputs and s.inputs[0] else 0) == total
        flops, _ = count_forward_flops(module, x.detach(), idx)
        assert kind.flops(node, ctx, [(b, n, 12)]) == flops
        assert module(x, idx).shape == kind.out_shape(node, ctx, [(b, n, 12)])


def test_contrastive_keeps_what_its_module_keeps() -> None:
    ctx = Ctx(d_model=6, vocab=0, stack="encoder")
    node = _head("contrastive", ctx)
    kind = REGISTRY["contrastive"]
    module = build_module(kind.ctor(node, ctx), seed=0).train()
    for ba, bb in [(3, 2), (1, 5)]:
        a, b = torch.randn(ba, 6, requires_grad=True), torch.randn(bb, 6, requires_grad=True)
        total, _ = saved_bytes(module, a, b)
        s = kind.saved(node, ctx, [(ba, 6), (bb, 6)], ActCfg())
        assert s.internal + (ba + bb) * 6 * 4 == total
        flops, _ = count_forward_flops(module, a.detach(), b.detach())
        assert kind.flops(node, ctx, [(ba, 6), (bb, 6)]) == flops
        logits, transposed = module(a, b)
        assert logits.shape == kind.out_shape(node, ctx, [(ba, 6), (bb, 6)]) and transposed.shape == (bb, ba)
    # the loss: the symmetric cross-entropy of the diagonal pairs
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    logits, _, loss = module(a, b, return_loss=True)
    labels = torch.arange(4)
    expected = (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.t(), labels)
    ) / 2
    torch.testing.assert_close(loss, expected)
    scale = module.logit_scale.exp()
    cosine = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).t()
    torch.testing.assert_close(logits, scale * cosine)


def test_report_names_the_towers() -> None:
    from archdsl.cost.render import table

    text = table(archdsl.analyze(archdsl.load(CLIP), batch=2, seq_len=77))
    assert text.startswith(
        "clip_vit_b32: towers vision (d_model 768, 50 positions) and text (d_model 512, vocab 49408), "
        "24 blocks, embedding width 512"
    )
    assert "\nvision.h.11 " in text and "\ntext.head " in text and "\nhead " in text


def test_model_inputs_give_each_tower_its_input() -> None:
    spec = archdsl.load(CLIP, TINY["clip_vit_b32"])
    pixels, ids = model_inputs(spec, 2, 9)
    assert pixels.shape == (2, 3, 32, 32) and ids.shape == (2, 9) and int(ids.max()) < 99


def test_shipped_spec_is_documented_count() -> None:
    assert "151,277,313" in Path(CLIP).read_text()


def test_a_table_one_stack_shares_stays_in_its_tower(write_spec) -> None:  # type: ignore[no-untyped-def]
    """T5's relative-position table is shared by the self-attentions of one stack: each tower has its
    own (two towers are two stacks, both encoders)."""
    text = TEXT.replace("learned(max_len = 5)", "t5(buckets = 4, max_distance = 8)").replace(
        "learned(max_len = 32)", "t5(buckets = 6, max_distance = 16)"
    )
    spec = load(write_spec, text)
    model = archdsl.build(spec)
    assert model.image.pos is not model.caption.pos
    assert archdsl.analyze(spec, seq_len=9).params_total == sum(p.numel() for p in model.parameters())
    assert_costs_match(spec, 2, 9)


def test_full_recomputation_keeps_each_towers_block_inputs(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every block of both towers checkpointed: the FLOPs and the activations backward keeps are what
    checkpointing does; the emitted file's Config switches it for every tower."""
    from archdsl.lower.model_nn import Stack

    spec = load(write_spec)
    assert_train_step_matches(spec, 2, 9, recompute="full")
    model = archdsl.build(spec).train()
    for m in model.modules():
        if isinstance(m, Stack):
            m.checkpoint = [True] * len(m.h)
    total, per = saved_bytes(model, *model_inputs(spec, 2, 9))
    assert predicted(spec, 2, 9, ActCfg(), "full") == pytest.approx(total, rel=0.05), per
    assert predicted(spec, 2, 9, ActCfg(), "full") < predicted(spec, 2, 9, ActCfg(), "none")

    text = TEXT.replace("      repeat    = 2\n", "      repeat    = 2\n      checkpoint = true\n")
    text = text.replace("      repeat    = 3\n", "      repeat    = 3\n      checkpoint = true\n")
    src = archdsl.emit_source(load(write_spec, text, "ck.arch"))
    namespace: dict[str, object] = {"__name__": "emitted"}
    exec(compile(src, "ck.py", "exec", dont_inherit=True), namespace)  # not this file's __future__
    config = namespace["Config"]()  # type: ignore[operator]
    assert config.checkpoint is True
    built = namespace["build_model"](checkpoint=False)  # type: ignore[operator]
    assert not any(any(t.checkpoint) for t in (built.image, built.caption))
