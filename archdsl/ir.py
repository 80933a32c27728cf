"""The intermediate representation: frozen dataclasses holding only resolved values.

Names, expressions and defaults are gone by the time a spec reaches the IR (see :mod:`elaborate`).
Spans are kept for diagnostics but excluded from equality, so the text and YAML forms of one spec give
equal IR. A component instance is a :class:`Node`: its kind (a key of the registry) and its parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from archdsl.diagnostics import Span

Value = int | float | bool | str


@dataclass(frozen=True)
class Node:
    """One component: ``kind`` names its entry in the registry; ``params`` are all resolved."""

    kind: str
    params: tuple[tuple[str, Value], ...]
    span: Span | None = field(default=None, compare=False, repr=False)
    param_spans: tuple[tuple[str, Span], ...] = field(default=(), compare=False, repr=False)

    def __getitem__(self, name: str) -> Value:
        for k, v in self.params:
            if k == name:
                return v
        raise KeyError(f"{self.kind} has no parameter {name!r}")

    def get(self, name: str, default: Value | None = None) -> Value | None:
        try:
            return self[name]
        except KeyError:
            return default

    def span_of(self, name: str) -> Span | None:
        """The span of one argument, or of the whole call when the argument was defaulted."""
        for k, s in self.param_spans:
            if k == name:
                return s
        return self.span


@dataclass(frozen=True)
class Block:
    """One layer. ``placement`` says where the norms sit: ``pre`` (Xiong et al. 2020, GPT-2) or ``post``
    (Vaswani et al. 2017, BERT)."""

    placement: str
    norm: Node
    attention: Node
    ffn: Node
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Model:
    name: str
    type: str  # "decoder" | "encoder"
    d_model: int
    vocab: int
    embedding: Node
    position: Node | None
    layers: tuple[Block, ...]
    final_norm: Node | None
    head: Node
    span: Span | None = field(default=None, compare=False, repr=False)

    def components(self) -> Iterator[Node]:
        yield self.embedding
        if self.position is not None:
            yield self.position
        for b in self.layers:
            yield from (b.norm, b.attention, b.ffn)
        if self.final_norm is not None:
            yield self.final_norm
        yield self.head


@dataclass(frozen=True)
class Spec:
    """A loaded spec: the model IR plus where it came from (excluded from equality)."""

    model: Model
    constants: tuple[tuple[str, Value], ...]
    path: str = field(default="<spec>", compare=False)
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)
