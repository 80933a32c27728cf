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
from typing import TYPE_CHECKING, Any

from archdsl.lower.codegen import GENERATED
from archdsl.lower.codegen import name as checked_name
from archdsl.lower.ctor import Ctor, Layers, Shared
from archdsl.lower.pysrc import py_docstring, py_number, py_str
from archdsl.trace import negate, source, structural, traced

if TYPE_CHECKING:
    from archdsl.lower.config import Plan


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
    "archdsl.kinds.attention_nn",
    "archdsl.kinds.conv_nn",
    "archdsl.kinds.efficient_nn",
    "archdsl.kinds.embed_nn",
    "archdsl.kinds.ffn_nn",
    "archdsl.kinds.latent_nn",
    "archdsl.kinds.local_nn",
    "archdsl.kinds.norm_nn",
    "archdsl.kinds.peft_nn",
    "archdsl.kinds.position_nn",
    "archdsl.kinds.relative_nn",
    "archdsl.kinds.retention_nn",
    "archdsl.kinds.rwkv_nn",
    "archdsl.kinds.ssm_nn",
    "archdsl.kinds.vision_nn",
    "archdsl.kinds.perceiver_nn",
    "archdsl.kinds.towers_nn",
)


#: names the emitted file's own code defines or uses besides copied definitions (Config, build_model and
#: __main__'s locals, which are module globals)
FILE_NAMES = (
    "Any",
    "argparse",
    "dataclasses",
    "DTYPES",
    "resolved",
    "make_model",
    "config",
    "seed",
    "overrides",
    "parser",
    "args",
    "given",
    "idx",
    "src",
    "seq",
    "make",
)

#: copied in place of a definition when the model does not use what makes it differ: a model without
#: LoRA gets ``linear`` as a plain ``nn.Linear`` factory (same modules, same parameter names)
PLAIN_VARIANTS = {("archdsl.kinds.peft_nn", "linear"): "linear_plain"}


@functools.cache
def taken_names() -> frozenset[str]:
    """Every name an emitted file may define or import besides generated ones: the top-level
    definitions and imports of archdsl's nn modules, ``build_model`` and ``Config``. Generated class and
    factory names are chosen outside this set, so they can never shadow a copied definition."""
    out = {"torch", "nn", "F", "math", "random", "build_model", "Config", "model", "out"}
    out |= set(FILE_NAMES)
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


def _with_deps(module: str, name: str, out: dict[tuple[str, str], str], plain: bool = False) -> None:
    """Add a definition after the classes and functions it refers to, from its own module or from
    other archdsl nn modules (a variant subclassing another module's class). With ``plain``, a
    definition of :data:`PLAIN_VARIANTS` is copied as its plain variant (renamed to the original)."""
    if (module, name) in out:  # already copied, with what it needs (a MoE has thousands of experts)
        return
    variant = PLAIN_VARIANTS.get((module, name)) if plain else None
    if variant is not None:
        text = definition_source(module, variant)
        assert text.startswith(f"def {variant}("), variant
        out[(module, name)] = f"def {name}(" + text[len(f"def {variant}(") :]
        return
    local = _top_level(module)
    imported = _archdsl_imports(module)
    for ref in sorted({n.id for n in ast.walk(local[name]) if isinstance(n, ast.Name)} - {name}):
        if ref in local and (module, ref) not in out:
            _with_deps(module, ref, out, plain)
        elif ref in imported and (imported[ref], ref) not in out:
            _with_deps(imported[ref], ref, out, plain)
    out.setdefault((module, name), definition_source(module, name))


def uses_lora(x: Any) -> bool:
    """Whether a constructor tree passes LoRA settings anywhere."""
    if isinstance(x, Shared):
        return uses_lora(x.ctor)
    if isinstance(x, Ctor):
        return any(k == "lora" and v is not None for k, v in x.kwargs) or any(
            uses_lora(a) for a in (*x.args, *(v for _, v in x.kwargs))
        )
    if isinstance(x, Layers):
        return any(uses_lora(c) for c in dict.fromkeys(x.ctors))
    if isinstance(x, list | tuple):
        return any(uses_lora(item) for item in x)
    return False


def _definitions(x: Any, out: dict[tuple[str, str], str], plain: bool = False) -> None:
    """Every definition the tree needs, each after what it depends on."""
    if isinstance(x, Shared):
        _definitions(x.ctor, out, plain)
    elif isinstance(x, Ctor):
        for a in (*x.args, *(v for _, v in x.kwargs)):
            _definitions(a, out, plain)
        if x.cls.module == GENERATED:
            assert x.cls.source is not None
            out.setdefault((GENERATED, x.cls.name), x.cls.source)
        elif not x.cls.is_torch:
            _with_deps(x.cls.module, x.cls.name, out, plain)
    elif isinstance(x, Layers):
        for c in dict.fromkeys(x.ctors):
            _definitions(c, out, plain)
    elif isinstance(x, list | tuple):
        for item in x:
            _definitions(item, out, plain)


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


def literal(x: Any, prec: int = 0) -> str:
    """A constructor argument as a Python literal: numbers, booleans, enum words, None, dicts of them
    (LoRA settings) — each made by :mod:`archdsl.lower.pysrc`, never by formatting text. A traced number
    is its expression over the config (``config.d_model // config.n_heads``), bound as tightly as
    ``prec`` needs."""
    if traced(x):
        return expression(x.expr, "config", prec)
    if x is None:
        return "None"
    if isinstance(x, str):
        return py_str(x)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{py_str(str(k))}: {literal(v)}" for k, v in x.items()) + "}"
    if isinstance(x, list | tuple):
        return "[" + ", ".join(literal(v) for v in x) + "]"
    return py_number(x)


def expression(e: Any, root: str, prec: int = 0) -> str:
    """A traced expression as Python over ``root.<field>`` (field names checked again as printed)."""
    return source(_checked(e), root, py_number, prec)


def _checked(e: Any) -> Any:
    if e[0] == "var":
        checked_name(e[1])
    for part in e[1:]:
        if isinstance(part, tuple):
            _checked(part)
    return e


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
        listed several times (their weights are shared). Where the spec repeats them by a count the
        config sets (``repeat = n_layers``), the comprehension repeats them that often."""
        from archdsl.lower.config import layer_runs

        runs = layer_runs(x)
        if runs is not None:
            self.runs(w, prefix, runs, suffix)
            return
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
            w(f"{prefix}[make(config) for make in [{makers}] * {n // period}]{suffix}")
            return
        calls = [self.factory(c, lab) + "(config)" for c, lab in zip(x.ctors, _labels(x), strict=True)]
        w(f"{prefix}{_runs(calls)}{suffix}")

    def runs(
        self, w: Writer, prefix: str, runs: list[tuple[tuple[Ctor, ...], tuple[str, ...], Any]], suffix: str
    ) -> None:
        """Layers as the spec repeats them: ``[block(config) for _ in range(config.n_layers)]``."""
        if len(runs) == 1 and len(runs[0][0]) == 1:
            w(f"{prefix}[")
            with w.indent():
                self.value(w, "", runs[0][0][0], "")
                w(f"for _ in range({literal(runs[0][2])})")
            w(f"]{suffix}")
            return
        parts = []
        for blocks, labels, count in runs:
            if len(blocks) == 1:
                parts.append(
                    f"[{self.factory(blocks[0], labels[0])}(config) for _ in range({literal(count)})]"
                )
            else:
                makers = ", ".join(self.factory(c, lab) for c, lab in zip(blocks, labels, strict=True))
                parts.append(f"[make(config) for make in [{makers}] * {literal(count, 3)}]")
        w(prefix + (parts[0] if len(parts) == 1 else "[" + ", ".join(f"*{p}" for p in parts) + "]") + suffix)


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
        elif items[i].endswith(")"):
            parts.append(f"*[{items[i]} for _ in range({j - i})]")
        else:
            parts.append(f"*[{items[i]}] * {j - i}")
        i = j
    if len(parts) == 1 and parts[0].startswith("*"):
        return parts[0][1:]
    return "[" + ", ".join(parts) + "]"


SAME_IMPORT = {"import torch.nn as nn": "from torch import nn"}  # as ruff prefers it (PLR0402)


def _imports(defs: dict[tuple[str, str], str], own: list[str]) -> list[str]:
    """The import lines of archdsl's nn modules that the copied definitions use, and ``own`` (the
    file's own code's), standard library first, torch last."""
    used = {n.id for text in defs.values() for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}
    lines: dict[str, None] = {"import torch": None, "from torch import nn": None, **dict.fromkeys(own)}
    for module in dict.fromkeys(m for m, _ in defs if m != GENERATED):
        src, tree = _module_source(module)
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("archdsl"):
                continue  # copied into the file instead
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.asname or a.name.split(".")[0] for a in node.names]
                if any(n in used for n in names):
                    line = ast.get_source_segment(src, node) or ""
                    lines.setdefault(SAME_IMPORT.get(line, line), None)
    std = sorted(
        (x for x in lines if not x.startswith(("import torch", "from torch"))),
        key=lambda x: (x.startswith("from"), x.split()[1]),
    )
    torch_lines = [x for x in lines if x.startswith(("import torch", "from torch"))]
    return [*std, *([""] if std else []), *torch_lines]


DTYPES = ("float32", "bfloat16", "float16")  # what Config's dtype may be (torch names)


def emit(
    plan: Plan, header: str, inputs: list[tuple[str, tuple[Any, ...]]], limits: list[Any], dtype: str
) -> str:
    """The standalone file for a :class:`~archdsl.lower.config.Plan`: copied definitions, ``Config``,
    ``resolved``, ``build_model`` (the constructor tree as code over ``config``) and a ``__main__`` that
    builds the model for command-line overrides and runs it once on ``inputs`` (name, shape; ``"B"``
    the batch, ``"T"``/``"S"`` lengths up to the smallest of ``limits``)."""
    with structural():  # constructor trees compared as code: equal sizes with other expressions differ
        return _emit(plan, header, inputs, limits, dtype)


def _emit(
    plan: Plan, header: str, inputs: list[tuple[str, tuple[Any, ...]]], limits: list[Any], dtype: str
) -> str:
    ctor = plan.ctor
    defs: dict[tuple[str, str], str] = {}
    _definitions(ctor, defs, plain=not uses_lora(ctor))
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
                f(f"def {fname}(config: Config) -> {fctor.cls.annotation}:")
                with f.indent():
                    em.value(f, "return ", fctor, "")
                factories.append(f)
    nested = bool(em.shared)  # factories that read shared modules are closures inside make_model
    extra = _extra_names(plan)

    w = Writer()
    for line in py_docstring(header.rstrip("\n") + "\n").split("\n"):
        w(line)
    w()
    for line in _imports(defs, ["import argparse", "import dataclasses", "from typing import Any"]):
        w(line)
    for text in [*defs.values()]:
        w()
        w()
        for line in text.splitlines():
            w(line)
    w()
    w()
    w("DTYPES = {" + ", ".join(f"{py_str(d)}: torch.{d}" for d in DTYPES) + "}")
    w()
    w()
    _config(w, plan, extra, dtype)
    w()
    w()
    _resolved(w, plan, extra)
    w()
    w()
    _build_model(w, ctor.cls.annotation, extra)
    for f in [] if nested else factories:
        w()
        w()
        w.lines.extend(f.lines)
    w()
    w()
    w(f"def make_model(config: Config) -> {ctor.cls.annotation}:")
    with w.indent():
        w('"""The modules, sized by ``config`` (a resolved one)."""')
        for name, sctor in em.shared.items():
            em.value(w, f"{name} = ", sctor, "  # one module, shared by the layers that use it")
        if nested:
            for f in factories:
                w()
                for line in f.lines:
                    w(line)
            w()
        for name, lctor in em.locals:
            w(f"{name} = {em.factory(lctor)}(config)")
    w.lines.extend(body.lines)
    w()
    w()
    _main(w, plan, extra, inputs, limits)
    return w.text()


def _doc(w: Writer, text: str) -> None:
    """A docstring at the writer's indentation (continuation lines indented with it)."""
    for line in py_docstring(text).split("\n"):
        w(line)


def _extra_names(plan: Plan) -> dict[str, str]:
    """Config's dtype field and the command line's seed option, named apart from the spec's constants."""
    taken = {f.name for f in plan.fields}
    out = {}
    for role, names in (
        ("dtype", ("dtype", "torch_dtype", "param_dtype")),
        ("seed", ("seed", "init_seed")),
        ("checkpoint", ("checkpoint", "recompute", "activation_checkpoint")),
    ):
        out[role] = next(n for n in (*names, *(f"{names[0]}_{k}" for k in range(2, 99))) if n not in taken)
        taken.add(out[role])
    return out


def _config(w: Writer, plan: Plan, extra: dict[str, str], dtype: str) -> None:
    w("@dataclasses.dataclass")
    w("class Config:")
    with w.indent():
        _doc(
            w,
            (
                "The spec's constants, resolved. Change one with ``build_model(n_layers=2)`` or on the\n"
                "command line (``--n_layers 2``); sizes computed from it follow. A field marked fixed\n"
                "cannot change in this file (recompile the spec with archdsl instead); a field that is\n"
                "None is computed from the others, as the spec computes it."
            ),
        )
        w()
        for f in plan.fields:
            name = checked_name(f.name)
            if f.fixed is None and f.derived is not None:
                w(
                    f"{name}: {f.type} | None = None"
                    f"  # None: {expression(f.derived, 'self')} ({literal(f.value)} here)"
                )
            elif f.fixed is not None:
                w(f"{name}: {f.type} = {literal(f.value)}  # fixed: {f.fixed}")
            else:
                w(f"{name}: {f.type} = {literal(f.value)}")
        w(f"{extra['dtype']}: str = {py_str(dtype)}  # the parameters' dtype: {', '.join(DTYPES)}")
        flags = {flag for stack in plan.model.all_stacks for flag in stack.checkpoint}
        default = literal(flags.pop()) if len(flags) == 1 else "None"
        w(
            f"{extra['checkpoint']}: bool | None = {default}"
            "  # blocks recompute their activations in backward: all, none, None: as the spec says per block"
        )


def _resolved(w: Writer, plan: Plan, extra: dict[str, str]) -> None:
    w("def resolved(config: Config, **overrides: Any) -> Config:")
    with w.indent():
        _doc(
            w,
            (
                "``config`` with ``overrides`` replacing fields and the fields left None computed, checked:\n"
                "a value this file cannot build the spec's model for is refused, never built differently."
            ),
        )
        w("known = {f.name for f in dataclasses.fields(Config)}")
        w("for name in overrides:")
        with w.indent():
            w("if name not in known:")
            with w.indent():
                w(
                    'raise TypeError(f"Config has no field {name!r}; '
                    "its fields are {', '.join(sorted(known))}\")"
                )
        w("config = dataclasses.replace(config, **overrides)")
        for f in plan.fields:
            if f.fixed is None and f.derived is not None:
                w(f"if config.{checked_name(f.name)} is None:")
                with w.indent():
                    w(f"config.{f.name} = {expression(f.derived, 'config')}")
        fixed = [f for f in plan.fields if f.fixed is not None]
        if fixed:
            w("for name, value, compiled in [")
            with w.indent():
                for f in fixed:
                    w(f"({py_str(f.name)}, config.{checked_name(f.name)}, {literal(f.value)}),")
            w("]:")
            with w.indent():
                w("if value != compiled:")
                with w.indent():
                    w("raise ValueError(")
                    with w.indent():
                        w('f"{name} is fixed at {compiled!r} in this file (changing it changes more than "')
                        w('f"the file follows): recompile the spec with archdsl (archdsl compile SPEC "')
                        w('f"--set {name}=...)"')
                    w(")")
        if plan.guards:
            w("for holds, rule in [")
            with w.indent():
                for g, want in plan.guards:
                    ok = g if want else negate(g)
                    w(f"({expression(ok, 'config')}, {py_str(expression(ok, 'config'))}),")
            w("]:")
            with w.indent():
                w("if not holds:")
                with w.indent():
                    w("raise ValueError(")
                    with w.indent():
                        w('f"this file was compiled for configs where {rule}: "')
                        w('"recompile the spec with archdsl for this one"')
                    w(")")
        dt = extra["dtype"]
        w(f"if config.{dt} not in DTYPES:")
        with w.indent():
            w(f"raise ValueError(f\"{dt} must be one of {{', '.join(DTYPES)}}, got {{config.{dt}!r}}\")")
        w("return config")


def _build_model(w: Writer, cls: str, extra: dict[str, str]) -> None:
    w(f"def build_model(config: Config | None = None, seed: int | None = None, **overrides: Any) -> {cls}:")
    with w.indent():
        _doc(
            w,
            (
                "The model for ``config`` (default: the spec's values), ``overrides`` replacing its fields\n"
                "(``build_model(n_layers=2)``). ``seed`` seeds the initialisation and leaves the caller's\n"
                f"random state as it was; the parameters are cast to ``config.{extra['dtype']}``."
            ),
        )
        w("config = resolved(config or Config(), **overrides)")
        w("if seed is None:")
        with w.indent():
            w("model = make_model(config)")
        w("else:")
        with w.indent():
            w("with torch.random.fork_rng(devices=[]):")
            with w.indent():
                w("torch.manual_seed(seed)")
                w("model = make_model(config)")
        ck = extra["checkpoint"]
        w(f"if config.{ck} is not None:  # activation checkpointing for every block, or for none")
        with w.indent():
            w("for stack in model.modules():")
            with w.indent():
                w("if isinstance(stack, Stack):")
                with w.indent():
                    w(f"stack.checkpoint = [config.{ck}] * len(stack.h)")
        w(f"return model.to(DTYPES[config.{extra['dtype']}])")


def _main(
    w: Writer, plan: Plan, extra: dict[str, str], inputs: list[tuple[str, tuple[Any, ...]]], limits: list[Any]
) -> None:
    w('if __name__ == "__main__":')
    with w.indent():
        w('parser = argparse.ArgumentParser(description="Build the model and run it once on random inputs.")')
        cli = [f for f in plan.fields if f.type in ("int", "float")]
        for f in cli:
            name = checked_name(f.name)
            note = f"fixed at {literal(f.value)}" if f.fixed is not None else f"default {literal(f.value)}"
            if f.fixed is None and f.derived is not None:
                note = f"default {expression(f.derived, 'config').replace('config.', '')}"
            w(f'parser.add_argument("--{name}", type={f.type}, help={py_str(note)})')
        w(f'parser.add_argument("--{extra["dtype"]}", choices=DTYPES, help="default float32")')
        w(f'parser.add_argument("--{extra["seed"]}", type=int, default=0, help="initialisation seed")')
        w(
            f'parser.add_argument("--{extra["checkpoint"]}", action=argparse.BooleanOptionalAction, '
            'help="recompute every block in backward (or none)")'
        )
        w("args = parser.parse_args()")
        w("given = {")
        with w.indent():
            for f in cli:
                w(f"{py_str(f.name)}: args.{f.name},")
            w(f"{py_str(extra['dtype'])}: args.{extra['dtype']},")
            w(f"{py_str(extra['checkpoint'])}: args.{extra['checkpoint']},")
        w("}")
        w("config = resolved(Config(), **{k: v for k, v in given.items() if v is not None})")
        w(f"model = build_model(config, seed=args.{extra['seed']})")
        if any(d in ("T", "S") for _, shape in inputs for d in shape):
            if limits:
                w(f"seq = min({', '.join(['16', *(literal(x) for x in limits)])})  # within the context")
            else:
                w("seq = 16")
        if plan.model.towers:  # one input per tower, in a list (tower names are not locals here)
            _tower_inputs(w, plan, inputs, extra)
            return
        names = []
        for name, shape in inputs:
            dims = ", ".join("2" if d == "B" else "seq" if d in ("T", "S") else literal(d) for d in shape)
            if len(shape) == 2:
                w(
                    f"{checked_name(name)} = torch.randint(0, {literal(plan.model.vocab)}, ({dims}))"
                    "  # token ids"
                )
            else:
                w(
                    f"{checked_name(name)} = torch.randn({dims}, dtype=DTYPES[config.{extra['dtype']}])"
                    "  # images"
                )
            names.append(name)
        w("with torch.no_grad():")
        with w.indent():
            w(f"out = model({', '.join(names)})")
        w('print(f"{sum(p.numel() for p in model.parameters()):,} parameters; output {tuple(out.shape)}")')


def _tower_inputs(
    w: Writer, plan: Plan, inputs: list[tuple[str, tuple[Any, ...]]], extra: dict[str, str]
) -> None:
    """A towers model's example: a list of inputs, one per tower in order, and the first of its
    outputs (CLIP's logits per image)."""
    vocab = {t.name: t.vocab for t in plan.model.towers}
    w("inputs = [")
    with w.indent():
        for name, shape in inputs:
            dims = ", ".join("2" if d == "B" else "seq" if d in ("T", "S") else literal(d) for d in shape)
            if len(shape) == 2:
                w(f"torch.randint(0, {literal(vocab[name])}, ({dims})),  # {name}: token ids")
            else:
                w(f"torch.randn({dims}, dtype=DTYPES[config.{extra['dtype']}]),  # {name}: images")
    w("]")
    w("with torch.no_grad():")
    with w.indent():
        w("out = model(*inputs)")
    w('print(f"{sum(p.numel() for p in model.parameters()):,} parameters; output {tuple(out[0].shape)}")')
