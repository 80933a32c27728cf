"""Front ends: each turns one source form into the shared surface tree (:mod:`archdsl.syntax`)."""

from __future__ import annotations

from pathlib import Path

from archdsl import syntax as S
from archdsl.diagnostics import Diagnostic, Span, SpecError

#: Specs are untrusted input: sizes are bounded before any parsing happens.
MAX_SOURCE_BYTES = 1 << 20
MAX_DEPTH = 100

TEXT_SUFFIXES = (".arch",)
YAML_SUFFIXES = (".yaml", ".yml")


def parse_source(text: str, path: str) -> S.File:
    """Parse ``text`` by the form its ``path`` suffix names."""
    if len(text.encode("utf-8", errors="replace")) > MAX_SOURCE_BYTES:
        raise SpecError(
            [
                Diagnostic(
                    "E001",
                    f"spec is larger than {MAX_SOURCE_BYTES} bytes",
                    Span(path, 1, 1, 1, 2),
                    help="a spec describes an architecture in a few dozen lines; split data out of it",
                )
            ]
        )
    suffix = Path(path).suffix.lower()
    if suffix in YAML_SUFFIXES:
        from archdsl.frontend.yaml import parse_yaml

        return parse_yaml(text, path)
    from archdsl.frontend.text import parse_text

    return parse_text(text, path)
