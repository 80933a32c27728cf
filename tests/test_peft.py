"""LoRA and adapters: exact parameter, trainable and FLOP counts; only they train; a fresh LoRA model
computes what its base computes."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import SPECS, TINY

import archdsl
from archdsl.measure import count_forward_flops

LORA = SPECS / "llama2_7b_lora.arch"


def test_full_size_lora_trainable_count_matches_peft() -> None:
    r = archdsl.analyze(archdsl.load(LORA), seq_len=8)
    assert r.params_trainable == 4_194_304  # 32 layers x (q and v: 2 x 8 x (4096 + 4096))
    assert r.params_total == 6_738_415_616 + 4_194_304


def test_lora_counts_and_training() -> None:
    spec = archdsl.load(LORA, TINY["llama2_7b"])
    model = archdsl.build(spec)
    report = archdsl.analyze(spec, batch=2, seq_len=9)
    assert report.params_total == sum(p.numel() for p in model.parameters())
    assert report.params_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    idx = torch.randint(0, 50, (2, 9))
    model.eval()
    assert report.flops_forward == count_forward_flops(model, idx)[0]
    model.train()
    model(idx).sum().backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert got and all("lora_" in n for n in got)


def test_fresh_lora_computes_like_its_base() -> None:
    base = archdsl.build(archdsl.load(SPECS / "llama2_7b.arch", TINY["llama2_7b"])).eval()
    lora = archdsl.build(archdsl.load(LORA, TINY["llama2_7b"])).eval()
    lora.load_state_dict(base.state_dict(), strict=False)  # B starts at zero: the update is zero
    idx = torch.randint(0, 50, (1, 7))
    with torch.no_grad():
        torch.testing.assert_close(lora(idx), base(idx))


def test_adapters(tmp_path: Path) -> None:
    text = (
        (SPECS / "tiny.arch")
        .read_text()
        .replace(
            "    norm      = layernorm(eps = 1e-5)\n",
            "    norm      = layernorm(eps = 1e-5)\n    adapter   = adapter(hidden = 8)\n",
        )
    )
    p = tmp_path / "adapted.arch"
    p.write_text(text)
    spec = archdsl.load(p)
    blk = spec.model.stacks[0].layers[0]
    assert [n for n, _ in blk.sublayers] == ["ln_1", "attn", "adapter_1", "ln_2", "mlp", "adapter_2"]
    model = archdsl.build(spec)
    r = archdsl.analyze(spec, seq_len=8)
    assert r.params_total == sum(p.numel() for p in model.parameters())
    assert (
        r.params_trainable
        == sum(p.numel() for p in model.parameters() if p.requires_grad)
        == 2 * 2 * (2 * 32 * 8 + 8 + 32)
    )
    src = archdsl.emit_source(spec)
    assert "x = x + self.adapter_1(self.attn(self.ln_1(x), mask=mask, pos=pos))" in src
