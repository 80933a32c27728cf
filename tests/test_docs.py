"""Docs that must stay in step with the code."""

from __future__ import annotations

import re

from conftest import ROOT

from archdsl.diagnostics import CODES


def test_every_error_code_is_documented() -> None:
    from archdsl.errors import markdown

    text = (ROOT / "docs" / "errors.md").read_text()
    assert text == markdown(), "regenerate: archdsl explain --markdown > docs/errors.md"
    documented = set(re.findall(r"^## (E\d{3})$", text, flags=re.M))
    assert documented == set(CODES)


def test_every_code_used_in_the_source_is_registered() -> None:
    used = set()
    for p in (ROOT / "archdsl").rglob("*.py"):
        used |= set(re.findall(r'"(E\d{3})"', p.read_text()))
    assert used <= set(CODES), used - set(CODES)


def test_readme_quickstart_is_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- quickstart -->")[1].split("<!-- /quickstart -->")[0]
    cmds = [line for line in block.splitlines() if line.strip() and not line.startswith("```")]
    assert len(cmds) == 2
    assert "specs/gpt2_small.arch" in cmds[0] and "report" in cmds[0] and "compile" in cmds[0]
    assert "pytest" in cmds[1]


FENCE = re.compile(r"^```(arch|yaml)([^\n]*)\n(.*?)^```", re.M | re.S)


def doc_examples() -> list[tuple[int, str, str, str]]:
    text = (ROOT / "docs" / "language.md").read_text()
    out = []
    for i, m in enumerate(FENCE.finditer(text)):
        form, info, body = m.group(1), m.group(2).strip(), m.group(3)
        if "model" in body:
            out.append((i, form, info, body))
    return out


def test_language_reference_is_current() -> None:
    from archdsl.reference import kinds_markdown

    text = (ROOT / "docs" / "language.md").read_text()
    table = text.split("<!-- kinds:begin -->\n")[1].split("<!-- kinds:end -->")[0]
    assert table == kinds_markdown(), "regenerate the component reference in docs/language.md"


def test_every_language_example_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    import torch
    from conftest import model_inputs

    import archdsl

    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    examples = doc_examples()
    assert len(examples) >= 10
    twins: dict[str, list[object]] = {}
    for i, form, info, body in examples:
        path = specs / f"doc_example_{i}.{form}"
        path.write_text(body)
        spec = archdsl.load(path)
        assert archdsl.check(spec) == [], (i, body[:60])
        report = archdsl.analyze(spec, seq_len=16)
        if report.params_total < 10_000_000:  # build and run the small ones
            model = archdsl.build(spec).eval()
            with torch.no_grad():
                model(*model_inputs(spec, 2, 16))
        if info.startswith("twin="):
            twins.setdefault(info, []).append(spec.model)
    assert twins and all(len(v) == 2 and v[0] == v[1] for v in twins.values())


def test_cost_model_tables_are_current() -> None:
    from archdsl.reference import cost_tables

    text = (ROOT / "docs" / "cost-model.md").read_text()
    for marker, table in cost_tables(ROOT).items():
        current = text.split(f"<!-- {marker}:begin -->\n")[1].split(f"<!-- {marker}:end -->")[0]
        assert current == table, f"regenerate docs/cost-model.md ({marker}): python -m archdsl.reference"
