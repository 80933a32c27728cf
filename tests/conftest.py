from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# Overrides that shrink each shipped spec to a size that builds and runs in milliseconds.
_GPT2 = {"n_layers": 2, "d_model": 64, "n_heads": 4, "vocab": 101, "context": 32}
_SMALL = {"n_layers": 2, "d_model": 32, "n_heads": 4, "vocab": 50, "context": 32}
_LLAMA = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 48, "vocab": 50, "context": 32}
TINY: dict[str, dict[str, int]] = {
    "gpt2_small": _GPT2,
    "gpt2_medium": _GPT2,
    "gpt2_large": _GPT2,
    "gpt2_xl": _GPT2,
    "bert_like": {"n_layers": 2, "d_model": 48, "n_heads": 3, "vocab": 89, "context": 32},
    "tiny": {},
    "albert_like": _SMALL,
    "deepnet": _SMALL,
    "macaron": _SMALL,
    "olmo2_style": _SMALL,
    "local_global": {"n_layers": 6, "d_model": 32, "vocab": 50, "context": 32},
    "moe_first_dense": {"d_model": 32, "n_heads": 4, "experts": 4, "vocab": 50, "context": 32},
    "vaswani_base": {**_SMALL, "d_ff": 64},
    "vit_b16": {"image": 32, "patch": 8, "d_model": 32, "n_heads": 4, "n_layers": 2, "classes": 10},
    **{
        name: {**_LLAMA, "n_kv_heads": kv}
        for name, kv in (
            ("llama2_7b", 4),
            ("llama2_13b", 4),
            ("llama2_70b", 2),
            ("llama3_8b", 2),
            ("llama3_70b", 2),
        )
    },
    "mixtral_8x7b": {**_LLAMA, "n_kv_heads": 2, "experts": 4},
    "bert_base": {"n_layers": 2, "d_model": 48, "n_heads": 3, "d_ff": 96, "vocab": 89, "context": 32},
    "bert_large": {"n_layers": 2, "d_model": 48, "n_heads": 3, "d_ff": 96, "vocab": 89, "context": 32},
    "olmo2_7b": {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "vocab": 50, "context": 32},
}


def tiny_overrides(path: Path) -> dict[str, int]:
    return TINY[path.stem]


def all_specs() -> list[Path]:
    """Every model spec shipped in specs/ (specs/lib holds block libraries, not models)."""
    return sorted([*SPECS.glob("*.arch"), *SPECS.glob("*.yaml")])


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run archdsl in a real process, so exit codes and stray tracebacks are what a user sees."""
    return subprocess.run(
        [sys.executable, "-m", "archdsl", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=120,
    )


@pytest.fixture
def write_spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return write


def model_inputs(spec, batch: int, seq_len: int, generator=None):  # type: ignore[no-untyped-def]
    """Random inputs for a built model, in its forward's argument order (token ids or images; a towers
    model's, one per tower, each from its own vocabulary)."""
    import torch

    from archdsl.graph import input_shapes, input_vocabs

    vocabs = input_vocabs(spec.model)
    out = []
    for name, shape in input_shapes(spec.model).items():
        dims = [batch if d == "B" else seq_len if d in ("T", "S") else d for d in shape]
        if len(dims) == 2:
            out.append(torch.randint(0, vocabs[name], dims, generator=generator))
        else:
            out.append(torch.randn(dims, generator=generator))
    return out


def logits_and_loss(spec, model, inputs, targets):  # type: ignore[no-untyped-def]
    """(logits, loss) of a training forward: with ``targets`` for a model of one stack; a towers
    model's loss is over its pairs (input i of every tower), without targets."""
    if spec.model.towers:
        logits, _, loss = model(*inputs, return_loss=True)
        return logits, loss
    return model(*inputs, targets)


def first_output(out):  # type: ignore[no-untyped-def]
    """The model's main output: the logits, also where it returns several tensors (a towers model's
    logits per image and per text; a loss after them)."""
    return out[0] if isinstance(out, tuple) else out


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden expected outputs")
    parser.addoption("--update-bad", action="store_true", help="rewrite tests/bad/MANIFEST")


TINY["llama2_7b_lora"] = TINY["llama2_7b"]
TINY["reformer"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "context": 64}
TINY["performer"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "vocab": 50, "context": 64}
TINY["linear_transformer"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "context": 64}
TINY["conformer"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "vocab": 50, "context": 64}
TINY["mistral_7b"] = {**_LLAMA, "n_kv_heads": 2, "window": 4}
TINY["gemma2_9b"] = {**_LLAMA, "n_kv_heads": 2, "head_dim": 16, "window": 4}
TINY["sparse_transformer"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "context": 64}
TINY["longformer"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "vocab": 50, "context": 64}
TINY["bigbird"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "vocab": 50, "context": 64}
TINY["t5_base"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "vocab": 50}
TINY["gpt2_small_linear"] = _GPT2
TINY["moe_1t"] = {
    "n_layers": 3,
    "d_model": 32,
    "n_heads": 4,
    "n_kv": 2,
    "head_dim": 8,
    "d_ff": 48,
    "experts": 6,
    "top_k": 2,
    "d_expert": 16,
    "vocab": 50,
    "context": 64,
}
TINY["deepseek_v2_lite"] = {
    "n_layers": 3,
    "d_model": 32,
    "n_heads": 4,
    "head_dim": 6,
    "rope_dim": 4,
    "v_dim": 5,
    "kv_rank": 12,
    "d_ff": 48,
    "experts": 4,
    "top_k": 2,
    "d_expert": 8,
    "vocab": 50,
    "context": 64,
}
TINY["rwkv_169m"] = {"n_layers": 2, "d_model": 24, "d_att": 10, "d_ff": 40, "vocab": 37, "chunk": 4}
TINY["transformer_xl"] = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "vocab": 50, "mem_len": 6}
# 20 x 20 patches in 4 x 4 windows (shifted), merged to 10 x 10 (padded to 12 for the windows), the odd
# 5 x 5 (padded to 8) merged to 3 x 3, smaller than the window (one window of 3 x 3, unshifted)
TINY["swin_t"] = {"image": 40, "patch": 2, "C": 12, "window": 4, "depth3": 2, "classes": 10}
TINY["mamba_130m"] = {"n_layers": 2, "d_model": 24, "d_state": 5, "vocab": 50}
TINY["mamba_2_8b"] = {"n_layers": 3, "d_model": 20, "d_state": 3, "vocab": 50}
TINY["clip_vit_b32"] = {
    "image": 32,
    "patch": 8,
    "vision_width": 48,
    "vision_heads": 3,
    "vision_layers": 2,
    "vision_mlp": 64,
    "vocab": 99,
    "context": 32,
    "text_width": 40,
    "text_heads": 5,
    "text_layers": 2,
    "text_mlp": 56,
    "embed_dim": 24,
}
TINY["perceiver_like"] = {
    "vocab": 50,
    "context": 32,
    "width": 12,
    "d_model": 24,
    "n_latents": 5,
    "n_heads": 4,
    "n_layers": 2,
    "classes": 7,
}


@pytest.fixture(autouse=True, scope="session")
def _one_thread():  # type: ignore[no-untyped-def]
    """Tests run tiny tensors: one thread avoids contention on small machines (and is faster)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY["retnet_1_3b"] = {"n_layers": 2, "d_model": 24, "n_heads": 3, "d_ff": 40, "vocab": 50}
# one period of Jamba's eight layers: attention in the fifth, experts in every other
TINY["jamba_like"] = {
    "n_layers": 8,
    "d_model": 24,
    "n_heads": 4,
    "n_kv_heads": 2,
    "experts": 3,
    "d_ff": 40,
    "vocab": 50,
}
