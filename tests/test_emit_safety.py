"""Nothing a spec says can make the file ``archdsl compile`` writes run code.

For every place a name or text of a spec can stand — the spec's file name, an extended file's name, the
model, block, sublayer, tensor and constant names (in both forms: YAML keys reach the same places),
enum words, comments, ``--set`` names and values — injection payloads are put there. Each spec is
either refused with a diagnostic, or compiled to a file that (1) parses, (2) imports only allowlisted
modules and calls only what it defines itself, allowlisted builtins and methods — checked here by a
checker of this test's own, not archdsl's — and (3) imported in a fresh process, leaves no sentinel file
behind (every payload tries to create one).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "bad"))
import make_corpus

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.lower.pysrc import source_problems

SENTINEL = "PWNED_SENTINEL"


def payloads() -> list[str]:
    """Each would create the file SENTINEL in the working directory if it ever ran."""
    touch = f"__import__('pathlib').Path({SENTINEL!r}).touch()"
    return [
        f'x"""\n{touch}\n"""',
        f"x'''\n{touch}\n'''",
        f'x\\"""\n{touch}\n#',
        f"x\n{touch}\n",
        f"x\r\n{touch}\r\n",
        f"x\\\n{touch}",
        "x{" + touch + "}",
        f'";{touch};"',
        f"';{touch};'",
        f"x\x00{touch}",
        f"x\u2028{touch}",
        f"x\x1b[2J{touch}",
        f"x\u202e{touch}",
        f"__import__('os').system('touch {SENTINEL}')",
        "self",
        "__class__",
    ]


#: allowlists of this test (independent of archdsl.lower.pysrc)
IMPORTS = {
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "torch.utils.checkpoint",
    "math",
    "random",
    "__future__",
    "argparse",  # the file's __main__: command-line overrides of Config
    "dataclasses",  # Config
    "typing",  # build_model's **overrides: Any
}
CALLABLE_BUILTINS = {
    "super", "range", "len", "isinstance", "zip", "min", "max", "sum", "int", "float", "bool", "tuple",
    "list", "dict", "enumerate", "any", "all", "abs", "print", "sorted", "reversed", "round", "getattr",
    "type", "ValueError", "RuntimeError", "NotImplementedError", "TypeError", "set", "map", "divmod",
}  # fmt: skip


def independent_problems(source: str) -> list[str]:
    tree = ast.parse(source)
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)} | {
        n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)
    }
    defined |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    imported = set()
    problems = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                if a.name not in IMPORTS:
                    problems.append(f"import {a.name}")
                imported.add((a.asname or a.name).split(".")[0])
        elif isinstance(n, ast.ImportFrom):
            if n.module not in IMPORTS:
                problems.append(f"from {n.module}")
            imported |= {a.asname or a.name for a in n.names}
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            while isinstance(f, ast.Attribute | ast.Subscript):
                dunder = isinstance(f, ast.Attribute) and f.attr.startswith("__") and f.attr != "__init__"
                if isinstance(f, ast.Attribute) and (f.attr in ("system", "popen", "load") or dunder):
                    problems.append(f"calls .{f.attr}")
                f = f.value
            if isinstance(f, ast.Name) and f.id not in defined | imported | CALLABLE_BUILTINS:
                problems.append(f"calls {f.id}")
        if isinstance(n, ast.Name) and n.id in ("eval", "exec", "compile", "__import__", "open", "globals"):
            problems.append(f"mentions {n.id}")
    return problems


def attempt(path: Path, overrides: dict[str, str] | None = None) -> str | None:
    """The emitted source, or None when archdsl refuses the spec with diagnostics."""
    try:
        spec = archdsl.load(path, overrides)
        return archdsl.emit_source(spec)
    except SpecError as e:
        assert e.diagnostics and all(d.code.startswith("E0") and d.span for d in e.diagnostics)
        return None


def positions(payload: str) -> dict[str, tuple[str, str]]:
    """Specs with ``payload`` at each place: name -> (file name, text)."""
    y = make_corpus.yaml()
    a = make_corpus.arch()
    q = payload.replace("\\", "\\\\").replace('"', '\\"')
    quoted = f'"{q}"'
    return {
        "yaml tensor key": ("t.yaml", y.replace("- h:", f"- {quoted}:").replace("(h)", "(x)")),
        "yaml sublayer key": ("s.yaml", y.replace("    attn:", f"    {quoted}:")),
        "yaml constant key": ("c.yaml", f"{quoted}: 3\n" + y),
        "yaml block label": ("b.yaml", y.replace("  dense:", f"  {quoted}:")),
        "yaml model name": ("m.yaml", y.replace("name: tiny", f"name: {quoted}")),
        "yaml enum word": ("e.yaml", y.replace("activation: gelu", f"activation: {quoted}")),
        "yaml kind": ("k.yaml", y.replace("kind: mha", f"kind: {quoted}")),
        "yaml extends": ("x.yaml", f"extends: {quoted}\n" + y),
        "yaml comment": ("cm.yaml", f"# {payload.replace(chr(10), ' ')}\n" + y),
        "arch comment": ("cm.arch", f"# {payload.replace(chr(10), ' ')}\n" + a),
        "arch label": ("l.arch", a.replace("model tiny", f"model {payload}")),
        "arch tensor": ("t.arch", a.replace("    h = ", f"    {payload} = ")),
        "arch extends": ("x.arch", f'extends "{q}"\n' + a),
    }


def no_sentinel(root: Path) -> bool:
    return not any(p.name == SENTINEL for p in root.rglob("*"))


def test_payloads_in_every_name_position_never_run(tmp_path: Path) -> None:
    compiled: list[Path] = []
    for k, payload in enumerate(payloads()):
        for where, (name, text) in positions(payload).items():
            d = tmp_path / f"p{k}" / where.replace(" ", "_")
            d.mkdir(parents=True)
            (d / name).write_text(text, encoding="utf-8")
            src = attempt(d / name)
            if src is None:
                continue
            assert SENTINEL not in src, (where, payload)  # comments are not emitted; names were refused
            assert not source_problems(src) and not independent_problems(src), (where, payload)
            out = d / "model.py"
            out.write_text(src)
            compiled.append(out)
    # the file name itself, and the stem the model's name is made from
    for k, payload in enumerate(payloads()):
        if "/" in payload or "\x00" in payload:
            continue
        d = tmp_path / f"f{k}"
        d.mkdir()
        spec = d / f"{payload}.arch"
        spec.write_text(make_corpus.arch().replace("model tiny {", "model {"))
        src = attempt(spec)
        assert src is not None
        assert not source_problems(src) and not independent_problems(src), payload
        tree = ast.parse(src)
        assert ast.get_docstring(tree) is not None  # the name is inside the docstring, as text
        out = d / "model.py"
        out.write_text(src)
        compiled.append(out)
        # --set names and values
        for key, value in ((payload, "2"), ("n_layers", payload)):
            assert attempt(spec, {key: value}) is None
    assert compiled, "some payload positions must compile (comments, file names)"
    # import every compiled file in a fresh process: the sentinel must not appear
    script = "import importlib.util, sys\n" + "".join(
        f"s = importlib.util.spec_from_file_location('m{i}', {str(p)!r}); "
        f"m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
        for i, p in enumerate(compiled)
    )
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert no_sentinel(tmp_path) and no_sentinel(Path.cwd())


@pytest.mark.parametrize("payload_index", [0, 3])
def test_compiled_file_with_payload_name_runs_as_a_script(tmp_path: Path, payload_index: int) -> None:
    """``python model.py`` (a forward pass) on a file compiled from a spec with a hostile file name."""
    payload = payloads()[payload_index]
    spec = tmp_path / f"{payload}.arch"
    spec.write_text(make_corpus.arch())
    src = attempt(spec)
    assert src is not None
    out = tmp_path / "model.py"
    out.write_text(src)
    r = subprocess.run([sys.executable, str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "parameters; output" in r.stdout
    assert no_sentinel(tmp_path)


def test_every_shipped_spec_compiles_to_safe_source() -> None:
    for path in sorted([*(ROOT / "specs").glob("*.arch"), *(ROOT / "specs").glob("*.yaml")]):
        src = archdsl.emit_source(archdsl.load(path))
        assert not source_problems(src) and not independent_problems(src), path.name


def test_the_checkers_catch_unsafe_source() -> None:
    """Both checkers refuse what a payload would need: imports, eval, os.system, dunder escapes."""
    for bad in (
        "import os\n",
        "from subprocess import run\n",
        "eval('1')\n",
        "__import__('os').system('x')\n",
        "x = ().__class__.__bases__[0].__subclasses__()\n",
        "open('f', 'w')\n",
        "import torch\ntorch.load('x')\n",
        "os.system('x')\n",
    ):
        assert source_problems(bad), bad
        assert independent_problems(bad) or "__class__" in bad, bad
