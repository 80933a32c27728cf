"""A JSON Schema (draft 2020-12) for the YAML form, generated from the same tables elaboration uses:
the kind registry, the placement presets and the section schemas. Editors that speak the
yaml-language-server protocol complete and check specs with it::

    # yaml-language-server: $schema=../docs/archdsl.schema.json

Values may always be expression strings (``4 * d_model``, a constant's name), so the schema checks the
structure — sections, keys, component kinds and their parameter names — and leaves values to
``archdsl check``.
"""

from __future__ import annotations

from typing import Any

from archdsl.elaborate import (
    BLOCK_SETTINGS,
    BLOCK_SLOTS,
    MODEL_SETTINGS,
    MODEL_SLOTS,
    STACK_SETTINGS,
    STACK_SLOTS,
    STAGE_SETTINGS,
    STAGE_SLOTS,
    TOWER_SETTINGS,
    Slot,
)
from archdsl.kinds import REGISTRY, Param, kinds_for
from archdsl.kinds.peft import LORA_SETTINGS, LORA_TARGETS
from archdsl.placements import PLACEMENTS

IDENT = "^[A-Za-z_][A-Za-z0-9_]*$"
EXPR = {"type": "string", "minLength": 1, "description": "an expression, as in the text form"}


def param_schema(p: Param) -> dict[str, Any]:
    if p.type == "int":
        base: dict[str, Any] = {"type": "integer"}
    elif p.type == "float":
        base = {"type": "number"}
    elif p.type == "bool":
        base = {"type": "boolean"}
    elif p.type == "enum":
        base = {"enum": list(p.choices)}
    else:
        base = {}
    for key, bound in (
        ("minimum", p.min),
        ("exclusiveMinimum", p.gt),
        ("maximum", p.max),
        ("exclusiveMaximum", p.lt),
    ):
        if bound is not None and p.type in ("int", "float"):
            base[key] = bound
    out: dict[str, Any] = {"anyOf": [base, EXPR]} if base else dict(EXPR)
    if p.doc:
        out["description"] = p.doc
    return out


def kind_schema(name: str) -> dict[str, Any]:
    kind = REGISTRY[name]
    props: dict[str, Any] = {"kind": {"const": name}}
    props.update({p.name: param_schema(p) for p in kind.params})
    return {
        "type": "object",
        "description": (kind.doc or type(kind).__doc__ or "").strip().split("\n\n")[0],
        "properties": props,
        "required": ["kind", *(p.name for p in kind.params if p.required)],
        "additionalProperties": False,
    }


def component(role: str | None, optional: bool = False, doc: str = "") -> dict[str, Any]:
    names = kinds_for(role) if role else sorted(REGISTRY)
    options: list[dict[str, Any]] = [{"$ref": f"#/$defs/kind_{n}"} for n in names]
    options.append(EXPR)
    out: dict[str, Any] = {"anyOf": options}
    if doc:
        out["description"] = doc
    return out


def slot_schema(slot: Slot) -> dict[str, Any]:
    return component(slot.role, not slot.required, slot.doc)


def placement_schema() -> dict[str, Any]:
    calls = [
        {
            "type": "object",
            "properties": {"kind": {"const": name}, **{p.name: param_schema(p) for p in pl.params}},
            "required": ["kind"],
            "additionalProperties": False,
            "description": pl.doc,
        }
        for name, pl in PLACEMENTS.items()
    ]
    return {"anyOf": [{"enum": list(PLACEMENTS)}, *calls, EXPR], "description": "where the norms sit"}


def block_schema(inline: bool) -> dict[str, Any]:
    settings = {p.name: param_schema(p) for p in BLOCK_SETTINGS if inline or p.name != "repeat"}
    settings["placement"] = placement_schema()
    settings["base"] = {"type": "string", "pattern": IDENT, "description": "a block definition to start from"}
    slots = {name: slot_schema(s) for name, s in BLOCK_SLOTS.items()}
    reserved = "|".join([*settings, "flow"])
    return {
        "type": "object",
        "properties": {**settings, **slots, "flow": {"$ref": "#/$defs/flow"}},
        "if": {"required": ["flow"]},
        "then": {"patternProperties": {f"^(?!(?:{reserved})$)[A-Za-z_][A-Za-z0-9_]*$": component(None)}},
        "unevaluatedProperties": False,
    }


def stack_schema() -> dict[str, Any]:
    return {
        **{name: slot_schema(s) for name, s in STACK_SLOTS.items()},
        "layers": {
            "anyOf": [{"type": "array", "items": {"type": "string", "pattern": IDENT}}, EXPR],
            "description": "a layer pattern of block names: [a, b] * 4",
        },
        "block": {"$ref": "#/$defs/inline_block"},
        "layer": {
            "type": "object",
            "description": "per-layer overrides, by layer index",
            "patternProperties": {"^[0-9]+$": {"$ref": "#/$defs/partial_block"}},
            "additionalProperties": False,
        },
    }


def stage_schema(stack: dict[str, Any]) -> dict[str, Any]:
    """A stage of a stack: its width, its transition and its layers (as a stack lists them)."""
    return {
        "type": "object",
        "properties": {
            **{p.name: param_schema(p) for p in STAGE_SETTINGS},
            **{name: slot_schema(s) for name, s in STAGE_SLOTS.items()},
            **{k: stack[k] for k in ("layers", "block", "layer")},
        },
        "additionalProperties": False,
    }


def schema() -> dict[str, Any]:
    stack = stack_schema()
    stages = {
        "stage": {
            "type": "object",
            "description": "the stack's stages in order, by name (each at its own width and grid)",
            "patternProperties": {"^([A-Za-z_][A-Za-z0-9_]*|[0-9]+)$": {"$ref": "#/$defs/stage"}},
            "additionalProperties": False,
        }
    }
    model_props = {
        "name": {"type": "string", "pattern": IDENT},
        **{p.name: param_schema(p) for p in MODEL_SETTINGS},
        **{name: slot_schema(s) for name, s in MODEL_SLOTS.items()},
        **stack,
        **stages,
        "encoder": {"$ref": "#/$defs/stack"},
        "decoder": {"$ref": "#/$defs/stack"},
        "tower": {
            "type": "object",
            "description": "type = towers: the towers, by name, each an encoder with its own input, "
            "width, stack and projection head",
            "propertyNames": {"pattern": IDENT},
            "additionalProperties": {"$ref": "#/$defs/tower"},
        },
        "lora": {
            "type": "object",
            "description": "LoRA on chosen projections (Hu et al. 2022); the base is frozen",
            "properties": {
                **{p.name: param_schema(p) for p in LORA_SETTINGS},
                "targets": {
                    "anyOf": [{"type": "array", "items": {"enum": list(LORA_TARGETS)}}, EXPR],
                    "description": "projections: " + ", ".join(LORA_TARGETS),
                },
            },
            "additionalProperties": False,
        },
    }
    defs: dict[str, Any] = {f"kind_{n}": kind_schema(n) for n in sorted(REGISTRY)}
    defs.update(
        {
            "model": {"type": "object", "properties": model_props, "additionalProperties": False},
            "stack": {"type": "object", "properties": stack, "additionalProperties": False},
            "stage": stage_schema(stack),
            "tower": {
                "type": "object",
                "properties": {
                    **{p.name: param_schema(p) for p in TOWER_SETTINGS},
                    **{name: slot_schema(s) for name, s in MODEL_SLOTS.items()},
                    **{p.name: param_schema(p) for p in STACK_SETTINGS},
                    **stack,
                },
                "additionalProperties": False,
            },
            "block": block_schema(inline=False),
            "inline_block": block_schema(inline=True),
            "partial_block": block_schema(inline=False),
            "flow": {
                "description": "statements over tensors, in order: - x: x + attn(ln_1(x))",
                "anyOf": [
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "minProperties": 1,
                            "maxProperties": 1,
                            "propertyNames": {"pattern": IDENT},
                            "additionalProperties": EXPR,
                        },
                    },
                    {"type": "object", "propertyNames": {"pattern": IDENT}, "additionalProperties": EXPR},
                ],
            },
        }
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://archdsl.dev/schema/archdsl.schema.json",
        "title": "archdsl spec (YAML form)",
        "description": "Constants at the top level, block definitions under `block`, and one `model`.",
        "type": "object",
        "properties": {
            "extends": {"type": "string", "description": "a spec to start from, relative to this file"},
            "import": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "from": {"type": "string"},
                        "blocks": {"type": "array", "items": {"type": "string", "pattern": IDENT}},
                    },
                    "required": ["from", "blocks"],
                    "additionalProperties": False,
                },
            },
            "block": {
                "type": "object",
                "propertyNames": {"pattern": IDENT},
                "additionalProperties": {"$ref": "#/$defs/block"},
            },
            "model": {"$ref": "#/$defs/model"},
        },
        "propertyNames": {"pattern": IDENT},
        "additionalProperties": {"type": ["number", "boolean", "string"], "description": "a named constant"},
        "$defs": defs,
    }
