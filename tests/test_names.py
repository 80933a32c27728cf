"""The one rule for names (archdsl/names.py), in every place a name is defined, in both forms."""

from __future__ import annotations

import builtins
import json
import keyword
import subprocess
import sys

import pytest
import torch.nn as nn

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.names import NN_MODULE_ATTRIBUTES, identifier, name_problem


def test_every_nn_module_attribute_is_reserved_for_sublayers() -> None:
    """torch's own attributes, read in a fresh process (libraries such as transformers add more to
    nn.Module when imported; build refuses those at run time, see below)."""
    script = (
        "import json, torch.nn as nn; m = nn.Module(); "
        "print(json.dumps(sorted(n for n in set(dir(m)) | set(vars(m)) if not n.startswith('_'))))"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    public = set(json.loads(r.stdout))
    assert "forward" in public and "training" in public
    assert public <= NN_MODULE_ATTRIBUTES, sorted(public - NN_MODULE_ATTRIBUTES)
    for n in public:
        assert name_problem(n, "sublayer") is not None, n


def test_build_refuses_a_sublayer_an_imported_library_shadows(write_spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(nn.Module, "smart_apply", lambda self: None, raising=False)
    path = write_spec("s.arch", spec_text(sub="smart_apply"))
    spec = archdsl.load(path)  # torch itself has no such attribute: the spec is valid
    with pytest.raises(SpecError) as e:
        archdsl.build(spec)
    assert e.value.diagnostics[0].code == "E009" and "smart_apply" in e.value.diagnostics[0].message


@pytest.mark.parametrize("what", ["constant", "sublayer", "tensor"])
def test_python_names_are_refused_where_names_become_python(what: str) -> None:
    for word in [*keyword.kwlist, *keyword.softkwlist, "type", "self", "_x", "__init__", "torch"]:
        assert name_problem(word, what) is not None, word
    for word in ("print", "super", "eval", "exec", "__import__", "compile", "open", "input"):
        assert word in dir(builtins) and name_problem(word, what) is not None, word
    for word in ("h", "attn", "d_model", "ln_1", "mlp", "x1"):
        assert name_problem(word, what) is None or (what == "sublayer" and word == "x")


def test_block_and_model_names_may_be_any_identifier() -> None:
    """They reach Python only inside derived names (``GlobalBlock``, ``global_block``) or strings."""
    for word in ("global", "local", "class", "print", "forward", "self_attention"):
        assert name_problem(word, "block") is None and name_problem(word, "model") is None
    for word in ("true", "none", "import", "1x", "a-b", "x" * 65):
        assert name_problem(word, "block") is not None, word


def test_identifier_from_file_names() -> None:
    assert identifier("gpt2-small") == "gpt2_small"
    assert identifier("7b") == "model_7b"
    assert identifier('x"""\n__import__("os")') == "x______import____os"
    assert identifier("") == "unnamed" and identifier("$$$") == "unnamed" and identifier("model") == "model_"
    assert identifier("true") == "true_" and len(identifier("a" * 500)) <= 64
    for text in ("print", "class", "🙂", "a b", "\x1b[31m"):
        assert name_problem(identifier(text), "model") is None


def spec_text(tensor: str = "h", sub: str = "attn", const: str = "c") -> str:
    return f"""
{const} = 3
block b {{
  {sub} = mha(heads = 4)
  m = mlp(hidden = 64)
  flow {{
    {tensor} = x + {sub}(x)
    x = {tensor} + m({tensor})
  }}
}}
model t {{ d_model = 32 vocab = 50 embedding = token_embedding() layers = [b] * 2 head = lm_head() }}
"""


@pytest.mark.parametrize(
    ("kw", "word", "col"),
    [
        ("tensor", "lambda", 5),
        ("sub", "forward", 3),
        ("sub", "super", 3),
        ("const", "def", 1),
        ("tensor", "self", 5),
    ],
)
def test_refused_in_both_forms_with_the_name_in_the_message(write_spec, kw: str, word: str, col: int) -> None:  # type: ignore[no-untyped-def]
    from archdsl.fmt import to_yaml
    from archdsl.frontend.text import parse_text

    text = spec_text(**{kw: word})
    for name, body in (("s.arch", text), ("s.yaml", None)):
        if body is None:  # the YAML twin, written by hand where the text form cannot parse the name
            body = to_yaml(parse_text(spec_text(), "x.arch")).replace(
                {"tensor": "- h:", "sub": "  attn:", "const": "c:"}[kw],
                {"tensor": f"- {word}:", "sub": f"  {word}:", "const": f"{word}:"}[kw],
            )
            if kw == "tensor":
                body = body.replace("(h)", f"({word})").replace("x: h +", f"x: {word} +")
            if kw == "sub":
                body = body.replace("attn(x)", f"{word}(x)")
        path = write_spec(name, body)
        try:
            archdsl.load(path)
        except SpecError as e:
            d = e.diagnostics[0]
            assert (d.code == "E009" and f"`{word}`" in d.message) or word == "self", d
            assert d.span is not None and (name.endswith("yaml") or d.span.col == col), d
        else:
            raise AssertionError(f"{word} accepted as a {kw} in {name}")
