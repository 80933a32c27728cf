"""The compiled model's training interface: (logits, loss) with targets, label smoothing, the MoE
auxiliary loss, padding masks (outputs at real positions as without the padding; fully masked rows
zero, never NaN), and encoder-decoder decoding with cached cross-attention."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archdsl
from tests.conftest import all_specs, first_output, logits_and_loss, model_inputs, tiny_overrides

#: a pooler head gives features, not logits: these specs train with a classifier on top
POOLED = {"model.head": "classifier(classes = 3)"}


def tiny_spec(path: Path, **extra: object) -> archdsl.Spec:
    overrides = {**tiny_overrides(path), **extra}
    spec = archdsl.load(path, overrides=overrides)
    if spec.model.head.kind == "pooler":
        spec = archdsl.load(path, overrides={**overrides, **POOLED})
    return spec


def targets_for(spec: archdsl.Spec, logits: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, logits.size(-1), logits.shape[:-1], generator=g)
    if t.dim() == 2:
        t[:, 0] = -100  # ignored positions stay out of the loss
    return t


@pytest.mark.parametrize("path", all_specs(), ids=lambda p: p.stem)
def test_three_adamw_steps_lower_the_loss(path: Path) -> None:
    spec = tiny_spec(path)
    model = archdsl.build(spec, seed=0)
    model.train()
    for m in model.modules():  # dropout and LayerDrop would make the comparison noisy
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "layerdrop"):
            m.layerdrop = 0.0
    inputs = model_inputs(spec, 2, 8, torch.Generator().manual_seed(4))
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "reset_memory"):
                m.reset_memory()
        logits = first_output(model(*inputs))
    targets = targets_for(spec, logits)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(4):
        for m in model.modules():
            if hasattr(m, "reset_memory"):
                m.reset_memory()  # Transformer-XL: each step the same segment, from an empty memory
        out, loss = logits_and_loss(spec, model, inputs, targets)
        assert out.shape == logits.shape and loss.dim() == 0 and torch.isfinite(loss)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0], losses


def test_loss_is_cross_entropy_with_smoothing_and_ignore_index(write_spec) -> None:  # type: ignore[no-untyped-def]
    text = (
        Path("specs/tiny.arch")
        .read_text()
        .replace("lm_head(tied = false)", "lm_head(tied = false, label_smoothing = 0.1)")
    )
    model = archdsl.build(archdsl.load(write_spec("s.arch", text)), seed=0)
    idx = torch.randint(0, 97, (2, 9))
    targets = torch.randint(0, 97, (2, 9))
    targets[0, :4] = -100
    logits, loss = model(idx, targets)
    expected = F.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=-100, label_smoothing=0.1
    )
    torch.testing.assert_close(loss, expected)
    _, nothing = model(idx, torch.full_like(targets, -100))
    assert nothing.item() == 0.0  # every target ignored: 0, not NaN


def test_moe_aux_loss_is_added_with_its_coefficient() -> None:
    path = Path("specs/mixtral_8x7b.arch")
    spec = archdsl.load(path, overrides={**tiny_overrides(path), "model.block.ffn.aux_loss": 0.5})
    model = archdsl.build(spec, seed=0)
    idx = torch.randint(0, spec.model.vocab, (2, 8))
    logits, loss = model(idx, idx)
    moes = [m for m in model.modules() if hasattr(m, "aux_coef")]
    assert moes and all(m.aux_coef == 0.5 for m in moes)
    ce = F.cross_entropy(logits.flatten(0, 1), idx.flatten())
    torch.testing.assert_close(loss, ce + 0.5 * sum(m.aux_loss for m in moes))


def test_pooler_head_has_no_loss() -> None:
    path = Path("specs/bert_base.arch")
    model = archdsl.build(archdsl.load(path, overrides=tiny_overrides(path)), seed=0)
    idx = torch.randint(0, 89, (2, 8))
    with pytest.raises(ValueError, match="features, not logits"):
        model(idx, torch.zeros(2, dtype=torch.long))


ENCODERS = [
    p
    for p in all_specs()
    if archdsl.load(p, overrides=tiny_overrides(p)).model.type == "encoder"
    and archdsl.load(p, overrides=tiny_overrides(p)).model.embedding.kind == "token_embedding"
]


@pytest.mark.parametrize("path", ENCODERS, ids=lambda p: p.stem)
def test_padding_mask_gives_the_unpadded_outputs(path: Path) -> None:
    """Padding tokens after the sequence, masked, change nothing at the real positions; rows of a
    sequence that is all padding are finite."""
    spec = archdsl.load(path, overrides=tiny_overrides(path))
    model = archdsl.build(spec, seed=0).eval()
    g = torch.Generator().manual_seed(6)
    idx = torch.randint(0, spec.model.vocab, (2, 10), generator=g)
    padded = torch.cat([idx, torch.randint(0, spec.model.vocab, (2, 6), generator=g)], dim=1)
    mask = torch.cat([torch.ones(2, 10), torch.zeros(2, 6)], dim=1)
    with torch.no_grad():
        short, long = model(idx), model(padded, attention_mask=mask)
    if short.dim() == 3 and short.size(1) == 10:
        long = long[:, :10]
    torch.testing.assert_close(long, short, rtol=0, atol=1e-5)
    mask[1] = 0  # nothing to attend to at all
    out = model(padded, attention_mask=mask)
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_fully_masked_rows_are_zero() -> None:
    from archdsl.kinds.attention_nn import Attention

    attn = Attention(d_model=16, n_heads=2, n_kv_heads=2, head_dim=8, causal=False)
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    B, T = 2, 5
    q, k, v = attn.c_attn(x).split(16, dim=2)
    heads = [t.view(B, T, 2, 8).transpose(1, 2) for t in (q, k, v)]
    pos = torch.arange(T)
    y = attn.masked(*heads, pos, pos, mask)
    assert torch.equal(y[1], torch.zeros_like(y[1]))
    assert torch.isfinite(y).all()


ENC_DEC = [
    p for p in all_specs() if archdsl.load(p, overrides=tiny_overrides(p)).model.type == "encoder_decoder"
]


@pytest.mark.parametrize("path", ENC_DEC, ids=lambda p: p.stem)
def test_encoder_decoder_masks_and_cached_decoding(path: Path) -> None:
    spec = archdsl.load(path, overrides=tiny_overrides(path))
    model = archdsl.build(spec, seed=0).eval()
    V = spec.model.vocab
    g = torch.Generator().manual_seed(7)
    src = torch.randint(0, V, (2, 9), generator=g)
    src_padded = torch.cat([src, torch.randint(0, V, (2, 4), generator=g)], dim=1)
    src_mask = torch.cat([torch.ones(2, 9), torch.zeros(2, 4)], dim=1)
    out = model.generate(src_padded, 6, temperature=0, src_mask=src_mask)
    assert out.shape == (2, 7) and torch.equal(out[:, 0], torch.zeros(2, dtype=torch.long))
    with torch.no_grad():
        full = model(src, out[:, :-1])  # the source unpadded: the same logits
        padded = model(src_padded, out[:, :-1], src_mask=src_mask)
    torch.testing.assert_close(padded, full, rtol=0, atol=1e-5)
    assert torch.equal(out[:, 1:], full.argmax(-1))  # each cached step = the full forward's choice
    tgt = out[:, 1:]
    tgt_mask = torch.ones_like(tgt)
    logits, loss = model(src, out[:, :-1], tgt, tgt_mask=tgt_mask)
    assert torch.isfinite(loss) and logits.shape == (2, 6, V)


def test_mean_pooling_skips_padding() -> None:
    path = Path("specs/bert_like.arch")
    spec = archdsl.load(
        path, overrides={**tiny_overrides(path), "model.head": "classifier(classes = 4, pool = mean)"}
    )
    model = archdsl.build(spec, seed=0).eval()
    idx = torch.randint(0, spec.model.vocab, (2, 7))
    padded = torch.cat([idx, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(2, 7), torch.zeros(2, 5)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, attention_mask=mask), model(idx), rtol=0, atol=1e-5)


def test_decoding_past_the_position_tables_is_refused() -> None:
    path = Path("specs/gpt2_small.arch")
    model = archdsl.build(archdsl.load(path, overrides=tiny_overrides(path)), seed=0)  # context 32
    with pytest.raises(ValueError, match="positions reach 32"):
        model.generate(torch.zeros(1, 30, dtype=torch.long), 5)
    assert model.generate(torch.zeros(1, 30, dtype=torch.long), 2).shape == (1, 32)
