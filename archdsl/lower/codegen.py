"""Block IR -> the source of an ``nn.Module`` class, nanoGPT style.

Each distinct block topology becomes one class: its sublayers are constructor arguments stored as
attributes, and its ``forward`` is the block's flow written out as Python::

    class PreNormBlock(nn.Module):
        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
            return x

The text is made only from the IR: sublayer and tensor names (identifiers checked by the grammar and by
elaboration against :mod:`archdsl.names` — never Python keywords, builtins or nn.Module attributes — and
checked again by :func:`name` as they are printed), the operators ``+`` and ``*``, number literals from
:func:`~archdsl.lower.pysrc.py_number` and a docstring from :func:`~archdsl.lower.pysrc.py_docstring`.
No text from a spec is ever evaluated. :mod:`build` compiles this source (as torch.fx does
for its generated ``forward``) and :mod:`emit` prints it, so both back ends run the same code.
"""

from __future__ import annotations

from archdsl.ir import Apply, Block, Ref, Scale, Sum, TExpr
from archdsl.lower.ctor import ClassRef
from archdsl.lower.pysrc import UnsafeSourceError, py_docstring, py_number
from archdsl.names import IDENTIFIER, PYTHON_KEYWORDS

GENERATED = "<generated>"


def name(text: str) -> str:
    """A name as it goes into generated code: checked again here, so that nothing but an identifier
    that is no keyword can ever be printed into a class (the elaborator already refused the rest)."""
    if not IDENTIFIER.match(text) or text in PYTHON_KEYWORDS or text == "self":
        raise UnsafeSourceError(f"not a name for generated code: {text!r}")
    return text


def texpr(t: TExpr, prec: int = 0) -> str:
    if isinstance(t, Ref):
        return name(t.name)
    if isinstance(t, Apply):
        return f"self.{name(t.layer)}(" + ", ".join(texpr(a) for a in t.args) + ")"
    if isinstance(t, Sum):
        s = " + ".join(texpr(a, 1) for a in t.terms)
        return f"({s})" if prec > 1 else s
    assert isinstance(t, Scale)
    return f"{py_number(t.factor)} * {texpr(t.operand, 2)}"


def structure(blk: Block) -> tuple[object, ...]:
    """What decides a block's class: sublayer names, flow and inputs (not the sublayers' settings)."""
    return (tuple(n for n, _ in blk.sublayers), blk.body, blk.inputs)


def block_source(blk: Block, cls: str, doc: str) -> str:
    subs = [name(n) for n, _ in blk.sublayers]
    sig = ", ".join(f"{n}: nn.Module" for n in subs)
    args = ", ".join(f"{name(i)}: torch.Tensor" for i in blk.inputs)
    lines = [
        f"class {name(cls)}(nn.Module):",
        f"    {py_docstring(doc)}",
        "",
        f"    def __init__(self, {sig}):",
        "        super().__init__()",
        *(f"        self.{n} = {n}" for n in subs),
        "",
        f"    def forward(self, {args}) -> torch.Tensor:",
        *(f"        {name(st.target)} = {texpr(st.value)}" for st in blk.body),
        f"        return {name(blk.output)}",
    ]
    return "\n".join(lines)


def block_class(blk: Block, cls: str, doc: str) -> ClassRef:
    return ClassRef(GENERATED, cls, block_source(blk, cls, doc))
