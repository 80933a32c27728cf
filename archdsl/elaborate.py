"""Surface tree -> IR: resolve names, evaluate expressions, expand presets and patterns, check and
default every argument.

All problems in a file are collected (not just the first) and raised together as one
:class:`~archdsl.diagnostics.SpecError`, sorted by position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from archdsl import syntax as S
from archdsl.compose import merge
from archdsl.diagnostics import Diagnostic, Span, SpecError, did_you_mean
from archdsl.ir import Apply, Block, Model, Node, Ref, Scale, Stack, Stage, Stmt, Sum, TExpr, Value
from archdsl.kinds import REGISTRY, Ctx, Kind, Param, kinds_for
from archdsl.kinds.peft import LORA_SETTINGS, LORA_TARGETS, LoraConfig
from archdsl.limits import MAX_DIAGNOSTICS, MAX_INT, MAX_LAYERS
from archdsl.names import identifier, name_problem, rename_hint
from archdsl.placements import PLACEMENTS, SUBLAYERS, deepnorm_alpha
from archdsl.trace import as_float, var, whole

FUNCTIONS = ("min", "max")
# Words that other languages (and YAML 1.1) read as booleans; archdsl has only `true` and `false`.
BOOL_WORDS = {w: "true" for w in ("yes", "on", "y", "True", "TRUE")} | {
    w: "false" for w in ("no", "off", "n", "False", "FALSE")
}


class Word(str):
    """A bare word that is not a constant: an enum value such as ``gelu``, checked where it is used."""


class _Poison(Word):
    """Stands in for a value whose definition already produced a diagnostic (no follow-on errors)."""


_POISON: Value = _Poison("<error>")


class _FailError(Exception):
    def __init__(self, diag: Diagnostic | None) -> None:
        self.diag = diag


class _PoisonedError(_FailError):
    """An operand already failed with its own diagnostic: stop quietly."""

    def __init__(self) -> None:
        super().__init__(None)


def _fail(code: str, message: str, span: Span | None, help: str | None = None) -> _FailError:
    return _FailError(Diagnostic(code, message, span, help))


def stop_after(diags: list[Diagnostic]) -> list[Diagnostic]:
    """The first MAX_DIAGNOSTICS diagnostics, the last saying that the search stopped there."""
    diags = sorted(diags, key=Diagnostic.sort_key)[:MAX_DIAGNOSTICS]
    last = diags[-1]
    note = f"too many errors: stopped after {MAX_DIAGNOSTICS}"
    return [*diags[:-1], replace(last, notes=(*last.notes, note))]


# ---------------------------------------------------------------------------------------------------
# Expressions


def _show(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return str(v) if isinstance(v, str) else repr(v)


def _describe(e: S.Expr, v: object) -> str:
    """``d_model (768)`` for a name, ``768`` for a literal: messages show both the name and the value."""
    if isinstance(e, S.Num | S.Bool) or (isinstance(e, S.Neg) and isinstance(e.operand, S.Num)):
        return _show(v)
    return f"{S.expr_text(e)} ({_show(v)})"


def _type_name(v: object) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, tuple):
        return "a list"
    return f"the word `{v}`"


def evaluate(e: S.Expr, env: Mapping[str, Value]) -> Value:
    """Evaluate a constant expression. Integers stay exact: ``/`` on integers must divide exactly."""
    if isinstance(e, S.Num | S.Bool):
        return e.value
    if isinstance(e, S.Name):
        if e.name in env:
            return env[e.name]
        return Word(e.name)
    if isinstance(e, S.List):
        raise _fail("E008", "a list is only a value of `layers` (a layer pattern)", e.span)
    if isinstance(e, S.Neg):
        return -_number(e.operand, evaluate(e.operand, env), "-", env)
    if isinstance(e, S.Call):
        return _function(e, env)
    a = _number(e.left, evaluate(e.left, env), e.op, env)
    b = _number(e.right, evaluate(e.right, env), e.op, env)
    return _binop(e, a, b)


def _number(e: S.Expr, v: Value, op: str, env: Mapping[str, Value] | None = None) -> int | float:
    if isinstance(v, _Poison):
        raise _PoisonedError()
    if isinstance(v, Word):
        known = [k for k, x in (env or {}).items() if not isinstance(x, Word)]
        raise _fail("E003", f"unknown name `{v}`", e.span, did_you_mean(v, known))
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail("E004", f"`{op}` needs numbers, but {_describe(e, v)} is {_type_name(v)}", e.span)
    return v


def _binop(e: S.BinOp, a: int | float, b: int | float) -> int | float:
    op = e.op
    both_int = isinstance(a, int) and isinstance(b, int)
    if op in ("/", "//", "%") and b == 0:
        raise _fail("E004", f"division by zero: {_describe(e.right, b)}", e.span, "check the divisor")
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
        if both_int and b > 64 and abs(a) > 1:  # checked before computing: 2 ** 10**18 never ends
            raise _fail(
                "E004",
                f"{_describe(e.left, a)} ** {_describe(e.right, b)} is too large",
                e.span,
                "values in a spec fit in 64 bits",
            )
        try:
            r = float(a) ** b if both_int and b < 0 else a**b
        except OverflowError:
            raise _fail("E004", f"`{S.expr_text(e)}` is too large to be a finite number", e.span) from None
        except ZeroDivisionError:
            raise _fail(
                "E004", f"`{S.expr_text(e)}`: zero to a negative power", e.span, "check the exponent"
            ) from None
    if isinstance(r, complex):
        raise _fail("E004", f"`{S.expr_text(e)}` has no real value", e.span)
    if isinstance(r, int) and abs(r) > MAX_INT:
        raise _fail(
            "E004",
            f"value of `{S.expr_text(e)}` is too large ({r:.3e})",
            e.span,
            "values in a spec fit in 64 bits",
        )
    if isinstance(r, float) and not math.isfinite(r):
        raise _fail("E004", f"`{S.expr_text(e)}` is not a finite number", e.span)
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
    vals = [_number(a.value, evaluate(a.value, env), name, env) for a in e.args]
    return min(vals) if name == "min" else max(vals)


def coerce(p: Param, v: Value, e: S.Expr, env: Mapping[str, Value]) -> Value:
    """Check a value against a parameter's type and range; ints widen to floats."""
    where = f"`{p.name}`"
    if isinstance(v, Word) and p.type != "enum":
        if p.type == "bool" and v in BOOL_WORDS:
            raise _fail(
                "E008", f"{where} takes true or false, found `{v}`", e.span, help=f"write {BOOL_WORDS[v]}"
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
    if p.type == "int" and not isinstance(v, int):
        raise _fail(
            "E008",
            f"{where} takes an integer, found {_describe(e, v)}",
            e.span,
            help=f"write {int(v)}" if float(v).is_integer() else None,
        )
    shown = _describe(e, v)
    if p.type == "float":
        v = as_float(v)  # a traced number keeps its expression (see archdsl.trace)
    for bound, bad, word in (
        (p.min, lambda b: v < b, "at least"),
        (p.gt, lambda b: v <= b, "greater than"),
        (p.max, lambda b: v > b, "at most"),
        (p.lt, lambda b: v >= b, "less than"),
    ):
        if bound is not None and bad(bound):
            default = p.default if p.default is not None and not p.required else None
            hint = f"the default is {p.name} = {_show(default)}" if default is not None else None
            raise _fail("E009", f"{where} must be {word} {bound:g}, found {shown}", e.span, hint)
    return v


# ---------------------------------------------------------------------------------------------------
# Section schemas


@dataclass(frozen=True)
class Slot:
    """A place in a section that holds one component of a role."""

    role: str
    required: bool
    doc: str = ""
    #: a required slot that may be written `none` (a block without a feed-forward)
    nullable: bool = False


MODEL_TYPES = ("decoder", "encoder", "encoder_decoder", "towers")
MODEL_SETTINGS = (
    Param(
        "type",
        "enum",
        default="decoder",
        choices=MODEL_TYPES,
        doc="decoder-only, encoder-only, both, or several towers",
    ),
    Param("d_model", "int", min=1, doc="residual stream width"),
    Param("vocab", "int", default=0, min=0, doc="vocabulary size (token models)"),
)
#: a tower's own settings (``tower NAME { … }`` in a model of ``type = towers``)
TOWER_SETTINGS = (
    Param("d_model", "int", min=1, doc="the tower's residual width"),
    Param("vocab", "int", default=0, min=0, doc="vocabulary size (a tower that reads token ids)"),
)
#: heads that pool a tower into the shared embedding space
TOWER_HEADS = ("projection",)
MODEL_SLOTS = {
    "embedding": Slot("embedding", True, "input embedding: tokens or image patches"),
    "head": Slot("head", True, "output head"),
}
STACK_SLOTS = {
    "position": Slot(
        "position", False, "positions: a table added to the embeddings, or a scheme in attention"
    ),
    "embedding_norm": Slot("norm", False, "norm of the embeddings (BERT)"),
    "final_norm": Slot("norm", False, "norm after the last block"),
    "latents": Slot(
        "latents",
        False,
        "a learned latent array the blocks run over; the embedded input becomes the memory they "
        "attend to (Perceiver)",
    ),
}
#: heads that read every position of the stack's output (not a pooled summary of it)
POSITION_HEADS = ("lm_head", "mlm_head")
STACK_SETTINGS = (
    Param("dropout", "float", default=0.0, min=0.0, lt=1.0, doc="dropout on the embeddings"),
    Param(
        "layerdrop",
        "float",
        default=0.0,
        min=0.0,
        lt=1.0,
        doc="skip each layer in training (Fan et al. 2019)",
    ),
)
STACK_SECTIONS = ("block", "layer")
#: a stage of a hierarchical stack (Swin, PVT): its width, the transition into it, its layers
STAGE_SETTINGS = (
    Param("d_model", "int", default=None, min=1, doc="the stage's width (default: the stage before's)"),
)
STAGE_SLOTS = {
    "transition": Slot(
        "transition",
        False,
        "maps the tokens of the stage before to this stage's width and grid (Swin's patch merging)",
    ),
}
BLOCK_SETTINGS = (
    Param("repeat", "int", default=None, min=1, max=MAX_LAYERS, doc="number of layers (inline block)"),
    Param("placement", "placement", default="pre", doc="where the norms sit: a preset"),
    Param("shared", "bool", default=False, doc="all layers of this block share one set of weights"),
    Param("base", "block", default=None, doc="start from another block definition"),
    Param("checkpoint", "bool", default=False, doc="recompute this block's activations in backward"),
)
BLOCK_SLOTS = {
    "adapter": Slot("adapter", False, "a bottleneck adapter after each sublayer (Houlsby et al. 2019)"),
    "norm": Slot("norm", True, "the norm, instantiated at each position the placement needs"),
    "attention": Slot("attention", True, "self-attention (`none`: a block without one)", nullable=True),
    "mixer": Slot(
        "attention",
        False,
        "a sequence mixer in self-attention's place, as a sublayer named `mixer` (mamba, retention, "
        "rwkv_time_mix, or any attention kind); a block has `attention` or `mixer`",
    ),
    "cross_attention": Slot(
        "attention", False, "attention to the encoder output (decoders of encoder-decoders)"
    ),
    "ffn": Slot("ffn", True, "feed-forward (`none`: a block without one, as Mamba's)", nullable=True),
}
#: slots a preset block fills with one of them: self-attention, or a sequence mixer in its place
MIXING_SLOTS = ("attention", "mixer")


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


class Elaborator:
    def __init__(self, path: str, traced: frozenset[str] = frozenset()) -> None:
        self.path = path
        self.traced = traced  # constants to elaborate as traced numbers (archdsl.trace)
        self.derived: dict[str, object] = {}  # a traced constant -> the expression it was computed by
        self.segments: dict[int, tuple[tuple[int, object], ...]] = {}  # id(plan) -> its repeats
        self.diags: list[Diagnostic] = []
        self.env: dict[str, Value] = {}
        self.blocks: dict[str, S.Section] = {}
        self._resolved: dict[int, tuple[S.Section, S.Section]] = {}  # id(block) -> (it, its base laid under)
        self._cache: dict[tuple[int, str, int, Ctx | None], Block | None] = {}
        self.depths: tuple[int, int] = (0, 0)  # layers in the encoder and the decoder

    def error(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, help))
        if len(self.diags) >= MAX_DIAGNOSTICS:
            raise SpecError(stop_after(self.diags))

    def check_name(self, ident: S.Ident, what: str) -> bool:
        """Report a name the spec defines that the rule in :mod:`archdsl.names` refuses."""
        problem = name_problem(ident.name, what)
        if problem is not None:
            self.error("E009", problem, ident.span, rename_hint(ident.name, what))
        return problem is None

    def attempt(self, fn, *args):  # type: ignore[no-untyped-def]
        try:
            return fn(*args)
        except _FailError as f:
            if f.diag is not None:
                self.diags.append(f.diag)
            return _POISON

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
        later = {a.key.name: a for a in attrs}
        for a in attrs:
            name = a.key.name
            if not self.check_name(a.key, "constant"):
                self.env[name] = _POISON
                continue
            if name in self.env:
                self.error("E010", f"constant `{name}` is defined twice", a.key.span, "keep one definition")
                continue
            expr = overrides.get(name, a.value)
            early = [n for n in _names(expr) if n.name in later and n.name not in self.env]
            if early:
                n = early[0]
                self.error(
                    "E003",
                    f"`{n.name}` is used before it is defined",
                    n.span,
                    help=f"move `{n.name} = …` above this line",
                )
                self.env[name] = _POISON
                continue
            self.env[name] = self.attempt(evaluate, expr, self.env)
            v = self.env[name]
            if name in self.traced and isinstance(v, int | float) and not isinstance(v, bool):
                self.derived[name] = getattr(v, "expr", None)
                self.env[name] = v = var(name, v)
            if isinstance(v, Word) and not isinstance(v, _Poison) and v in BOOL_WORDS:
                self.error(
                    "E008",
                    f"`{v}` is not a boolean in a spec",
                    expr.span,
                    help=f"write {BOOL_WORDS[v]} (YAML 1.1 and some languages read `{v}` as {BOOL_WORDS[v]})",
                )
                self.env[name] = _POISON

    # -- generic pieces ----------------------------------------------------------------------------

    def value(self, p: Param, e: S.Expr) -> Value:
        def run() -> Value:
            if isinstance(e, S.Call) and e.func.name not in FUNCTIONS:
                raise _fail(
                    "E008",
                    f"`{p.name}` takes a value, not a component",
                    e.span,
                    "write a number or a name here; components go in slots such as `ffn = mlp(…)`",
                )
            v = evaluate(e, self.env)
            if isinstance(v, _Poison):
                return _POISON
            return coerce(p, v, e, self.env)

        return self.attempt(run)

    def args(
        self, call: S.Call, params: tuple[Param, ...], what: str, dynamic: Mapping[str, Value]
    ) -> tuple[dict[str, Value], list[tuple[str, Span]], bool]:
        """Check a call's keyword arguments against ``params``; fill defaults."""
        given: dict[str, S.Arg] = {}
        names = [p.name for p in params]
        for arg in call.args:
            if arg.key is None:
                self.error("E008", f"`{what}` takes keyword arguments", arg.span, "write `name = value`")
                continue
            k = arg.key.name
            if k not in names:
                self.error(
                    "E006",
                    f"`{what}` has no parameter `{k}`",
                    arg.key.span,
                    help=did_you_mean(k, names) or ("it takes no parameters" if not names else None),
                )
            elif k in given:
                self.error("E010", f"parameter `{k}` is given twice", arg.key.span, "keep one")
            else:
                given[k] = arg
        out: dict[str, Value] = {}
        spans: list[tuple[str, Span]] = []
        ok = True
        for p in params:
            arg = given.get(p.name)
            if arg is None:
                if p.required:
                    self.error(
                        "E007",
                        f"`{what}` needs `{p.name}`",
                        call.span,
                        help=f"add `{p.name} = …`" + (f" ({p.doc})" if p.doc else ""),
                    )
                    ok = False
                    continue
                v = dynamic.get(p.name, p.default)
            else:
                v = self.value(p, arg.value)
                if arg.span is not None:
                    spans.append((p.name, arg.span))
            if isinstance(v, _Poison):
                ok = False
            out[p.name] = v
        return out, spans, ok

    def component(
        self,
        slot_name: str,
        role: str,
        e: S.Expr,
        ctx: Ctx | None,
        arity: int = 1,
        defaults: Mapping[str, Value] | None = None,
    ) -> Node | None:
        """``kind(key = value, …)`` -> a checked Node with every parameter resolved."""
        allowed = kinds_for(role) if role != "any" else list(REGISTRY)
        eg = allowed[0] if role != "any" else "mha"  # a flow's sublayer can be of any role
        if not isinstance(e, S.Call) or e.func.name in FUNCTIONS:
            self.error(
                "E008",
                f"`{slot_name}` takes a component such as `{eg}(…)`",
                e.span,
                help=(did_you_mean(e.name, allowed) if isinstance(e, S.Name) else None)
                or f"write e.g. `{slot_name} = {eg}(…)`",
            )
            return None
        name = e.func.name
        kind = REGISTRY.get(name)
        if kind is None:
            self.error("E005", f"unknown {role} kind `{name}`", e.func.span, did_you_mean(name, allowed))
            return None
        if kind.role != role and role != "any":
            self.error(
                "E016",
                f"`{name}` is {_a(kind.role)} kind; `{slot_name}` takes {_a(role)} kind",
                e.func.span,
                help=did_you_mean(name, allowed),
            )
            return None
        if arity not in kind.arities:
            self.error(
                "E008",
                f"`{name}` is applied to {arity} tensor{'s' if arity != 1 else ''}; it takes "
                + " or ".join(map(str, kind.arities)),
                e.span,
            )
            return None
        dynamic = {**kind.defaults(ctx, arity), **(defaults or {})} if ctx is not None else {}
        params, spans, ok = self.args(e, kind.params, name, dynamic)
        if not ok or ctx is None:
            return None
        node = Node(name, tuple(kind.resolve(params).items()), e.span, tuple(spans))
        for problem in kind.validate(node, ctx, arity):
            span = node.span_of(problem.param) if problem.param else node.span
            self.error(problem.code, problem.message, span, problem.help)
            ok = False
        return node if ok else None

    def optional(self, slot_name: str, slot: Slot, e: S.Expr | None, ctx: Ctx | None) -> Node | None:
        if e is None or (isinstance(e, S.Name) and e.name == "none" and not slot.required):
            return None
        return self.component(slot_name, slot.role, e, ctx)

    def split(
        self, sec: S.Section, known: list[str], sections: tuple[str, ...]
    ) -> tuple[dict[str, S.Attr], dict[str, list[S.Section]]]:
        """A section's attributes by name and subsections by keyword; report unknown and duplicate."""
        attrs: dict[str, S.Attr] = {}
        subs: dict[str, list[S.Section]] = {}
        where = sec.keyword.name
        for entry in sec.entries:
            if isinstance(entry, S.Section):
                name = entry.keyword.name
                if name not in sections:
                    self.error(
                        "E006",
                        f"`{where}` has no section `{name}`",
                        entry.keyword.span,
                        did_you_mean(name, [*known, *sections]),
                    )
                    continue
                same = subs.setdefault(name, [])
                label = entry.label.name if entry.label else None
                if any((s.label.name if s.label else None) == label for s in same):
                    self.error(
                        "E010", f"`{name}{' ' + label if label else ''}` is given twice", entry.keyword.span
                    )
                    continue
                same.append(entry)
            elif isinstance(entry, S.Attr):
                name = entry.key.name
                if name in attrs:
                    self.error("E010", f"`{name}` is given twice in `{where}`", entry.key.span, "keep one")
                elif name not in known and "*" not in known:
                    self.error(
                        "E006",
                        f"`{where}` has no setting `{name}`",
                        entry.key.span,
                        did_you_mean(name, [*known, *sections]),
                    )
                else:
                    attrs[name] = entry
            else:
                self.error(
                    "E016", f"`{type(entry).__name__.lower()}` belongs at the top of a file", entry.span
                )
        return attrs, subs

    # -- model -------------------------------------------------------------------------------------

    def model(self, sec: S.Section) -> Model | None:
        where = sec.label.span if sec.label else sec.keyword.span
        if sec.label is not None:
            self.check_name(sec.label, "model")
        settings = [p.name for p in MODEL_SETTINGS]
        stack_keys = [*STACK_SLOTS, *(p.name for p in STACK_SETTINGS), "layers"]
        attrs, subs = self.split(
            sec,
            [*settings, *MODEL_SLOTS, *stack_keys],
            (*STACK_SECTIONS, "stage", "encoder", "decoder", "lora", "tower"),
        )
        st = {
            p.name: (self.value(p, attrs[p.name].value) if p.name in attrs else p.default)
            for p in MODEL_SETTINGS
        }
        for p in MODEL_SETTINGS:
            if p.required and p.name not in attrs:
                self.error("E007", f"model needs `{p.name}`", where, help=f"add `{p.name} = …` ({p.doc})")
                st[p.name] = _POISON
        mtype = st["type"]
        ctx_ok = not any(isinstance(st[k], _Poison) for k in st)
        d_model, vocab = (whole(st["d_model"]), whole(st["vocab"])) if ctx_ok else (0, 0)

        lora = self.lora(subs["lora"][0]) if "lora" in subs else None
        if mtype == "towers":
            return self.towers_model(sec, attrs, subs, d_model if ctx_ok else None, lora)
        for t in subs.get("tower", []):
            self.error(
                "E016",
                "`tower NAME { }` sections belong to `type = towers`",
                t.keyword.span,
                help="set `type = towers` (each tower then has its own embedding, stack and head)",
            )

        top_stack = "encoder" if mtype == "encoder" else "decoder"
        base = Ctx(d_model=d_model, vocab=vocab, stack=top_stack, lora=lora) if ctx_ok else None
        comps: dict[str, Node | None] = {"embedding": self.model_slot("embedding", attrs, where, base)}
        emb = comps["embedding"]
        # an image embedding lays its tokens on a grid (no class token): the stacks' components know it
        grid = REGISTRY[emb.kind].out_grid(emb, base) if emb is not None and base is not None else None
        if emb is None and _gives_grid(attrs.get("embedding")):
            base = None  # its grid is unknown: no follow-on errors about it in the stacks

        def ctx(stack: str) -> Ctx | None:
            return replace(base, stack=stack, grid=grid) if base is not None else None

        staged = "stage" in subs and mtype != "encoder_decoder"
        if not staged:  # otherwise the head is elaborated at the last stage's width, below
            comps["head"] = self.model_slot("head", attrs, where, ctx(top_stack))
        stacks: list[Stack | None] = []
        if mtype == "encoder_decoder":
            for k in (*STACK_SLOTS, *(p.name for p in STACK_SETTINGS), "layers"):
                if k in attrs:
                    self.error(
                        "E016",
                        f"in an encoder_decoder, `{k}` belongs in `encoder {{ }}` or `decoder {{ }}`",
                        attrs[k].key.span,
                    )
            for k in (*STACK_SECTIONS, "stage"):
                for s in subs.get(k, []):
                    self.error(
                        "E016",
                        f"in an encoder_decoder, `{k}` belongs in `encoder {{ }}` or `decoder {{ }}`",
                        s.keyword.span,
                    )
            parts = []
            for role in ("encoder", "decoder"):
                got = subs.get(role)
                if not got:
                    self.error("E007", f"an encoder_decoder needs an `{role} {{ … }}` section", where)
                    parts.append(None)
                    continue
                s_attrs, s_subs = self.split(got[0], stack_keys, (*STACK_SECTIONS, "stage"))
                for st in s_subs.get("stage", []):
                    self.error(
                        "E016",
                        "stages (a stack whose width changes) belong to encoder and decoder models",
                        st.keyword.span,
                        help="the decoder of an encoder_decoder reads the encoder's output at d_model",
                    )
                plan = None if "stage" in s_subs else self.plan(got[0], s_attrs, s_subs)
                parts.append((role, got[0], s_attrs, plan))
            self.depths = tuple(len(p[3] or ()) if p else 0 for p in parts)  # type: ignore[assignment]
            if not self.layers_fit(where):
                return None
            for part in parts:
                if part is None:
                    stacks.append(None)
                    continue
                role, ssec, s_attrs, plan = part
                stacks.append(self.stack(role, ssec, s_attrs, plan, ctx(role), memory=role == "decoder"))
        else:
            for role in ("encoder", "decoder"):
                for s in subs.get(role, []):
                    self.error(
                        "E016",
                        f"`{role} {{ }}` sections belong to `type = encoder_decoder`",
                        s.keyword.span,
                        help="put the stack's entries directly in the model",
                    )
            if not isinstance(mtype, _Poison):
                if staged:
                    plan, stages = self.staged_plan(sec, attrs, subs, ctx(top_stack))
                else:
                    plan, stages = self.plan(sec, attrs, subs), None
                self.depths = (len(plan or ()), 0) if top_stack == "encoder" else (0, len(plan or ()))
                if not self.layers_fit(where):
                    return None
                width = _memory_width(comps["embedding"], d_model)
                stacks.append(
                    self.stack(
                        top_stack,
                        sec,
                        attrs,
                        plan,
                        ctx(top_stack),
                        memory=False,
                        stages=stages,
                        memory_width=width,
                    )
                )
        if staged:  # the head reads the stack's output: at its last stage's width and grid
            last, out = stacks[-1] if stacks else None, ctx(top_stack)
            if out is not None and last is not None and last.stages:
                out = out.stage(last.stages[-1].d_model, last.stages[-1].grid)
            comps["head"] = self.model_slot("head", attrs, where, out if last is not None else None)
        if not ctx_ok or any(s is None for s in stacks) or any(c is None for c in comps.values()):
            return None
        head, emb = comps["head"], comps["embedding"]
        assert head is not None and emb is not None
        if not self.latents_fit(mtype, stacks, attrs, emb, head):  # type: ignore[arg-type]
            return None
        if REGISTRY[head.kind].shares_embedding(head) and not REGISTRY[emb.kind].token_table:
            self.error(
                "E016",
                f"`{head.kind}` is tied to the token embedding, but `{emb.kind}` has no token table",
                head.span_of("tied"),
                help=f"write `{head.kind}(tied = false)`: the head then has its own weights",
            )
            return None
        return Model(
            lora=lora,
            name=sec.label.name if sec.label else identifier(_stem(self.path)),
            type=str(mtype),
            d_model=d_model,
            vocab=vocab,
            embedding=comps["embedding"],  # type: ignore[arg-type]
            stacks=tuple(stacks),  # type: ignore[arg-type]
            head=comps["head"],  # type: ignore[arg-type]
            span=where,
        )

    def model_slot(
        self, name: str, attrs: dict[str, S.Attr], where: Span | None, ctx: Ctx | None
    ) -> Node | None:
        """The model's embedding or head (required)."""
        slot = MODEL_SLOTS[name]
        if name not in attrs:
            eg = kinds_for(slot.role)[0]
            self.error("E007", f"model needs `{name}`", where, help=f"add `{name} = {eg}(…)` ({slot.doc})")
            return None
        if name == "head" and not self.model_head_fits(attrs[name].value, None):
            return None
        return self.component(name, slot.role, attrs[name].value, ctx)

    def model_head_fits(self, e: S.Expr, towers: int | None) -> bool:
        """Whether the model's head can stand where it is: in a towers model (``towers``: how many),
        a head that combines that many towers; elsewhere, a head of one stack. A tower's projection
        belongs to a tower. Unknown kinds are left to ``component``."""
        kind = REGISTRY.get(e.func.name) if isinstance(e, S.Call) else None
        if kind is None or kind.role != "head":
            return True
        combines = [k for k in kinds_for("head") if 1 not in REGISTRY[k].arities]
        if kind.name in TOWER_HEADS:
            self.error(
                "E016",
                f"`{kind.name}` is a tower's head: it pools one tower into the shared embedding space",
                e.span,
                help=f"put it in each `tower NAME {{ }}`; the model's head combines them, e.g. "
                f"`head = {combines[0]}()`"
                if towers is not None
                else "a model of `type = towers` has towers with such heads",
            )
            return False
        if towers is None and 1 not in kind.arities:
            self.error(
                "E016",
                f"`{kind.name}` combines the towers of a model of `type = towers`",
                e.span,
                help="a model of one stack ends in a head such as `lm_head(…)` or `classifier(…)`",
            )
            return False
        if towers is not None and towers not in kind.arities:
            takes = " or ".join(map(str, kind.arities))
            self.error(
                "E016",
                f"`{kind.name}` cannot combine {towers} towers"
                + (f": it combines {takes}" if 1 not in kind.arities else ""),
                e.span,
                help="a towers model's head combines the towers' embeddings: "
                + ", ".join(f"`{k}(…)`" for k in combines if towers in REGISTRY[k].arities)
                if any(towers in REGISTRY[k].arities for k in combines)
                else f"no head combines {towers} towers; "
                + ", ".join(f"`{k}` takes {' or '.join(map(str, REGISTRY[k].arities))}" for k in combines),
            )
            return False
        return True

    def towers_model(
        self,
        sec: S.Section,
        attrs: dict[str, S.Attr],
        subs: dict[str, list[S.Section]],
        joint: int | None,
        lora: LoraConfig | None,
    ) -> Model | None:
        """``type = towers``: two or more ``tower NAME { … }`` sections, each an encoder with its own
        input, width, stack and projection head (into the shared embedding width, the model's
        ``d_model``), combined by the model's head (CLIP: Radford et al. 2021)."""
        where = sec.label.span if sec.label else sec.keyword.span
        own = {"type", "d_model", "head"}
        for k, a in attrs.items():
            if k not in own:
                self.error(
                    "E016",
                    f"in a towers model, `{k}` belongs in a `tower NAME {{ }}` section",
                    a.key.span,
                    help="each tower has its own embedding, stack and head; the model has `d_model` "
                    "(the shared embedding width) and the `head` that combines the towers",
                )
        for k in (*STACK_SECTIONS, "encoder", "decoder"):
            for s in subs.get(k, []):
                self.error(
                    "E016",
                    f"in a towers model, `{k}` belongs in a `tower NAME {{ }}` section",
                    s.keyword.span,
                )
        sections = subs.get("tower", [])
        if len(sections) < 2:
            self.error(
                "E007",
                f"a towers model needs two or more `tower NAME {{ … }}` sections, found {len(sections)}",
                where,
                help="e.g. `tower vision { … }` and `tower text { … }`, each with its own embedding, "
                "stack and `head = projection(…)`",
            )
        tower_keys = [
            *(p.name for p in TOWER_SETTINGS),
            *MODEL_SLOTS,
            *STACK_SLOTS,
            *(p.name for p in STACK_SETTINGS),
            "layers",
        ]
        parts = []
        for t in sections:
            if t.label is None:
                self.error(
                    "E007",
                    "a tower needs a name: `tower NAME { … }`",
                    t.keyword.span,
                    help="the name names its input and its module (`tower vision { … }`)",
                )
                continue
            if not self.check_name(t.label, "tower"):
                continue
            t_attrs, t_subs = self.split(t, tower_keys, STACK_SECTIONS)
            parts.append((t, t_attrs, self.plan(t, t_attrs, t_subs)))
        total = sum(len(plan or ()) for _, _, plan in parts)
        if total > MAX_LAYERS:
            self.error("E009", f"the model has {total:,} layers; at most {MAX_LAYERS:,}", where)
            return None
        towers = [self.tower(t, t_attrs, plan, lora, joint) for t, t_attrs, plan in parts]
        head = None
        if "head" not in attrs:
            combines = [k for k in kinds_for("head") if 1 not in REGISTRY[k].arities]
            self.error(
                "E007",
                "model needs `head`",
                where,
                help=f"add `head = {combines[0]}(…)`: it combines the towers' embeddings",
            )
        elif len(sections) < 2:
            pass  # said above: nothing for the head to combine
        elif self.model_head_fits(attrs["head"].value, len(sections)) and joint is not None:
            ctx = Ctx(d_model=joint, vocab=0, stack="encoder", lora=lora)
            head = self.component("head", "head", attrs["head"].value, ctx, arity=len(sections))
        if head is None or joint is None or len(towers) < 2 or any(t is None for t in towers):
            return None
        frozen = lora is not None or any(n.kind == "adapter" for t in towers for n in t.components())  # type: ignore[union-attr]
        return Model(
            lora=lora,
            name=sec.label.name if sec.label else identifier(_stem(self.path)),
            type="towers",
            d_model=joint,
            vocab=0,
            embedding=None,
            stacks=(),
            head=head,
            span=where,
            towers=tuple(replace(t, base_frozen=frozen) for t in towers),  # type: ignore[type-var]
        )

    def tower(
        self,
        sec: S.Section,
        attrs: dict[str, S.Attr],
        plan: list[tuple[str, S.Section]] | None,
        lora: LoraConfig | None,
        joint: int | None,
    ) -> Model | None:
        """One tower: an encoder model of its own width, whose head projects to the shared width."""
        assert sec.label is not None
        where = sec.label.span
        name = sec.label.name
        st = {
            p.name: (self.value(p, attrs[p.name].value) if p.name in attrs else p.default)
            for p in TOWER_SETTINGS
        }
        for p in TOWER_SETTINGS:
            if p.required and p.name not in attrs:
                self.error(
                    "E007", f"tower `{name}` needs `{p.name}`", where, help=f"add `{p.name} = …` ({p.doc})"
                )
                st[p.name] = _POISON
        ok = not any(isinstance(v, _Poison) for v in st.values())
        ctx = (
            Ctx(d_model=whole(st["d_model"]), vocab=whole(st["vocab"]), stack="encoder", lora=lora)
            if ok
            else None
        )
        comps: dict[str, Node | None] = {}
        for slot_name, slot in MODEL_SLOTS.items():
            a = attrs.get(slot_name)
            if a is None:
                eg = TOWER_HEADS[0] if slot_name == "head" else kinds_for(slot.role)[0]
                self.error(
                    "E007",
                    f"tower `{name}` needs `{slot_name}`",
                    where,
                    help=f"add `{slot_name} = {eg}(…)`"
                    + (
                        " (it pools the tower into the shared embedding space)" if slot_name == "head" else ""
                    ),
                )
                comps[slot_name] = None
                continue
            e = a.value
            if slot_name == "head" and isinstance(e, S.Call) and e.func.name not in TOWER_HEADS:
                if e.func.name in REGISTRY and REGISTRY[e.func.name].role == "head":
                    self.error(
                        "E016",
                        f"a tower's head pools it into the shared embedding space; `{e.func.name}` does not",
                        e.func.span,
                        help="write `head = projection(pool = …)`",
                    )
                    comps[slot_name] = None
                    continue
            if slot_name == "head" and joint is None:  # the model's width failed: no follow-on errors
                comps[slot_name] = self.component(slot_name, slot.role, e, None)
                continue
            defaults = {"width": joint} if slot_name == "head" else None
            comps[slot_name] = self.component(slot_name, slot.role, e, ctx, defaults=defaults)
        if "latents" in attrs:
            self.error(
                "E016",
                "a tower's stack cannot run over latents",
                attrs["latents"].key.span,
                help="latents belong to a model of `type = encoder` (Perceiver)",
            )
            return None
        self._cache = {}  # blocks are elaborated per tower: its width is its own
        self.depths = (len(plan or ()), 0)  # a tower is an encoder (DeepNet's alpha follows its depth)
        stack = self.stack("encoder", sec, attrs, plan, ctx, memory=False)
        if stack is None or ctx is None or comps["embedding"] is None or comps["head"] is None:
            return None
        return Model(
            name=name,
            type="encoder",
            d_model=ctx.d_model,
            vocab=ctx.vocab,
            embedding=comps["embedding"],
            stacks=(stack,),
            head=comps["head"],
            lora=lora,
            span=where,
        )

    def latents_fit(
        self, mtype: str, stacks: list[Stack], attrs: dict[str, S.Attr], emb: Node, head: Node
    ) -> bool:
        """A latent array (Perceiver) stands in an encoder, whose head pools the latents; an input
        table of its own width without a projection (``project = none``) feeds latents only."""
        latents = next((s.latents for s in stacks if s.latents is not None), None)
        ok = True
        if latents is not None and mtype != "encoder":
            self.error(
                "E016",
                f"latents belong to an encoder; this is a {mtype}",
                latents.span,
                help="set `type = encoder`: the blocks run over the latents and read the input as memory",
            )
            ok = False
        if latents is not None and head.kind in POSITION_HEADS:
            self.error(
                "E016",
                f"`{head.kind}` reads every position, but the blocks run over the latents, not the input",
                head.span,
                help="pool the latents: `head = classifier(classes = …, pool = mean)`",
            )
            ok = False
        if latents is None and emb.get("project") == "none":
            self.error(
                "E016",
                "`project = none` leaves the input at the table's width: only latents read it that way",
                emb.span_of("project"),
                help="add `latents = latent_array(length = …)` (Perceiver), or project to d_model "
                "(`project = early`)",
            )
            ok = False
        return ok

    def layers_fit(self, where: Span | None) -> bool:
        """The model's layers (both stacks) are within MAX_LAYERS; else say so."""
        n = sum(self.depths)
        if n > MAX_LAYERS:
            self.error("E009", f"the model has {n:,} layers; at most {MAX_LAYERS:,}", where)
        return n <= MAX_LAYERS

    def lora(self, sec: S.Section) -> LoraConfig | None:
        """``lora { r = 8  alpha = 16  dropout = 0.05  targets = [q, v] }``."""
        attrs, _ = self.split(sec, [*(p.name for p in LORA_SETTINGS), "targets"], ())
        st = {
            p.name: (self.value(p, attrs[p.name].value) if p.name in attrs else p.default)
            for p in LORA_SETTINGS
        }
        targets: list[str] = []
        t = attrs.get("targets")
        items = t.value.items if t is not None and isinstance(t.value, S.List) else None
        if t is None:
            targets = ["q", "v"]
        elif items is None or not items:
            self.error(
                "E008",
                "`targets` is a list of projections",
                t.value.span,
                help="e.g. targets = [q, v]; choose among " + ", ".join(LORA_TARGETS),
            )
            return None
        else:
            for item in items:
                name = item.name if isinstance(item, S.Name) else None
                if name not in LORA_TARGETS:
                    shown = name or S.expr_text(item)
                    self.error(
                        "E009",
                        f"LoRA cannot target `{shown}`",
                        item.span,
                        did_you_mean(shown, list(LORA_TARGETS)),
                    )
                    return None
                targets.append(name)
        if any(isinstance(v, _Poison) for v in st.values()):
            return None
        return LoraConfig(int(st["r"]), float(st["alpha"]), float(st["dropout"]), tuple(targets))  # type: ignore[arg-type]

    # -- stacks ------------------------------------------------------------------------------------

    def plan(
        self, sec: S.Section, attrs: dict[str, S.Attr], subs: dict[str, list[S.Section]], what: str = "stack"
    ) -> list[tuple[str, S.Section]] | None:
        """The block syntax of each layer, with per-layer overrides applied; the key names the
        definition a layer uses (layers of one shared definition share weights). ``what``: the stack,
        or one of its stages (whose layers are numbered from 0 too)."""
        where = sec.label.span if sec.label else sec.keyword.span
        inline = subs.get("block", [])
        pattern = attrs.get("layers")
        plan: list[tuple[str, S.Section]] = []
        if inline and pattern:
            self.error(
                "E010",
                "give either an inline `block { … }` or `layers = …`, not both",
                pattern.key.span,
                help="keep one way of listing the layers",
            )
            return None
        if inline:
            blk = inline[0]
            if blk.label is not None:
                self.error(
                    "E016",
                    f"block definitions (`block {blk.label.name} {{ }}`) go at the top of the file",
                    blk.keyword.span,
                    help=f"define it at the top level and write `layers = [{blk.label.name}] * N` here",
                )
                return None
            blk = self.resolve_base(blk)
            repeat_attr = next(
                (e for e in blk.entries if isinstance(e, S.Attr) and e.key.name == "repeat"), None
            )
            if repeat_attr is None:
                self.error(
                    "E007",
                    "an inline block needs `repeat`",
                    blk.keyword.span,
                    "add `repeat = …` (the number of layers)",
                )
                return None
            n = self.value(BLOCK_SETTINGS[0], repeat_attr.value)
            if isinstance(n, _Poison):
                return None
            plan = [("inline", blk)] * int(n)
            self.segments[id(plan)] = ((1, n),)
        elif pattern:
            names = self.pattern(pattern.value)
            if names is None:
                return None
            plan = [(name.name, self.resolve_base(self.blocks[name.name])) for name in names]
            self.segments[id(plan)] = self.repeats(pattern.value)
        else:
            self.error(
                "E007",
                f"a {what} needs its layers: an inline `block {{ repeat = … }}` or `layers = [name, …] * N`",
                where,
            )
            return None
        for ov in subs.get("layer", []):
            label = ov.label.name if ov.label else ""
            if not label.isdigit() or int(label) >= len(plan):
                self.error(
                    "E009",
                    f"`layer {label}`: the {what} has layers 0 to {len(plan) - 1}",
                    ov.label.span if ov.label else ov.keyword.span,
                    help="layers are numbered from 0",
                )
                continue
            i = int(label)
            _, base_sec = plan[i]
            merged = merge(base_sec.entries, ov.entries)
            plan[i] = (f"layer {i}", S.Section(base_sec.keyword, base_sec.label, merged, ov.span))
        return plan

    def staged_plan(
        self, sec: S.Section, attrs: dict[str, S.Attr], subs: dict[str, list[S.Section]], ctx: Ctx | None
    ) -> tuple[list[tuple[str, S.Section]] | None, list[Stage] | None]:
        """A stack in stages (``stage NAME { d_model = …  transition = …  block { … } }``): every
        stage's layers in order (each stage lists its own, as a stack does) and the stages, each with
        its width, its grid (what its transition makes of the one before's) and its first layer."""
        for k, found in (("block", subs.get("block")), ("layer", subs.get("layer"))):
            for s in found or []:
                self.error(
                    "E016",
                    f"with stages, `{k}` belongs in a `stage {{ }}`",
                    s.keyword.span,
                    help="every layer of a stack in stages is listed by its stage",
                )
        if "layers" in attrs:
            self.error(
                "E016",
                "with stages, `layers` belongs in a `stage { }`",
                attrs["layers"].key.span,
                help="every layer of a stack in stages is listed by its stage",
            )
        plan: list[tuple[str, S.Section]] = []
        stages: list[Stage] = []
        segments: list[tuple[int, object]] = []
        ok = True
        prev = ctx
        for ssec in subs["stage"]:
            if ssec.label is None:
                self.error(
                    "E007",
                    "a stage needs a name: `stage NAME { … }`",
                    ssec.keyword.span,
                    help="stages are named (`stage s1 { }`, or numbered: `stage 1 { }`) and run in order",
                )
                ok = False
                continue
            label, where = ssec.label.name, ssec.label.span
            s_attrs, s_subs = self.split(
                ssec, [*(p.name for p in STAGE_SETTINGS), *STAGE_SLOTS, "layers"], STACK_SECTIONS
            )
            width = self.value(STAGE_SETTINGS[0], s_attrs["d_model"].value) if "d_model" in s_attrs else None
            stage_plan = self.plan(ssec, s_attrs, s_subs, what="stage")
            if stage_plan is None or isinstance(width, _Poison):
                ok = False
                continue
            segments.extend(self.segments.get(id(stage_plan), ()))
            start = len(plan)
            plan.extend(stage_plan)
            if prev is None:
                stages.append(Stage(start, 0, None, None, label, where))
                continue
            d = whole(width) if width is not None else prev.d_model
            tctx = prev.entering(d)
            t_expr = _val(s_attrs.get("transition"))
            transition = self.optional("transition", STAGE_SLOTS["transition"], t_expr, tctx)
            if (
                t_expr is not None
                and transition is None
                and not (isinstance(t_expr, S.Name) and t_expr.name == "none")
            ):
                ok = False
                continue
            grid = (
                REGISTRY[transition.kind].out_grid(transition, tctx) if transition is not None else prev.grid
            )
            if transition is None and d != prev.d_model:
                source = f"stage `{stages[-1].label}`" if stages else "the embedding"
                self.error(
                    "E011",
                    f"stage `{label}` is {d} wide, but {source} gives {prev.d_model}",
                    s_attrs["d_model"].value.span,
                    help="a stage changes the width through its `transition`, "
                    "e.g. transition = patch_merging()",
                )
                ok = False
                continue
            stages.append(Stage(start, d, grid, transition, label, where))
            prev = prev.stage(d, grid)
        if not ok:
            return None, None
        self.segments[id(plan)] = tuple(segments)
        return plan, stages

    def stack(
        self,
        role: str,
        sec: S.Section,
        attrs: dict[str, S.Attr],
        plan: list[tuple[str, S.Section]] | None,
        ctx: Ctx | None,
        memory: bool,
        stages: list[Stage] | None = None,
        memory_width: int | None = None,
    ) -> Stack | None:
        """A stack (``memory``: its blocks read an encoder's output; ``memory_width``: the width of
        the input a stack over latents reads, where it is not d_model)."""
        where = sec.label.span if sec.label else sec.keyword.span
        position = self.optional("position", STACK_SLOTS["position"], _val(attrs.get("position")), ctx)
        latents = self.optional("latents", STACK_SLOTS["latents"], _val(attrs.get("latents")), ctx)
        if latents is not None and memory:
            self.error(
                "E016",
                "a decoder that reads an encoder's output cannot run over latents",
                attrs["latents"].key.span,
                help="latents belong to an encoder (`type = encoder`): its input becomes their memory",
            )
            return None
        memory = memory or latents is not None  # the latents' blocks read the embedded input
        if latents is not None and ctx is not None and memory_width is not None:
            ctx = replace(ctx, memory_width=memory_width)  # cross-attentions project from its width
        if position is not None and ctx is not None and REGISTRY[position.kind].applies == "attention":
            ctx = replace(ctx, position=position)  # RoPE, ALiBi, relative biases act in every self-attention
        out = ctx if ctx is None or not stages else ctx.stage(stages[-1].d_model, stages[-1].grid)
        final_norm = self.optional(
            "final_norm", STACK_SLOTS["final_norm"], _val(attrs.get("final_norm")), out
        )
        emb_norm = self.optional(
            "embedding_norm", STACK_SLOTS["embedding_norm"], _val(attrs.get("embedding_norm")), ctx
        )
        st = {
            p.name: (self.value(p, attrs[p.name].value) if p.name in attrs else p.default)
            for p in STACK_SETTINGS
        }
        if plan is None:
            return None
        layers: list[Block | None] = []
        instances: list[int] = []
        checkpoint: list[bool] = []
        keys: dict[tuple[int, str], int] = {}
        labelled: dict[tuple[int, str], tuple[Block, Block]] = {}  # (block, label) -> the layer's block
        starts = [stage.start for stage in stages or ()] or [0]
        for i, (key, bsec) in enumerate(plan):
            k = max(j for j, start in enumerate(starts) if start <= i)  # the stage layer i is in
            lctx = ctx if ctx is None or not stages else ctx.stage(stages[k].d_model, stages[k].grid)
            checkpoint.append(self.setting(bsec, "checkpoint") is True)
            if checkpoint[-1] and (blk_ir := self.block(bsec, lctx, role, memory)) is not None:
                for _, n in blk_ir.sublayers:
                    if REGISTRY[n.kind].stateful:
                        self.error(
                            "E016",
                            f"`{n.kind}` keeps state across forwards; its block cannot be checkpointed",
                            n.span,
                            help="recomputing it would move its memory on again; drop `checkpoint`",
                        )
                        return None
            blk = self.block(bsec, lctx, role, memory)
            label = key.replace(" ", "_") if key != "inline" else ""
            if blk is not None:  # repeated layers are one object (lowering and emitting compare by it)
                blk = _per_layer(blk, i - starts[k])
                blk = labelled.setdefault((id(blk), label), (blk, replace(blk, label=label)))[1]
            layers.append(blk)
            if self.setting(bsec, "shared") is True and not key.startswith("layer "):
                if stages and i == starts[k] and stages[k].transition is not None:
                    self.error(
                        "E016",
                        f"layer {i} begins stage `{stages[k].label}` through its transition, so it cannot "
                        "share its module with other layers",
                        bsec.label.span if bsec.label else bsec.keyword.span,
                        help="drop `shared`, or begin the stage with a block that is not shared",
                    )
                    return None
                instances.append(keys.setdefault((k, key), i))  # shared within a stage (one width)
            else:
                instances.append(i)
        if stages and st["layerdrop"] and any(stage.transition is not None for stage in stages):
            self.error(
                "E016",
                "LayerDrop would skip the first layer of a stage, and with it the stage's transition",
                attrs["layerdrop"].key.span,
                help="drop `layerdrop` in a stack whose stages change its width or grid",
            )
            return None
        if any(b is None for b in layers) or ctx is None or any(isinstance(v, _Poison) for v in st.values()):
            return None
        mixing = [
            REGISTRY[n.kind] for b in layers for _, n in b.sublayers if REGISTRY[n.kind].role == "attention"
        ]  # type: ignore[union-attr]
        if (
            position is not None
            and REGISTRY[position.kind].applies == "attention"
            and mixing
            and not any(k.attends for k in mixing)
        ):  # a stack of sequence mixers only: the scheme would act nowhere
            self.error(
                "E016",
                f"`{position.kind}` acts inside attention, but no layer of this stack attends",
                position.span,
                help="write `position = none` (sequence mixers such as `mamba` know order without "
                "one), or give some layers attention",
            )
            return None
        if position is not None and REGISTRY[position.kind].shared_table(position):
            heads = {
                int(n["heads"])
                for b in layers
                for _, n in b.sublayers  # type: ignore[union-attr]
                if REGISTRY[n.kind].attends and not n.get("cross", False)
            }
            if len(heads) > 1:
                self.error(
                    "E011",
                    f"`{position.kind}` keeps one table for the whole stack, but its self-attentions have "
                    f"{', '.join(map(str, sorted(heads)))} heads",
                    position.span,
                    help="give every self-attention of the stack the same number of heads",
                )
                return None
        return Stack(
            role,
            tuple(layers),  # type: ignore[arg-type]
            tuple(instances),
            position,
            final_norm,
            embedding_norm=emb_norm,
            dropout=float(st["dropout"]),  # type: ignore[arg-type]
            layerdrop=float(st["layerdrop"]),  # type: ignore[arg-type]
            checkpoint=tuple(checkpoint),
            repeats=self.segments.get(id(plan), ()),
            # stages without a transition change nothing: the stack is then one of one width
            stages=tuple(stages) if stages and any(st.transition is not None for st in stages) else (),
            span=where,
            latents=latents,
        )

    def is_pattern(self, e: S.Expr) -> bool:
        """Whether an expression is (part of) a layer pattern: it holds a list or names a block."""
        todo = [e]
        while todo:
            x = todo.pop()
            if isinstance(x, S.List) or (isinstance(x, S.Name) and x.name in self.blocks):
                return True
            if isinstance(x, S.BinOp):
                todo += [x.left, x.right]
            elif isinstance(x, S.Neg):
                todo.append(x.operand)
        return False

    def repeats(self, e: S.Expr) -> tuple[tuple[int, object], ...]:
        """A valid pattern as runs ``(period, count)``: ``[dense] * n_dense + [moe] * (n_layers - n_dense)``
        is ``((1, n_dense), (1, n_layers - n_dense))``, counts as evaluated (traced numbers keep their
        expression, so an emitted file can repeat blocks as the config says)."""
        if isinstance(e, S.BinOp) and e.op == "+":
            return self.repeats(e.left) + self.repeats(e.right)
        if isinstance(e, S.BinOp) and e.op == "*":
            lst, num = (e.left, e.right) if self.is_pattern(e.left) else (e.right, e.left)
            return ((len(self.pattern(lst) or ()), evaluate(num, self.env)),)
        return ((len(self.pattern(e) or ()), 1),)

    def pattern(self, e: S.Expr) -> list[S.Name] | None:
        """``[local, local, global] * 4 + [dense]`` -> one block name per layer."""

        def bounded(names: list[S.Name], x: S.Expr) -> list[S.Name]:
            if len(names) > MAX_LAYERS:
                raise _fail("E009", f"pattern has {len(names):,} layers; at most {MAX_LAYERS:,}", x.span)
            return names

        def ev(x: S.Expr) -> list[S.Name]:
            if isinstance(x, S.Name):
                if x.name not in self.blocks:
                    raise _fail(
                        "E003",
                        f"no block named `{x.name}`",
                        x.span,
                        did_you_mean(x.name, sorted(self.blocks)),
                    )
                return [x]
            if isinstance(x, S.List):
                return bounded([n for item in x.items for n in ev(item)], x)
            if isinstance(x, S.BinOp) and x.op == "+":
                return bounded(ev(x.left) + ev(x.right), x)
            if isinstance(x, S.BinOp) and x.op == "*":
                # the side that holds a list or a block's name is the pattern; the other is the count
                lst, num = (x.left, x.right) if self.is_pattern(x.left) else (x.right, x.left)
                k = evaluate(num, self.env)
                if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                    raise _fail(
                        "E008",
                        f"a pattern repeats a whole number of times, found {_describe(num, k)}",
                        num.span,
                    )
                items = ev(lst)
                if len(items) * k > MAX_LAYERS:
                    raise _fail(
                        "E009", f"pattern has {len(items) * k:,} layers; at most {MAX_LAYERS:,}", x.span
                    )
                return items * k
            raise _fail(
                "E008",
                "`layers` is a pattern of block names: lists, `+` and `* N`",
                x.span,
                help="e.g. layers = [local, local, global] * 4",
            )

        got = self.attempt(ev, e)
        if isinstance(got, _Poison):
            return None
        if not got:
            self.error("E009", "`layers` is empty", e.span)
            return None
        return got

    # -- blocks ------------------------------------------------------------------------------------

    def resolve_base(self, sec: S.Section, chain: tuple[str, ...] = ()) -> S.Section:
        """A block written ``base = other`` is ``other``'s entries with its own laid over them: one
        section per definition (its layers are then one block, elaborated once)."""
        if chain:
            return self._resolve_base(sec, chain)
        if id(sec) not in self._resolved:
            self._resolved[id(sec)] = (sec, self._resolve_base(sec, chain))
        return self._resolved[id(sec)][1]

    def _resolve_base(self, sec: S.Section, chain: tuple[str, ...]) -> S.Section:
        base = next((e for e in sec.entries if isinstance(e, S.Attr) and e.key.name == "base"), None)
        if base is None:
            return sec
        name = sec.label.name if sec.label else "<inline>"
        if not isinstance(base.value, S.Name) or base.value.name not in self.blocks:
            shown = S.expr_text(base.value)
            self.error(
                "E003", f"no block named `{shown}`", base.value.span, did_you_mean(shown, sorted(self.blocks))
            )
            return S.Section(sec.keyword, sec.label, tuple(e for e in sec.entries if e is not base), sec.span)
        target = base.value.name
        if target in chain or target == name:
            self.error(
                "E018",
                f"block base cycle: {' → '.join((*chain, name, target))}",
                base.value.span,
                help="a block cannot build on itself",
            )
            return S.Section(sec.keyword, sec.label, tuple(e for e in sec.entries if e is not base), sec.span)
        parent = self.resolve_base(self.blocks[target], (*chain, name))
        own = tuple(e for e in sec.entries if e is not base)
        return S.Section(sec.keyword, sec.label, merge(parent.entries, own), sec.span)

    def setting(self, sec: S.Section, name: str) -> Value | None:
        attr = next((e for e in sec.entries if isinstance(e, S.Attr) and e.key.name == name), None)
        p = next(p for p in BLOCK_SETTINGS if p.name == name)
        if attr is None:
            return p.default
        return self.value(p, attr.value)

    def block(self, sec: S.Section, ctx: Ctx | None, stack: str, memory: bool) -> Block | None:
        key = (id(sec), stack, int(memory), ctx)  # a block definition used in two stages: two blocks
        if key not in self._cache:
            self._cache[key] = self._block(sec, ctx, stack, memory)
        return self._cache[key]

    def _block(self, sec: S.Section, ctx: Ctx | None, stack: str, memory: bool) -> Block | None:
        where = sec.label.span if sec.label else sec.keyword.span
        flows = [e for e in sec.entries if isinstance(e, S.Section) and e.keyword.name == "flow"]
        settings = [p.name for p in BLOCK_SETTINGS]
        if flows:
            attrs, subs = self.split(sec, ["*"], ("flow",))
            if "placement" in attrs:
                self.error(
                    "E016",
                    "a block has either a `placement` preset or a `flow`, not both",
                    attrs["placement"].key.span,
                    help="drop `placement`; the flow says where the norms sit",
                )
            declared = {k: a for k, a in attrs.items() if k not in settings}
            return self.flow_block(sec, subs["flow"][0], declared, ctx, memory)
        attrs, _ = self.split(sec, [*settings, *BLOCK_SLOTS], ())
        slots = dict(BLOCK_SLOTS)
        if not memory:
            if "cross_attention" in attrs:
                self.error(
                    "E016",
                    "`cross_attention` needs an encoder to attend to",
                    attrs["cross_attention"].key.span,
                    help="cross-attention belongs in the decoder of `type = encoder_decoder`",
                )
            slots.pop("cross_attention")
        ok = self.mixing_slot(attrs, where)
        nodes: dict[str, Node | None] = {}
        for name, slot in slots.items():
            a = attrs.get(name)
            if a is None:
                if slot.required and name not in MIXING_SLOTS:
                    eg = kinds_for(slot.role)[0]
                    self.error("E007", f"block needs `{name}`", where, help=f"add `{name} = {eg}(…)`")
                    ok = False
                continue
            if isinstance(a.value, S.Name) and a.value.name == "none":
                if slot.required and not slot.nullable:
                    self.error(
                        "E008",
                        f"a preset block needs its `{name}`",
                        a.value.span,
                        help=f"write `{name} = {kinds_for(slot.role)[0]}(…)`, or write the block as a `flow`",
                    )
                    ok = False
                continue
            nodes[name] = self.component(
                name, slot.role, a.value, ctx, arity=2 if name == "cross_attention" else 1
            )
            ok = ok and nodes[name] is not None
        if ok and not any(k in nodes for k in ("attention", "mixer", "cross_attention", "ffn")):
            self.error(
                "E007",
                "block has no sublayer: its attention (or mixer) and its ffn are all `none`",
                where,
                help="give the block `attention = …`, `mixer = …` or `ffn = …`",
            )
            ok = False
        preset = self.placement(attrs.get("placement"), stack)
        if not ok or preset is None or ctx is None:
            return None
        pname, params = preset
        subs = [(layer, mem) for layer, slot, mem in SUBLAYERS if slot in nodes]
        norms, body = PLACEMENTS[pname].expand(subs, params)
        sub_nodes = {n: nodes["norm"] for n in norms}
        sub_nodes.update({layer: nodes[slot] for layer, slot, _ in SUBLAYERS if slot in nodes})
        if nodes.get("adapter") is not None:  # each sublayer's output passes through its own adapter
            wrapped = {layer: f"adapter_{i}" for i, (layer, _) in enumerate(subs, start=1)}
            body = [Stmt(st.target, _adapt(st.value, wrapped), st.span) for st in body]
            sub_nodes.update({a: nodes["adapter"] for a in wrapped.values()})
        inputs = ("x", "memory") if "cross_attention" in nodes else ("x",)
        doc = PLACEMENTS[pname].doc
        name = _camel(f"{pname}_norm" if pname in ("pre", "post") else pname)
        name += "DecoderBlock" if "cross_attention" in nodes else "Block"
        return _canonical(sub_nodes, body, inputs, name, doc, sec.span)  # type: ignore[arg-type]

    def mixing_slot(self, attrs: dict[str, S.Attr], where: Span | None) -> bool:
        """A preset block has self-attention or a sequence mixer in its place: exactly one of the two
        slots (either may be `none`)."""
        given = [k for k in MIXING_SLOTS if k in attrs]
        written = [k for k in given if not (isinstance(v := attrs[k].value, S.Name) and v.name == "none")]
        if len(written) == 2:
            self.error(
                "E016",
                "a block has `attention` or `mixer`, not both",
                attrs["mixer"].key.span,
                help="keep one; for a block with both, write it as a `flow` with two sublayers",
            )
            return False
        if not given:
            self.error(
                "E007",
                "block needs `attention` (or a sequence `mixer` in its place)",
                where,
                help="add `attention = mha(…)`, `mixer = mamba(…)`, or `attention = none`",
            )
            return False
        return True

    def placement(self, attr: S.Attr | None, stack: str) -> tuple[str, dict[str, float]] | None:
        if attr is None:
            return "pre", {}
        e = attr.value
        if isinstance(e, S.Name) and e.name in self.env and isinstance(self.env[e.name], str):
            e = S.Name(str(self.env[e.name]), e.span)
        name = e.name if isinstance(e, S.Name) else e.func.name if isinstance(e, S.Call) else None
        if name not in PLACEMENTS:
            self.error(
                "E009" if name else "E008",
                f"unknown placement `{name}`" if name else "`placement` takes a preset such as `pre`",
                e.span,
                help=did_you_mean(name or "", list(PLACEMENTS)),
            )
            return None
        preset = PLACEMENTS[name]
        params: dict[str, Value] = {}
        if isinstance(e, S.Call):
            params, _, ok = self.args(e, preset.params, name, {})
            if not ok:
                return None
        else:
            params = {p.name: p.default for p in preset.params}
        if name == "deepnorm" and params.get("alpha") is None:
            params["alpha"] = deepnorm_alpha(stack, *self.depths)
        return name, params  # type: ignore[return-value]

    def flow_block(
        self, sec: S.Section, flow: S.Section, declared: dict[str, S.Attr], ctx: Ctx | None, memory: bool
    ) -> Block | None:
        """The explicit dataflow form: named sublayers and statements over tensors."""
        if not all([self.check_name(a.key, "sublayer") for a in declared.values()]):
            return None
        tensors = {"x"} | ({"memory"} if memory else set())
        arity: dict[str, int] = {}
        body: list[Stmt] = []
        ok = True
        for entry in flow.entries:
            if not isinstance(entry, S.Attr):
                self.error(
                    "E016", "a flow holds statements `name = expression`", getattr(entry, "span", None)
                )
                ok = False
                continue
            target = entry.key.name
            if not self.check_name(entry.key, "tensor"):
                ok = False
                continue
            if target in declared:
                self.error(
                    "E010",
                    f"`{target}` names both a sublayer and a tensor",
                    entry.key.span,
                    help="give the tensor another name",
                )
                ok = False
                continue
            value = self.attempt(self.texpr, entry.value, tensors, declared, arity)
            if isinstance(value, _Poison):
                ok = False
                continue
            body.append(Stmt(target, value, entry.span))
            tensors.add(target)
        if not flow.entries:
            self.error(
                "E007", "a flow needs at least one statement", flow.keyword.span, "e.g. x = x + attn(ln_1(x))"
            )
            return None
        if not body:
            return None
        nodes: dict[str, Node | None] = {}
        for name, a in declared.items():
            if name not in arity:
                self.error(
                    "E013",
                    f"sublayer `{name}` is never used in the flow",
                    a.key.span,
                    help="use it or remove it",
                )
                ok = False
                continue
            nodes[name] = self.component(name, "any", a.value, ctx, arity=arity[name])
            ok = ok and nodes[name] is not None
        if not ok or ctx is None:
            return None
        inputs = ("x", "memory") if memory else ("x",)
        name = _camel(sec.label.name) + "Block" if sec.label else "FlowBlock"
        doc = (
            f"Block `{sec.label.name}`, from the spec's flow."
            if sec.label
            else "A block from the spec's flow."
        )
        return _canonical(nodes, body, inputs, name, doc, sec.span)  # type: ignore[arg-type]

    def texpr(
        self, e: S.Expr, tensors: set[str], declared: dict[str, S.Attr], arity: dict[str, int]
    ) -> TExpr:
        if isinstance(e, S.Name):
            if e.name in tensors:
                return Ref(e.name, e.span)
            hint = did_you_mean(e.name, sorted(tensors))
            if e.name == "memory":
                hint = "`memory` (the encoder output) exists in the decoder of an encoder_decoder"
            elif e.name in declared:
                hint = f"`{e.name}` is a sublayer: apply it, e.g. `{e.name}(x)`"
            raise _fail("E003", f"no tensor `{e.name}` here", e.span, hint)
        if isinstance(e, S.Call):
            name = e.func.name
            if name not in declared:
                raise _fail(
                    "E003",
                    f"no sublayer `{name}` in this block",
                    e.func.span,
                    did_you_mean(name, sorted(declared)) or f"declare it: `{name} = mha(…)`",
                )
            if any(a.key is not None for a in e.args) or not e.args:
                raise _fail("E008", f"apply `{name}` to tensors: `{name}(x)`", e.span)
            n = len(e.args)
            if arity.setdefault(name, n) != n:
                raise _fail(
                    "E008", f"`{name}` is applied to {arity[name]} tensors elsewhere and {n} here", e.span
                )
            return Apply(name, tuple(self.texpr(a.value, tensors, declared, arity) for a in e.args), e.span)
        if isinstance(e, S.BinOp) and e.op == "+":
            terms: list[TExpr] = []
            for side in (e.left, e.right):
                t = self.texpr(side, tensors, declared, arity)
                terms.extend(t.terms if isinstance(t, Sum) else (t,))
            return Sum(tuple(terms), e.span)
        if isinstance(e, S.BinOp) and e.op == "*":
            for num, other in ((e.left, e.right), (e.right, e.left)):
                if _mentions(num, tensors | set(declared)):
                    continue
                f = evaluate(num, self.env)
                if isinstance(f, bool) or not isinstance(f, int | float):
                    raise _fail(
                        "E008", f"a tensor can be scaled by a number, not {_describe(num, f)}", num.span
                    )
                return Scale(float(f), self.texpr(other, tensors, declared, arity), e.span)
            raise _fail(
                "E008",
                "two tensors cannot be multiplied in a flow",
                e.span,
                "scale by a number: 0.5 * mlp(x)",
            )
        raise _fail(
            "E008",
            "a flow combines tensors with sublayer calls, `+` and scaling by a number",
            e.span,
            help="e.g. h = x + attn(ln_1(x))",
        )


def _gives_grid(attr: S.Attr | None) -> bool:
    """Whether a model's embedding names a kind that lays its tokens on a grid (an image embedding)."""
    e = attr.value if attr is not None else None
    kind = REGISTRY.get(e.func.name) if isinstance(e, S.Call) else None
    return kind is not None and type(kind).out_grid is not Kind.out_grid


def _per_layer(blk: Block, index: int) -> Block:
    """The block as layer ``index`` of its stage: each sublayer's kind resolves what depends on the
    layer (``Kind.per_layer``: Swin's shifted windows on every other layer)."""
    subs = tuple((name, REGISTRY[n.kind].per_layer(n, index)) for name, n in blk.sublayers)
    return (
        blk
        if all(a[1] is b[1] for a, b in zip(subs, blk.sublayers, strict=True))
        else replace(blk, sublayers=subs)
    )


def _adapt(t: TExpr, wrapped: Mapping[str, str]) -> TExpr:
    """Wrap every application of a sublayer in ``wrapped`` in its adapter."""
    if isinstance(t, Apply):
        inner = Apply(t.layer, tuple(_adapt(a, wrapped) for a in t.args), t.span)
        return Apply(wrapped[t.layer], (inner,), t.span) if t.layer in wrapped else inner
    if isinstance(t, Sum):
        return Sum(tuple(_adapt(a, wrapped) for a in t.terms), t.span)
    if isinstance(t, Scale):
        return Scale(t.factor, _adapt(t.operand, wrapped), t.span)
    return t


def _memory_width(emb: Node | None, d_model: int) -> int | None:
    """The width of the input a stack's latents read where the embedding leaves it at its table's
    (``project = none``) and that is not d_model; else None. (``graph.ctx_of`` says the same.)"""
    if emb is None or emb.get("project") != "none":
        return None
    w = emb.get("width")
    return None if w is None or w == d_model else whole(w)  # type: ignore[arg-type]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _val(a: S.Attr | None) -> S.Expr | None:
    return a.value if a is not None else None


def _names(e: S.Expr) -> list[S.Name]:
    """The names an expression refers to, in order."""
    if isinstance(e, S.Name):
        return [e]
    if isinstance(e, S.BinOp):
        return _names(e.left) + _names(e.right)
    if isinstance(e, S.Neg):
        return _names(e.operand)
    if isinstance(e, S.Call):
        return [n for a in e.args for n in _names(a.value)]
    if isinstance(e, S.List):
        return [n for x in e.items for n in _names(x)]
    return []


def _mentions(e: S.Expr, names: set[str]) -> bool:
    if isinstance(e, S.Name):
        return e.name in names
    if isinstance(e, S.BinOp):
        return _mentions(e.left, names) or _mentions(e.right, names)
    if isinstance(e, S.Neg):
        return _mentions(e.operand, names)
    if isinstance(e, S.Call):
        return e.func.name in names or any(_mentions(a.value, names) for a in e.args)
    if isinstance(e, S.List):
        return any(_mentions(x, names) for x in e.items)
    return False


def _canonical(
    nodes: Mapping[str, Node],
    body: list[Stmt],
    inputs: tuple[str, ...],
    name: str,
    doc: str,
    span: Span | None,
) -> Block:
    """Sublayers in the order the flow first applies them, so a preset and the same flow written out
    give equal blocks."""
    order: list[str] = []

    def visit(t: TExpr) -> None:
        if isinstance(t, Apply):
            for a in t.args:
                visit(a)
            if t.layer not in order:
                order.append(t.layer)
        elif isinstance(t, Sum):
            for a in t.terms:
                visit(a)
        elif isinstance(t, Scale):
            visit(t.operand)

    for st in body:
        visit(st.value)
    return Block(tuple((n, nodes[n]) for n in order), tuple(body), inputs, name, doc, span)


def _stem(path: str) -> str:
    from pathlib import Path

    return Path(path).stem


TOP_SECTIONS = ("model", "block")


def elaborate(file: S.File, overrides: Mapping[str, S.Expr] | None = None) -> tuple[Model, dict[str, Value]]:
    """Elaborate a (composed) file into its model IR and its evaluated constants."""
    model, env, _ = elaborate_traced(file, overrides)
    return model, env


def elaborate_traced(
    file: S.File, overrides: Mapping[str, S.Expr] | None = None, traced: frozenset[str] = frozenset()
) -> tuple[Model, dict[str, Value], dict[str, object]]:
    """:func:`elaborate` with the constants ``traced`` as traced numbers (:mod:`archdsl.trace`); also
    returns, for each traced constant, the expression it was computed by (None for a literal)."""
    ela = Elaborator(file.path, traced)
    consts = [e for e in file.entries if isinstance(e, S.Attr)]
    models = []
    for e in file.entries:
        if not isinstance(e, S.Section):
            continue
        kw = e.keyword.name
        if kw == "model":
            models.append(e)
        elif kw == "block":
            if e.label is None:
                ela.error(
                    "E007",
                    "a top-level block needs a name: `block NAME { … }`",
                    e.keyword.span,
                    help="or put an inline `block { repeat = … }` inside the model",
                )
            elif e.label.name in ela.blocks:
                ela.error("E010", f"block `{e.label.name}` is defined twice", e.label.span)
            elif ela.check_name(e.label, "block"):
                ela.blocks[e.label.name] = e
        else:
            ela.error(
                "E016",
                f"unknown top-level section `{kw}`",
                e.keyword.span,
                help=did_you_mean(kw, list(TOP_SECTIONS)),
            )
    clash = sorted(set(ela.blocks) & {a.key.name for a in consts})
    for name in clash:
        ela.error("E010", f"`{name}` names both a constant and a block", ela.blocks[name].label.span)  # type: ignore[union-attr]
    ela.constants(consts, overrides or {})
    model = None
    if not models:
        ela.error(
            "E007", "the spec has no `model` section", Span(file.path, 1, 1, 1, 2), "add `model NAME { … }`"
        )
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
    env = {k: v for k, v in ela.env.items() if not isinstance(v, _Poison)}
    return model, env, ela.derived
