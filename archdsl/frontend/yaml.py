"""YAML form (.yaml / .yml) -> surface tree, strictly.

PyYAML speaks YAML 1.1, whose implicit typing is a trap for specs (``1e-3`` is a string, ``no`` is
False, ``017`` is 15) and whose full loader can build Python objects. We therefore use PyYAML only for
structure: tags, anchors and aliases are refused, nesting is bounded before composing, and *every* scalar
value is read by the text form's Lark expression rule, so ``4 * d_model``, ``1e-5`` and ``gelu`` mean
exactly what they mean in a ``.arch`` file. A mapping with a ``kind`` key is a component call; any other
mapping is a section whose ``name`` key (if any) is its label.
"""

from __future__ import annotations

import re

import yaml

from archdsl import syntax as S
from archdsl.diagnostics import Diagnostic, Span, SpecError
from archdsl.frontend import MAX_DEPTH
from archdsl.frontend.text import parse_expr

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _mark_span(path: str, node: yaml.Node) -> Span:
    s, e = node.start_mark, node.end_mark
    return Span(path, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


def _join(a: Span | None, b: Span) -> Span:
    if a is None:
        return b
    return Span(a.file, a.line, a.col, b.end_line, b.end_col)


def _event_span(path: str, ev: yaml.Event) -> Span:
    s, e = ev.start_mark, ev.end_mark
    return Span(path, s.line + 1, s.column + 1, e.line + 1, max(e.column + 1, s.column + 2))


class _Convert:
    def __init__(self, path: str) -> None:
        self.path = path
        self.diags: list[Diagnostic] = []

    def err(self, node: yaml.Node, message: str, help: str | None = None) -> None:
        self.diags.append(Diagnostic("E002", message, _mark_span(self.path, node), help))

    def ident(self, node: yaml.Node, what: str) -> S.Ident | None:
        if not isinstance(node, yaml.ScalarNode) or not _IDENT.match(str(node.value)):
            shown = repr(node.value) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            self.err(node, f"{what} must be a name, found {shown}", "names are letters, digits and _")
            return None
        return S.Ident(node.value, _mark_span(self.path, node))

    def expr(self, node: yaml.Node) -> S.Expr | None:
        if isinstance(node, yaml.MappingNode):
            return self.call(node)
        if isinstance(node, yaml.SequenceNode):
            self.err(node, "a list is not a value here", "write one value, e.g. `heads: 12`")
            return None
        assert isinstance(node, yaml.ScalarNode)
        text = str(node.value)
        if text.strip() == "":
            self.err(node, "empty value", "give a value, e.g. `eps: 1e-5`")
            return None
        m = node.start_mark
        col = m.column + 1 + (1 if node.style in ("'", '"') else 0)
        try:
            return parse_expr(text, self.path, m.line + 1, col)
        except SpecError as e:
            self.diags.extend(e.diagnostics)
            return None

    def pairs(self, node: yaml.MappingNode) -> list[tuple[S.Ident, yaml.Node]]:
        seen: dict[str, S.Ident] = {}
        out: list[tuple[S.Ident, yaml.Node]] = []
        for k, v in node.value:
            key = self.ident(k, "a key")
            if key is None:
                continue
            if key.name in seen:
                prev = seen[key.name].span
                self.diags.append(
                    Diagnostic(
                        "E010",
                        f"duplicate key `{key.name}`",
                        key.span,
                        help=f"the first `{key.name}` is at line {prev.line if prev else '?'}; keep one",
                    )
                )
                continue
            seen[key.name] = key
            out.append((key, v))
        return out

    def call(self, node: yaml.MappingNode) -> S.Call | None:
        func: S.Ident | None = None
        args: list[S.Arg] = []
        for key, v in self.pairs(node):
            if key.name == "kind":
                func = self.ident(v, "a `kind`")
                continue
            value = self.expr(v)
            if value is not None:
                args.append(S.Arg(key, value, _join(key.span, _mark_span(self.path, v))))
        if func is None:
            return None
        return S.Call(func, tuple(args), _mark_span(self.path, node))

    def entries(self, node: yaml.MappingNode) -> tuple[S.Entry, ...]:
        out: list[S.Entry] = []
        for key, v in self.pairs(node):
            if isinstance(v, yaml.MappingNode) and not any(
                isinstance(k, yaml.ScalarNode) and k.value == "kind" for k, _ in v.value
            ):
                out.append(self.section(key, v))
            else:
                value = self.expr(v)
                if value is not None:
                    out.append(S.Attr(key, value, key.span))
        return tuple(out)

    def section(self, keyword: S.Ident, node: yaml.MappingNode) -> S.Section:
        label: S.Ident | None = None
        rest = []
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == "name":
                label = self.ident(v, "a `name`")
            else:
                rest.append((k, v))
        body = yaml.MappingNode(node.tag, rest, node.start_mark, node.end_mark)
        return S.Section(keyword, label, self.entries(body), keyword.span)


def _check_events(text: str, path: str) -> list[Diagnostic]:
    """Refuse tags, anchors and aliases, and bound nesting, before anything is composed."""
    diags: list[Diagnostic] = []
    depth = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, yaml.AliasEvent):
            diags.append(
                Diagnostic(
                    "E002",
                    f"YAML alias `*{ev.anchor}` is not allowed in a spec",
                    _event_span(path, ev),
                    help="repeat the value, or give it a name as a constant",
                )
            )
            continue
        anchor = getattr(ev, "anchor", None)
        if anchor is not None:
            diags.append(
                Diagnostic(
                    "E002",
                    f"YAML anchor `&{anchor}` is not allowed in a spec",
                    _event_span(path, ev),
                    help="define a named constant instead",
                )
            )
        tag = getattr(ev, "tag", None)
        if tag is not None:
            diags.append(
                Diagnostic(
                    "E002",
                    f"YAML tag `{tag}` is not allowed in a spec",
                    _event_span(path, ev),
                    help="specs hold plain values only; remove the tag",
                )
            )
        if isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                diags.append(
                    Diagnostic("E002", f"nesting deeper than {MAX_DEPTH} levels", _event_span(path, ev))
                )
                break
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1
    return diags


def parse_yaml(text: str, path: str) -> S.File:
    try:
        diags = _check_events(text, path)
        if diags:
            raise SpecError(diags)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(path, mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2) if mark else None
        problem = e.problem or e.context or "malformed YAML"
        raise SpecError([Diagnostic("E002", f"YAML syntax error: {problem}", span)]) from None
    except yaml.YAMLError as e:
        raise SpecError([Diagnostic("E002", f"YAML error: {e}", None)]) from None
    if root is None:
        return S.File(path, ())
    conv = _Convert(path)
    if not isinstance(root, yaml.MappingNode):
        conv.err(root, "a spec must be a mapping at the top level", "start with `model:` and constants")
        raise SpecError(conv.diags)
    entries = conv.entries(root)
    if conv.diags:
        raise SpecError(conv.diags)
    return S.File(path, entries)
