"""The formatter: canonical text, comments kept, text <-> YAML round trips for every shipped spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, SPECS, run_cli

import archdsl
from archdsl.fmt import to_text, to_yaml
from archdsl.frontend import parse_source

ALL_SOURCES = sorted([*SPECS.rglob("*.arch"), *SPECS.rglob("*.yaml")])


def parse(text: str, name: str):  # type: ignore[no-untyped-def]
    return parse_source(text, name)


@pytest.mark.parametrize("path", ALL_SOURCES, ids=lambda p: str(p.relative_to(SPECS)))
def test_shipped_specs_are_canonical_and_round_trip(path: Path) -> None:
    text = path.read_text()
    own = parse(text, str(path))
    canonical = to_yaml(own) if path.suffix == ".yaml" else to_text(own)
    assert canonical == text, "run `archdsl fmt --write` on it"
    as_text = to_text(own)
    as_yaml = to_yaml(own)
    back = parse(as_yaml, "x.yaml")
    assert back.entries == own.entries
    assert to_text(back) == as_text  # text -> YAML -> text gives the canonical text
    assert to_yaml(parse(as_text, "x.arch")) == as_yaml  # and YAML -> text -> YAML the canonical YAML


def test_converted_specs_elaborate_to_the_same_ir(tmp_path: Path) -> None:
    for path in sorted(SPECS.glob("*.arch")):
        out = tmp_path / path.parent.relative_to(SPECS) / (path.stem + ".yaml")
        out.parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lib").mkdir(exist_ok=True)
        for lib in (SPECS / "lib").glob("*.arch"):
            (tmp_path / "lib" / lib.name).write_text(lib.read_text())
        for base in SPECS.glob("*.arch"):  # bases for extends, in their own form
            (tmp_path / base.name).write_text(base.read_text())
        out.write_text(to_yaml(parse(path.read_text(), str(path))))
        assert archdsl.load(out).model == archdsl.load(path).model, path.name


MESSY = """\
# header comment

# about the sizes
d = 64     # width
h=4
model   m{   # the model
  type=decoder
  d_model = d
  vocab = 100
  # the input
  embedding = token_embedding( )

  block {
    repeat = 2   # layers
    norm = layernorm(eps=1e-5)
    attention = mha(heads=h)  # trailing
    ffn = mlp(hidden=(4*d), activation=gelu)
    # dangling in block
  }
  head = lm_head()
}
# footer
"""

EXPECTED = """\
# header comment

# about the sizes
d = 64  # width
h = 4
model m {  # the model
  type      = decoder
  d_model   = d
  vocab     = 100
  # the input
  embedding = token_embedding()

  block {
    repeat    = 2  # layers
    norm      = layernorm(eps = 1e-5)
    attention = mha(heads = h)  # trailing
    ffn       = mlp(hidden = 4 * d, activation = gelu)
    # dangling in block
  }
  head      = lm_head()
}
# footer
"""


def test_format_keeps_comments_and_blank_lines() -> None:
    out = to_text(parse(MESSY, "m.arch"))
    assert out == EXPECTED
    assert to_text(parse(out, "m.arch")) == out  # idempotent
    yaml = to_yaml(parse(out, "m.arch"))
    for comment in (
        "# header comment",
        "# width",
        "# the model",
        "# layers",
        "# trailing",
        "# dangling in block",
        "# footer",
    ):
        assert comment in yaml
    assert to_text(parse(yaml, "m.yaml")) == out


def test_expressions_print_with_minimal_parentheses() -> None:
    lines = ["a = (1 + 2) * 3", "b = 1 + (2 * 3)", "c = (2 ** 3) ** 2", "d = 2 ** (3 ** 2)"]
    lines += ["e = -(2 ** 2)", "f = (-2) ** 2", "g = 8 - (4 - 2)"]
    src = "\n".join(lines) + "\n"
    out = to_text(parse(src, "e.arch"))
    expected = ["a = (1 + 2) * 3", "b = 1 + 2 * 3", "c = (2 ** 3) ** 2", "d = 2 ** 3 ** 2"]
    expected += ["e = -2 ** 2", "f = (-2) ** 2", "g = 8 - (4 - 2)"]
    assert out == "\n".join(expected) + "\n"
    assert parse(out, "e.arch").entries == parse(src, "e.arch").entries


def test_yaml_scalars_that_need_quotes_get_them() -> None:
    src = "model m {\n  layers = [a, b] * 2\n  x = min(1, 2)\n  y = mha(heads = min(4, 8))\n}\n"
    yaml = to_yaml(parse(src, "q.arch"))
    assert 'layers: "[a, b] * 2"' in yaml
    assert "x: min(1, 2)" in yaml
    assert 'y: {kind: mha, heads: "min(4, 8)"}' in yaml
    assert parse(yaml, "q.yaml").entries == parse(src, "q.arch").entries


def test_cli_fmt(tmp_path: Path) -> None:
    p = tmp_path / "m.arch"
    p.write_text(MESSY)
    assert run_cli("fmt", "--check", str(p)).returncode == 1
    r = run_cli("fmt", str(p))
    assert r.returncode == 0 and r.stdout == EXPECTED
    assert run_cli("fmt", "--write", str(p)).returncode == 0
    assert p.read_text() == EXPECTED
    assert run_cli("fmt", "--check", str(p)).returncode == 0
    r = run_cli("fmt", "--to", "yaml", str(p), "-o", str(tmp_path / "m.yaml"))
    assert r.returncode == 0
    r = run_cli("fmt", "--to", "arch", str(tmp_path / "m.yaml"))
    assert r.stdout == EXPECTED
    assert run_cli("fmt", "--write", "--to", "yaml", str(p)).returncode == 2
    bad = tmp_path / "bad.arch"
    bad.write_text("model m {")
    r = run_cli("fmt", str(bad))
    assert r.returncode == 1 and "E001" in r.stderr


def test_fmt_check_passes_on_shipped_specs() -> None:
    r = run_cli("fmt", "--check", *[str(p.relative_to(ROOT)) for p in ALL_SOURCES])
    assert r.returncode == 0, r.stderr
