"""docs/security.md states the limits archdsl applies (archdsl/limits.py), and the package evaluates no
text but the block classes it generates from checked names."""

from __future__ import annotations

import re

from conftest import ROOT

from archdsl import limits


def test_limits_table_equals_the_code() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    table = text.split("<!-- limits -->")[1].split("<!-- /limits -->")[0]
    rows = dict(re.findall(r"^\| `(MAX_[A-Z_]+)` \| ([0-9,]+) \|", table, re.M))
    assert {k: int(v.replace(",", "")) for k, v in rows.items()} == limits.ALL
    assert set(limits.ALL) == {k for k in vars(limits) if k.startswith("MAX_")}


def test_no_eval_or_exec_on_spec_text() -> None:
    """The one ``exec`` compiles a generated block class, which passes the emitted-source check first;
    no ``eval``, no unsafe YAML loading, no pickle, anywhere in the package."""
    found = []
    for p in sorted((ROOT / "archdsl").rglob("*.py")):
        for line in p.read_text().splitlines():
            code = line.split("#")[0]
            if re.search(
                r"(?<![\w.])(eval|exec)\(|yaml\.(load|unsafe_load|full_load)\(|pickle|torch\.load\(", code
            ):
                found.append(f"{p.relative_to(ROOT)}: {line.strip()}")
    # the one torch.load reads a Hugging Face .bin checkpoint, tensors only (weights_only: no pickle code)
    loads = [f for f in found if "torch.load(" in f]
    assert all("weights_only=True" in f and f.startswith("archdsl/interop/") for f in loads), loads
    found = [f for f in found if f not in loads]
    assert found == ['archdsl/lower/build.py: exec(compile(source, filename, "exec"), namespace)'], found
    build = (ROOT / "archdsl" / "lower" / "build.py").read_text()
    assert build.index("check_source(source)") < build.index("exec(compile(")
