"""Constructor tree -> one standalone Python file that needs only torch.

The nn classes are copied from archdsl's own ``*_nn.py`` modules (read as text with :mod:`ast`, so
emitting never imports torch), and ``build_model()`` is the constructor tree printed as code. The same
tree is what :func:`archdsl.build` instantiates, so parameter names and shapes match by construction.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from archdsl.lower.ctor import ClassRef, Ctor, ModuleList, Repeat


class Writer:
    """A text emitter with an ``indent()`` context."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.level = 0

    def __call__(self, line: str = "") -> None:
        self.lines.append(("    " * self.level + line) if line else "")

    @contextmanager
    def indent(self) -> Iterator[None]:
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@functools.cache
def _module_source(module: str) -> tuple[str, ast.Module]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    with open(spec.origin, encoding="utf-8") as f:
        src = f.read()
    return src, ast.parse(src)


def class_source(ref: ClassRef) -> str:
    src, tree = _module_source(ref.module)
    lines = src.splitlines()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == ref.name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "\n".join(lines[first - 1 : node.end_lineno])  # whole lines: keep trailing comments
    raise LookupError(f"{ref.module} has no class {ref.name}")


def _with_bases(ref: ClassRef, out: dict[ClassRef, None]) -> None:
    """Add ``ref`` after the base classes it takes from its own module."""
    _, tree = _module_source(ref.module)
    local = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for base in local[ref.name].bases:
        if isinstance(base, ast.Name) and base.id in local:
            _with_bases(ClassRef(ref.module, base.id), out)
    out.setdefault(ref, None)


def _classes(x: Any, out: dict[ClassRef, None]) -> None:
    """Our classes used by the tree, leaves and bases first (each defined before it is referenced)."""
    if isinstance(x, Ctor):
        for a in (*x.args, *(v for _, v in x.kwargs)):
            _classes(a, out)
        if not x.cls.is_torch:
            _with_bases(x.cls, out)
    elif isinstance(x, ModuleList):
        for item in x.items:
            _classes(item.ctor if isinstance(item, Repeat) else item, out)


def _literal(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return repr(v)


def _inline(x: Any) -> str | None:
    """A short one-line rendering, or None when the value needs several lines."""
    if isinstance(x, Ctor):
        parts = [_inline(a) for a in x.args] + [
            (f"{k}={r}" if (r := _inline(v)) is not None else None) for k, v in x.kwargs
        ]
        if any(p is None for p in parts):
            return None
        text = f"{x.cls.qualname}({', '.join(parts)})"  # type: ignore[arg-type]
        return text if len(text) <= 72 else None
    if isinstance(x, ModuleList):
        return None
    return _literal(x)


def _emit_value(w: Writer, prefix: str, x: Any, suffix: str) -> None:
    one = _inline(x)
    if one is not None:
        w(f"{prefix}{one}{suffix}")
        return
    if isinstance(x, Ctor):
        w(f"{prefix}{x.cls.qualname}(")
        with w.indent():
            for a in x.args:
                _emit_value(w, "", a, ",")
            for k, v in x.kwargs:
                _emit_value(w, f"{k}=", v, ",")
        w(f"){suffix}")
        return
    assert isinstance(x, ModuleList)
    if len(x.items) == 1 and isinstance(x.items[0], Repeat):
        rep = x.items[0]
        w(f"{prefix}[")
        with w.indent():
            _emit_value(w, "", rep.ctor, "")
            w(f"for _ in range({rep.n})")
        w(f"]{suffix}")
        return
    w(f"{prefix}[")
    with w.indent():
        for item in x.items:
            if isinstance(item, Repeat):
                w("*[")
                with w.indent():
                    _emit_value(w, "", item.ctor, "")
                    w(f"for _ in range({item.n})")
                w("],")
            else:
                _emit_value(w, "", item, ",")
    w(f"]{suffix}")


def emit(ctor: Ctor, header: str, example_vocab: int) -> str:
    used: dict[ClassRef, None] = {}
    _classes(ctor, used)
    bodies = [class_source(ref) for ref in used]
    joined = "\n".join(bodies)
    w = Writer()
    w('"""' + header.rstrip("\n"))
    w('"""')
    w()
    if "math." in joined:
        w("import math")
        w()
    w("import torch")
    w("import torch.nn as nn")
    if "F." in joined:
        w("from torch.nn import functional as F")
    for body in bodies:
        w()
        w()
        for line in body.splitlines():
            w(line)
    w()
    w()
    w(f"def build_model() -> {ctor.cls.qualname}:")
    with w.indent():
        _emit_value(w, "return ", ctor, "")
    w()
    w()
    w('if __name__ == "__main__":')
    with w.indent():
        w("model = build_model()")
        w(f"idx = torch.randint(0, {example_vocab}, (2, 16))  # (B, T) token ids")
        w("logits = model(idx)  # (B, T, V)")
        w('print(f"{sum(p.numel() for p in model.parameters()):,} parameters; logits {tuple(logits.shape)}")')
    return w.text()
