"""An image fixes the sequence length (its patches, and a class token): ``check`` holds it to every
table that bounds the length — a positional ``max_len`` (learned, sinusoidal, RoPE's angles acting in
attention) or an attention's own (BigBird's) — with E014 at that ``max_len`` and a help saying how many
positions the image gives. Messages, codes and positions, golden-style."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

import archdsl
from archdsl.cli import main
from archdsl.diagnostics import SpecError
from archdsl.kinds import REGISTRY


def vit(position: str, attention: str = "mha(heads = 4)", cls_token: bool = True, image: int = 16) -> str:
    """Patches of 4 x 4 (16 of a 16 x 16 image), a class token or not; position on line 5."""
    return f"""\
model vit {{
  type      = encoder
  d_model   = 24
  embedding = patch_embedding(image = {image}, patch = 4, channels = 3, cls_token = {str(cls_token).lower()})
  position  = {position}
  block {{
    repeat    = 2
    norm      = layernorm()
    attention = {attention}
    ffn       = mlp(hidden = 32)
  }}
  final_norm = layernorm()
  head       = classifier(classes = 5, pool = {"cls" if cls_token else "mean"})
}}
"""


def check(tmp_path: Path, text: str, name: str = "vit.arch") -> list[archdsl.Diagnostic]:
    p = tmp_path / name
    p.write_text(text)
    return archdsl.check(p)


def at(d: archdsl.Diagnostic) -> tuple[int, int]:
    assert d.span is not None
    return d.span.line, d.span.col


def test_every_limited_positional_kind_is_covered() -> None:
    limited = {k.name for k in REGISTRY.values() if k.role == "position" and k.param("max_len") is not None}
    assert limited == {"learned", "sinusoidal", "rope"}
    assert {k.name for k in REGISTRY.values() if k.role != "position" and k.param("max_len")} == {"bigbird"}


@pytest.mark.parametrize(
    ("position", "cls_token", "length", "limit", "col", "help"),
    [
        (
            "learned(max_len = 16)",
            True,
            17,
            16,
            23,
            "the 16 x 16 image gives 17 positions (16 patches of 4 x 4 and the class token)",
        ),
        (
            "sinusoidal(max_len = 12)",
            False,
            16,
            12,
            26,
            "the 16 x 16 image gives 16 positions (16 patches of 4 x 4)",
        ),
        (
            "rope(theta = 100.0, max_len = 9)",
            True,
            17,
            9,
            35,
            "the 16 x 16 image gives 17 positions (16 patches of 4 x 4 and the class token)",
        ),
    ],
    ids=["learned", "sinusoidal", "rope"],
)
def test_image_past_a_positional_table(
    tmp_path: Path, position: str, cls_token: bool, length: int, limit: int, col: int, help: str
) -> None:
    (d,) = check(tmp_path, vit(position, cls_token=cls_token))  # once, however many layers
    kind = position.split("(")[0]
    assert d.code == "E014"
    assert d.message == f"the input fixes the sequence length at {length}, past `{kind}` max_len ({limit})"
    assert at(d) == (5, col)  # the caret on `max_len = …`
    assert d.help == f"{help}: set max_len = {length} or more"


@pytest.mark.parametrize(
    "position", ["learned(max_len = 17)", "sinusoidal(max_len = 17)", "rope(max_len = 17)", "none"]
)
def test_image_that_fits_is_accepted(tmp_path: Path, position: str) -> None:
    assert check(tmp_path, vit(position)) == []


def test_default_max_len_points_at_the_call(tmp_path: Path) -> None:
    """RoPE's table defaults to 4096 positions; a 260 x 260 image gives 65² + 1: the caret is on the
    call that left max_len to its default."""
    (d,) = check(tmp_path, vit("rope()", image=260))
    assert d.message == "the input fixes the sequence length at 4226, past `rope` max_len (4096)"
    assert at(d) == (5, 15)
    assert d.help is not None and d.help.startswith("the 260 x 260 image gives 4226 positions")


def test_attention_with_a_table_of_its_own(tmp_path: Path) -> None:
    """BigBird's random-block table bounds the length too; with RoPE as well, each limit the image
    passes is reported at its own max_len."""
    bigbird = "bigbird(heads = 4, block = 2, max_len = 8)"
    (d,) = check(tmp_path, vit("none", attention=bigbird))
    assert d.message == "the input fixes the sequence length at 17, past `bigbird` max_len (8)"
    assert at(d) == (9, 47)
    both = check(tmp_path, vit("rope(max_len = 8)", attention=bigbird))
    assert [(x.message, at(x)) for x in both] == [
        ("the input fixes the sequence length at 17, past `rope` max_len (8)", (5, 20)),
        ("the input fixes the sequence length at 17, past `bigbird` max_len (8)", (9, 47)),
    ]
    assert check(tmp_path, vit("rope(max_len = 12)", attention=bigbird.replace("8", "64"))) != []


def test_yaml_form_points_at_the_same_value(tmp_path: Path) -> None:
    text = """\
model:
  name: vit
  type: encoder
  d_model: 24
  embedding: {kind: patch_embedding, image: 16, patch: 4}
  position: {kind: learned, max_len: 10}
  block:
    repeat: 1
    norm: {kind: layernorm}
    attention: {kind: mha, heads: 4}
    ffn: {kind: mlp, hidden: 32}
  final_norm: {kind: layernorm}
  head: {kind: classifier, classes: 5}
"""
    (d,) = check(tmp_path, text, "vit.yaml")
    assert (d.code, d.message, at(d)) == (
        "E014",
        "the input fixes the sequence length at 17, past `learned` max_len (10)",
        (6, 29),
    )


def test_cli_renders_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vit.arch").write_text(vit("learned(max_len = 16)"))
    monkeypatch.chdir(tmp_path)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["check", "vit.arch"])
    assert code == 1 and out.getvalue() == ""
    assert err.getvalue() == (
        "error[E014]: the input fixes the sequence length at 17, past `learned` max_len (16)\n"
        " --> vit.arch:5:23\n"
        "  |\n"
        "5 |   position  = learned(max_len = 16)\n"
        "  |                       ^^^^^^^^^^^^\n"
        "help: the 16 x 16 image gives 17 positions (16 patches of 4 x 4 and the class token): set "
        "max_len = 17 or more\n"
        "\n"
        "found 1 error; `archdsl explain E014` explains it\n"
    )


def test_build_and_analyze_refuse_it_too(tmp_path: Path) -> None:
    p = tmp_path / "vit.arch"
    p.write_text(vit("learned(max_len = 16)"))
    spec = archdsl.load(p)
    for step in (archdsl.build, archdsl.analyze):
        with pytest.raises(SpecError) as e:
            step(spec)
        assert [d.code for d in e.value.diagnostics] == ["E014"]


def test_report_length_past_the_binding_table(tmp_path: Path) -> None:
    """A token model's length is the report's to check: at the max_len that binds — BigBird's own
    table here, shorter than the stack's RoPE."""
    p = tmp_path / "lm.arch"
    p.write_text(
        """\
model lm {
  type      = decoder
  d_model   = 24
  vocab     = 37
  embedding = token_embedding()
  position  = rope(max_len = 64)
  block {
    repeat    = 2
    attention = bigbird(heads = 4, block = 2, max_len = 16)
    ffn       = mlp(hidden = 32)
    norm      = layernorm()
  }
  head = lm_head()
}
"""
    )
    spec = archdsl.load(p)
    assert archdsl.check(spec) == []
    with pytest.raises(SpecError) as e:
        archdsl.analyze(spec, seq_len=32)
    (d,) = e.value.diagnostics
    assert d.message == "sequence length 32 exceeds `bigbird` max_len (16)"
    assert at(d) == (9, 47)
