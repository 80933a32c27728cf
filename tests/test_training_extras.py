"""Stacking and training extras: dropout, LayerDrop, activation checkpointing, the MoE auxiliary loss,
and every shipped spec analysed at its full size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SPECS, TINY, all_specs

import archdsl


def spec_with(tmp_path: Path, replace: dict[str, str], base: str = "tiny.arch"):  # type: ignore[no-untyped-def]
    text = (SPECS / base).read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    p = tmp_path / "extras.arch"
    p.write_text(text)
    return archdsl.load(p)


def test_layerdrop_skips_layers_only_in_training(tmp_path: Path) -> None:
    spec = spec_with(tmp_path, {"  final_norm": "  layerdrop  = 0.5\n  final_norm"})
    model = archdsl.build(spec)
    assert model.layerdrop == 0.5
    idx = torch.randint(0, 97, (1, 6))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(idx), model(idx))  # eval: every layer runs, deterministic
    model.train()
    torch.manual_seed(0)
    outs = {tuple(model(idx).flatten()[:4].tolist()) for _ in range(12)}
    assert len(outs) > 1  # training: layers sit out at random


def test_checkpointed_blocks_give_the_same_gradients(tmp_path: Path) -> None:
    plain = archdsl.build(archdsl.load(SPECS / "tiny.arch"), seed=1)
    ckpt_spec = spec_with(
        tmp_path, {"    repeat    = n_layers\n": "    repeat    = n_layers\n    checkpoint = true\n"}
    )
    ckpt = archdsl.build(ckpt_spec, seed=1)
    assert ckpt.checkpoint == [True, True]
    idx = torch.randint(0, 97, (2, 8))
    for m in (plain, ckpt):
        m.train()
        m(idx).square().mean().backward()
    for (n, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=n)


def test_dropout_acts_in_training_only(tmp_path: Path) -> None:
    spec = spec_with(
        tmp_path,
        {
            "causal = true, bias = false)": "causal = true, bias = false, dropout = 0.5)",
            "  final_norm": "  dropout    = 0.5\n  final_norm",
        },
    )
    model = archdsl.build(spec)
    idx = torch.randint(0, 97, (1, 6))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(idx), model(idx))
    model.train()
    assert not torch.allclose(model(idx), model(idx))


def test_moe_exposes_a_load_balancing_loss() -> None:
    spec = archdsl.load(SPECS / "mixtral_8x7b.arch", TINY["mixtral_8x7b"])
    model = archdsl.build(spec)
    model(torch.randint(0, 50, (2, 9)))
    loss = sum(m.aux_loss for m in model.modules() if type(m).__name__ == "MoE")  # of the last forward
    # the Switch loss E * sum_e f_e P_e: positive, finite, and it trains the router (the training loss
    # adds it with its coefficient: tests/test_training_interface.py)
    assert loss.requires_grad and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert model.h[0].mlp.router.weight.grad is not None


@pytest.mark.parametrize("path", all_specs(), ids=lambda p: p.name)
def test_every_spec_analyses_at_full_size(path: Path) -> None:
    r = archdsl.analyze(archdsl.load(path))
    assert r.params_total > 0 and r.flops_forward > 0
    assert all(layer.big_o for layer in r.layers if layer.name.startswith(("h.", "encoder.h.", "decoder.h.")))
