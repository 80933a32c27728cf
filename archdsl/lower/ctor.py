"""Constructor trees: what lowering produces, torch-free.

A :class:`Ctor` names an ``nn.Module`` class and its arguments (literals, other ``Ctor``s, a
:class:`Layers` list). The same tree is *instantiated* by :mod:`archdsl.lower.build` and *printed* by
:mod:`archdsl.lower.emit`, so the in-memory module and the standalone file cannot disagree. Classes are
``torch.nn`` classes, archdsl's own (``*_nn.py`` modules, read as source) or generated from a block's
dataflow (:mod:`archdsl.lower.codegen`, carrying their source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ClassRef:
    """A class by where it lives: ``module`` is ``torch.nn``, an archdsl module of nn classes, or
    ``<generated>`` with the class's ``source``."""

    module: str
    name: str
    source: str | None = field(default=None, compare=True, repr=False)

    @property
    def is_torch(self) -> bool:
        return self.module == "torch.nn"

    @property
    def qualname(self) -> str:
        return f"nn.{self.name}" if self.is_torch else self.name

    @property
    def annotation(self) -> str:
        """What the object it makes is annotated as: the class, or ``nn.Module`` for a function that
        returns a module (``freeze_base``)."""
        return self.qualname if self.name[:1].isupper() else "nn.Module"


@dataclass(frozen=True)
class Ctor:
    cls: ClassRef
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Shared:
    """One module used in several places (a relative-position table every layer reads): the first
    occurrence of ``key`` builds it, later ones refer to the same object."""

    key: str
    ctor: Ctor


@dataclass(frozen=True)
class Layers:
    """The blocks of a stack: one constructor per layer, and which instance each layer uses (layers
    with the same instance share one module, and so their weights)."""

    ctors: tuple[Ctor, ...]
    instances: tuple[int, ...]
    labels: tuple[str, ...] = ()  # per layer: the block definition's name, for readable emitted code
    # how the spec repeats them, as runs (period, count) (ir.Stack.repeats); counts may be traced
    repeats: tuple[tuple[int, Any], ...] = field(default=(), compare=False)


class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict argument (LoRA settings) that can sit in a hashable constructor tree; prints as a dict."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))


def _frozen(v: Any) -> Any:
    """Lists become tuples and dicts FrozenDicts, so constructor trees stay hashable."""
    if isinstance(v, list):
        if v and v.count(v[0]) == len(v):  # one item repeated (a MoE's experts): converted once
            return (_frozen(v[0]),) * len(v)
        return tuple(_frozen(x) for x in v)
    if isinstance(v, dict):
        return FrozenDict({k: _frozen(x) for k, x in v.items()})
    return v


def torch_nn(name: str, *args: Any, **kwargs: Any) -> Ctor:
    return Ctor(ClassRef("torch.nn", name), args, tuple((k, _frozen(v)) for k, v in kwargs.items()))


def ours(module: str, name: str, **kwargs: Any) -> Ctor:
    return Ctor(ClassRef(module, name), (), tuple((k, _frozen(v)) for k, v in kwargs.items()))
