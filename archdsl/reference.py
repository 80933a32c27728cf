"""Reference tables generated from the registry (docs/language.md embeds them; a test keeps them in
step)."""

from __future__ import annotations

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
            else:
                out.append("No parameters.")
            out.append("")
    out += ["#### Placement presets", "", "| preset | parameters | layout |", "|---|---|---|"]
    for name, pl in PLACEMENTS.items():
        params = ", ".join(f"`{p.name}` ({_default(p)})" for p in pl.params) or "none"
        out.append(f"| `{name}` | {params} | {pl.doc} |")
    return "\n".join(out).rstrip() + "\n"


def regenerate(root: str = ".") -> list[str]:
    """Rewrite the generated documents: docs/errors.md, docs/archdsl.schema.json and the component
    reference in docs/language.md. Returns the files that changed."""
    import json
    from pathlib import Path

    from archdsl.errors import markdown
    from archdsl.schema import schema

    docs = Path(root) / "docs"
    lang = (docs / "language.md").read_text(encoding="utf-8")
    head, rest = lang.split("<!-- kinds:begin -->\n", 1)
    _, tail = rest.split("<!-- kinds:end -->", 1)
    targets = {
        docs / "errors.md": markdown(),
        docs / "archdsl.schema.json": json.dumps(schema(), indent=2) + "\n",
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
