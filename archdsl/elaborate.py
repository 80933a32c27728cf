"""Surface tree -> IR: resolve names, evaluate expressions, check and default every argument.

All problems in a file are collected (not just the first) and raised together as one
:class:`~archdsl.diagnostics.SpecError`, sorted by position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from archdsl import syntax as S
from archdsl.diagnostics import Diagnostic, Span, SpecError, did_you_mean
from archdsl.ir import Block, Model, Node, Value
from archdsl.kinds import REGISTRY, Ctx, Param, kinds_for

MAX_INT = 2**63 - 1
FUNCTIONS = ("min", "max")
# Words that other languages (and YAML 1.1) read as booleans; archdsl has only `true` and `false`.
BOOL_WORDS = {w: "true" for w in ("yes", "on", "y", "true")} | {
    w: "false" for w in ("no", "off", "n", "false")
}


class Word(str):
    """A bare word that is not a constant: an enum value such as ``gelu``, checked where it is used."""


class _FailError(Exception):
    def __init__(self, diag: Diagnostic) -> None:
        self.diag = diag


def _fail(code: str, message: str, span: Span | None, help: str | None = None) -> _FailError:
    return _FailError(Diagnostic(code, message, span, help))


# ---------------------------------------------------------------------------------------------------
# Expressions


def _describe(e: S.Expr, v: Value) -> str:
    """``d_model (768)`` for a name, ``768`` for a literal: messages show both the name and the value."""
    if isinstance(e, S.Num | S.Bool) or (isinstance(e, S.Neg) and isinstance(e.operand, S.Num)):
        return _show(v)
    return f"{S.expr_text(e)} ({_show(v)})"


def _show(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, str) else repr(v)


def _type_name(v: Value) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    return f"the word `{v}`"


def evaluate(e: S.Expr, env: Mapping[str, Value]) -> Value:
    """Evaluate an expression. Integers stay exact: ``/`` on integers must divide exactly."""
    if isinstance(e, S.Num | S.Bool):
        return e.value
    if isinstance(e, S.Name):
        if e.name in env:
            return env[e.name]
        return Word(e.name)
    if isinstance(e, S.Neg):
        v = _number(e.operand, evaluate(e.operand, env), "-")
        return -v
    if isinstance(e, S.Call):
        return _function(e, env)
    assert isinstance(e, S.BinOp)
    a = _number(e.left, evaluate(e.left, env), e.op)
    b = _number(e.right, evaluate(e.right, env), e.op)
    return _binop(e, a, b)


def _number(e: S.Expr, v: Value, op: str) -> int | float:
    if isinstance(v, Word):
        raise _fail("E003", f"unknown name `{v}`", e.span, help=None)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail("E004", f"`{op}` needs numbers, but {_describe(e, v)} is {_type_name(v)}", e.span)
    return v


def _binop(e: S.BinOp, a: int | float, b: int | float) -> int | float:
    op = e.op
    both_int = isinstance(a, int) and isinstance(b, int)
    if op in ("/", "//", "%") and b == 0:
        raise _fail("E004", f"division by zero: {_describe(e.right, b)}", e.span)
    if op == "+":
        r: int | float = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op == "/":
        if both_int:
            assert isinstance(a, int) and isinstance(b, int)
            if a % b:
                raise _fail(
                    "E004",
                    f"{_describe(e.left, a)} is not divisible by {_describe(e.right, b)}",
                    e.span,
                    help=f"`/` on integers must divide exactly; use `//` to round down ({a // b})",
                )
            r = a // b
        else:
            r = a / b
    elif op == "//":
        r = a // b
    elif op == "%":
        r = a % b
    else:  # "**"
        if both_int and b < 0:
            r = float(a) ** b
        elif abs(b) > 64 and abs(a) > 1:
            raise _fail("E004", f"{_describe(e.left, a)} ** {_describe(e.right, b)} is too large", e.span)
        else:
            r = a**b
    if isinstance(r, int) and abs(r) > MAX_INT:
        raise _fail("E004", f"value of `{S.expr_text(e)}` is too large ({r:.3e})", e.span)
    if isinstance(r, complex):
        raise _fail("E004", f"`{S.expr_text(e)}` has no real value", e.span)
    return r


def _function(e: S.Call, env: Mapping[str, Value]) -> Value:
    name = e.func.name
    if name not in FUNCTIONS:
        raise _fail(
            "E016",
            f"a component `{name}(…)` cannot be used inside an expression",
            e.span,
            help="components are values of slots such as `attention = mha(heads = 12)`",
        )
    if not e.args or any(a.key is not None for a in e.args):
        raise _fail("E008", f"`{name}` takes one or more positional numbers", e.span, "e.g. min(a, 64)")
    vals = [_number(a.value, evaluate(a.value, env), name) for a in e.args]
    return min(vals) if name == "min" else max(vals)


def coerce(p: Param, v: Value, e: S.Expr, env: Mapping[str, Value]) -> Value:
    """Check a value against a parameter's type and range; ints widen to floats."""
    where = f"`{p.name}`"
    if isinstance(v, Word) and p.type != "enum":
        if p.type == "bool" and v.lower() in BOOL_WORDS:
            raise _fail(
                "E008",
                f"{where} takes true or false, found `{v}`",
                e.span,
                help=f"write {BOOL_WORDS[v.lower()]}",
            )
        known = [k for k, x in env.items() if not isinstance(x, Word)]
        raise _fail("E003", f"unknown name `{v}`", e.span, help=did_you_mean(v, known))
    if p.type == "enum":
        if not isinstance(v, str):
            raise _fail(
                "E008",
                f"{where} takes one of {', '.join(p.choices)}, found {_type_name(v)}",
                e.span,
                help=did_you_mean("", p.choices),
            )
        if v not in p.choices:
            code = "E003" if isinstance(e, S.Name) and e.name == v else "E009"
            raise _fail(code, f"unknown {p.name} `{v}`", e.span, help=did_you_mean(v, p.choices))
        return str(v)
    if p.type == "bool":
        if not isinstance(v, bool):
            raise _fail("E008", f"{where} takes true or false, found {_describe(e, v)}", e.span)
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail("E008", f"{where} takes a number, found {_type_name(v)}", e.span)
    if p.type == "int":
        if not isinstance(v, int):
            raise _fail(
                "E008",
                f"{where} takes an integer, found {_describe(e, v)}",
                e.span,
                help=f"write {int(v)}" if float(v).is_integer() else None,
            )
    shown = _describe(e, v)
    if p.type == "float":
        v = float(v)
    if p.min is not None and v < p.min:
        raise _fail("E009", f"{where} must be at least {_show(p.min)}, found {shown}", e.span)
    if p.gt is not None and v <= p.gt:
        raise _fail("E009", f"{where} must be greater than {_show(p.gt)}, found {shown}", e.span)
    if p.max is not None and v > p.max:
        raise _fail("E009", f"{where} must be at most {_show(p.max)}, found {shown}", e.span)
    return v


# ---------------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class Slot:
    """A place in a section that holds one component of a role."""

    role: str
    required: bool
    doc: str = ""


MODEL_SETTINGS = (
    Param("type", "enum", default="decoder", choices=("decoder", "encoder"), doc="stack kind"),
    Param("d_model", "int", min=1, doc="residual stream width"),
    Param("vocab", "int", min=1, doc="vocabulary size"),
)
MODEL_SLOTS = {
    "embedding": Slot("embedding", True, "token embedding"),
    "position": Slot("position", False, "absolute positions added to the embeddings"),
    "final_norm": Slot("norm", False, "norm after the last block"),
    "head": Slot("head", True, "output head"),
}
BLOCK_SETTINGS = (
    Param("repeat", "int", min=1, max=100_000, doc="number of layers"),
    Param("placement", "enum", default="pre", choices=("pre", "post"), doc="where the norms sit"),
)
BLOCK_SLOTS = {
    "norm": Slot("norm", True),
    "attention": Slot("attention", True),
    "ffn": Slot("ffn", True),
}
MODEL_SECTIONS = ("block",)


class Elaborator:
    def __init__(self, path: str) -> None:
        self.path = path
        self.diags: list[Diagnostic] = []
        self.env: dict[str, Value] = {}

    def error(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, help))

    # -- constants ---------------------------------------------------------------------------------

    def constants(self, attrs: list[S.Attr], overrides: Mapping[str, S.Expr]) -> None:
        defined = {a.key.name for a in attrs}
        for name, expr in overrides.items():
            if name not in defined:
                self.error(
                    "E015",
                    f"--set {name}: the spec has no constant `{name}`",
                    expr.span,
                    help=did_you_mean(name, sorted(defined)),
                )
        for a in attrs:
            name = a.key.name
            if name in self.env:
                self.error("E010", f"constant `{name}` is defined twice", a.key.span, "keep one definition")
                continue
            expr = overrides.get(name, a.value)
            try:
                self.env[name] = evaluate(expr, self.env)
            except _FailError as f:
                self.diags.append(f.diag)
                self.env[name] = _POISON
            if isinstance(self.env[name], Word) and self.env[name] in defined:
                self.error(
                    "E003",
                    f"`{self.env[name]}` is used before it is defined",
                    expr.span,
                    help="define constants before the lines that use them",
                )

    # -- sections ----------------------------------------------------------------------------------

    def settings(
        self, attrs: dict[str, S.Attr], schema: tuple[Param, ...], where: Span | None, what: str
    ) -> dict[str, Value]:
        out: dict[str, Value] = {}
        for p in schema:
            a = attrs.get(p.name)
            if a is None:
                if p.required:
                    self.error("E007", f"{what} needs `{p.name}`", where, help=f"add `{p.name} = …`")
                    out[p.name] = _POISON
                else:
                    out[p.name] = p.default
                continue
            out[p.name] = self.value(p, a.value)
        return out

    def value(self, p: Param, e: S.Expr) -> Value:
        try:
            if isinstance(e, S.Call) and e.func.name not in FUNCTIONS:
                raise _fail("E008", f"`{p.name}` takes a value, not a component", e.span)
            v = evaluate(e, self.env)
            if v is _POISON:
                return _POISON
            return coerce(p, v, e, self.env)
        except _FailError as f:
            self.diags.append(f.diag)
            return _POISON

    def component(self, slot_name: str, slot: Slot, e: S.Expr, ctx: Ctx | None) -> Node | None:
        """``kind(key = value, …)`` -> a Node; ``none`` for an optional slot -> None."""
        allowed = kinds_for(slot.role)
        if isinstance(e, S.Name) and e.name == "none" and not slot.required:
            return None
        if not isinstance(e, S.Call) or e.func.name in FUNCTIONS:
            self.error(
                "E008",
                f"`{slot_name}` takes a component such as `{allowed[0]}(…)`",
                e.span,
                help=did_you_mean(e.name, allowed) if isinstance(e, S.Name) else None,
            )
            return None
        name = e.func.name
        kind = REGISTRY.get(name)
        if kind is None:
            self.error("E005", f"unknown {slot.role} kind `{name}`", e.func.span, did_you_mean(name, allowed))
            return None
        if kind.role != slot.role:
            self.error(
                "E016",
                f"`{name}` is a {kind.role} kind; `{slot_name}` takes a {slot.role} kind",
                e.func.span,
                help=did_you_mean(name, allowed),
            )
            return None
        given: dict[str, S.Arg] = {}
        for arg in e.args:
            if arg.key is None:
                self.error("E008", f"`{name}` takes keyword arguments", arg.span, "write `name = value`")
                continue
            k = arg.key.name
            if kind.param(k) is None:
                names = [p.name for p in kind.params]
                self.error(
                    "E006",
                    f"`{name}` has no parameter `{k}`",
                    arg.key.span,
                    help=did_you_mean(k, names) or ("it takes no parameters" if not names else None),
                )
            elif k in given:
                self.error("E010", f"parameter `{k}` is given twice", arg.key.span)
            else:
                given[k] = arg
        dynamic = kind.defaults(ctx) if ctx is not None else {}
        params: list[tuple[str, Value]] = []
        spans: list[tuple[str, Span]] = []
        ok = True
        for p in kind.params:
            arg = given.get(p.name)
            if arg is None:
                if p.required:
                    self.error(
                        "E007",
                        f"`{name}` needs `{p.name}`",
                        e.span,
                        help=f"add `{p.name} = …`" + (f" ({p.doc})" if p.doc else ""),
                    )
                    ok = False
                    continue
                v = dynamic.get(p.name, p.default)
            else:
                v = self.value(p, arg.value)
                if arg.span is not None:
                    spans.append((p.name, arg.span))
            if v is _POISON:
                ok = False
            params.append((p.name, v))
        if not ok:
            return None
        return Node(name, tuple(params), e.span, tuple(spans))

    def split(
        self,
        sec: S.Section,
        settings: tuple[Param, ...],
        slots: Mapping[str, Slot],
        sections: tuple[str, ...],
    ) -> tuple[dict[str, S.Attr], dict[str, S.Attr], dict[str, S.Section]]:
        """Sort a section's entries into settings, slots and subsections; report unknown/duplicate."""
        set_names = [p.name for p in settings]
        known = [*set_names, *slots, *sections]
        s_attrs: dict[str, S.Attr] = {}
        c_attrs: dict[str, S.Attr] = {}
        subs: dict[str, S.Section] = {}
        for entry in sec.entries:
            key = entry.keyword if isinstance(entry, S.Section) else entry.key
            name = key.name
            if name in s_attrs or name in c_attrs or name in subs:
                self.error("E010", f"`{name}` is given twice in `{sec.keyword.name}`", key.span, "keep one")
                continue
            if isinstance(entry, S.Section):
                if name in sections:
                    subs[name] = entry
                else:
                    self.error(
                        "E006",
                        f"`{sec.keyword.name}` has no section `{name}`",
                        key.span,
                        did_you_mean(name, known),
                    )
            elif name in set_names:
                s_attrs[name] = entry
            elif name in slots:
                c_attrs[name] = entry
            else:
                self.error(
                    "E006",
                    f"`{sec.keyword.name}` has no setting `{name}`",
                    key.span,
                    did_you_mean(name, known),
                )
        return s_attrs, c_attrs, subs

    def slots(
        self,
        attrs: dict[str, S.Attr],
        slots: Mapping[str, Slot],
        ctx: Ctx | None,
        where: Span | None,
        what: str,
    ) -> dict[str, Node | None]:
        out: dict[str, Node | None] = {}
        for name, slot in slots.items():
            a = attrs.get(name)
            if a is None:
                if slot.required:
                    eg = kinds_for(slot.role)[0]
                    self.error("E007", f"{what} needs `{name}`", where, help=f"add `{name} = {eg}(…)`")
                out[name] = None
                continue
            out[name] = self.component(name, slot, a.value, ctx)
        return out

    def model(self, sec: S.Section) -> Model | None:
        where = sec.label.span if sec.label else sec.keyword.span
        s_attrs, c_attrs, subs = self.split(sec, MODEL_SETTINGS, MODEL_SLOTS, MODEL_SECTIONS)
        st = self.settings(s_attrs, MODEL_SETTINGS, where, "model")
        ctx = None
        if all(st[k] is not _POISON for k in ("type", "d_model", "vocab")):
            ctx = Ctx(d_model=int(st["d_model"]), vocab=int(st["vocab"]), type=str(st["type"]))
        comps = self.slots(c_attrs, MODEL_SLOTS, ctx, where, "model")
        block_sec = subs.get("block")
        layers: tuple[Block, ...] = ()
        if block_sec is None:
            self.error(
                "E007", "model needs a `block { … }` section", where, help="add `block { repeat = … }`"
            )
        else:
            layers = self.block(block_sec, ctx)
        if ctx is None or any(comps[k] is None for k, s in MODEL_SLOTS.items() if s.required) or not layers:
            return None
        name = sec.label.name if sec.label else _stem(self.path)
        return Model(
            name=name,
            type=ctx.type,
            d_model=ctx.d_model,
            vocab=ctx.vocab,
            embedding=comps["embedding"],  # type: ignore[arg-type]
            position=comps["position"],
            layers=layers,
            final_norm=comps["final_norm"],
            head=comps["head"],  # type: ignore[arg-type]
            span=where,
        )

    def block(self, sec: S.Section, ctx: Ctx | None) -> tuple[Block, ...]:
        where = sec.keyword.span
        s_attrs, c_attrs, _ = self.split(sec, BLOCK_SETTINGS, BLOCK_SLOTS, ())
        st = self.settings(s_attrs, BLOCK_SETTINGS, where, "block")
        comps = self.slots(c_attrs, BLOCK_SLOTS, ctx, where, "block")
        if any(v is _POISON for v in st.values()) or any(c is None for c in comps.values()):
            return ()
        blk = Block(str(st["placement"]), comps["norm"], comps["attention"], comps["ffn"], where)  # type: ignore[arg-type]
        return (blk,) * int(st["repeat"])


class _Poison(Word):
    """Stands in for a value whose definition already produced a diagnostic (no follow-on errors)."""


_POISON: Value = _Poison("<error>")


def _stem(path: str) -> str:
    from pathlib import Path

    return Path(path).stem


def elaborate(file: S.File, overrides: Mapping[str, S.Expr] | None = None) -> tuple[Model, dict[str, Value]]:
    """Elaborate a parsed file into its model IR and its evaluated constants."""
    ela = Elaborator(file.path)
    consts = [e for e in file.entries if isinstance(e, S.Attr)]
    models = [e for e in file.entries if isinstance(e, S.Section) and e.keyword.name == "model"]
    for e in file.entries:
        if isinstance(e, S.Section) and e.keyword.name != "model":
            ela.error(
                "E016",
                f"unknown top-level section `{e.keyword.name}`",
                e.keyword.span,
                help=did_you_mean(e.keyword.name, ["model"]),
            )
    ela.constants(consts, overrides or {})
    model = None
    if not models:
        ela.error("E007", "the spec has no `model` section", S_span(file.path), "add `model NAME { … }`")
    for extra in models[1:]:
        ela.error(
            "E010",
            "a spec holds one `model` section",
            extra.keyword.span,
            "move the others to their own files",
        )
    if models:
        model = ela.model(models[0])
    if ela.diags or model is None:
        raise SpecError(ela.diags or [Diagnostic("E007", "the model is incomplete", None)])
    env = {k: v for k, v in ela.env.items() if not isinstance(v, Word) or not isinstance(v, _Poison)}
    return model, env


def S_span(path: str) -> Span:  # noqa: N802
    return Span(path, 1, 1, 1, 2)
