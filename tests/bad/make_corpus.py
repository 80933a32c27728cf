"""Writes the hostile-spec corpus (tests/bad/cases/) from the table below; tests/test_bad.py runs it.

Each case is one hostile spec, in the text form, the YAML form or both: a small valid spec with one
thing wrong. The expected outcome of each — exit status, the first diagnostic's code and position —
is in ``tests/bad/MANIFEST``; regenerate the files with ``python tests/bad/make_corpus.py`` and the
manifest with ``pytest tests/test_bad.py --update-bad`` (then read the diff). Cases that cannot live in
git (a 10 MB file, FIFOs, directories, symlinks out of the tree, /dev/zero) are made by the test itself
(``GENERATED`` in tests/test_bad.py).
"""

from __future__ import annotations

import keyword
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"

# A tiny spec with a flow block: every hostile case changes one thing in it.
ARCH = """\
vocab    = 50
d_model  = 32
n_layers = 2
{const_line}
block dense {{
  {sub} = mha(heads = 4, causal = true)
  mlp  = mlp(hidden = 4 * d_model, activation = gelu)
  ln_1 = layernorm(eps = 1e-5)
  ln_2 = layernorm(eps = 1e-5)
  flow {{
    {tensor} = x + {sub}(ln_1(x))
    x = {tensor} + mlp(ln_2({tensor}))
  }}
}}

model tiny {{
  type       = decoder
  d_model    = d_model
  vocab      = vocab
  embedding  = token_embedding()
  position   = learned(max_len = {max_len})
  layers     = [dense] * n_layers
  final_norm = layernorm(eps = 1e-5)
  head       = lm_head(tied = true)
}}
"""

YAML = """\
vocab: 50
d_model: 32
n_layers: 2
{const_line}
block:
  dense:
    {sub}: {{kind: mha, heads: 4, causal: true}}
    mlp: {{kind: mlp, hidden: 4 * d_model, activation: gelu}}
    ln_1: {{kind: layernorm, eps: 1e-5}}
    ln_2: {{kind: layernorm, eps: 1e-5}}
    flow:
      - {tensor}: x + {sub}(ln_1(x))
      - x: {tensor} + mlp(ln_2({tensor}))

model:
  name: tiny
  type: decoder
  d_model: d_model
  vocab: vocab
  embedding: {{kind: token_embedding}}
  position: {{kind: learned, max_len: {max_len}}}
  layers: "[dense] * n_layers"
  final_norm: {{kind: layernorm, eps: 1e-5}}
  head: {{kind: lm_head, tied: true}}
"""


def arch(const: str = "", sub: str = "attn", tensor: str = "h", max_len: str = "64") -> str:
    return ARCH.format(const_line=const, sub=sub, tensor=tensor, max_len=max_len)


def yaml(const: str = "", sub: str = "attn", tensor: str = "h", max_len: str = "64") -> str:
    return YAML.format(const_line=const, sub=sub, tensor=tensor, max_len=max_len)


def both(name: str, **kw: str) -> dict[str, str | bytes]:
    """The same hostile change in both forms (YAML writes `name: value` for `name = value`)."""
    ykw = {k: (v.replace(" = ", ": ", 1) if k == "const" else v) for k, v in kw.items()}
    return {f"{name}.arch": arch(**kw), f"{name}.yaml": yaml(**ykw)}


def cases() -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {}

    # -- names: keywords, soft keywords, builtins, self, private names, nn.Module attributes ----------
    for word in (
        "class",
        "None",
        "True",
        "lambda",
        "async",
        "nonlocal",
        "match",
        "type",
        "print",
        "super",
        "eval",
        "__import__",
        "self",
        "torch",
    ):
        out.update(both(f"tensor_{word.strip('_')}", tensor=word))
    for word in (
        "class",
        "self",
        "super",
        "__import__",
        "exec",
        "compile",
        "xpu",
        "dump_patches",
        "register_forward_hook",
        "forward",
        "training",
        "x",
        "memory",
        "F",
    ):
        out.update(both(f"sublayer_{word.strip('_')}", sub=word))
    for word in ("def", "case", "len", "_private", "__class__", "self"):
        out.update(both(f"constant_{word.strip('_')}", const=f"{word} = 3"))
    out.update(both("name_too_long", tensor="t" * 70))

    # -- numbers: beyond 64 bits, beyond floats, undefined powers -----------------------------------
    out.update(both("int_5000_digits", const="big = " + "9" * 5000))
    out.update(both("int_20_digits", const="big = 99999999999999999999"))
    out.update(both("int_leading_zero_huge", const="big = 0" + "7" * 60))
    out.update(both("float_1e999", const="big = 1e999"))
    out.update(both("float_long_mantissa", const="big = " + "9" * 400 + ".0"))
    out.update(both("zero_to_negative_int", const="bad = 0 ** -1"))
    out.update(both("zero_to_negative_float", const="bad = 0.0 ** -1"))
    out.update(both("float_overflow_mul", const="bad = 1e308 * 10"))
    out.update(both("float_overflow_pow", const="bad = 10.0 ** 400"))
    out.update(both("int_pow_huge", const="bad = 2 ** 10 ** 18"))
    out.update(both("int_product_overflow", const="bad = 2 ** 62 * 2 ** 62"))
    out.update(both("complex_root", const="bad = (-8) ** 0.5"))
    out.update(both("modulo_zero_float", const="bad = 5 % 0.0"))
    out.update(both("divide_zero", const="bad = d_model / (d_model - 32)"))
    out["d_model_negative.arch"] = arch().replace("d_model  = 32", "d_model  = -32")
    out["d_model_negative.yaml"] = yaml().replace("d_model: 32", "d_model: -32")
    # overflowing sizes that reach a component
    out["heads_huge.arch"] = arch().replace("heads = 4", "heads = 2 ** 62")
    out["hidden_huge_float.arch"] = arch().replace("hidden = 4 * d_model", "hidden = 1e300")
    out["max_len_zero.yaml"] = yaml(max_len="0")

    # -- depth and size: nesting, chains, long lists, huge repeats ----------------------------------
    out.update(both("deep_parens", const="deep = " + "(" * 150 + "1" + ")" * 150))
    out.update(both("deep_brackets", const="deep = " + "[" * 150 + "]" * 150))
    out.update(both("deep_unary", const="deep = " + "-" * 150 + "1"))
    out.update(both("long_chain", const="deep = " + " + ".join(["1"] * 150)))
    out.update(both("long_power_chain", const="deep = " + " ** ".join(["1"] * 120)))
    out["deep_parens_10k.arch"] = arch(const="deep = " + "(" * 10000 + "1" + ")" * 10000)
    out["deep_yaml_10k.yaml"] = yaml(const="deep: " + "[" * 10000 + "]" * 10000)
    out["deep_yaml_mappings.yaml"] = yaml(const="deep: " + "{a: " * 120 + "1" + "}" * 120)
    out["deep_sections.arch"] = arch() + "".join("s { " for _ in range(120)) + "}" * 120
    out["terms_100k.arch"] = arch(const="big = " + "+".join(["1"] * 100_000))
    out["names_10k.arch"] = arch(const="\n".join(f"c{i} = {i}" for i in range(10_000)))
    out["names_10k.yaml"] = yaml(const="\n".join(f"c{i}: {i}" for i in range(10_000)))
    out["unknown_names_many.arch"] = arch(const="\n".join(f"c{i} = nope{i} + 1" for i in range(400)))
    out["list_10k.arch"] = arch().replace("[dense] * n_layers", "[" + ", ".join(["dense"] * 1000) + "]")
    out["repeat_10e12.arch"] = arch().replace("[dense] * n_layers", "[dense] * 10 ** 12")
    out["repeat_10e12.yaml"] = yaml().replace("[dense] * n_layers", "[dense] * 10 ** 12")
    out["repeat_2000.arch"] = arch(const="").replace("n_layers = 2", "n_layers = 2000")
    out["repeat_sum.arch"] = arch().replace("[dense] * n_layers", " + ".join(["[dense] * 1000"] * 40))
    out["repeat_nested.arch"] = arch().replace("[dense] * n_layers", "([dense] * 1000) * 1000")
    inline = "\n".join(
        [
            *arch().split("\n")[:3],
            "model m {",
            "  d_model = d_model",
            "  vocab = vocab",
            "  embedding = token_embedding()",
            "  block {",
            "    repeat = 10 ** 12",
            "    norm = layernorm()",
            "    attention = mha(heads = 4)",
            "    ffn = mlp(hidden = 64)",
            "  }",
            "  head = lm_head()",
            "}",
            "",
        ]
    )
    out["inline_repeat_huge.arch"] = inline
    out["big_file.arch"] = arch() + "# padding\n" * 7000  # over 64 KiB, comments only
    out["big_file.yaml"] = yaml() + "# padding\n" * 7000

    # -- bytes and characters ---------------------------------------------------------------------
    for form, text in (("arch", arch()), ("yaml", yaml())):
        raw = text.encode()
        out[f"nul_byte.{form}"] = raw.replace(
            b"d_model  = 32" if form == "arch" else b"d_model: 32",
            (b"d_model  = 3\x002" if form == "arch" else b"d_model: 3\x002"),
        )
        out[f"invalid_utf8.{form}"] = raw.replace(b"vocab", b"voc\xffab", 1)
        out[f"invalid_utf8_comment.{form}"] = b"# caf\xc3\n" + raw
        out[f"overlong_utf8.{form}"] = b"# \xc0\xaf\n" + raw
        out[f"utf16.{form}"] = text.encode("utf-16")
        out[f"bom_then_error.{form}"] = b"\xef\xbb\xbf" + raw.replace(b"vocab", b"vocab!", 1)
        out[f"crlf_then_error.{form}"] = raw.replace(b"\n", b"\r\n").replace(b"vocab", b"vocab!", 1)
        out[f"lone_cr.{form}"] = raw.replace(b"\n", b"\r", 3)
        out[f"esc_in_comment.{form}"] = b"# \x1b[2J\x1b[31mowned\x1b[0m\n" + raw
        out[f"bidi_in_comment.{form}"] = "# access \u202e granted \u2066\n".encode() + raw
        out[f"zero_width_space.{form}"] = raw.replace(b"vocab", "vo\u200bcab".encode(), 1)
        out[f"bell_and_backspace.{form}"] = b"# \x07\x08\x08\n" + raw
        out[f"line_separator.{form}"] = "# a\u2028b\n".encode() + raw
        out[f"c1_control.{form}"] = "# \u009b31m\n".encode() + raw
        out[f"only_bom.{form}"] = b"\xef\xbb\xbf"
        out[f"empty.{form}"] = b""
        out[f"binary.{form}"] = bytes(range(256)) * 4
    out["esc_in_yaml_escape.yaml"] = yaml(const='note: "\\e[31m"')
    out["bidi_in_yaml_escape.yaml"] = yaml(const='note: "a\\u202eb"')
    out["nul_in_yaml_escape.yaml"] = yaml(const='note: "\\0"')
    out["esc_in_arch_string.arch"] = arch(const='note = "\x1b[31m"')

    # -- YAML: anchors, aliases, tags, duplicates, 1.1 traps, odd shapes -----------------------------
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    out["billion_laughs.yaml"] = "\n".join(laughs) + "\n" + yaml()
    out["anchor_alias.yaml"] = yaml(const="eps: &e 1e-5\nother: *e")
    out["merge_key.yaml"] = yaml(const="base: &b {kind: layernorm}\nmine:\n  <<: *b")
    out["tag_python_object.yaml"] = yaml(const="d: !!python/object/apply:os.system [touch /tmp/owned]")
    out["tag_python_name.yaml"] = yaml(const="d: !!python/name:os.system")
    out["tag_custom.yaml"] = yaml(const="d: !mine 3")
    out["tag_str.yaml"] = yaml(const="d: !!str 3")
    out["tag_binary.yaml"] = yaml(const="d: !!binary aGVsbG8=")
    out["tag_on_mapping.yaml"] = yaml().replace("{kind: token_embedding}", "!!map {kind: token_embedding}")
    out["tag_directive.yaml"] = "%TAG !e! tag:example.com,2000:\n---\n" + yaml(const="d: !e!thing 3")
    out["yaml_directive.yaml"] = "%YAML 1.1\n---\n" + yaml(const="flag: yes")
    out["duplicate_key_top.yaml"] = yaml(const="vocab: 60")
    out["duplicate_key_nested.yaml"] = yaml().replace(
        "  type: decoder\n", "  type: decoder\n  type: encoder\n"
    )
    out["duplicate_key_component.yaml"] = yaml().replace(
        "{kind: lm_head, tied: true}", "{kind: lm_head, tied: true, tied: false}"
    )
    out["yes_no.yaml"] = yaml().replace("tied: true", "tied: yes")
    out["on_off.yaml"] = yaml().replace("causal: true", "causal: off")
    out["octal.yaml"] = yaml().replace("vocab: 50", "vocab: 017")
    out["sexagesimal.yaml"] = yaml().replace("vocab: 50", "vocab: 1:20")
    out["null_value.yaml"] = yaml().replace("vocab: 50", "vocab: ~")
    out["null_word.yaml"] = yaml().replace("vocab: 50", "vocab: null")
    out["inf.yaml"] = yaml().replace("vocab: 50", "vocab: .inf")
    out["nan.yaml"] = yaml().replace("eps: 1e-5}", "eps: .nan}", 1)
    out["two_documents.yaml"] = yaml() + "---\n" + yaml()
    out["top_level_list.yaml"] = "- " + yaml().replace("\n", "\n  ")
    out["top_level_scalar.yaml"] = "just a string\n"
    out["key_not_a_name.yaml"] = yaml(const='"a b": 3')
    out["key_number.yaml"] = yaml(const="1.5: 3")
    out["key_complex.yaml"] = yaml(const="? [a, b]\n: 3")
    out["key_bool.yaml"] = yaml(const="true: 3")
    out["key_archdsl_word.yaml"] = yaml(const="none: 3")
    out["block_named_import.yaml"] = yaml().replace("  dense:", "  import:").replace("[dense]", "[import]")
    out["flow_not_list.yaml"] = yaml().replace(
        "    flow:\n      - h: x + attn(ln_1(x))\n      - x: h + mlp(ln_2(h))\n", "    flow: {h: x}\n"
    )
    out["flow_statement_two_keys.yaml"] = yaml().replace("- x: h + mlp(ln_2(h))", "- {x: h, y: h}")
    out["sublayer_list.yaml"] = yaml().replace("attn: {kind: mha, heads: 4, causal: true}", "attn: []")
    out["sublayer_mapping_no_kind.yaml"] = yaml().replace(
        "attn: {kind: mha, heads: 4, causal: true}", "attn: {heads: 4}"
    )
    out["kind_is_list.yaml"] = yaml().replace("{kind: token_embedding}", "{kind: [token_embedding]}")
    out["kind_is_mapping.yaml"] = yaml().replace("{kind: token_embedding}", "{kind: {a: 1}}")
    out["block_not_mapping.yaml"] = yaml().replace("block:\n  dense:", "block:\n  dense: 3\n  other:")
    out["tab_indent.yaml"] = yaml().replace("  type: decoder", "\ttype: decoder")
    out["unclosed_flow.yaml"] = yaml().replace("{kind: token_embedding}", "{kind: token_embedding")
    out["unclosed_quote.yaml"] = yaml(const='note: "abc')
    out["value_expression_error.yaml"] = yaml().replace("hidden: 4 * d_model", "hidden: 4 * * d_model")
    out["value_quoted_string.yaml"] = yaml().replace("activation: gelu", "activation: \"'gelu'\"")
    out["import_not_list.yaml"] = "import: 3\n" + yaml()
    out["extends_mapping.yaml"] = "extends: {a: 1}\n" + yaml()

    # -- text syntax -------------------------------------------------------------------------------
    out["missing_brace_model.arch"] = arch().replace("model tiny {", "model tiny")
    out["unclosed_brace.arch"] = arch().rstrip().rstrip("}")
    out["stray_close.arch"] = "}\n" + arch()
    out["quoted_string_value.arch"] = arch().replace("activation = gelu", 'activation = "gelu"')
    out["semicolons.arch"] = arch().replace("vocab    = 50", "vocab = 50; d = 3")
    out["colon.arch"] = arch().replace("vocab    = 50", "vocab: 50")
    out["many_errors.arch"] = "\n".join(["x = = 1"] * 50) + "\n" + arch()
    out["errors_everywhere.arch"] = "\n".join(f"c{i} = nope{i} +" for i in range(300)) + "\n"
    out["string_with_nul_path.arch"] = 'extends "a\x00b.arch"\n' + arch()

    # -- composition: traversal, absolute paths, suffixes, cycles ------------------------------------
    out["extends_parent.arch"] = 'extends "../../../etc/passwd"\n' + arch()
    out["extends_absolute.arch"] = 'extends "/etc/passwd"\n' + arch()
    out["extends_absolute_spec.arch"] = 'extends "/tmp/evil.arch"\n' + arch()
    out["extends_not_spec.arch"] = 'extends "MANIFEST"\n' + arch()
    out["extends_empty.arch"] = 'extends ""\n' + arch()
    out["extends_missing.arch"] = 'extends "no_such_file.arch"\n' + arch()
    out["extends_self.arch"] = 'extends "extends_self.arch"\n' + arch()
    out["cycle_a.arch"] = 'extends "cycle_b.arch"\n' + arch()
    out["cycle_b.arch"] = 'extends "cycle_a.arch"\n' + arch()
    out["import_parent.arch"] = 'import dense from "../../specs/lib/blocks.arch"\n' + arch()
    out["import_missing_block.arch"] = 'import nothing from "lib/helper.arch"\n' + arch()
    out["lib/helper.arch"] = arch()  # not a case: what import_missing_block imports
    out["extends_broken.arch"] = 'extends "many_errors.arch"\n' + arch()
    out["extends_binary.arch"] = 'extends "binary.arch"\n' + arch()
    out["extends_parent.yaml"] = "extends: ../../../etc/passwd.yaml\n" + yaml()
    out["extends_nul.yaml"] = 'extends: "a\\0b.yaml"\n' + yaml()
    out["extends_control.yaml"] = 'extends: "a\\x1bb.yaml"\n' + yaml()
    out["import_traversal.yaml"] = "import: [{from: ../../specs/lib/blocks.arch, blocks: [dense]}]\n" + yaml()
    out["extends_long_path.arch"] = 'extends "' + "a/" * 700 + 'x.arch"\n' + arch()

    # -- structure: what only check can see ----------------------------------------------------------
    out["unknown_kind.arch"] = arch().replace("mha(heads = 4, causal = true)", "mhq(heads = 4)")
    out["unknown_kind.yaml"] = yaml().replace("{kind: mha, heads: 4, causal: true}", "{kind: mhq, heads: 4}")
    out["heads_not_dividing.arch"] = arch().replace("heads = 4", "heads = 5")
    out["heads_not_dividing.yaml"] = yaml().replace("heads: 4", "heads: 5")
    out["unused_sublayer.arch"] = arch().replace(
        "  ln_2 = layernorm(eps = 1e-5)\n", "  ln_2 = layernorm(eps = 1e-5)\n  ln_3 = layernorm()\n"
    )
    out["keyword_in_flow.arch"] = arch().replace("x = h + mlp(ln_2(h))", "x = h + lambda(ln_2(h))")
    out["image_too_long.arch"] = (
        "model vit {\n  type = encoder\n  d_model = 32\n"
        "  embedding = patch_embedding(image = 64, patch = 4, channels = 3)\n"
        "  position = learned(max_len = 16)\n  block {\n    repeat = 2\n    norm = layernorm()\n"
        "    attention = mha(heads = 4)\n    ffn = mlp(hidden = 64)\n  }\n"
        "  head = classifier(classes = 10)\n}\n"
    )
    return out


#: cases larger than this are not kept in git: tests/test_bad.py writes them from this table
KEPT_BYTES = 16 * 1024


def as_bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def large() -> dict[str, bytes]:
    """The cases too large to keep in git."""
    return {k: as_bytes(v) for k, v in cases().items() if len(as_bytes(v)) > KEPT_BYTES}


def main() -> None:
    if CASES.exists():
        shutil.rmtree(CASES)
    CASES.mkdir()
    kept = 0
    for name, content in cases().items():
        data = as_bytes(content)
        if len(data) <= KEPT_BYTES:
            (CASES / name).parent.mkdir(exist_ok=True)
            (CASES / name).write_bytes(data)
            kept += 1
    print(f"wrote {kept} cases to {CASES} ({len(large())} larger ones are written by tests/test_bad.py)")


if __name__ == "__main__":
    assert keyword.iskeyword("class")
    main()
