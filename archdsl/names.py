"""The one rule for names a spec defines, applied wherever a name is defined (both forms: YAML keys reach
the same places as text names).

A name is an ASCII identifier (``[A-Za-z_][A-Za-z0-9_]*``, which both grammars enforce) of at most
:data:`~archdsl.limits.MAX_NAME_LENGTH` characters. The lowered module turns names into Python as
written: tensors into locals of a ``forward``, sublayers into constructor arguments and attributes of an
``nn.Module``, constants into configuration fields. So a constant, sublayer or tensor name must not be

* a word of the spec language (``true``, ``false``, ``none``, ``extends``, ``import``, ``from``, a
  section's keyword such as ``flow`` or ``layer``, and YAML's ``kind`` and ``name``);
* a Python keyword or soft keyword (``class``, ``lambda``, ``match``, ``type``): not a valid name there;
* a Python builtin (``print``, ``super``, ``eval``, ``__import__``): generated code calls builtins, and a
  name that shadows one would change what it calls;
* ``self``, or a name starting with ``_`` (private and dunder names belong to Python and torch);
* a module generated code refers to (``torch``, ``nn``, ``F``, ``math``);

and a sublayer name must not be a block setting (``repeat``, ``placement``) nor an attribute of
``nn.Module`` (``forward``, ``training``, ``compile``,
``register_forward_hook``): the block would silently call the method instead of the sublayer. A tower
(``tower vision { }``) becomes a submodule of the model's module: it must not be an ``nn.Module``
attribute either, nor one of that module's own (``head``, ``names``, ``embed``). Names are
refused with E009 rather than renamed, so that parameter names (``h.0.attn.weight``) are always the
names the spec wrote. Block and model names reach Python only inside names archdsl derives (block
``global`` becomes class ``GlobalBlock`` and factory ``global_block``) or inside string literals, so any
identifier names a block or a model (Gemma 2's ``local`` and ``global`` blocks). Names archdsl derives
itself (the model's name from its file name, generated class and factory names) are made valid and
unique (:func:`identifier`; the emitter).
"""

from __future__ import annotations

import builtins
import keyword
import re

from archdsl.limits import MAX_NAME_LENGTH

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

PYTHON_KEYWORDS = frozenset((*keyword.kwlist, *keyword.softkwlist, "type", "_"))
PYTHON_BUILTINS = frozenset(n for n in dir(builtins))
#: Attributes of every ``nn.Module`` instance (torch 2.x; tests/test_names.py checks that the installed
#: torch adds none that are missing here).
NN_MODULE_ATTRIBUTES = frozenset(
    """
    T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
    dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule
    half ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters
    parameters register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
    register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to
    to_empty train training type xpu zero_grad
    """.split()
)
#: modules (and functions) that generated and emitted code refers to by these names
GENERATED_CODE_NAMES = frozenset(
    ("torch", "nn", "F", "math", "random", "checkpoint", "argparse", "dataclasses")
)
#: a block's input tensors, which a sublayer cannot be named after
BLOCK_INPUTS = frozenset(("x", "memory"))
#: the keyword arguments of a generated block's forward (padding masks, decoding positions), which a
#: tensor of its flow cannot be named after
BLOCK_KEYWORDS = frozenset(("mask", "memory_mask", "pos"))

#: words of the spec language: what the text form reads as its own (literals, ``extends``, ``import``),
#: the sections' keywords, and the keys the YAML form gives a meaning (``kind`` makes a component,
#: ``name`` labels a section). A name equal to one would read differently in the other form, or not
#: at all (a sublayer called ``flow`` beside a ``flow`` section has no YAML form).
ARCHDSL_WORDS = frozenset(
    (
        *("true", "false", "none", "extends", "import", "from"),
        *("model", "block", "layer", "encoder", "decoder", "flow", "lora", "tower"),
        *("kind", "name"),
    )
)
#: a block's settings: a flow block's other entries are its sublayers, so these cannot name one
BLOCK_SETTINGS = frozenset(("repeat", "placement", "shared", "base", "checkpoint"))
#: names that reach Python only inside names archdsl derives (block ``global`` -> class ``GlobalBlock``,
#: factory ``global_block``) or inside strings (the model's name): any identifier will do
DERIVED_ONLY = frozenset(("block", "model"))

#: what a towers model's module holds besides its towers (its head, the towers' order, its method
#: ``embed``): no tower can be named so
TOWER_RESERVED = frozenset(("head", "names", "embed"))

#: what each kind of name becomes, for messages
WHAT = {
    "tower": "a tower",
    "constant": "a constant",
    "block": "a block",
    "model": "a model",
    "sublayer": "a sublayer",
    "tensor": "a tensor",
}


def name_problem(name: str, what: str) -> str | None:
    """Why ``name`` cannot name ``what`` (a key of :data:`WHAT`), or None when it can."""
    role = WHAT[what]
    if not IDENTIFIER.match(name):
        return f"`{name[:MAX_NAME_LENGTH]}` is not a name (letters, digits and `_`) and cannot name {role}"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name `{name[:16]}…` is longer than {MAX_NAME_LENGTH} characters"
    if name in ARCHDSL_WORDS:
        return f"`{name}` is a word of the spec language and cannot name {role}"
    if what in DERIVED_ONLY:
        return None
    if name in PYTHON_KEYWORDS:
        soft = "" if keyword.iskeyword(name) else "soft "
        return f"`{name}` is a Python {soft}keyword and cannot name {role}"
    if name == "self" or name.startswith("_"):
        reason = "`self`" if name == "self" else "a name starting with `_`"
        return f"{reason} is reserved for Python and torch and cannot name {role}"
    if name in PYTHON_BUILTINS:
        return f"`{name}` is a Python builtin and cannot name {role}"
    if name in GENERATED_CODE_NAMES:
        return f"`{name}` is a module generated code uses and cannot name {role}"
    if what in ("sublayer", "tower") and name in NN_MODULE_ATTRIBUTES:
        return f"`{name}` is an attribute of every nn.Module and cannot name {role}"
    if what == "tower" and name in TOWER_RESERVED:
        return f"`{name}` is an attribute of a towers model's module and cannot name a tower"
    if what == "sublayer" and name in BLOCK_SETTINGS:
        return f"`{name}` is a block setting and cannot name a sublayer"
    if what == "tensor" and name in BLOCK_KEYWORDS:
        return f"`{name}` is an argument of every generated block and cannot name a tensor"
    if what == "sublayer" and name in BLOCK_INPUTS:
        return f"`{name}` is a block input tensor and cannot name a sublayer"
    return None


def rename_hint(name: str, what: str) -> str:
    """A help line proposing a name that passes :func:`name_problem`."""
    stem = identifier(name)[:MAX_NAME_LENGTH].strip("_") or "name"
    for candidate in (f"{stem}_", f"{stem}_1", f"my_{stem}"):
        if name_problem(candidate, what) is None:
            return f"rename it, e.g. `{candidate}`"
    return "choose another name"


def identifier(text: str, fallback: str = "model") -> str:
    """A valid name made from arbitrary text (the model's name from its file name): other characters
    become ``_``, a leading digit gets a prefix, reserved names a ``_`` suffix; at most
    MAX_NAME_LENGTH characters. Deterministic."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)[:MAX_NAME_LENGTH].strip("_") or "unnamed"
    if name[0].isdigit():
        name = f"{fallback}_{name}"[:MAX_NAME_LENGTH]
    while name_problem(name, "model") is not None:
        name = f"{name[: MAX_NAME_LENGTH - 1]}_" if len(name) < MAX_NAME_LENGTH else f"{fallback}_x"
    return name


#: ``--set`` names: a constant or a dotted path of names
_OVERRIDE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*\Z")
OVERRIDE_HELP = (
    "write --set NAME=VALUE with a constant's name, or a dotted path such as model.block.ffn.hidden"
)


def override_name_problem(name: str) -> str | None:
    if len(name) > 4 * MAX_NAME_LENGTH:
        return f"the name is longer than {4 * MAX_NAME_LENGTH} characters"
    if not _OVERRIDE.match(name):
        return f"`{name}` is not a constant's name nor a dotted path of names"
    return None
