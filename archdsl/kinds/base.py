"""What every component kind declares, in one place: parameter schema, checks, shape rule, cost and
PyTorch constructor.

A kind is a subclass of :class:`Kind` registered in :mod:`archdsl.kinds`. Elaboration validates spec
arguments against ``params``; the graph passes call ``out_shape``; analysis calls ``n_params`` and
``flops``; lowering calls ``ctor``. Costs are written with ``+ - * //`` only, so they work on integers
and, unchanged, on sympy symbols for symbolic reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archdsl.ir import Node, Value
from archdsl.lower.ctor import Ctor

REQUIRED: Any = object()

# The slot each role fills in a model or block; a kind declares its role.
ROLES = ("embedding", "position", "norm", "attention", "ffn", "head")


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a kind: type ``int | float | bool | enum``, default, bounds, doc."""

    name: str
    type: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    min: float | None = None  # inclusive
    gt: float | None = None  # exclusive lower bound
    max: float | None = None  # inclusive
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Ctx:
    """Model-level facts a component needs: the residual width, vocabulary size and model type."""

    d_model: int
    vocab: int
    type: str = "decoder"


Shape = tuple[int | str, ...]  # symbolic dims are "B" (batch) and "T" (sequence)


class ShapeError(Exception):
    """A shape rule's complaint; ``param`` names the argument to point the caret at."""

    def __init__(self, message: str, help: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.help = help
        self.param = param


class Kind:
    name: ClassVar[str]
    role: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    doc: ClassVar[str] = ""

    def defaults(self, ctx: Ctx) -> dict[str, Value]:
        """Defaults that depend on the model (e.g. causal attention in a decoder)."""
        return {}

    def out_shape(self, node: Node, ctx: Ctx, x: Shape) -> Shape:
        return x

    def n_params(self, node: Node, ctx: Ctx) -> int:
        return 0

    def flops(self, node: Node, ctx: Ctx, b: Any, n: Any) -> Any:
        """Forward FLOPs at batch ``b`` and sequence length ``n``: 2 per multiply-add, matmuls only,
        attention over the full n x n (the FlopCounterMode convention)."""
        return 0

    def max_seq_len(self, node: Node, ctx: Ctx) -> int | None:
        """Longest sequence this component supports, if it has a limit."""
        return None

    def shares_embedding(self, node: Node) -> bool:
        """True for a head that reuses the token embedding matrix (weight tying)."""
        return False

    def ctor(self, node: Node, ctx: Ctx) -> Ctor:
        raise NotImplementedError

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def divisors(n: int, limit: int = 12) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0][:limit]
