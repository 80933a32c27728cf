"""The standalone file's ``Config``: which of the spec's constants it can change, and proof that it can.

The emitted ``build_model()`` is written in terms of ``config.<field>``, one field per top-level
constant of the spec. How each size depends on the constants comes from elaborating and lowering the
spec with traced numbers (:mod:`archdsl.trace`): the constructor tree then holds expressions
(``config.d_model // config.n_heads``), and the layer lists their repeat counts (``config.n_layers``).

Tracing is not trusted on its own. For each field, :func:`plan` changes the field's value in the spec
(as ``archdsl.load(spec, overrides={field: value})`` would), lowers the real spec and compares its
constructor tree with the traced tree evaluated at that value. A field that does not reproduce the real
tree — a size a kind computes with ``int()``, a count of experts, a layer count a ``layer 11 { }``
override pins — stays *fixed*: the file prints its value as a literal and refuses to build with another.
Decisions taken on traced values during elaboration (``d_model % n_heads == 0``, which branch a kind
takes) are the file's *guards*: it checks them for the config it is given and refuses otherwise. So the
emitted file either builds exactly what archdsl would, or says it cannot.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archdsl.compose import apply_overrides, compose_file
from archdsl.diagnostics import SpecError
from archdsl.elaborate import elaborate_traced
from archdsl.frontend import parse_source, read_source
from archdsl.graph import build_graph
from archdsl.ir import Model, Spec
from archdsl.limits import MAX_INT
from archdsl.lower.ctor import Ctor, FrozenDict, Layers, Shared
from archdsl.lower.lowering import lower
from archdsl.passes import run_passes
from archdsl.trace import Expr, Guard, evaluate, names, plain, recording, structural, traced

SET_PREFIX = "<--set "


@dataclass(frozen=True)
class Field:
    """One field of the emitted Config."""

    name: str
    type: str  # "int" | "float" | "bool" | "str"
    value: Any  # the spec's resolved value (plain)
    derived: Expr | None = None  # overridable and computed from other fields (default None in Config)
    fixed: str | None = None  # why it cannot be overridden; None when it can


@dataclass(frozen=True)
class Plan:
    fields: tuple[Field, ...]
    ctor: Ctor  # the constructor tree, sizes traced over the overridable fields
    model: Model  # the traced IR (its inputs, for the example in __main__)
    guards: tuple[Guard, ...]  # decisions the tree depends on: (comparison, what it came out as)

    @property
    def overridable(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.fixed is None)


def spec_hash(spec: Spec) -> str:
    """sha256 of the texts the spec was composed from (and its ``--set`` overrides), sorted by path
    relative to the spec's folder: the same spec gives the same hash wherever it lives."""
    base = Path(spec.path).parent
    h = hashlib.sha256()
    for name, text in sorted(
        (key if key.startswith("<") else Path(os.path.relpath(key, base)).as_posix(), text)
        for key, text in spec.sources
    ):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def _type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "str"


class _Spec:
    """A loaded spec, elaborated again from the texts it was loaded from (never re-read from disk)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.texts = dict(spec.sources)
        self.overrides = {
            k[len(SET_PREFIX) : -1]: text.split("=", 1)[1]
            for k, text in self.texts.items()
            if k.startswith(SET_PREFIX)
        }
        self.file, _ = compose_file(spec.path, self.read, parse_source)

    def read(self, path: str) -> str:
        return self.texts[path] if path in self.texts else read_source(path)

    def elaborate(
        self, changes: Mapping[str, Any] | None = None, traced: frozenset[str] = frozenset()
    ) -> tuple[Model, dict[str, Any], dict[str, Any]]:
        from archdsl.pipeline import parse_overrides

        exprs, _ = parse_overrides({**self.overrides, **(changes or {})})
        file = apply_overrides(self.file, {k: v for k, v in exprs.items() if "." in k})
        return elaborate_traced(file, {k: v for k, v in exprs.items() if "." not in k}, traced)


def layer_runs(x: Layers) -> list[tuple[tuple[Ctor, ...], tuple[str, ...], Any]] | None:
    """The layers as runs of a repeated period, ``(blocks, labels, count)``, when the spec's repeats
    (``x.repeats``) describe them exactly and some count follows the config; else None (the layers are
    then written out as they are)."""
    if not x.repeats or not any(traced(k) for _, k in x.repeats):
        return None
    if x.instances != tuple(range(len(x.ctors))):
        return None  # shared weights: written out as they are
    labels = x.labels or ("",) * len(x.ctors)
    runs, i = [], 0
    with structural():
        for p, k in x.repeats:
            n = p * plain(k)
            if p < 1 or n < 1 or i + n > len(x.ctors):
                return None
            block, names_ = x.ctors[i : i + p], labels[i : i + p]
            if any(
                x.ctors[j] != block[(j - i) % p] or labels[j] != names_[(j - i) % p] for j in range(i, i + n)
            ):
                return None
            runs.append((block, names_, k))
            i += n
    return runs if i == len(x.ctors) else None


def concrete(x: Any, env: Mapping[str, Any], memo: dict[int, Any] | None = None) -> Any:
    """The tree the emitted code builds for the config ``env``: traced values evaluated, repeated layers
    repeated as often as the config says. A subtree met again (repeated layers and a mixture's experts
    are one object many times over) is evaluated once and shared."""
    if traced(x):
        return evaluate(x.expr, env)
    if not isinstance(x, Ctor | Shared | Layers | FrozenDict | tuple | list):
        return x
    if memo is None:
        memo = {}
    if id(x) not in memo:
        memo[id(x)] = (x, _concrete(x, env, memo))  # x kept alive: its id is not reused meanwhile
    return memo[id(x)][1]


def _concrete(x: Any, env: Mapping[str, Any], memo: dict[int, Any]) -> Any:
    def concrete_(v: Any, env: Mapping[str, Any]) -> Any:
        return concrete(v, env, memo)

    if isinstance(x, Ctor):
        return Ctor(
            x.cls,
            tuple(concrete_(a, env) for a in x.args),
            tuple((k, concrete_(v, env)) for k, v in x.kwargs),
        )
    if isinstance(x, Shared):
        return Shared(x.key, concrete_(x.ctor, env))
    if isinstance(x, Layers):
        runs = layer_runs(x)
        if runs is None:
            return Layers(tuple(concrete_(c, env) for c in x.ctors), x.instances, x.labels)
        ctors: list[Ctor] = []
        labels: list[str] = []
        for block, names_, k in runs:
            count = concrete_(k, env)
            ctors += [concrete_(c, env) for c in block] * count
            labels += list(names_) * count
        return Layers(tuple(ctors), tuple(range(len(ctors))), tuple(labels) if x.labels else ())
    if isinstance(x, FrozenDict):
        return FrozenDict({k: concrete_(v, env) for k, v in x.items()})
    if isinstance(x, tuple | list):
        if x and x.count(x[0]) == len(x):  # one item repeated (a MoE's experts): evaluated once
            return type(x)([concrete_(x[0], env)] * len(x))
        return type(x)(concrete_(v, env) for v in x)
    return x


def same_tree(a: Any, b: Any, memo: dict[tuple[int, int], bool] | None = None) -> bool:
    """``a == b`` for constructor trees, each pair of subtrees compared once: repeated layers and a
    mixture's experts are one object many times over in both trees, so a model of a thousand experts
    compares as fast as one of one."""
    if a is b:
        return True
    if memo is None:
        memo = {}
    key = (id(a), id(b))
    if key in memo:
        return memo[key]
    if type(a) is not type(b) or not isinstance(a, Ctor | Shared | Layers | FrozenDict | tuple | list):
        same = bool(a == b)
    elif isinstance(a, Ctor):
        same = a.cls == b.cls and same_tree(a.args, b.args, memo) and same_tree(a.kwargs, b.kwargs, memo)
    elif isinstance(a, Shared):
        same = a.key == b.key and same_tree(a.ctor, b.ctor, memo)
    elif isinstance(a, Layers):
        same = (a.instances, a.labels) == (b.instances, b.labels) and same_tree(a.ctors, b.ctors, memo)
    elif isinstance(a, FrozenDict):
        same = a.keys() == b.keys() and all(same_tree(a[k], b[k], memo) for k in a)
    else:
        same = len(a) == len(b) and _same_items(a, b, memo)
    memo[key] = same
    return same


def _same_items(
    a: tuple[Any, ...] | list[Any], b: tuple[Any, ...] | list[Any], memo: dict[Any, bool]
) -> bool:
    """Two sequences of one length, item by item; a run of the same pair of objects (a mixture's
    experts: one object n times in each tree) is compared once."""
    if len(a) > 8 and len(set(map(id, a))) == 1 and len(set(map(id, b))) == 1:
        return same_tree(a[0], b[0], memo)
    last: tuple[Any, Any] | None = None
    for x, y in zip(a, b, strict=True):
        if last is not None and x is last[0] and y is last[1]:
            continue
        if not same_tree(x, y, memo):
            return False
        last = (x, y)
    return True


def config_env(fields: tuple[Field, ...], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The field values the emitted ``resolved()`` computes for a config with ``changes``."""
    env: dict[str, Any] = {}
    for f in fields:
        if f.name in changes:
            env[f.name] = changes[f.name]
        elif f.fixed is None and f.derived is not None:
            env[f.name] = evaluate(f.derived, env)
        else:
            env[f.name] = f.value
    return env


def _candidates(v: Any) -> list[Any]:
    """Values to try a field at: valid ones are kept (a spec refuses many)."""
    if isinstance(v, int):
        if v >= 1:
            return list(
                dict.fromkeys([2 * v, v + 1, 3 * v, v + 2, 4 * v, *([v // 2, v - 1, 1] if v > 1 else [])])
            )
        return [1, 2] if v == 0 else [2 * v, v - 1]
    return [2 * v, v / 2, v + 0.5] if v else [0.5, 0.25]


class _Planner:
    def __init__(self, spec: Spec) -> None:
        self.src = _Spec(spec)
        self.base = lower(spec.model)
        self.values = dict(spec.constants)

    def traced_run(self, names_: frozenset[str]) -> tuple[Model, Ctor, dict[str, Any], list[Guard]]:
        with recording() as guards:
            model, _, derived = self.src.elaborate(traced=names_)
            ctor = lower(model)
        return model, ctor, derived, list(guards)

    def real(self, changes: Mapping[str, Any]) -> Ctor | None:
        try:
            model, _, _ = self.src.elaborate(changes)
        except SpecError:
            return None
        if run_passes(build_graph(model)):
            return None
        return lower(model)

    def verify(self, f: Field, fields: tuple[Field, ...], ctor: Ctor, guards: list[Guard]) -> bool:
        """Whether some valid other value of ``f`` gives the real tree (and none a different one)."""
        for value in _candidates(f.value):
            env = config_env(fields, {f.name: value})
            if not all(bool(evaluate(g, env)) == want for g, want in guards):
                continue  # another decision: the file refuses this value; try another
            real = self.real({f.name: value})
            if real is None:
                continue  # not a valid spec at this value
            return same_tree(concrete(ctor, env), real)
        return False


def _limit(g: Expr) -> bool:
    """A guard not worth a line in the file: against archdsl's 64-bit value limit (``abs(4 * d_model) >
    MAX_INT``, true of every config a machine could build), or ``x % x == 0`` (true of every x the other
    guards let through)."""
    if any(isinstance(x, tuple) and x[0] == "num" and abs(x[1]) >= MAX_INT // 2 for x in g[1:]):
        return True
    left = g[2]
    return left[0] == "bin" and left[1] == "%" and left[2] == left[3]


def plan(spec: Spec) -> Plan:
    """Which constants the emitted file can change, with its traced constructor tree and guards."""
    p = _Planner(spec)
    numeric = {k for k, v in p.values.items() if _type(v) in ("int", "float")}
    why: dict[str, str] = {k: "not a number" for k, v in p.values.items() if k not in numeric}
    candidates = frozenset(numeric)
    for _ in range(len(numeric) + 1):
        model, ctor, derived, guards = p.traced_run(candidates)
        fields = tuple(
            Field(
                k,
                _type(v),
                plain(v),
                derived.get(k) if k in candidates else None,
                None if k in candidates else why.get(k, "changing it does not give the spec's model"),
            )
            for k, v in p.values.items()
        )
        if not same_tree(concrete(ctor, config_env(fields, {})), p.base):
            break  # tracing does not even reproduce the spec: fall back to fixed values below
        failed = {f.name for f in fields if f.fixed is None and not p.verify(f, fields, ctor, guards)}
        if not failed:
            kept = [(g, want) for g, want in guards if names(g) & candidates and not _limit(g)]
            return Plan(fields, ctor, model, tuple(dict.fromkeys(kept)))
        for name in failed:
            why[name] = "changing it does not give the spec's model"
        candidates -= failed
    model, ctor, _, _ = p.traced_run(frozenset())
    fields = tuple(
        Field(k, _type(v), plain(v), None, why.get(k, "not verified")) for k, v in p.values.items()
    )
    return Plan(fields, ctor, model, ())
