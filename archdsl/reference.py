"""Reference tables generated from the registry (docs/language.md embeds them; a test keeps them in
step)."""

from __future__ import annotations

from pathlib import Path

from archdsl.kinds import REGISTRY, ROLES, Param
from archdsl.kinds.base import REQUIRED
from archdsl.placements import PLACEMENTS


def _default(p: Param) -> str:
    if p.default is REQUIRED:
        return "required"
    if p.default is None:
        return "from context"
    if isinstance(p.default, bool):
        return "true" if p.default else "false"
    return str(p.default)


def _type(p: Param) -> str:
    if p.type == "enum":
        return " \\| ".join(p.choices)
    bounds = []
    if p.min is not None:
        bounds.append(f"≥ {p.min:g}")
    if p.gt is not None:
        bounds.append(f"> {p.gt:g}")
    if p.max is not None:
        bounds.append(f"≤ {p.max:g}")
    if p.lt is not None:
        bounds.append(f"< {p.lt:g}")
    return p.type + (f" ({', '.join(bounds)})" if bounds else "")


def kinds_markdown() -> str:
    out: list[str] = []
    for role in ROLES:
        for kind in (k for k in REGISTRY.values() if k.role == role):
            doc = " ".join((kind.doc or type(kind).__doc__ or "").strip().split("\n\n")[0].split())
            doc = doc.replace("``", "`")
            out += [f"#### `{kind.name}` ({role})", "", doc, ""]
            if kind.params:
                out += ["| parameter | type | default | meaning |", "|---|---|---|---|"]
                out += [f"| `{p.name}` | {_type(p)} | {_default(p)} | {p.doc} |" for p in kind.params]
            else:  # no settings: its weights, if any, follow from the model (a pooler's d x d + d)
                out.append(f"Takes no arguments: write `{kind.name}()`.")
            out.append("")
    out += ["#### Placement presets", "", "| preset | parameters | layout |", "|---|---|---|"]
    for name, pl in PLACEMENTS.items():
        params = ", ".join(f"`{p.name}` ({_default(p)})" for p in pl.params) or "none"
        out.append(f"| `{name}` | {params} | {pl.doc} |")
    return "\n".join(out).rstrip() + "\n"


#: the specs of the published-formulas table in docs/cost-model.md, at n = 1024
PUBLISHED_TABLE = ("gpt2_small", "gpt2_xl", "llama2_7b", "llama3_8b", "olmo2_7b", "mixtral_8x7b")
#: GPT-2 small with dropout where Korthikanti et al. 2022 assume it
DROPOUT = {
    "model.block.attention.dropout": 0.1,
    "model.block.attention.out_dropout": 0.1,
    "model.block.ffn.dropout": 0.1,
}


def cost_tables(root: Path) -> dict[str, str]:
    """The generated tables of docs/cost-model.md, by marker."""
    import archdsl
    from archdsl.cost.published import activation_table, table

    specs = root / "specs"
    return {
        "published": table([archdsl.load(specs / f"{name}.arch") for name in PUBLISHED_TABLE], 1024),
        "activations": activation_table(archdsl.load(specs / "gpt2_small.arch"), DROPOUT, 1024),
    }


def splice(text: str, marker: str, body: str) -> str:
    """Replace what stands between ``<!-- marker:begin -->`` and ``<!-- marker:end -->``."""
    head, rest = text.split(f"<!-- {marker}:begin -->\n", 1)
    _, tail = rest.split(f"<!-- {marker}:end -->", 1)
    return f"{head}<!-- {marker}:begin -->\n{body}<!-- {marker}:end -->{tail}"


def regenerate(root: str = ".") -> list[str]:
    """Rewrite the generated documents: docs/errors.md, docs/archdsl.schema.json, the component
    reference in docs/language.md and the tables of docs/cost-model.md. Returns the files that
    changed."""
    import json

    from archdsl.errors import markdown
    from archdsl.schema import schema

    docs = Path(root) / "docs"
    cost = (docs / "cost-model.md").read_text(encoding="utf-8")
    for marker, text in cost_tables(Path(root)).items():
        cost = splice(cost, marker, text)
    lang = (docs / "language.md").read_text(encoding="utf-8")
    head, rest = lang.split("<!-- kinds:begin -->\n", 1)
    _, tail = rest.split("<!-- kinds:end -->", 1)
    targets = {
        docs / "errors.md": markdown(),
        docs / "archdsl.schema.json": json.dumps(schema(), indent=2) + "\n",
        docs / "cost-model.md": cost,
        docs / "language.md": head
        + "<!-- kinds:begin -->\n"
        + kinds_markdown()
        + "<!-- kinds:end -->"
        + tail,
    }
    changed = []
    for path, text in targets.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(str(path))
    return changed


if __name__ == "__main__":
    for changed in regenerate():
        print(f"regenerated {changed}")
