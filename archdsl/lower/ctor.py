"""Constructor trees: what lowering produces, torch-free.

A :class:`Ctor` names an ``nn.Module`` class and its keyword arguments (literals, other ``Ctor``s,
:class:`Repeat`). The same tree is *instantiated* by :func:`archdsl.lower.build.instantiate` and *printed*
by :mod:`archdsl.lower.emit`, so the in-memory module and the standalone file cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClassRef:
    """A class by where it lives: ``module`` is ``torch.nn`` or an archdsl module of nn classes."""

    module: str
    name: str

    @property
    def is_torch(self) -> bool:
        return self.module == "torch.nn"

    @property
    def qualname(self) -> str:
        return f"nn.{self.name}" if self.is_torch else self.name


@dataclass(frozen=True)
class Ctor:
    cls: ClassRef
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Repeat:
    """``n`` independent instances of ``ctor`` (an ``nn.ModuleList`` of identical layers)."""

    ctor: Ctor
    n: int


@dataclass(frozen=True)
class ModuleList:
    items: tuple[Ctor | Repeat, ...]


def torch_nn(name: str, *args: Any, **kwargs: Any) -> Ctor:
    return Ctor(ClassRef("torch.nn", name), args, tuple(kwargs.items()))


def ours(module: str, name: str, **kwargs: Any) -> Ctor:
    return Ctor(ClassRef(module, name), (), tuple(kwargs.items()))
