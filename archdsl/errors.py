"""Every diagnostic code: its title, what it means, an example and the fix. ``archdsl explain CODE``
prints one; docs/errors.md is generated from this table (a test keeps them equal)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorDoc:
    title: str
    body: str
    example: str = ""
    fix: str = ""


ERRORS: dict[str, ErrorDoc] = {
    "E001": ErrorDoc(
        "syntax error in a text (.arch) spec",
        "The text does not follow the grammar: an unexpected character or token, an unclosed `{` or `(`, "
        "a quoted string, `name: value` (the YAML form) instead of `name = value`, a missing `,` between "
        "arguments, an integer with a leading zero, nesting deeper than 100 levels (brackets, or "
        "operators in one expression), a file over 64 KiB or 5,000 tokens, bytes that are not UTF-8, "
        "or a character no spec needs (NUL and other control characters, bidirectional and other "
        "invisible format characters, a carriage return without a newline). The message names what "
        "was expected, in words.",
        "model m {\n  d_model: 768\n}",
        "model m {\n  d_model = 768\n}",
    ),
    "E002": ErrorDoc(
        "YAML error, or a YAML construct a spec does not allow",
        "Malformed YAML — a tab where YAML expects indentation (YAML indents with spaces only), a bad "
        "indent, an unclosed bracket or quote — or something the strict YAML form refuses: tags "
        "(`!!python/object`), anchors and aliases (`&x`, `*x`), `null`, non-finite numbers (`.inf`), a "
        "key that is not a name, a top level that is not a mapping, nesting deeper than 100 levels, a "
        "file over 64 KiB or 5,000 tokens, bytes that are not UTF-8, or a character no spec needs "
        "(control and invisible format characters, also when written as an escape in a quoted "
        "string). Every scalar is read by the text form's expression rule, so YAML 1.1's implicit "
        "typing never applies.",
        "eps: &e 1e-5\nother: *e",
        "eps: 1e-5\nother: eps",
    ),
    "E003": ErrorDoc(
        "unknown name",
        "An expression refers to a constant, block, tensor or sublayer that does not exist (or is defined "
        "further down), or an enum parameter is given a word it does not know. The help proposes the "
        "closest name.",
        "ffn = mlp(hidden = 4 * d_modle, activation = gleu)",
        "ffn = mlp(hidden = 4 * d_model, activation = gelu)",
    ),
    "E004": ErrorDoc(
        "arithmetic error",
        "`/` on integers that do not divide exactly (use `//` to round down), division by zero, zero "
        "to a negative power, a literal or a result beyond 64 bits or not finite, or arithmetic on a "
        "word or a boolean. The message shows both operands' values.",
        "head_dim = d_model / 10   # 768 / 10",
        "head_dim = d_model / 12",
    ),
    "E005": ErrorDoc(
        "unknown component kind",
        "A slot names a kind that is not in the registry. The help proposes the closest kind for that slot.",
        "embedding = token_embeding()",
        "embedding = token_embedding()",
    ),
    "E006": ErrorDoc(
        "unknown parameter, setting or section",
        "A component is given a parameter its kind does not have, or a section holds a key it does not know.",
        "ffn = mlp(hidden = 3072, dropuot = 0.1)",
        "ffn = mlp(hidden = 3072)",
    ),
    "E007": ErrorDoc(
        "missing required parameter or setting",
        "A component lacks a required parameter (`mha()` without `heads`), a model lacks `d_model`, an "
        "embedding or a head, a stack lacks its layers, or a spec has no `model` section.",
        "attention = mha()",
        "attention = mha(heads = 12)",
    ),
    "E008": ErrorDoc(
        "value of the wrong type",
        "A number where `true`/`false` is expected (`yes`, `no`, `on`, `off` are not booleans in a spec), "
        "a float where an integer is expected, a component where a value is expected or the reverse, "
        "positional arguments to a component, or a flow expression that is not sublayer calls, `+` and "
        "scaling by a number.",
        "attention = mha(heads = 12, causal = yes)",
        "attention = mha(heads = 12, causal = true)",
    ),
    "E009": ErrorDoc(
        "value out of range",
        "A size below 1, `eps` not above 0, `top_k` above the number of experts, a word outside a "
        "parameter's choices, a layer index beyond the stack, a model of more than 512 layers, or a "
        "name the spec may not define: a Python keyword or builtin (`class`, `lambda`, `print`), "
        "`self`, a name starting with `_`, one longer than 64 characters, or — for a sublayer — an "
        "attribute of `nn.Module` (`forward`, `training`). Names become Python in the lowered module, "
        "so archdsl refuses them rather than rename them (parameter names stay the spec's).",
        "norm = layernorm(eps = 0)",
        "norm = layernorm(eps = 1e-5)",
    ),
    "E010": ErrorDoc(
        "duplicate definition",
        "A constant, key, parameter, setting, block or `model` section given twice, or a name used both "
        "for a constant and a block, or a stack with both an inline block and `layers`.",
        "d_model = 768\nd_model = 1024",
        "d_model = 1024",
    ),
    "E011": ErrorDoc(
        "shape error",
        "Sizes that do not fit together: `d_model` not divisible by the number of heads, an odd "
        "`d_model` under sinusoidal positions, an image size the patch does not divide, a stage whose "
        "width differs from the stage before's without a `transition`, a grid that windows or patch "
        "merging do not tile with `pad = false`. The caret points at the argument to change.",
        "d_model = 768\nattention = mha(heads = 10)",
        "attention = mha(heads = 12)",
    ),
    "E012": ErrorDoc(
        "the model graph has a cycle",
        "A tensor depends on itself. The message lists the cycle. (The language's statements run in "
        "order, so this is a guard on the graph view.)",
    ),
    "E013": ErrorDoc(
        "a node is not connected to the input or the output",
        "Part of the model does not contribute to its output: a flow statement whose result is never "
        "used, a sublayer declared in a flow block but never applied.",
        "flow {\n  h = mlp(x)\n  x = x + attn(x)\n}",
        "flow {\n  h = x + attn(x)\n  x = h + mlp(h)\n}",
    ),
    "E014": ErrorDoc(
        "sequence longer than the positional scheme supports",
        "The sequence length asked for exceeds a positional table's `max_len` (learned, sinusoidal, "
        "rotary, or BigBird's random table) — or the input fixes a length that does: an image of "
        "(image / patch)² patches, plus the class token, needs that many positions, and `check` says "
        "so.",
        "archdsl report gpt2_small.arch --seq 2048   # learned(max_len = 1024)",
        "archdsl report gpt2_small.arch --seq 1024",
    ),
    "E015": ErrorDoc(
        "invalid --set override",
        "An override names a constant or a path the spec does not have (the help proposes the closest), "
        "or its value does not parse.",
        "archdsl check gpt2_small.arch --set n_layer=2",
        "archdsl check gpt2_small.arch --set n_layers=2",
    ),
    "E016": ErrorDoc(
        "wrong section or component in this place",
        "A component of one role in another role's slot (`attention = mlp(…)`), a component inside "
        "arithmetic, cross-attention outside the decoder of an encoder-decoder, a block with both a "
        "placement and a flow, an unknown top-level section, a kind that reads a token grid (`swin`, "
        "`patch_merging`) in a model without one, or stages where they cannot be (an encoder_decoder, "
        "beside `block` or `layers`).",
        "attention = mlp(hidden = 3072)",
        "attention = mha(heads = 12)",
    ),
    "E017": ErrorDoc(
        "extends/import: unreadable file, or outside the spec's folder",
        "`extends` or `import` names a file that cannot be read, or that lies outside the folder tree of "
        "the spec being loaded. Paths are relative to the file that names them.",
        'extends "../../elsewhere/base.arch"',
        'extends "base.arch"',
    ),
    "E018": ErrorDoc(
        "extends/import or block base cycle",
        "Files that extend or import each other in a circle (the message shows the chain "
        "`a.arch → b.arch → a.arch`), or a block whose `base` chain comes back to itself.",
        'a.arch: extends "b.arch"\nb.arch: extends "a.arch"',
    ),
    "E019": ErrorDoc(
        "cannot read the spec file",
        "The file named on the command line does not exist, is a directory, a FIFO, a device or a "
        "socket, or may not be read. archdsl reads only regular files (it never waits on a FIFO). "
        "The exit status is 2, as for other I/O errors.",
        "archdsl check specs/",
        "archdsl check specs/gpt2_small.arch",
    ),
    "E020": ErrorDoc(
        "the model does not fit in memory",
        "`build` (and `report --measure` at real size) would allocate more bytes of weights than the "
        "machine has available; the message says how many it needs and how many are free. Build a "
        "smaller variant with `--set`, or analyse the spec without building it (`archdsl report`).",
        "archdsl report llama3_70b.arch --measure --set model.block.ffn.hidden=2**40",
        "archdsl report llama3_70b.arch --set n_layers=2 --measure",
    ),
    "E021": ErrorDoc(
        "a Hugging Face config field archdsl cannot express",
        "`archdsl import-hf` (and `archdsl.interop.hf.spec_from_config`) account for every field of the "
        "config: the ones that shape the model become spec values, a per-family list names those that do "
        "not (ids, dropout, initialisation, dtype). A field outside both, a value no kind expresses (an "
        "attention bias where the family has none, an unknown `rope_scaling` type, an activation with no "
        "kind), or a `model_type` not handled is refused by name rather than dropped. docs/interop.md "
        "lists the families and what each refuses.",
        '{"model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}, ...}',
        '{"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, ...}, ...}',
    ),
}


def explain(code: str) -> str:
    import textwrap

    d = ERRORS[code]
    out = [f"{code}: {d.title}", "", textwrap.fill(d.body, width=100)]
    if d.example:
        out += ["", "For example:", "", *("    " + line for line in d.example.splitlines())]
    if d.fix:
        out += ["", "Fixed:", "", *("    " + line for line in d.fix.splitlines())]
    return "\n".join(out) + "\n"


def markdown() -> str:
    out = [
        "# Error codes",
        "",
        "<!-- generated by archdsl/errors.py: `python -m archdsl explain --markdown > docs/errors.md` -->",
        "",
        "Every diagnostic archdsl prints has a stable code; `archdsl explain CODE` prints its entry. The",
        "rendered form:",
        "",
        "```",
        "error[E011]: d_model (768) is not divisible by heads (10)",
        "  --> specs/gpt2_small.arch:23:21",
        "   |",
        "23 |     attention = mha(heads = n_heads, causal = true, bias = true)",
        "   |                     ^^^^^^^^^^^^^^^",
        "help: choose heads among 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, …",
        "```",
        "",
        "`--format json` gives objects with `code`, `severity`, `message`, `file`, `line`, `column`,",
        "`end_line`, `end_column` and `help`. A spec with errors exits with status 1.",
    ]
    for code, d in ERRORS.items():
        out += ["", f"## {code}", "", f"**{d.title}**", "", d.body]
        if d.example:
            out += ["", "```", d.example, "```"]
        if d.fix:
            out += ["", "Fixed:", "", "```", d.fix, "```"]
    return "\n".join(out) + "\n"
