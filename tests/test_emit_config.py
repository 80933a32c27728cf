"""The emitted file's Config: one field per constant of the spec, and build_model(**overrides) building
exactly what archdsl builds for the spec with those overrides — or refusing, never something else.

Goldens of three emitted files live in tests/golden/emit; after an intended change to the emitter or
to the runtime classes it copies, regenerate them with

    .venv/bin/pytest tests/test_emit_config.py --update-golden

and read the diff.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from conftest import ROOT, SPECS, TINY, all_specs, model_inputs

import archdsl
from archdsl.lower.config import _candidates, plan

GOLDEN = ROOT / "tests" / "golden" / "emit"
TARGETS = ("gpt2_small", "llama2_7b", "mistral_7b", "gemma2_9b", "t5_base", "vit_b16")
RUFF = Path(sys.executable).parent / "ruff"


def tiny(name: str, **extra: Any) -> archdsl.Spec:
    return archdsl.load(SPECS / f"{name}.arch", {**TINY[name], **extra})


def emitted(spec: archdsl.Spec, tmp_path: Path, name: str = "emitted") -> ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(archdsl.emit_source(spec))
    mod_spec = importlib.util.spec_from_file_location(name, path)
    assert mod_spec and mod_spec.loader
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def blocks(model: torch.nn.Module) -> int:
    stacks = [model.encoder, model.decoder] if hasattr(model, "encoder") else [model]
    counts = {len(s.h) for s in stacks}  # type: ignore[arg-type]
    assert len(counts) == 1
    return counts.pop()


def assert_same_model(built: torch.nn.Module, made: torch.nn.Module, spec: archdsl.Spec) -> None:
    """Same parameter names and shapes, and (with the same weights) the same outputs exactly."""
    sb, sm = built.state_dict(), made.state_dict()
    assert {k: v.shape for k, v in sm.items()} == {k: v.shape for k, v in sb.items()}
    made.load_state_dict(sb)
    built.eval()
    made.eval()
    inputs = model_inputs(spec, 2, 7)
    with torch.no_grad():
        torch.testing.assert_close(made(*inputs), built(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize("name", TARGETS)
def test_config_has_the_spec_constants(name: str, tmp_path: Path) -> None:
    spec = tiny(name)
    mod = emitted(spec, tmp_path)
    config = mod.resolved(mod.Config())
    for key, value in spec.constants:
        assert getattr(config, key) == value, key
    assert config.dtype == "float32"
    fields = [f.name for f in __import__("dataclasses").fields(mod.Config)]
    assert fields == [*dict(spec.constants), "dtype", "checkpoint"]


@pytest.mark.parametrize("name", TARGETS)
def test_build_model_is_the_built_module(name: str, tmp_path: Path) -> None:
    spec = tiny(name)
    mod = emitted(spec, tmp_path)
    assert_same_model(archdsl.build(spec, seed=0), mod.build_model(seed=1), spec)


@pytest.mark.parametrize("name", TARGETS)
def test_overriding_n_layers_follows_the_spec(name: str, tmp_path: Path) -> None:
    """Compiled at 4 layers, built at 2: as archdsl builds the spec with n_layers = 2."""
    mod = emitted(tiny(name, n_layers=4), tmp_path)
    assert blocks(mod.build_model()) == 4
    made = mod.build_model(n_layers=2)
    assert blocks(made) == 2
    small = tiny(name, n_layers=2)
    assert_same_model(archdsl.build(small), made, small)


@pytest.mark.parametrize("name", TARGETS)
def test_width_and_depth_together(name: str, tmp_path: Path) -> None:
    spec = tiny(name)
    mod = emitted(spec, tmp_path)
    fields = {f.name for f in plan(spec).fields if f.fixed is None}
    change = {"n_layers": 4, "d_model": 64} if name != "vit_b16" else {"n_layers": 3, "d_model": 48}
    assert set(change) <= fields
    other = tiny(name, **change)
    assert_same_model(archdsl.build(other), mod.build_model(**change), other)


@pytest.mark.parametrize("path", [p for p in all_specs() if p.suffix == ".arch"], ids=lambda p: p.stem)
def test_every_overridable_field_builds_what_archdsl_builds(path: Path, tmp_path: Path) -> None:
    """For every spec and every field the file lets change: at another valid value, the emitted file
    builds exactly archdsl's model for the spec with that override (or refuses, with ValueError)."""
    spec = archdsl.load(path, TINY[path.stem])
    mod = emitted(spec, tmp_path)
    p = plan(spec)
    tried = 0
    for f in p.fields:
        if f.fixed is not None:
            with pytest.raises(ValueError, match=f.name):
                mod.build_model(**{f.name: _candidates(f.value)[0] if f.type != "str" else "other"})
            continue
        for value in _candidates(f.value):
            try:
                other = archdsl.load(path, {**TINY[path.stem], f.name: value})
                if archdsl.check(other):
                    continue
            except archdsl.SpecError:
                continue
            try:
                made = mod.build_model(**{f.name: value})
            except ValueError:
                continue  # the file refuses a value it was not compiled for: allowed, never wrong
            assert_same_model(archdsl.build(other), made, other)
            tried += 1
            break
    assert tried >= 3  # vocab, d_model, ... follow in every shipped spec


def test_layer_counts_follow_patterns(tmp_path: Path) -> None:
    """`repeat = n_layers` and patterns (`[local, local, global] * (n_layers / 3)`) follow n_layers."""
    mod = emitted(tiny("local_global"), tmp_path)
    src = (tmp_path / "emitted.py").read_text()
    assert "* (config.n_layers // 3)]" in src
    nine = tiny("local_global", n_layers=9)
    assert_same_model(archdsl.build(nine), mod.build_model(n_layers=9), nine)
    with pytest.raises(ValueError, match="n_layers % 3 == 0"):
        mod.build_model(n_layers=7)  # archdsl refuses it too: the pattern does not divide


def test_fixed_fields_are_refused_by_name(tmp_path: Path) -> None:
    """moe_first_dense pins `layer 11`, and experts are a list: neither follows, so both are fixed."""
    spec = tiny("moe_first_dense")
    fields = {f.name: f for f in plan(spec).fields}
    assert fields["n_layers"].fixed and fields["experts"].fixed
    mod = emitted(spec, tmp_path)
    src = (tmp_path / "emitted.py").read_text()
    assert "n_layers: int = 12  # fixed:" in src
    with pytest.raises(ValueError, match="n_layers is fixed at 12"):
        mod.build_model(n_layers=14)
    with pytest.raises(ValueError, match="experts is fixed"):
        mod.Config(experts=8) and mod.build_model(mod.Config(experts=8))
    with pytest.raises(TypeError, match="no field 'n_layer'"):
        mod.build_model(n_layer=3)
    # a derived constant (d_ff = 4 * d_model in the library) follows d_model unless set itself
    assert "d_ff: int | None = None  # None: 4 * self.d_model" in src
    wide = tiny("moe_first_dense", d_model=64)
    assert_same_model(archdsl.build(wide), mod.build_model(d_model=64), wide)
    set_ff = tiny("moe_first_dense", d_ff=96)
    assert_same_model(archdsl.build(set_ff), mod.build_model(d_ff=96), set_ff)


def test_guards_refuse_configs_archdsl_refuses(tmp_path: Path) -> None:
    mod = emitted(tiny("gpt2_small"), tmp_path)
    with pytest.raises(ValueError, match=r"config.d_model % config.n_heads == 0"):
        mod.build_model(d_model=30)
    with pytest.raises(archdsl.SpecError):
        tiny("gpt2_small", d_model=30)


def test_seed_and_dtype(tmp_path: Path) -> None:
    mod = emitted(tiny("llama2_7b"), tmp_path)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = mod.build_model(seed=5).state_dict(), mod.build_model(seed=5).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is untouched
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = mod.build_model(seed=6).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)
    half = mod.build_model(dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="dtype"):
        mod.build_model(dtype="int8")
    src = archdsl.emit_source(tiny("llama2_7b"), dtype="bfloat16")
    assert "dtype: str = 'bfloat16'" in src


def test_header_records_spec_version_and_hash(tmp_path: Path) -> None:
    spec = tiny("moe_first_dense")  # composed from two files, plus --set overrides
    src = archdsl.emit_source(spec)
    h = hashlib.sha256()
    base = Path(spec.path).parent
    for name, text in sorted(
        (k if k.startswith("<") else Path(os.path.relpath(k, base)).as_posix(), t) for k, t in spec.sources
    ):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    first = src.split('"""')[1]
    assert f"generated by archdsl {archdsl.__version__} from moe_first_dense.arch" in first
    assert f"spec sha256 {h.hexdigest()}" in first
    assert {"lib/blocks.arch", "moe_first_dense.arch"} <= {
        Path(os.path.relpath(k, base)).as_posix() for k, _ in spec.sources if not k.startswith("<")
    }


def test_only_the_code_the_spec_uses() -> None:
    plain = archdsl.emit_source(tiny("llama2_7b"))
    assert "LoRALinear" not in plain and "lora_" not in plain
    assert "def linear(" in plain and "return nn.Linear(d_in, d_out, bias=bias)" in plain
    lora = archdsl.emit_source(tiny("llama2_7b_lora"))
    assert "class LoRALinear(nn.Linear):" in lora


@pytest.mark.parametrize("name", TARGETS)
def test_runs_standalone_from_the_command_line(name: str, tmp_path: Path) -> None:
    """`python -I model.py --n_layers 2` with archdsl unimportable: builds two layers and runs."""
    spec = tiny(name, n_layers=4)
    (tmp_path / "model.py").write_text(archdsl.emit_source(spec))
    code = (
        "import sys, runpy\n"
        "sys.modules['archdsl'] = None\n"
        "sys.argv = ['model.py', *sys.argv[1:]]\n"
        "runpy.run_path('model.py', run_name='__main__')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    run = subprocess.run(
        [sys.executable, "-I", "-c", code, "--n_layers", "2", "--seed", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    two = archdsl.build(tiny(name, n_layers=2))
    n = sum(p.numel() for p in two.parameters())
    assert f"{n:,} parameters; output" in run.stdout
    check = (
        "import sys; sys.modules['archdsl'] = None; sys.path.insert(0, '.')\n"
        "import model\n"
        "m = model.build_model(n_layers=2)\n"
        "stacks = [m.encoder, m.decoder] if hasattr(m, 'encoder') else [m]\n"
        "print([len(s.h) for s in stacks])\n"
    )
    run = subprocess.run(
        [sys.executable, "-I", "-c", check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() in ("[2]", "[2, 2]")


def test_deterministic_across_hash_seeds(tmp_path: Path) -> None:
    code = (
        "import sys, archdsl\n"
        "spec = archdsl.load(sys.argv[1], {'n_layers': 6, 'd_model': 32})\n"
        "sys.stdout.write(archdsl.emit_source(spec))\n"
    )
    outs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", code, str(SPECS / "local_global.arch")],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr
        outs.add(run.stdout)
    assert len(outs) == 1
    spec = archdsl.load(SPECS / "local_global.arch", {"n_layers": 6, "d_model": 32})
    assert archdsl.emit_source(spec) == outs.pop()


@pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed next to this python")
def test_emitted_files_pass_ruff(tmp_path: Path) -> None:
    """Every shipped spec's file, checked by ruff's default rules plus pyflakes, pycodestyle (but line
    length: generated forward signatures run long) and isort."""
    for path in all_specs():
        spec = archdsl.load(path, TINY[path.stem])
        (tmp_path / f"{path.stem}_{path.suffix[1:]}.py").write_text(archdsl.emit_source(spec))
    run = subprocess.run(
        [
            str(RUFF),
            "check",
            "--isolated",
            "--no-cache",
            "--extend-select",
            "F,E,W,I",
            "--extend-ignore",
            "E501",
            ".",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


GOLDEN_CASES = {
    "tiny": ("tiny", {}),
    "llama2_7b_tiny": ("llama2_7b", TINY["llama2_7b"]),
    "t5_base_tiny": ("t5_base", TINY["t5_base"]),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_emitted_files(
    case: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    name, overrides = GOLDEN_CASES[case]
    got = archdsl.emit_source(archdsl.load(f"specs/{name}.arch", overrides))
    expected = GOLDEN / f"{case}.py"
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        expected.write_text(got)
    assert expected.exists(), f"no golden; run pytest tests/test_emit_config.py --update-golden ({expected})"
    assert got == expected.read_text(), "emitted file changed: rerun with --update-golden and read the diff"
    assert re.search(r"spec sha256 [0-9a-f]{64}", got)


def test_checkpointing_is_recorded_in_the_config(tmp_path: Path, write_spec) -> None:  # type: ignore[no-untyped-def]
    """The spec's per-block checkpointing is the Config's default; ``checkpoint=True`` recomputes every
    block (same gradients), ``False`` none."""
    text = (
        (SPECS / "tiny.arch")
        .read_text()
        .replace("repeat    = n_layers", "repeat    = n_layers\n    checkpoint = true")
    )
    spec = archdsl.load(write_spec("ck.arch", text))
    mod = emitted(spec, tmp_path, "ck")
    assert mod.Config().checkpoint is True
    stacks = lambda m: [s for s in m.modules() if isinstance(s, mod.Stack)]  # noqa: E731
    assert all(all(s.checkpoint) for s in stacks(mod.build_model(seed=0)))
    plain = mod.build_model(seed=0, checkpoint=False)
    assert not any(any(s.checkpoint) for s in stacks(plain))
    idx = torch.randint(0, 97, (2, 8))
    grads = []
    for model in (mod.build_model(seed=0), plain):
        model.train()
        _, loss = model(idx, idx)
        loss.backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    assert emitted(tiny("tiny"), tmp_path, "plain").Config().checkpoint is False
