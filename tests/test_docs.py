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
