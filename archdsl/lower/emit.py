"""Constructor tree -> one standalone Python file that needs only torch.

archdsl's own nn classes are copied from its ``*_nn.py`` modules (read as text with :mod:`ast`, so
emitting never imports torch), generated block classes are printed from their source, and
``build_model()`` is the constructor tree written as code. The same tree is what :func:`archdsl.build`
instantiates, so parameter names and shapes match by construction.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from archdsl.lower.codegen import GENERATED
from archdsl.lower.ctor import Ctor, Layers, Shared
from archdsl.lower.pysrc import py_docstring, py_number, py_str


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


def _top_level(module: str) -> dict[str, ast.ClassDef | ast.FunctionDef]:
    _, tree = _module_source(module)
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}


def definition_source(module: str, name: str) -> str:
    src, _ = _module_source(module)
    node = _top_level(module)[name]
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return "\n".join(src.splitlines()[first - 1 : node.end_lineno])  # whole lines: keep trailing comments


#: archdsl's modules of nn classes: what an emitted file copies definitions from
NN_MODULES = (
    "archdsl.lower.model_nn",
    *(f"archdsl.kinds.{f}_nn" for f in ("attention", "conv", "efficient", "embed", "ffn", "local")),
    *(f"archdsl.kinds.{f}_nn" for f in ("norm", "peft", "position", "relative")),
)


@functools.cache
def taken_names() -> frozenset[str]:
    """Every name an emitted file may define or import besides generated ones: the top-level
    definitions and imports of archdsl's nn modules, ``build_model`` and ``Config``. Generated class and
    factory names are chosen outside this set, so they can never shadow a copied definition."""
    out = {"torch", "nn", "F", "math", "random", "build_model", "Config", "model", "out"}
    for module in NN_MODULES:
        if importlib.util.find_spec(module) is None:
            continue
        _, tree = _module_source(module)
        for node in tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                out.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                out.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.Assign):
                out.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(out)


@functools.cache
def _archdsl_imports(module: str) -> dict[str, str]:
    """Names a module imports from other archdsl modules (``from archdsl.kinds.attention_nn import
    Attention``), by the module they come from."""
    _, tree = _module_source(module)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("archdsl."):
            for a in node.names:
                out[a.asname or a.name] = node.module  # type: ignore[assignment]
    return out


def _with_deps(module: str, name: str, out: dict[tuple[str, str], str]) -> None:
    """Add a definition after the classes and functions it refers to, from its own module or from
    other archdsl nn modules (a variant subclassing another module's class)."""
    if (module, name) in out:  # already copied, with what it needs (a MoE has thousands of experts)
        return
    local = _top_level(module)
    imported = _archdsl_imports(module)
    for ref in sorted({n.id for n in ast.walk(local[name]) if isinstance(n, ast.Name)} - {name}):
        if ref in local and (module, ref) not in out:
            _with_deps(module, ref, out)
        elif ref in imported and (imported[ref], ref) not in out:
            _with_deps(imported[ref], ref, out)
    out.setdefault((module, name), definition_source(module, name))


def _definitions(x: Any, out: dict[tuple[str, str], str]) -> None:
    """Every definition the tree needs, each after what it depends on."""
    if isinstance(x, Shared):
        _definitions(x.ctor, out)
    elif isinstance(x, Ctor):
        for a in (*x.args, *(v for _, v in x.kwargs)):
            _definitions(a, out)
        if x.cls.module == GENERATED:
            assert x.cls.source is not None
            out.setdefault((GENERATED, x.cls.name), x.cls.source)
        elif not x.cls.is_torch:
            _with_deps(x.cls.module, x.cls.name, out)
    elif isinstance(x, Layers):
        for c in x.ctors:
            _definitions(c, out)
    elif isinstance(x, list | tuple):
        for item in x:
            _definitions(item, out)


def _inline(x: Any, shared: Callable[[Shared], str]) -> str | None:
    """A short one-line rendering, or None when the value needs several lines."""
    if isinstance(x, Ctor):
        parts = [_inline(a, shared) for a in x.args] + [
            (f"{k}={r}" if (r := _inline(v, shared)) is not None else None) for k, v in x.kwargs
        ]
        if any(p is None for p in parts):
            return None
        text = f"{x.cls.qualname}({', '.join(parts)})"  # type: ignore[arg-type]
        return text if len(text) <= 76 else None
    if isinstance(x, Layers):
        return None
    if isinstance(x, Shared):
        return shared(x)
    if isinstance(x, list | tuple):
        if not x:
            return "[]"
        if len(set(x)) == 1 and (one := _inline(x[0], shared)) is not None:
            text = f"[{one} for _ in range({len(x)})]"
            return text if len(text) <= 76 else None
        return None
    return literal(x)


def literal(x: Any) -> str:
    """A constructor argument as a Python literal: numbers, booleans, enum words, None, dicts of them
    (LoRA settings) — each made by :mod:`archdsl.lower.pysrc`, never by formatting text."""
    if x is None:
        return "None"
    if isinstance(x, str):
        return py_str(x)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{py_str(str(k))}: {literal(v)}" for k, v in x.items()) + "}"
    if isinstance(x, list | tuple):
        return "[" + ", ".join(literal(v) for v in x) + "]"
    return py_number(x)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Emitter:
    def __init__(self) -> None:
        self.factories: dict[Ctor, str] = {}  # block constructor -> factory function name
        self.locals: list[tuple[str, Ctor]] = []  # shared instances: name = Ctor(...)
        self.shared: dict[str, Ctor] = {}  # shared modules, built first: name -> constructor
        self.names: set[str] = set()  # every name given out so far
        self.shared_names: dict[str, str] = {}  # a shared module's key -> its local name

    def value(self, w: Writer, prefix: str, x: Any, suffix: str) -> None:
        if isinstance(x, Shared):
            w(f"{prefix}{self.shared_name(x)}{suffix}")
            return
        one = _inline(x, self.shared_name)
        if one is not None:
            w(f"{prefix}{one}{suffix}")
        elif isinstance(x, Ctor):
            w(f"{prefix}{x.cls.qualname}(")
            with w.indent():
                for a in x.args:
                    self.value(w, "", a, ",")
                for k, v in x.kwargs:
                    self.value(w, f"{k}=", v, ",")
            w(f"){suffix}")
        elif isinstance(x, list | tuple):
            if len(set(x)) == 1:
                w(f"{prefix}[")
                with w.indent():
                    self.value(w, "", x[0], "")
                    w(f"for _ in range({len(x)})")
                w(f"]{suffix}")
            else:
                w(f"{prefix}[")
                with w.indent():
                    for item in x:
                        self.value(w, "", item, ",")
                w(f"]{suffix}")
        else:
            assert isinstance(x, Layers)
            self.layers(w, prefix, x, suffix)

    def shared_name(self, x: Shared) -> str:
        """The local that holds a shared module (built first in ``build_model``)."""
        if x.key not in self.shared_names:
            self.shared_names[x.key] = self.fresh(x.key.replace(".", "_"))
            self.shared[self.shared_names[x.key]] = x.ctor
        return self.shared_names[x.key]

    def factory(self, ctor: Ctor, label: str = "") -> str:
        if ctor not in self.factories:
            self.factories[ctor] = self.fresh(f"{label}_block" if label else _snake(ctor.cls.name))
        return self.factories[ctor]

    def fresh(self, base: str) -> str:
        """A name no definition, import, factory or local of the file has yet."""
        name, k = base, 1
        while name in self.names or name in taken_names():
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def layers(self, w: Writer, prefix: str, x: Layers, suffix: str) -> None:
        """The blocks of a stack, as a comprehension when they repeat. Shared blocks are one instance
        listed several times (their weights are shared)."""
        n = len(x.ctors)
        distinct = list(dict.fromkeys(x.ctors))
        shared = len(set(x.instances)) < n
        if not shared and len(distinct) == 1:
            w(f"{prefix}[")
            with w.indent():
                self.value(w, "", distinct[0], "")
                w(f"for _ in range({n})")
            w(f"]{suffix}")
            return
        if shared:
            names: dict[int, str] = {}
            items = []
            for ctor, inst, label in zip(x.ctors, x.instances, _labels(x), strict=True):
                if inst not in names:
                    make = self.factory(ctor, label)
                    names[inst] = self.fresh(
                        f"shared_{len(names)}" if x.instances.count(inst) > 1 else f"{make}_{len(names)}"
                    )
                    self.locals.append((names[inst], ctor))
                items.append(names[inst])
            w(f"{prefix}{_runs(items)}{suffix}")
            return
        period = _period(x.ctors)
        if period < n:
            labels = _labels(x)
            makers = ", ".join(self.factory(c, lab) for c, lab in zip(x.ctors[:period], labels, strict=False))
            w(f"{prefix}[make() for make in [{makers}] * {n // period}]{suffix}")
            return
        calls = [self.factory(c, lab) + "()" for c, lab in zip(x.ctors, _labels(x), strict=True)]
        w(f"{prefix}{_runs(calls)}{suffix}")


def _labels(x: Layers) -> tuple[str, ...]:
    return x.labels or ("",) * len(x.ctors)


def _period(items: tuple[Any, ...]) -> int:
    n = len(items)
    for p in range(1, n // 2 + 1):
        if n % p == 0 and all(items[i] == items[i % p] for i in range(n)):
            return p
    return n


def _runs(items: list[str]) -> str:
    """``[a, *[b] * 3]`` for names (the same object listed again); a call repeated is written as a
    comprehension, ``*[f() for _ in range(3)]``, so each repetition is a new object."""
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and items[j] == items[i]:
            j += 1
        if j - i == 1:
            parts.append(items[i])
        elif items[i].endswith("()"):
            parts.append(f"*[{items[i]} for _ in range({j - i})]")
        else:
            parts.append(f"*[{items[i]}] * {j - i}")
        i = j
    if len(parts) == 1 and parts[0].startswith("*"):
        return parts[0][1:]
    return "[" + ", ".join(parts) + "]"


def _imports(defs: dict[tuple[str, str], str]) -> list[str]:
    """The import lines of archdsl's nn modules that the copied definitions use (torch first)."""
    used = {n.id for text in defs.values() for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}
    lines: dict[str, None] = {"import torch": None, "import torch.nn as nn": None}
    for module in dict.fromkeys(m for m, _ in defs if m != GENERATED):
        src, tree = _module_source(module)
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("archdsl"):
                continue  # copied into the file instead
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.asname or a.name.split(".")[0] for a in node.names]
                if any(n in used for n in names):
                    lines.setdefault(ast.get_source_segment(src, node) or "", None)
    std = sorted(x for x in lines if not x.startswith(("import torch", "from torch")))
    torch_lines = [x for x in lines if x.startswith(("import torch", "from torch"))]
    return [*std, *([""] if std else []), *torch_lines]


def emit(ctor: Ctor, header: str, example: str) -> str:
    defs: dict[tuple[str, str], str] = {}
    _definitions(ctor, defs)
    em = _Emitter()
    body = Writer()
    with body.indent():
        em.value(body, "return ", ctor, "")
    # factories, one per distinct block; a factory's body may name further shared modules
    factories: list[Writer] = []
    done: set[Ctor] = set()
    while len(done) < len(em.factories):
        for fctor, fname in list(em.factories.items()):
            if fctor not in done:
                done.add(fctor)
                f = Writer()
                f(f"def {fname}() -> {fctor.cls.qualname}:")
                with f.indent():
                    em.value(f, "return ", fctor, "")
                factories.append(f)
    nested = bool(em.shared)  # factories that read shared modules are closures inside build_model

    w = Writer()
    for line in py_docstring(header.rstrip("\n") + "\n").split("\n"):
        w(line)
    w()
    for line in _imports(defs):
        w(line)
    for text in [*defs.values(), *([] if nested else ["\n".join(f.lines) for f in factories])]:
        w()
        w()
        for line in text.splitlines():
            w(line)
    w()
    w()
    w(f"def build_model() -> {ctor.cls.qualname}:")
    with w.indent():
        for name, sctor in em.shared.items():
            em.value(w, f"{name} = ", sctor, "  # one module, shared by the layers that use it")
        if nested:
            for f in factories:
                w()
                for line in f.lines:
                    w(line)
            w()
        for name, lctor in em.locals:
            w(f"{name} = {em.factory(lctor)}()")
    w.lines.extend(body.lines)
    w()
    w()
    w('if __name__ == "__main__":')
    with w.indent():
        w("model = build_model()")
        for line in example.splitlines():
            w(line)
        w('print(f"{sum(p.numel() for p in model.parameters()):,} parameters; output {tuple(out.shape)}")')
    return w.text()
