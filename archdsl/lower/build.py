"""Constructor tree -> live ``nn.Module`` (imports torch)."""

from __future__ import annotations

import functools
import importlib
import linecache
from typing import Any

import torch
from torch import nn

from archdsl.lower.codegen import GENERATED
from archdsl.lower.ctor import ClassRef, Ctor, Layers, Shared
from archdsl.lower.emit import NN_MODULES
from archdsl.lower.pysrc import check_source


@functools.cache
def _compile_generated(name: str, source: str) -> type:
    """Compile a generated block class (see :mod:`codegen` for why this is safe). Its source is
    registered with linecache, so tracebacks and ``inspect`` show the real lines."""
    check_source(source)  # only checked names and literals: see archdsl.lower.codegen
    filename = f"<archdsl generated {name} {abs(hash(source)):x}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {"torch": torch, "nn": nn, "__name__": "archdsl.generated"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]


def resolve(ref: ClassRef) -> type:
    if ref.module == GENERATED:
        assert ref.source is not None
        return _compile_generated(ref.name, ref.source)
    if not ref.is_torch and ref.module not in NN_MODULES:  # kinds name their classes; never a spec
        raise ImportError(f"{ref.module} is not one of archdsl's modules of nn classes")
    mod = nn if ref.is_torch else importlib.import_module(ref.module)
    return getattr(mod, ref.name)  # type: ignore[no-any-return]


def _no_shadowed_sublayers(cls: type, sublayers: dict[str, Any]) -> None:
    """A sublayer stored as an attribute that the class already has (a method another library added
    to ``nn.Module`` in this process, say) would be shadowed by it: the block would call the method.
    The elaborator refuses torch's own attributes; this catches the rest, before building."""
    from archdsl.diagnostics import Diagnostic, SpecError

    clash = sorted(name for name in sublayers if hasattr(cls, name))
    if clash:
        raise SpecError(
            [
                Diagnostic(
                    "E009",
                    f"`{clash[0]}` is an attribute of nn.Module in this process and cannot name a sublayer",
                    None,
                    help="rename the sublayer (a library imported here added this attribute to nn.Module)",
                )
            ]
        )


def instantiate(x: Any, shared: dict[str, Any] | None = None) -> Any:
    """Build the object a constructor tree describes (``shared`` remembers the shared modules)."""
    shared = {} if shared is None else shared
    if isinstance(x, Shared):
        if x.key not in shared:
            shared[x.key] = instantiate(x.ctor, shared)
        return shared[x.key]
    if isinstance(x, Ctor):
        args = [instantiate(a, shared) for a in x.args]
        kwargs = {k: instantiate(v, shared) for k, v in x.kwargs}
        cls = resolve(x.cls)
        if x.cls.module == GENERATED:
            _no_shadowed_sublayers(cls, kwargs)
        return cls(*args, **kwargs)
    if isinstance(x, Layers):
        made: dict[int, nn.Module] = {}
        for ctor, inst in zip(x.ctors, x.instances, strict=True):
            if inst not in made:
                made[inst] = instantiate(ctor, shared)
        return [made[i] for i in x.instances]
    if isinstance(x, list | tuple):
        return [instantiate(item, shared) for item in x]  # each constructor makes its own module
    return x


def build_module(ctor: Ctor, seed: int = 0) -> nn.Module:
    """Instantiate with a fixed seed, so ``build(spec, seed)`` is reproducible (the caller's RNG state
    is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = instantiate(ctor)
    assert isinstance(module, nn.Module)
    return module
