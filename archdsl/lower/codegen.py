"""Block IR -> the source of an ``nn.Module`` class, nanoGPT style.

Each distinct block topology becomes one class: its sublayers are constructor arguments stored as
attributes, and its ``forward`` is the block's flow written out as Python::

    class PreNormBlock(nn.Module):
        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
            return x

The text is made only from the IR: sublayer and tensor names (identifiers checked by the grammar and by
elaboration, never Python keywords or nn.Module attributes), the operators ``+`` and ``*`` and float
literals. No text from a spec is ever evaluated. :mod:`build` compiles this source (as torch.fx does
for its generated ``forward``) and :mod:`emit` prints it, so both back ends run the same code.
"""

from __future__ import annotations

from archdsl.ir import Apply, Block, Ref, Scale, Sum, TExpr
from archdsl.lower.ctor import ClassRef

GENERATED = "<generated>"


def texpr(t: TExpr, prec: int = 0) -> str:
    if isinstance(t, Ref):
        return t.name
    if isinstance(t, Apply):
        return f"self.{t.layer}(" + ", ".join(texpr(a) for a in t.args) + ")"
    if isinstance(t, Sum):
        s = " + ".join(texpr(a, 1) for a in t.terms)
        return f"({s})" if prec > 1 else s
    assert isinstance(t, Scale)
    return f"{t.factor!r} * {texpr(t.operand, 2)}"


def structure(blk: Block) -> tuple[object, ...]:
    """What decides a block's class: sublayer names, flow and inputs (not the sublayers' settings)."""
    return (tuple(n for n, _ in blk.sublayers), blk.body, blk.inputs)


def block_source(blk: Block, name: str, doc: str) -> str:
    subs = [n for n, _ in blk.sublayers]
    sig = ", ".join(f"{n}: nn.Module" for n in subs)
    args = ", ".join(f"{i}: torch.Tensor" for i in blk.inputs)
    lines = [
        f"class {name}(nn.Module):",
        f'    """{doc}"""',
        "",
        f"    def __init__(self, {sig}):",
        "        super().__init__()",
        *(f"        self.{n} = {n}" for n in subs),
        "",
        f"    def forward(self, {args}) -> torch.Tensor:",
        *(f"        {st.target} = {texpr(st.value)}" for st in blk.body),
        f"        return {blk.output}",
    ]
    return "\n".join(lines)


def block_class(blk: Block, name: str, doc: str) -> ClassRef:
    return ClassRef(GENERATED, name, block_source(blk, name, doc))
