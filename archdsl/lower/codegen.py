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


def texpr(
    t: TExpr, attention: frozenset[str] = frozenset(), prec: int = 0, convs: frozenset[str] = frozenset()
) -> str:
    """An expression of the flow as Python. Attention sublayers also get the padding mask of the keys
    they read and the positions of x (for decoding with a cache); convolutions over positions the
    padding mask."""
    if isinstance(t, Ref):
        return name(t.name)
    if isinstance(t, Apply):
        args = [texpr(a, attention, 0, convs) for a in t.args]
        if t.layer in attention:
            args += ["mask=mask", "pos=pos"] if len(t.args) == 1 else ["mask=memory_mask"]
        elif t.layer in convs:
            args += ["mask=mask"]
        return f"self.{name(t.layer)}(" + ", ".join(args) + ")"
    if isinstance(t, Sum):
        s = " + ".join(texpr(a, attention, 1, convs) for a in t.terms)
        return f"({s})" if prec > 1 else s
    assert isinstance(t, Scale)
    return f"{py_number(t.factor)} * {texpr(t.operand, attention, 2, convs)}"


def attention_sublayers(blk: Block) -> frozenset[str]:
    from archdsl.kinds import REGISTRY

    return frozenset(n for n, node in blk.sublayers if REGISTRY[node.kind].role == "attention")


def conv_sublayers(blk: Block) -> frozenset[str]:
    """Sublayers other than attention that mix positions and so read the padding mask."""
    from archdsl.kinds import REGISTRY

    return frozenset(n for n, node in blk.sublayers if REGISTRY[node.kind].reads_mask)


def structure(blk: Block) -> tuple[object, ...]:
    """What decides a block's class: sublayer names, flow and inputs, and which sublayers attend (not
    the sublayers' settings)."""
    return (
        tuple(n for n, _ in blk.sublayers),
        blk.body,
        blk.inputs,
        attention_sublayers(blk),
        conv_sublayers(blk),
    )


def block_source(blk: Block, cls: str, doc: str) -> str:
    subs = [name(n) for n, _ in blk.sublayers]
    attention, convs = attention_sublayers(blk), conv_sublayers(blk)
    sig = ", ".join(f"{n}: nn.Module" for n in subs)
    keywords = ["mask", *(["memory_mask"] if len(blk.inputs) > 1 else []), "pos"]
    params = [
        "self",
        *(f"{name(i)}: torch.Tensor" for i in blk.inputs),
        "*",
        *(f"{k}: torch.Tensor | None = None" for k in keywords),
    ]
    lines = [
        f"class {name(cls)}(nn.Module):",
        f"    {py_docstring(doc)}",
        "",
        f"    def __init__(self, {sig}):",
        "        super().__init__()",
        *(f"        self.{n} = {n}" for n in subs),
        "",
        "    def forward(",
        *(f"        {p}," for p in params),
        "    ) -> torch.Tensor:",
        *(f"        {name(st.target)} = {texpr(st.value, attention, 0, convs)}" for st in blk.body),
        f"        return {name(blk.output)}",
    ]
    return "\n".join(lines)


def block_class(blk: Block, cls: str, doc: str) -> ClassRef:
    return ClassRef(GENERATED, cls, block_source(blk, cls, doc))
