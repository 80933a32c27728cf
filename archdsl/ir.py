"""The intermediate representation: frozen dataclasses holding only resolved values.

Names, expressions, presets, patterns and defaults are gone by the time a spec reaches the IR (see
:mod:`archdsl.elaborate`). Spans are kept for diagnostics but excluded from equality, so the text and
YAML forms of one spec give equal IR, and a block written with a placement preset equals the same block
written as an explicit ``flow``.

* A component instance is a :class:`Node`: its kind (a key of the registry) and its parameters.
* A block is a small dataflow program: named sublayers (``Node``s) and statements over tensors
  (:class:`Stmt` with :class:`Ref` / :class:`Apply` / :class:`Sum` / :class:`Scale` expressions).
* A :class:`Stack` is the layers of an encoder or a decoder; a :class:`Model` is one or two stacks with
  an embedding and a head — or, with ``type = towers``, several towers (each an encoder
  :class:`Model` of its own: input, embedding, width, stack and pooled projection head) combined by
  the model's head (CLIP's contrastive logits). A stack of a hierarchical model (Swin, PVT) runs its
  layers in stages (:class:`Stage`), each at its own width and token grid, entered through a
  transition.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
        try:
            index = self.__dict__["_index"]
        except KeyError:  # the parameters by name, made on first use (the costs read them often)
            index = {}
            for k, v in self.params:
                index.setdefault(k, v)
            object.__setattr__(self, "_index", index)  # not a field: equality and hash ignore it
        try:
            return index[name]  # type: ignore[no-any-return]
        except KeyError:
            raise KeyError(f"{self.kind} has no parameter {name!r}") from None

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


# -- tensor expressions inside a block --------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A tensor by name: the block input ``x``, the encoder output ``memory``, or an earlier target."""

    name: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Apply:
    """A sublayer applied to tensors: ``attn(ln_1(x))``, ``cross(h, memory)``."""

    layer: str
    args: tuple[TExpr, ...]
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Sum:
    """A residual sum of two or more tensors of one shape."""

    terms: tuple[TExpr, ...]
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Scale:
    """A tensor times a constant (``0.5 * mlp(x)`` in Conformer's macaron FFN; DeepNet's ``alpha * x``)."""

    factor: float
    operand: TExpr
    span: Span | None = field(default=None, compare=False, repr=False)


TExpr = Ref | Apply | Sum | Scale


@dataclass(frozen=True)
class Stmt:
    target: str
    value: TExpr
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Block:
    """One layer as a dataflow program over its inputs (``x``, and ``memory`` in a decoder with
    cross-attention). Its output is the target of the last statement. ``name`` only names the class
    the block lowers to (``PreNormBlock``, ``OlmoBlock``); it is not part of the block's identity."""

    sublayers: tuple[tuple[str, Node], ...]
    body: tuple[Stmt, ...]
    inputs: tuple[str, ...] = ("x",)
    name: str = field(default="Block", compare=False)  # the class it lowers to
    doc: str = field(default="", compare=False, repr=False)
    label: str = field(default="", compare=False, repr=False)  # the definition it came from, if named
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def output(self) -> str:
        return self.body[-1].target

    def sublayer(self, name: str) -> Node:
        return dict(self.sublayers)[name]


@dataclass(frozen=True)
class Stage:
    """A run of a stack's layers at one width over one grid of tokens (hierarchical vision models:
    Swin, PVT): layers ``start`` up to the next stage's start. ``transition`` maps the tokens of the
    stage before (or the embedding's) to this stage's width and grid before its first layer (Swin's
    patch merging); a stage without one keeps the width and grid it is handed."""

    start: int
    d_model: int
    grid: tuple[int, int] | None = None
    transition: Node | None = None
    label: str = field(default="", compare=False)  # the spec's name for it (`stage s2 { }`)
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Stack:
    """The layers of an encoder or a decoder. ``instances[i]`` says which module layer ``i`` uses:
    layers with the same instance share their weights (ALBERT); by default every layer is its own.
    ``stages`` is empty for a stack of one width; otherwise its stages in order, the first starting
    at layer 0. With ``latents`` (Perceiver) the blocks run over that array, and the embedded input
    is the ``memory`` they may attend to."""

    role: str  # "encoder" | "decoder"
    layers: tuple[Block, ...]
    instances: tuple[int, ...]
    position: Node | None = None
    final_norm: Node | None = None
    embedding_norm: Node | None = None
    dropout: float = 0.0  # on the embeddings
    layerdrop: float = 0.0  # probability of skipping each layer in training
    checkpoint: tuple[bool, ...] = ()  # per layer: recompute activations in backward
    # how the spec repeats its layers, as runs (period, count): ((1, n_layers),) for `repeat = n_layers`
    repeats: tuple[tuple[int, Any], ...] = field(default=(), compare=False, repr=False)
    stages: tuple[Stage, ...] = ()
    span: Span | None = field(default=None, compare=False, repr=False)
    #: a learned latent array the blocks run over (Perceiver); the embedded input is then their memory
    latents: Node | None = None


@dataclass(frozen=True)
class Model:
    """A model: an embedding, one or two stacks and a head. A model of ``type = towers`` has no
    embedding or stack of its own: its ``towers`` are encoder models (each with its own input, width,
    stack and pooled projection head, named by ``name``), its ``d_model`` the width of the shared
    embedding space they project to, and its ``head`` combines their embeddings (CLIP)."""

    name: str
    type: str  # "decoder" | "encoder" | "encoder_decoder" | "towers"
    d_model: int
    vocab: int  # 0 for models without a token vocabulary (image classifiers, towers models)
    embedding: Node | None  # None for a towers model (each tower has its own)
    stacks: tuple[Stack, ...]  # (decoder,) | (encoder,) | (encoder, decoder) | () for towers
    head: Node
    lora: Any = None  # the spec's LoRA settings (peft.LoraConfig), if any
    span: Span | None = field(default=None, compare=False, repr=False)
    towers: tuple[Model, ...] = ()  # a towers model's towers, in the order its head reads them
    #: a tower of a model whose base is frozen (LoRA or adapters anywhere in it): it freezes too
    base_frozen: bool = False

    @functools.cached_property  # a model never changes (the graph view asks for every context)
    def frozen(self) -> bool:
        """LoRA or adapters: the base weights are frozen and only those train."""
        return (
            self.base_frozen or self.lora is not None or any(n.kind == "adapter" for n in self.components())
        )

    @property
    def all_stacks(self) -> tuple[Stack, ...]:
        """Every stack of the model, the towers' included."""
        return self.stacks + tuple(s for t in self.towers for s in t.stacks)

    @property
    def encoder(self) -> Stack | None:
        return next((s for s in self.stacks if s.role == "encoder"), None)

    @property
    def decoder(self) -> Stack | None:
        return next((s for s in self.stacks if s.role == "decoder"), None)

    @property
    def n_layers(self) -> int:
        return sum(len(s.layers) for s in self.all_stacks)

    def components(self) -> Iterator[Node]:
        if self.embedding is not None:
            yield self.embedding
        for t in self.towers:
            yield from t.components()
        for s in self.stacks:
            if s.position is not None:
                yield s.position
            yield from (st.transition for st in s.stages if st.transition is not None)
            for blk in s.layers:
                yield from (n for _, n in blk.sublayers)
            if s.latents is not None:
                yield s.latents
            if s.final_norm is not None:
                yield s.final_norm
        yield self.head


@dataclass(frozen=True)
class Spec:
    """A loaded spec: the model IR plus where it came from (excluded from equality)."""

    model: Model
    constants: tuple[tuple[str, Value], ...]
    path: str = field(default="<spec>", compare=False)
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)
