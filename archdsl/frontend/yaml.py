"""YAML form (.yaml / .yml) -> surface tree, strictly.

PyYAML speaks YAML 1.1, whose implicit typing is a trap for specs (``1e-3`` is a string, ``no`` is
False, ``017`` is 15) and whose full loader can build Python objects. We use PyYAML only for structure:
tags, anchors and aliases are refused, nesting is bounded before composing, duplicate keys are errors,
and *every* scalar is read by the text form's Lark expression rule, so ``4 * d_model``, ``1e-5`` and
``gelu`` mean exactly what they mean in a ``.arch`` file. The mapping to the text form:

* a mapping with a ``kind`` key is a component call ``kind(key = value, ...)``;
* any other mapping is a section; its ``name`` key (if any) is the section's label;
* ``block: {dense: {...}}`` at the top level, ``layer: {0: {...}}`` and ``stage: {s1: {...}}`` in a
  stack and ``tower: {text: {...}}`` in a model hold labelled sections (``block dense { ... }``,
  ``layer 0 { ... }``, ``stage s1 { ... }``, ``tower text { ... }``);
* ``extends: base.arch`` and ``import: [{from: blocks.arch, blocks: [a, b]}]`` are the text form's
  ``extends "base.arch"`` and ``import a, b from "blocks.arch"``;
* a sequence is a list ``[a, b]``.
"""

from __future__ import annotations

import re

import yaml

from archdsl import syntax as S
from archdsl.diagnostics import Diagnostic, Span, SpecError
from archdsl.frontend import MAX_DEPTH
from archdsl.frontend.text import parse_expr

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT_LABEL = re.compile(r"[0-9]+\Z")
_NON_FINITE = re.compile(r"[-+]?\.(inf|Inf|INF|nan|NaN|NAN)\Z")
_NULL = re.compile(r"(~|null|Null|NULL)\Z")

#: libyaml's parser where PyYAML was built with it (ten times faster, the same events and marks), else
#: PyYAML's own; both safe loaders: composing builds nodes, never Python objects
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: sections whose YAML form is ``keyword: {label: body}``, by where they may stand
LABELLED_TOP = ("block",)
LABELLED_NESTED = ("layer", "stage", "tower")


def _mark_span(path: str, node: yaml.Node) -> Span:
    s, e = node.start_mark, node.end_mark
    return Span(path, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


def _join(a: Span | None, b: Span) -> Span:
    if a is None:
        return b
    return Span(a.file, a.line, a.col, b.end_line, b.end_col)


def _content_end(entries: tuple[S.Entry, ...], node: yaml.Node, path: str) -> Span:
    """Where a block collection's content ends: its last entry (PyYAML's end mark is the next key)."""
    spans = [e.span for e in entries if e.span is not None]
    if spans:
        return max(spans, key=lambda x: (x.end_line, x.end_col))
    return _mark_span(path, node)


def _event_span(path: str, ev: yaml.Event) -> Span:
    s, e = ev.start_mark, ev.end_mark
    return Span(path, s.line + 1, s.column + 1, e.line + 1, max(e.column + 1, s.column + 2))


def _has_kind(node: yaml.Node) -> bool:
    return isinstance(node, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value == "kind" for k, _ in node.value
    )


class _Convert:
    def __init__(self, path: str) -> None:
        self.path = path
        self.diags: list[Diagnostic] = []

    def err(self, node: yaml.Node, message: str, help: str | None = None, code: str = "E002") -> None:
        self.diags.append(Diagnostic(code, message, _mark_span(self.path, node), help))

    def ident(self, node: yaml.Node, what: str, allow_int: bool = False) -> S.Ident | None:
        ok = isinstance(node, yaml.ScalarNode) and (
            _IDENT.match(str(node.value)) or (allow_int and _INT_LABEL.match(str(node.value)))
        )
        if not ok:
            shown = repr(node.value) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            self.err(node, f"{what} must be a name, found {shown}", "names are letters, digits and _")
            return None
        return S.Ident(node.value, _mark_span(self.path, node))

    def text(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
            self.err(node, f"{what} must be a path", 'e.g. extends: "base.arch"')
            return None
        return str(node.value)

    # -- values ----------------------------------------------------------------------------------

    def expr(self, node: yaml.Node) -> S.Expr | None:
        if isinstance(node, yaml.MappingNode):
            if not _has_kind(node):
                self.err(node, "a mapping here needs a `kind`", "e.g. {kind: layernorm, eps: 1e-5}")
                return None
            return self.call(node)
        if isinstance(node, yaml.SequenceNode):
            items = [self.expr(v) for v in node.value]
            if any(i is None for i in items):
                return None
            return S.List(tuple(items), _mark_span(self.path, node))  # type: ignore[arg-type]
        assert isinstance(node, yaml.ScalarNode)
        text = str(node.value)
        plain = not node.style  # PyYAML says None for a plain scalar, libyaml ""
        if text.strip() == "" or (plain and _NULL.match(text)):
            self.err(node, "empty value", "give a value, e.g. `eps: 1e-5`; null is not a value in a spec")
            return None
        if plain and _NON_FINITE.match(text):
            self.err(node, f"non-finite number `{text}`", "sizes and rates in a spec are finite numbers")
            return None
        m = node.start_mark
        col = m.column + 1 + (1 if node.style in ("'", '"') else 0)
        try:
            return parse_expr(text, self.path, m.line + 1, col)
        except SpecError as e:
            self.diags.extend(e.diagnostics)
            return None

    def pairs(self, node: yaml.MappingNode, allow_int: bool = False) -> list[tuple[S.Ident, yaml.Node]]:
        seen: dict[str, S.Ident] = {}
        out: list[tuple[S.Ident, yaml.Node]] = []
        for k, v in node.value:
            key = self.ident(k, "a key", allow_int)
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

    # -- entries ---------------------------------------------------------------------------------

    def entries(self, node: yaml.MappingNode, top: bool) -> tuple[S.Entry, ...]:
        out: list[S.Entry] = []
        labelled = LABELLED_TOP if top else LABELLED_NESTED
        for key, v in self.pairs(node):
            span = _join(key.span, _mark_span(self.path, v))
            if top and key.name == "extends":
                path = self.text(v, "`extends`")
                if path is not None:
                    out.append(S.Extends(path, span))
            elif top and key.name == "import":
                imports = self.imports(v)
                if imports:  # the group's first entry starts at its key, as in the text form
                    imports[0] = S.Import(imports[0].names, imports[0].path, _join(key.span, imports[0].span))
                out.extend(imports)
            elif key.name in labelled and isinstance(v, yaml.MappingNode) and not _has_kind(v):
                for i, (label, body) in enumerate(self.pairs(v, allow_int=True)):
                    if not isinstance(body, yaml.MappingNode):
                        self.err(body, f"`{key.name} {label.name}` must be a mapping of its entries")
                        continue
                    body_entries = self.entries(body, top=False)
                    s = _join(key.span if i == 0 else label.span, _content_end(body_entries, body, self.path))
                    out.append(S.Section(key, label, body_entries, s))
            elif key.name == "flow" and isinstance(v, yaml.SequenceNode):
                stmts = self.statements(v)
                out.append(S.Section(key, None, stmts, _join(key.span, _content_end(stmts, v, self.path))))
            elif isinstance(v, yaml.MappingNode) and not _has_kind(v):
                out.append(self.section(key, v, span))
            else:
                value = self.expr(v)
                if value is not None:
                    out.append(S.Attr(key, value, span))
        return tuple(out)

    def statements(self, node: yaml.SequenceNode) -> tuple[S.Entry, ...]:
        """A flow as a list of one-key mappings, ``- x: x + attn(ln_1(x))``, so a name can be rebound."""
        out: list[S.Entry] = []
        for item in node.value:
            if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
                self.err(item, "a flow statement is a one-key mapping", "e.g. - x: x + attn(ln_1(x))")
                continue
            [(key, value)] = self.pairs(item) or [(None, None)]
            if key is None:
                continue
            expr = self.expr(value)
            if expr is not None:
                out.append(S.Attr(key, expr, _join(key.span, _mark_span(self.path, value))))
        return tuple(out)

    def section(self, keyword: S.Ident, node: yaml.MappingNode, span: Span) -> S.Section:
        label: S.Ident | None = None
        rest = []
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == "name":
                label = self.ident(v, "a `name`")
            else:
                rest.append((k, v))
        body = yaml.MappingNode(node.tag, rest, node.start_mark, node.end_mark)
        entries = self.entries(body, top=False)
        return S.Section(keyword, label, entries, _join(span, _content_end(entries, node, self.path)))

    def imports(self, node: yaml.Node) -> list[S.Import]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out = []
        for item in items:
            if not isinstance(item, yaml.MappingNode):
                self.err(
                    item, "an import is a mapping", "e.g. import: [{from: blocks.arch, blocks: [dense]}]"
                )
                continue
            fields = dict((k.name, v) for k, v in self.pairs(item))
            unknown = set(fields) - {"from", "blocks"}
            if unknown or "from" not in fields or "blocks" not in fields:
                self.err(
                    item,
                    "an import has exactly `from` and `blocks`",
                    "e.g. {from: blocks.arch, blocks: [dense]}",
                )
                continue
            path = self.text(fields["from"], "`from`")
            names_node = fields["blocks"]
            names_nodes = names_node.value if isinstance(names_node, yaml.SequenceNode) else [names_node]
            names = [self.ident(n, "a block name") for n in names_nodes]
            if path is None or any(n is None for n in names):
                continue
            out.append(S.Import(tuple(names), path, _mark_span(self.path, item)))  # type: ignore[arg-type]
        return out


def _check_events(text: str, path: str) -> list[Diagnostic]:
    """Refuse tags, anchors and aliases, and bound nesting, before anything is composed."""
    diags: list[Diagnostic] = []
    depth = 0
    for ev in yaml.parse(text, Loader=LOADER):
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


def yaml_comments(text: str) -> tuple[S.Comment, ...]:
    """Comments in YAML source (PyYAML drops them): a ``#`` at the start of a line or after a space,
    outside quotes."""
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        quote: str | None = None
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"" and (i == 0 or line[i - 1] in " \t:[{,"):
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
                out.append(S.Comment(lineno, i + 1, line[i:].rstrip()))
                break
    return tuple(out)


def parse_yaml(text: str, path: str) -> S.File:
    try:
        diags = _check_events(text, path)
        if diags:
            raise SpecError(diags)
        root = yaml.compose(text, Loader=LOADER)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(path, mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2) if mark else None
        problem = e.problem or e.context or "malformed YAML"
        if "nesting depth" in problem:  # libyaml's own bound (1,000) met before ours could count
            problem = f"nesting deeper than {MAX_DEPTH} levels"
        hint = None
        lines = text.split("\n")
        at = lines[mark.line][mark.column : mark.column + 1] if mark and mark.line < len(lines) else ""
        if "'\\t'" in problem or at == "\t":  # PyYAML names the tab; libyaml only points at it
            problem = problem.replace("found character that", "found a tab, which")
            hint = "YAML indents (and separates keys from values) with spaces, not tabs: replace the tab"
        raise SpecError([Diagnostic("E002", f"YAML syntax error: {problem}", span, hint)]) from None
    except yaml.YAMLError as e:
        raise SpecError([Diagnostic("E002", f"YAML error: {e}", Span(path, 1, 1, 1, 2))]) from None
    if root is None:
        return S.File(path, (), yaml_comments(text))
    conv = _Convert(path)
    if not isinstance(root, yaml.MappingNode):
        conv.err(root, "a spec must be a mapping at the top level", "start with `model:` and constants")
        raise SpecError(conv.diags)
    entries = conv.entries(root, top=True)
    if conv.diags:
        raise SpecError(conv.diags)
    return S.File(path, entries, yaml_comments(text))
