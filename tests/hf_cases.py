"""Shared by the Hugging Face interop tests: tiny random HF models are imported (config and weights)
and compared with ours — logits, parameter counts (built, and the report's), greedy tokens, export."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers

import archdsl
from archdsl.interop.hf import export_hf, load_hf_weights, load_spec_from_config

T = transformers


def ids(vocab: int, b: int = 2, t: int = 13) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(0))


def perturb(hf: torch.nn.Module, scale: float = 1.0) -> None:
    """Give norms and biases something to carry (Gemma's 1 + w starts at w = 0), and scale every other
    weight by ``scale`` so attention is not uniform."""
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for name, p in hf.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.copy_(
                    torch.randn(p.shape, generator=g) * 0.1
                    + (1.0 if "norm" in name and "gemma" not in type(hf).__name__.lower() else 0.0)
                )
            elif scale != 1.0:
                p.mul_(scale)


def ours_for(hf: torch.nn.Module) -> tuple[archdsl.Spec, torch.nn.Module]:
    spec = load_spec_from_config(hf.config.to_dict())
    model = archdsl.build(spec).eval()
    load_hf_weights(model, hf.state_dict())
    return spec, model


def numel(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def meta_params(cls: type, cfg: Any) -> int:
    """The parameter count of HF ``cls(cfg)`` built on the meta device (no memory, no download)."""
    with torch.device("meta"):
        model = cls(cfg)
    return numel(model)


def check_decoder(
    make: Callable[[], torch.nn.Module], scale: float, vocab: int, greedy: bool = True, atol: float = 1e-4
) -> tuple[archdsl.Spec, torch.nn.Module, torch.nn.Module]:
    """A causal LM: logits equal, parameter counts equal (module and report), greedy tokens equal."""
    torch.manual_seed(0)
    hf = make().eval()
    perturb(hf, scale)
    spec, ours = ours_for(hf)
    assert numel(ours) == numel(hf)
    assert archdsl.analyze(spec, seq_len=13).params_total == numel(hf)
    x = ids(vocab)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=atol, rtol=1e-4)
    if greedy:
        prompt = x[:, :5]
        with torch.no_grad():
            got = ours.generate(prompt, 8, temperature=0)
            want = hf.generate(
                prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0
            )
        assert torch.equal(got, want)
    return spec, ours, hf


def check_export(
    make: Callable[[], torch.nn.Module],
    tmp_path: Path,
    inputs: Sequence[torch.Tensor],
    auto: Any = None,
    out: Callable[..., torch.Tensor] = lambda m, *x: m(*x).logits,
) -> None:
    """spec -> export_hf -> the HF class loads it and agrees; import-hf of the exported config gives
    the same IR as the spec."""
    torch.manual_seed(0)
    hf = make().eval()
    perturb(hf, 2.0)
    spec, ours = ours_for(hf)
    export_hf(ours, spec, tmp_path)
    back = (auto or T.AutoModelForCausalLM).from_pretrained(tmp_path).eval()
    assert type(back) is type(hf)
    with torch.no_grad():
        torch.testing.assert_close(out(back, *inputs), ours(*inputs), atol=1e-4, rtol=1e-4)
    again = load_spec_from_config(back.config.to_dict()).model  # named after the folder
    assert dataclasses.replace(again, name=spec.model.name) == spec.model
