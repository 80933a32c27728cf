"""CLIP (Radford et al. 2021) as a towers model equals Hugging Face's ``CLIPModel``: on odd tiny configs
(odd widths and head counts, several layers, 3 images against 2 texts whose end-of-text tokens sit at
different positions, with and without padding) HF's weights loaded into the module archdsl builds from
specs/clip_vit_b32.arch give the same logits per image and per text, image and text embeddings and
contrastive loss; and the full-size spec counts the parameters of ``CLIPModel(CLIPConfig())``."""

from __future__ import annotations

import pytest
import torch
import transformers
from conftest import SPECS
from test_hf_equivalence import State, cat, load_into

import archdsl

SPEC = SPECS / "clip_vit_b32.arch"

#: odd sizes: widths 45 and 35, 5 and 7 heads (head sizes 9 and 5), 3 layers each, 25 patches
TINY = {
    "image": 30,
    "patch": 6,
    "vision_width": 45,
    "vision_heads": 5,
    "vision_layers": 3,
    "vision_mlp": 67,
    "vocab": 97,
    "context": 19,
    "text_width": 35,
    "text_heads": 7,
    "text_layers": 3,
    "text_mlp": 53,
    "embed_dim": 21,
    "eps": 1e-5,
}


def hf_config(eos_token_id: int) -> transformers.CLIPConfig:
    t = TINY
    text = transformers.CLIPTextConfig(
        vocab_size=t["vocab"],
        hidden_size=t["text_width"],
        intermediate_size=t["text_mlp"],
        num_hidden_layers=t["text_layers"],
        num_attention_heads=t["text_heads"],
        max_position_embeddings=t["context"],
        eos_token_id=eos_token_id,
        pad_token_id=1,
        bos_token_id=0,
    )
    vision = transformers.CLIPVisionConfig(
        hidden_size=t["vision_width"],
        intermediate_size=t["vision_mlp"],
        num_hidden_layers=t["vision_layers"],
        num_attention_heads=t["vision_heads"],
        image_size=t["image"],
        patch_size=t["patch"],
    )
    return transformers.CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=t["embed_dim"]
    )


def clip_map(n_vision: int, n_text: int) -> callable:  # type: ignore[valid-type]
    """Hugging Face CLIPModel's state dict -> ours (towers `vision` and `text`, fused q, k, v)."""

    def layers(s: State, hf: str, ours: str, n: int) -> State:
        out = {}
        for i in range(n):
            p, q = f"{hf}.encoder.layers.{i}.", f"{ours}.h.{i}."
            a = p + "self_attn."
            for part in ("weight", "bias"):
                out[q + f"attn.c_attn.{part}"] = cat(*(s[a + f"{x}_proj.{part}"] for x in "qkv"))
                out[q + f"attn.c_proj.{part}"] = s[a + f"out_proj.{part}"]
                out[q + f"ln_1.{part}"] = s[p + f"layer_norm1.{part}"]
                out[q + f"ln_2.{part}"] = s[p + f"layer_norm2.{part}"]
                out[q + f"mlp.c_fc.{part}"] = s[p + f"mlp.fc1.{part}"]
                out[q + f"mlp.c_proj.{part}"] = s[p + f"mlp.fc2.{part}"]
        return out

    def m(s: State) -> State:
        v, t = "vision_model", "text_model"
        out = {
            "vision.wte.cls_token": s[f"{v}.embeddings.class_embedding"].view(1, 1, -1),
            "vision.wte.proj.weight": s[f"{v}.embeddings.patch_embedding.weight"],
            "vision.wpe.weight": s[f"{v}.embeddings.position_embedding.weight"],
            "vision.head.proj.weight": s["visual_projection.weight"],
            "text.wte.weight": s[f"{t}.embeddings.token_embedding.weight"],
            "text.wpe.weight": s[f"{t}.embeddings.position_embedding.weight"],
            "text.head.proj.weight": s["text_projection.weight"],
            "head.logit_scale": s["logit_scale"],
        }
        for part in ("weight", "bias"):
            out[f"vision.ln_emb.{part}"] = s[f"{v}.pre_layrnorm.{part}"]
            out[f"vision.ln_f.{part}"] = s[f"{v}.post_layernorm.{part}"]
            out[f"text.ln_f.{part}"] = s[f"{t}.final_layer_norm.{part}"]
        return {**out, **layers(s, v, "vision", n_vision), **layers(s, t, "text", n_text)}

    return m


def texts(eos: int, batch: int, length: int = 13, pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids with the end-of-text token ``eos`` at a different position in each row (padding after
    it with ``pad``), and the padding mask."""
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(3, TINY["vocab"] - 1, (batch, length), generator=g)  # neither bos nor pad
    ids[ids == eos] = 3  # the end-of-text token only where it is put
    mask = torch.ones(batch, length, dtype=torch.long)
    for row, at in enumerate([length - 1, 4, 8][:batch]):
        ids[row, at] = eos
        if pad:
            ids[row, at + 1 :] = 1
            mask[row, at + 1 :] = 0
    return ids, mask


def pair(eos_token_id: int) -> tuple[transformers.CLIPModel, torch.nn.Module, archdsl.Spec]:
    """HF's CLIPModel and ours with HF's weights. HF pools at the first ``eos_token_id``, or at the
    largest id when it is 2 (its legacy rule): our text tower's head says which."""
    hf = transformers.CLIPModel(hf_config(eos_token_id)).eval()
    head = (
        "projection(pool = argmax)"
        if eos_token_id == 2
        else f"projection(pool = eos, eos_id = {eos_token_id})"
    )
    spec = archdsl.load(SPEC, {**TINY, "model.tower.text.head": head})
    ours = archdsl.build(spec).eval()
    n_hf = sum(p.numel() for p in hf.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_hf
    assert archdsl.analyze(spec, seq_len=13).params_total == n_hf
    load_into(ours, clip_map(TINY["vision_layers"], TINY["text_layers"])(hf.state_dict()))
    return hf, ours, spec


#: an end-of-text id in the middle of the vocabulary: pooling at its first position is not pooling at
#: the largest id (larger ones occur before it)
EOS = 48


@pytest.mark.parametrize("eos_token_id", [EOS, 2], ids=["first_eos", "argmax"])
@pytest.mark.parametrize("pad", [False, True], ids=["unpadded", "padded"])
def test_logits_and_embeddings_equal_hf(eos_token_id: int, pad: bool) -> None:
    hf, ours, _ = pair(eos_token_id)
    pixels = torch.randn(3, 3, TINY["image"], TINY["image"], generator=torch.Generator().manual_seed(1))
    # with HF's legacy rule (eos_token_id == 2) the end-of-text token is the vocabulary's last
    ids, mask = texts(TINY["vocab"] - 1 if eos_token_id == 2 else eos_token_id, 2, pad=pad)
    assert eos_token_id == 2 or (ids.argmax(-1) != (ids == EOS).int().argmax(-1)).all()
    masks = {"text": mask} if pad else None
    with torch.no_grad():
        want = hf(input_ids=ids, pixel_values=pixels, attention_mask=mask if pad else None)
        per_image, per_text = ours(pixels, ids, masks=masks)
        image, text = ours.embed(pixels, ids, masks=masks)
    assert per_image.shape == (3, 2) and per_text.shape == (2, 3)
    torch.testing.assert_close(per_image, want.logits_per_image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_text, want.logits_per_text, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(image / image.norm(dim=-1, keepdim=True), want.image_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(text / text.norm(dim=-1, keepdim=True), want.text_embeds, atol=1e-5, rtol=0)


def test_contrastive_loss_equals_hf_return_loss() -> None:
    """The symmetric cross-entropy of matching pairs (HF's ``return_loss=True``), and its gradients."""
    hf, ours, _ = pair(EOS)
    pixels = torch.randn(3, 3, TINY["image"], TINY["image"], generator=torch.Generator().manual_seed(2))
    ids, _ = texts(EOS, 3)
    want = hf(input_ids=ids, pixel_values=pixels, return_loss=True)
    per_image, _, loss = ours(pixels, ids, return_loss=True)
    torch.testing.assert_close(loss, want.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_image, want.logits_per_image, atol=1e-5, rtol=1e-5)
    loss.backward()
    want.loss.backward()
    torch.testing.assert_close(ours.head.logit_scale.grad, hf.logit_scale.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        ours.text.head.proj.weight.grad, hf.text_projection.weight.grad, atol=1e-5, rtol=1e-4
    )


def test_full_size_parameters_equal_hf_clip_vit_b32() -> None:
    """openai/clip-vit-base-patch32 is ``CLIPConfig()``: 151,277,313 parameters (counted on the meta
    device; the spec is analysed, not built)."""
    with torch.device("meta"):
        hf = transformers.CLIPModel(transformers.CLIPConfig())
    n = sum(p.numel() for p in hf.parameters())
    assert n == 151_277_313
    r = archdsl.analyze(archdsl.load(SPEC), seq_len=77)
    assert r.params_total == n
    towers = {t["name"]: t for t in r.towers}
    assert towers["vision"]["length"] == 50 and towers["text"]["vocab"] == 49408
    config = transformers.CLIPConfig()
    assert config.logit_scale_init_value == archdsl.load(SPEC).model.head["logit_scale"]
    assert config.text_config.eos_token_id == archdsl.load(SPEC).model.towers[1].head["eos_id"]
