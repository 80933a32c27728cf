"""`archdsl schema`: a JSON Schema that every YAML spec satisfies and that rejects misspelt keys."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from conftest import ROOT, SPECS, run_cli

from archdsl.fmt import to_yaml
from archdsl.frontend import parse_source
from archdsl.schema import schema

VALIDATOR = jsonschema.Draft202012Validator(schema())


def as_json(text: str) -> object:
    """YAML data as an editor sees it: JSON values, string keys."""
    return json.loads(json.dumps(yaml.safe_load(text)))


def yaml_forms() -> list[tuple[str, str]]:
    out = [(p.name, p.read_text()) for p in sorted(SPECS.rglob("*.yaml"))]
    out += [(p.name, to_yaml(parse_source(p.read_text(), str(p)))) for p in sorted(SPECS.rglob("*.arch"))]
    return out


def test_schema_is_valid_and_published() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert json.loads((ROOT / "docs" / "archdsl.schema.json").read_text()) == schema(), (
        "regenerate: archdsl schema > docs/archdsl.schema.json"
    )
    r = run_cli("schema")
    assert r.returncode == 0 and json.loads(r.stdout) == schema()


@pytest.mark.parametrize(("name", "text"), yaml_forms(), ids=lambda x: x if len(x) < 40 else "")
def test_every_spec_validates(name: str, text: str) -> None:
    errors = [e.message for e in VALIDATOR.iter_errors(as_json(text))]
    assert errors == []


GPT2 = (SPECS / "gpt2_small.yaml").read_text()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\nmodel:", "\nmodle:"),  # a top-level section
        ("  type: decoder", "  typ: decoder"),  # a model setting
        ("    attention:", "    atention:"),  # a block slot
        ("heads: n_heads", "haeds: n_heads"),  # a component parameter
        ("kind: layernorm", "kind: layernrom"),  # a component kind
        ("    placement: pre", "    placemnt: pre"),  # a block setting
    ],
)
def test_misspelt_keys_are_rejected(old: str, new: str) -> None:
    assert old in GPT2
    assert list(VALIDATOR.iter_errors(as_json(GPT2.replace(old, new, 1))))
