"""The emitted file is standalone (torch + standard library), runs, and defines the same model:
loaded with the built module's state_dict it gives identical logits."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import all_specs, model_inputs, tiny_overrides

import archdsl

STDLIB = set(sys.stdlib_module_names)


def emitted_module(spec: archdsl.Spec, tmp_path: Path, name: str = "emitted_model"):  # type: ignore[no-untyped-def]
    src = archdsl.emit_source(spec)
    path = tmp_path / f"{name}.py"
    path.write_text(src)
    mod_spec = importlib.util.spec_from_file_location(name, path)
    assert mod_spec and mod_spec.loader
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return src, path, mod


def imported_roots(src: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    return roots


@pytest.mark.parametrize("path", all_specs(), ids=lambda p: p.name)
def test_emitted_file_matches_built_module(path: Path, tmp_path: Path) -> None:
    spec = archdsl.load(path, tiny_overrides(path))
    src, _, mod = emitted_module(spec, tmp_path)
    assert imported_roots(src) <= STDLIB | {"torch"}

    built = archdsl.build(spec, seed=3).eval()
    emitted = mod.build_model().eval()
    sd_built = built.state_dict()
    sd_emitted = emitted.state_dict()
    assert {k: v.shape for k, v in sd_built.items()} == {k: v.shape for k, v in sd_emitted.items()}
    emitted.load_state_dict(sd_built)

    inputs = model_inputs(spec, 2, 11)
    with torch.no_grad():
        torch.testing.assert_close(emitted(*inputs), built(*inputs), rtol=0, atol=0)


def test_emitted_file_runs_without_archdsl(tmp_path: Path) -> None:
    """As `python -c "import m"` would, with archdsl made unimportable."""
    spec = archdsl.load(
        Path(__file__).parent.parent / "specs" / "gpt2_small.arch",
        {"n_layers": 1, "d_model": 32, "n_heads": 2},
    )
    (tmp_path / "m.py").write_text(archdsl.emit_source(spec))
    code = (
        "import sys; sys.modules['archdsl'] = None\n"
        "import torch, m\n"
        "print(m.build_model()(torch.zeros(1, 4, dtype=torch.long)).shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "torch.Size([1, 4, 50257])" in out.stdout
    run = subprocess.run([sys.executable, "m.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "parameters; output (2, 16, 50257)" in run.stdout


def test_emitted_source_is_readable_and_stable() -> None:
    spec = archdsl.load(Path(__file__).parent.parent / "specs" / "gpt2_small.arch")
    src = archdsl.emit_source(spec)
    assert src == archdsl.emit_source(spec)  # deterministic
    assert "124,439,808 parameters" in src
    assert "for _ in range(config.n_layers)" in src  # repeated blocks as one comprehension, sized by Config
    assert "F.scaled_dot_product_attention" in src
    assert "# (B, nh, T, hs)" in src  # shape comments survive
    compile(src, "gpt2_small.py", "exec")


def test_build_is_deterministic_in_seed() -> None:
    spec = archdsl.load(Path(__file__).parent.parent / "specs" / "tiny.arch")
    a, b, c = (archdsl.build(spec, seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tied_head_shares_the_embedding_matrix() -> None:
    spec = archdsl.load(
        Path(__file__).parent.parent / "specs" / "gpt2_small.arch",
        {"n_layers": 1, "d_model": 32, "n_heads": 2},
    )
    m = archdsl.build(spec)
    assert m.lm_head.weight is m.wte.weight
