"""Hierarchical vision models against Hugging Face: Swin (``SwinModel`` / ``SwinForImageClassification``)
built from archdsl specs in stages — shifted windows and their mask, padded grids, a grid no larger than
the window, patch merging of odd grids, odd head counts — with Hugging Face's random weights loaded into
ours (fp32, atol 1e-5); the convolutional stem against LeViT's and CvT's patch embeddings; Swin-T's full
parameter count on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from conftest import SPECS

import archdsl
from archdsl.kinds import REGISTRY, Ctx
from archdsl.lower.build import build_module

State = dict[str, torch.Tensor]


def swin_spec(cfg: transformers.SwinConfig, classes: int) -> str:
    """The archdsl spec of a Hugging Face ``SwinConfig``: one stage per depth, patch merging between."""
    c, eps = cfg.embed_dim, cfg.layer_norm_eps
    hidden = int(cfg.mlp_ratio * c)
    stages = []
    for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads, strict=True)):
        width, ratio = c * 2**i, hidden // c
        merge = f"d_model = {width}  transition = patch_merging(eps = 1e-5)" if i else ""
        attn = f"swin(heads = {heads}, window = {cfg.window_size}, bias = {str(cfg.qkv_bias).lower()})"
        stages.append(
            f"  stage s{i + 1} {{ {merge}\n"
            f"    block {{ repeat = {depth}  norm = layernorm(eps = {eps})  attention = {attn}\n"
            f"            ffn = mlp(hidden = {ratio * width}, activation = gelu) }}\n  }}"
        )
    body = "\n".join(stages)
    return f"""
model hf_swin {{
  type           = encoder
  d_model        = {c}
  embedding      = patch_embedding(image = {cfg.image_size}, patch = {cfg.patch_size}, cls_token = false)
  embedding_norm = layernorm(eps = 1e-5)
{body}
  final_norm     = layernorm(eps = {eps})
  head           = classifier(classes = {classes}, pool = mean)
}}
"""


def swin_weights(s: State, depths: list[int]) -> State:
    """Hugging Face's Swin state dict under our names: stage k's blocks are our layers from
    sum(depths[:k]); its ``downsample`` is the transition that begins stage k + 1."""
    out = {
        "wte.proj.weight": s["swin.embeddings.patch_embeddings.projection.weight"],
        "wte.proj.bias": s["swin.embeddings.patch_embeddings.projection.bias"],
        "ln_emb.weight": s["swin.embeddings.norm.weight"],
        "ln_emb.bias": s["swin.embeddings.norm.bias"],
        "ln_f.weight": s["swin.layernorm.weight"],
        "ln_f.bias": s["swin.layernorm.bias"],
        "lm_head.proj.weight": s["classifier.weight"],
        "lm_head.proj.bias": s["classifier.bias"],
    }
    ours = {
        "attention.q_proj": "attn.q_proj",
        "attention.k_proj": "attn.k_proj",
        "attention.v_proj": "attn.v_proj",
        "attention.o_proj": "attn.o_proj",
        "layernorm_before": "ln_1",
        "layernorm_after": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    i = 0
    for k, depth in enumerate(depths):
        for j in range(depth):
            p = f"swin.encoder.layers.{k}.blocks.{j}."
            for hf_name, name in ours.items():
                for t in ("weight", "bias"):
                    if p + f"{hf_name}.{t}" in s:
                        out[f"h.{i}.{name}.{t}"] = s[p + f"{hf_name}.{t}"]
            table = p + "attention.relative_position_bias.relative_position_bias_table"
            out[f"h.{i}.attn.relative_position_bias_table"] = s[table]
            i += 1
        d = f"swin.encoder.layers.{k}.downsample."
        if d + "reduction.weight" in s:
            out[f"h.{i}.transition.reduction.weight"] = s[d + "reduction.weight"]
            out[f"h.{i}.transition.norm.weight"] = s[d + "norm.weight"]
            out[f"h.{i}.transition.norm.bias"] = s[d + "norm.bias"]
    return out


def load_exactly(model: torch.nn.Module, state: State) -> None:
    own = model.state_dict()
    assert set(own) == set(state), (sorted(set(own) - set(state))[:6], sorted(set(state) - set(own))[:6])
    for k, v in state.items():
        assert own[k].shape == v.shape, (k, own[k].shape, v.shape)
    model.load_state_dict(state)


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random (Hugging Face initialises the bias tables and norms to constants, which
    would hide a wrong index or order)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def check_swin(cfg: transformers.SwinConfig, spec: archdsl.Spec, batch: int = 2) -> None:
    hf = transformers.SwinForImageClassification(cfg).eval()
    randomise(hf, 0)
    ours = archdsl.build(spec).eval()
    n = sum(p.numel() for p in hf.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n
    assert archdsl.analyze(spec).params_total == n
    load_exactly(ours, swin_weights(hf.state_dict(), list(cfg.depths)))
    pixels = torch.randn(
        batch, cfg.num_channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1)
    )
    feats: list[torch.Tensor] = []
    ours.ln_f.register_forward_hook(lambda m, i, o: feats.append(o))
    with torch.no_grad():
        want = hf(pixel_values=pixels, output_hidden_states=False)
        base = hf.swin(pixel_values=pixels)
        got = ours(pixels)
    torch.testing.assert_close(feats[0], base.last_hidden_state, atol=1e-5, rtol=1e-5)  # SwinModel
    torch.testing.assert_close(got, want.logits, atol=1e-5, rtol=1e-5)


ODD = {
    # 22 x 22 patches (padded to 24 for 4 x 4 windows, shifted), merged to 11 x 11 (padded to 12), then
    # the odd 11 merged to 6 x 6 (padded to 8); 3, 5 and 3 heads of 5, 6 and 20 channels
    "padded": transformers.SwinConfig(
        image_size=44,
        patch_size=2,
        embed_dim=15,
        depths=[2, 1, 3],
        num_heads=[3, 5, 3],
        window_size=4,
        num_labels=7,
    ),
    # 12 x 12 in 3 x 3 windows, 6 x 6, then a 3 x 3 grid as large as the window: one window, no shift;
    # no q, k, v biases; an MLP twice (not four times) as wide
    "window_is_grid": transformers.SwinConfig(
        image_size=24,
        patch_size=2,
        embed_dim=15,
        depths=[2, 2, 2],
        num_heads=[1, 3, 5],
        window_size=3,
        qkv_bias=False,
        mlp_ratio=2.0,
        num_labels=4,
    ),
}


@pytest.mark.parametrize("name", list(ODD))
def test_swin_equals_hugging_face(name: str, tmp_path: Path) -> None:
    cfg = ODD[name]
    path = tmp_path / f"{name}.arch"
    path.write_text(swin_spec(cfg, cfg.num_labels))
    spec = archdsl.load(path)
    assert archdsl.check(spec) == []
    check_swin(cfg, spec, batch=3 if name == "padded" else 2)


def test_shipped_swin_t_equals_hugging_face() -> None:
    """specs/swin_t.arch at a tiny size (32 x 32 patches in four stages, the last 4 x 4 as large as
    the window), against Hugging Face's Swin with the same sizes."""
    overrides = {"image": 64, "patch": 2, "C": 12, "window": 4, "depth3": 2, "classes": 10}
    spec = archdsl.load(SPECS / "swin_t.arch", overrides)
    cfg = transformers.SwinConfig(
        image_size=64, patch_size=2, embed_dim=12, depths=[2, 2, 2, 2], window_size=4, num_labels=10
    )
    check_swin(cfg, spec)


def test_swin_t_full_size_parameter_count() -> None:
    """Swin-T as published: Hugging Face's default SwinConfig with 1,000 labels, 28,288,354 parameters
    (built on the meta device), and archdsl's count of specs/swin_t.arch."""
    with torch.device("meta"):
        hf = transformers.SwinForImageClassification(transformers.SwinConfig(num_labels=1000))
    n = sum(p.numel() for p in hf.parameters())
    assert n == 28_288_354
    assert archdsl.analyze(archdsl.load(SPECS / "swin_t.arch")).params_total == n


# -- the convolutional stem -----------------------------------------------------------------------------


def stem_module(call: dict, d_model: int) -> torch.nn.Module:
    kind = REGISTRY["conv_stem"]
    values = {p.name: p.default for p in kind.params if not p.required}
    values.update(call)
    from archdsl.ir import Node

    node = Node("conv_stem", tuple(kind.resolve(values).items()))
    ctx = Ctx(d_model=d_model, vocab=0, stack="encoder")
    assert kind.validate(node, ctx) == []
    return build_module(kind.ctor(node, ctx), seed=0)


def test_conv_stem_equals_levit_patch_embeddings() -> None:
    """LeViT's stem: 4 x (3 x 3 stride-2 convolution, BatchNorm), Hardswish between, widths d / 8 …
    d; in training (batch statistics, running averages updated alike) and then in eval mode."""
    from transformers.models.levit.modeling_levit import LevitPatchEmbeddings

    cfg = transformers.LevitConfig(image_size=32, hidden_sizes=[24, 48, 72], num_channels=3)
    hf = LevitPatchEmbeddings(cfg)
    randomise(hf, 2)
    ours = stem_module(
        {"image": 32, "layers": 4, "kernel": 3, "stride": 2, "padding": 1, "activation": "hardswish"}, 24
    )
    state = {}
    for i in range(4):
        for k, v in hf.state_dict().items():
            pre = f"embedding_layer_{i + 1}."
            if k.startswith(pre):
                part = (
                    k[len(pre) :].replace("convolution.", f"convs.{i}.").replace("batch_norm.", f"norms.{i}.")
                )
                state[part] = v.clone()
    load_exactly(ours, state)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for train in (True, False):
        hf.train(train)
        ours.train(train)
        with torch.no_grad():
            torch.testing.assert_close(ours(pixels), hf(pixels), atol=1e-5, rtol=1e-5)


def test_conv_stem_equals_cvt_embeddings() -> None:
    """CvT's first-stage convolutional token embedding: 7 x 7, stride 4, padding 2, with bias, then
    LayerNorm over each position's channels (an odd 29 x 29 image gives a 7 x 7 grid)."""
    from transformers.models.cvt.modeling_cvt import CvtEmbeddings

    hf = CvtEmbeddings(
        patch_size=7, num_channels=3, embed_dim=20, stride=4, padding=2, dropout_rate=0.0
    ).eval()
    randomise(hf, 4)
    ours = stem_module({"image": 29, "kernel": 7, "stride": 4, "padding": 2, "norm": "layernorm"}, 20).eval()
    s = hf.state_dict()
    e = "convolution_embeddings."
    load_exactly(
        ours,
        {
            "convs.0.weight": s[e + "projection.weight"],
            "convs.0.bias": s[e + "projection.bias"],
            "norms.0.weight": s[e + "normalization.weight"],
            "norms.0.bias": s[e + "normalization.bias"],
        },
    )
    pixels = torch.randn(2, 3, 29, 29, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = hf(pixels)  # (B, C, H, W)
        got = ours(pixels)  # (B, H * W, C)
    assert want.shape[-2:] == (7, 7)
    torch.testing.assert_close(got, want.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)


# -- the language: stages -------------------------------------------------------------------------------

SWIN_BLOCK = "norm = layernorm()  attention = swin(heads = 3{extra})  ffn = mlp(hidden = 24)"


def staged(stages: str, embedding: str = "patch_embedding(image = 16, patch = 2, cls_token = false)") -> str:
    return f"""
model m {{
  type      = encoder
  d_model   = 12
  embedding = {embedding}
{stages}
  head      = classifier(classes = 3, pool = mean)
}}
"""


def load_spec(tmp_path: Path, text: str, name: str = "m.arch") -> archdsl.Spec:
    path = tmp_path / name
    path.write_text(text)
    return archdsl.load(path)


def test_shift_alternates_within_each_stage(tmp_path: Path) -> None:
    """Layers 1, 3, … of each stage shift their windows unless told; the count restarts per stage."""
    block = "block {{ repeat = {n}  " + SWIN_BLOCK.format(extra=", window = 2") + " }}"
    text = staged(
        f"  stage a {{ {block.format(n=3)} }}\n"
        f"  stage b {{ d_model = 24  transition = patch_merging()  {block.format(n=2)}\n"
        "    layer 0 { attention = swin(heads = 3, window = 2, shift = true) } }"
    )
    stack = load_spec(tmp_path, text).model.stacks[0]
    shifts = [dict(b.sublayers)["attn"]["shift"] for b in stack.layers]
    assert shifts == [False, True, False, True, True]
    assert [st.start for st in stack.stages] == [0, 3]
    assert [(st.d_model, st.grid) for st in stack.stages] == [(12, (8, 8)), (24, (4, 4))]


def test_stages_without_a_transition_are_the_plain_stack(tmp_path: Path) -> None:
    """A stack of one width written in stages elaborates to the IR (and the modules) of its layers
    written without them."""
    layers = "block { repeat = 2  " + SWIN_BLOCK.format(extra="") + " }"
    flat = load_spec(tmp_path, staged("  " + layers), "flat.arch")
    one = load_spec(tmp_path, staged(f"  stage s1 {{ {layers} }}"), "one.arch")
    two = load_spec(
        tmp_path,
        staged(
            "  stage s1 { block { repeat = 1  " + SWIN_BLOCK.format(extra="") + " } }\n"
            "  stage s2 { layers = [odd] }\n",
        ).replace("model m", "block odd { " + SWIN_BLOCK.format(extra=", shift = true") + " }\nmodel m"),
        "two.arch",
    )
    assert one.model == flat.model and one.model.stacks[0].stages == ()
    assert [b.sublayers for b in two.model.stacks[0].layers] == [
        b.sublayers for b in flat.model.stacks[0].layers
    ]
    from archdsl.lower.lowering import lower

    assert lower(one.model) == lower(flat.model)


def test_stages_in_the_yaml_form_and_with_set(tmp_path: Path) -> None:
    from archdsl.fmt import to_text, to_yaml
    from archdsl.frontend import parse_source

    text = (SPECS / "swin_t.arch").read_text()
    yaml_text = to_yaml(parse_source(text, "swin_t.arch"))
    assert "  stage:\n    s1:\n" in yaml_text
    (tmp_path / "swin_t.yaml").write_text(yaml_text)
    assert archdsl.load(tmp_path / "swin_t.yaml").model == archdsl.load(SPECS / "swin_t.arch").model
    assert to_text(parse_source(yaml_text, "swin_t.yaml")) == text
    swin_s = archdsl.load(SPECS / "swin_t.arch", {"model.stage.s3.block.repeat": "18"})
    assert len(swin_s.model.stacks[0].layers) == 24
    # Swin-S (Liu et al. 2021, Table 1; Hugging Face's microsoft/swin-small-patch4-window7-224)
    assert archdsl.analyze(swin_s).params_total == 49_606_258
    (tmp_path / "swin_s.arch").write_text(
        'extends "swin_t.arch"\n\nmodel swin_s {\n  stage s3 {\n    block { repeat = 18 }\n  }\n}\n'
    )
    (tmp_path / "swin_t.arch").write_text(text)
    assert archdsl.load(tmp_path / "swin_s.arch").model.stacks[0].layers == swin_s.model.stacks[0].layers


def test_swin_s_parameter_count_equals_hugging_face() -> None:
    with torch.device("meta"):
        hf = transformers.SwinForImageClassification(
            transformers.SwinConfig(depths=[2, 2, 18, 2], num_labels=1000)
        )
    assert sum(p.numel() for p in hf.parameters()) == 49_606_258


def one(attention: str = "mha(heads = 3)") -> str:
    """An inline block of one layer."""
    return f"block {{ repeat = 1  norm = layernorm()  attention = {attention}  ffn = mlp(hidden = 4) }}"


BAD = {
    # (stages, embedding or None, expected code, how the message begins)
    "width without a transition": (
        f"  stage a {{ {one()} }}\n  stage b {{ d_model = 24  {one()} }}",
        None,
        "E011",
        "stage `b` is 24 wide, but stage `a` gives 12",
    ),
    "heads do not divide the stage's width": (
        f"  stage a {{ {one('swin(heads = 3)')} }}\n"
        f"  stage b {{ d_model = 20  transition = patch_merging()  {one('swin(heads = 3)')} }}",
        None,
        "E011",
        "d_model (20) is not divisible by heads (3)",
    ),
    "windows that do not tile": (
        f"  stage a {{ {one('swin(heads = 3, window = 3, pad = false)')} }}",
        None,
        "E011",
        "the 8 x 8 grid is not tiled by 3 x 3 windows",
    ),
    "an odd grid merged without padding": (
        f"  stage a {{ {one()} }}\n  stage b {{ transition = patch_merging(pad = false)  {one()} }}",
        "patch_embedding(image = 18, patch = 2, cls_token = false)",
        "E011",
        "patch merging halves the grid, but it is 9 x 9",
    ),
    "no grid for the windows": (
        f"  {one('swin(heads = 3)')}",
        "patch_embedding(image = 16, patch = 2)",
        "E016",
        "`swin` reads a grid of tokens, but this model has none",
    ),
    "layers beside the stages": (
        f"  {one()}\n  stage a {{ {one()} }}",
        None,
        "E016",
        "with stages, `block` belongs in a `stage { }`",
    ),
    "a stage without a name": (f"  stage {{ {one()} }}", None, "E007", "a stage needs a name"),
    "a stage without layers": ("  stage a { d_model = 12 }", None, "E007", "a stage needs its layers"),
    "a stem too deep for its width": (
        f"  {one()}",
        "conv_stem(image = 32, layers = 4, growth = 3)",
        "E011",
        "d_model (12) is not divisible by growth ** (layers - 1) (3 ** 3)",
    ),
    "a stem larger than its image": (
        f"  {one()}",
        "conv_stem(image = 4, layers = 2, kernel = 5, stride = 1, padding = 0)",
        "E011",
        "convolution 1 of the stem reads a 4 x 4 grid, smaller than its 5 x 5 kernel",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_stage_and_grid_diagnostics(case: str, tmp_path: Path) -> None:
    stages, embedding, code, words = BAD[case]
    text = staged(stages, embedding) if embedding else staged(stages)
    with pytest.raises(archdsl.SpecError) as err:
        archdsl.check(load_spec(tmp_path, text))
    first = err.value.diagnostics[0]
    assert (first.code, first.message.startswith(words)) == (code, True), first
    assert first.span is not None and first.span.line > 1
