"""Bad specs give positioned diagnostics; all elaboration errors in a file are reported."""

from __future__ import annotations

import pytest
from conftest import SPECS

import archdsl
from archdsl.diagnostics import SourceCache, render_all
from archdsl.graph import build_graph
from archdsl.passes import run_passes


def diags_of(path) -> list[archdsl.Diagnostic]:  # type: ignore[no-untyped-def]
    return archdsl.check(path)


def test_heads_not_dividing_points_at_the_argument() -> None:
    [d] = archdsl.check(SPECS / "gpt2_small.arch", {"n_heads": 10})
    assert d.code == "E011"
    assert "768" in d.message and "10" in d.message
    src = (SPECS / "gpt2_small.arch").read_text().splitlines()
    assert d.span is not None
    line = src[d.span.line - 1]
    assert line[d.span.col - 1 :].startswith("heads = n_heads")
    assert "12" in (d.help or "")


def test_heads_not_dividing_in_yaml_points_at_the_argument() -> None:
    [d] = archdsl.check(SPECS / "gpt2_small.yaml", {"n_heads": 10})
    src = (SPECS / "gpt2_small.yaml").read_text().splitlines()
    assert d.code == "E011" and d.span is not None
    assert src[d.span.line - 1][d.span.col - 1 :].startswith("heads: n_heads")


BAD = """\
d = 64
model bad {
  type = decoder
  d_model = d
  vocab = 100 / 3
  embedding = token_embeding()
  block {
    repeat = 2
    norm = layernorm(eps = 0)
    attention = mha(heads = 4, causal = yes)
    ffn = mlp(hidden = 4 * d, activation = gleu, dropuot = 0.1)
  }
  head = lm_head()
}
"""


def test_all_elaboration_errors_in_source_order(write_spec) -> None:  # type: ignore[no-untyped-def]
    ds = diags_of(write_spec("bad.arch", BAD))
    got = [(d.code, d.span.line, d.span.col) for d in ds if d.span]
    assert got == [
        ("E004", 5, 11),  # 100 / 3 is not exact
        ("E005", 6, 15),  # unknown kind, did-you-mean
        ("E009", 9, 28),  # eps must be > 0
        ("E008", 10, 41),  # `yes` is not a boolean
        ("E003", 11, 44),  # unknown activation
        ("E006", 11, 50),  # unknown parameter
    ]
    helps = {d.code: d.help for d in ds}
    assert helps["E005"] == "did you mean `token_embedding`?"
    assert helps["E003"] == "did you mean `gelu`?"
    assert helps["E008"] == "write true"
    assert "33" in (helps["E004"] or "")


def test_rendering_has_location_source_line_and_caret(write_spec) -> None:  # type: ignore[no-untyped-def]
    p = write_spec("bad.arch", BAD)
    text = render_all(diags_of(p), SourceCache())
    assert "error[E005]: unknown embedding kind `token_embeding`" in text
    assert f"--> {p}:6:15" in text
    assert "6 |   embedding = token_embeding()" in text
    assert "  |               ^^^^^^^^^^^^^^" in text
    assert "help: did you mean `token_embedding`?" in text
    assert "found 6 errors; `archdsl explain E003` explains an error code" in text


@pytest.mark.parametrize(
    ("text", "code", "line", "col"),
    [
        ("model m {\n  type = decoder\n  d_model = \n}\n", "E001", 3, 11),
        ("d = 3\nmodel m { d_model: 4 }\n", "E001", 2, 18),
        ("d = 'x'\n", "E001", 1, 5),
        ("model m {\n  block {\n    repeat = 2\n}\n", "E001", 1, 9),
    ],
)
def test_syntax_errors_are_positioned(write_spec, text: str, code: str, line: int, col: int) -> None:  # type: ignore[no-untyped-def]
    [d] = diags_of(write_spec("s.arch", text))
    assert (d.code, d.span.line, d.span.col) == (code, line, col), d


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\nmodel: {name: m}\n", "duplicate key `a`"),
        ("a: !!python/object:os.system 1\n", "YAML tag"),
        ("a: &x 1\nb: *x\n", "YAML anchor"),
        ("a: [1, 2]\nmodel: {name: m}\n", "a list is only a value of `layers`"),
        ("a: {b: 1\n", "YAML syntax error"),
    ],
)
def test_strict_yaml(write_spec, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    ds = diags_of(write_spec("s.yaml", text))
    assert ds and ds[0].span is not None
    assert any(message in d.message for d in ds), ds


def _graph():  # type: ignore[no-untyped-def]
    return build_graph(archdsl.load(SPECS / "tiny.arch").model)


def test_graph_cycle_is_reported_with_a_position() -> None:
    g = _graph()
    g.add_edge("h.1.attn", "h.0.ln_1", index=1)
    [d] = run_passes(g)
    assert d.code == "E012" and "cycle" in d.message
    assert d.span is not None and d.span.file.endswith("tiny.arch") and d.span.line > 1


def test_graph_unreachable_and_dead_nodes_are_reported_with_positions() -> None:
    g = _graph()
    g.remove_edge("h.0.ln_1", "h.0.attn")  # attn is no longer fed from the input
    ds = run_passes(g)
    assert {d.code for d in ds} == {"E013"}
    by_msg = {d.message: d for d in ds}
    assert any("not reachable" in m for m in by_msg)
    assert any("never used" in m for m in by_msg)  # ln_1's output now goes nowhere
    assert all(d.span is not None for d in ds)


def test_valid_specs_have_no_diagnostics() -> None:
    for p in [*SPECS.glob("*.arch"), *SPECS.glob("*.yaml")]:
        assert archdsl.check(p) == [], p
