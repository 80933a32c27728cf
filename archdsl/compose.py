"""Composition on the surface tree: ``extends``, ``import`` and dotted ``--set`` overrides.

* ``extends "base.arch"``: the base spec's entries, with this file's entries laid over them —
  attributes by name, sections by keyword and label, recursively (a ``flow`` section and a component
  value are replaced whole). Constants overridden in the child keep the base's order, so values the
  base derives from them follow.
* ``import a, b from "blocks.arch"``: those block definitions (and the blocks they build on) and that
  file's constants, under this file's own entries (so this file's constants win).
* Paths are relative to the file that names them and may not leave the folder of the spec being
  loaded; a cycle is reported with its chain (``a.arch → b.arch → a.arch``).
* ``--set model.block.attention.heads=8`` replaces (or adds) one value deep in the tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from archdsl import syntax as S
from archdsl.diagnostics import Diagnostic, Span, SpecError, did_you_mean
from archdsl.frontend import TEXT_SUFFIXES, YAML_SUFFIXES, SourceError, count_tokens, too_many_tokens
from archdsl.limits import MAX_FILES, MAX_PATH_LENGTH, MAX_TOKENS

Reader = Callable[[str], str]


def _key(e: S.Entry) -> tuple[str, ...]:
    if isinstance(e, S.Attr):
        return ("attr", e.key.name)
    if isinstance(e, S.Section):
        if e.keyword.name == "model":  # a spec has one model; a child's model refines the base's
            return ("section", "model")
        return ("section", e.keyword.name, e.label.name if e.label else "")
    return ("other", repr(e))


def merge(base: tuple[S.Entry, ...], child: tuple[S.Entry, ...]) -> tuple[S.Entry, ...]:
    out = list(base)
    index = {_key(e): i for i, e in enumerate(out)}
    for e in child:
        k = _key(e)
        i = index.get(k)
        if i is None:
            index[k] = len(out)
            out.append(e)
            continue
        old = out[i]
        if isinstance(e, S.Section) and isinstance(old, S.Section) and e.keyword.name != "flow":
            out[i] = S.Section(e.keyword, e.label or old.label, merge(old.entries, e.entries), e.span)
        else:
            out[i] = e
    return tuple(out)


class Composer:
    def __init__(self, root: Path, read: Reader, parse: Callable[[str, str], S.File]) -> None:
        self.root = root.resolve()
        self.read = read
        self.parse = parse
        self.diags: list[Diagnostic] = []
        self.loaded: dict[Path, S.File] = {}
        self.texts: dict[str, str] = {}
        self.tokens = 0

    def error(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, help))

    def resolve(self, here: str, rel: str, span: Span | None) -> Path | None:
        problem = _path_problem(rel)
        if problem is not None:
            self.error("E017", f"`extends`/`import` path {problem}", span, help=_PATH_HELP)
            return None
        target = (Path(here).parent / rel).resolve()  # symlinks followed: the target must be inside too
        if not target.is_relative_to(self.root):
            self.error(
                "E017",
                f"`{rel}` is outside the spec's folder ({self.shown(self.root)})",
                span,
                help="specs may only extend and import files in their own folder tree",
            )
            return None
        return target

    def load(self, path: Path, chain: tuple[Path, ...], span: Span | None) -> S.File | None:
        if path in chain:
            names = " → ".join(p.name for p in (*chain[chain.index(path) :], path))
            self.error(
                "E018", f"extends/import cycle: {names}", span, help="a spec cannot extend or import itself"
            )
            return None
        if path in self.loaded:
            return self.loaded[path]
        if len(self.texts) >= MAX_FILES:
            self.error("E017", f"more than {MAX_FILES} spec files in one composition", span)
            return None
        shown = self.shown(path)
        try:
            text = self.read(str(path))
        except SourceError as e:
            self.error(
                "E017",
                e.diagnostics[0].message.replace(f"`{path}`", f"`{shown}`"),
                span,
                help="paths are relative to the file that names them",
            )
            return None
        except SpecError as e:  # its bytes are not a spec's (not UTF-8, too large)
            self.diags.extend(_moved(d, str(path), shown) for d in e.diagnostics)
            return None
        self.texts[shown] = text
        file = self.parse_counted(text, shown, span)
        if file is None:
            return None
        composed = self.compose(file, (*chain, path))
        self.loaded[path] = composed
        return composed

    def parse_counted(self, text: str, shown: str, span: Span | None) -> S.File | None:
        """Parse one file of the composition, within the composition's budget of tokens."""
        self.tokens += count_tokens(text, shown)
        if self.tokens > MAX_TOKENS:
            self.diags.append(too_many_tokens(shown, self.tokens, span))
            return None
        try:
            return self.parse(text, shown)
        except SpecError as e:
            self.diags.extend(e.diagnostics)
            return None

    def shown(self, path: Path) -> str:
        """The path as diagnostics show it: relative to the working directory when possible."""
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def duplicates(self, entries: tuple[S.Entry, ...], where: str) -> None:
        """Within one file, a key given twice is an error (merging would silently keep the last)."""
        seen: dict[tuple[str, ...], S.Entry] = {}
        for e in entries:
            if isinstance(e, S.Extends | S.Import):
                continue
            k = _key(e)
            if k in seen:
                first = seen[k].span
                name = e.key.name if isinstance(e, S.Attr) else " ".join(filter(None, k[1:]))
                span = e.key.span if isinstance(e, S.Attr) else e.keyword.span  # type: ignore[union-attr]
                what = "constant" if where == "top" and isinstance(e, S.Attr) else "entry"
                self.error(
                    "E010",
                    f"{what} `{name}` is defined twice",
                    span,
                    help=f"the first is at line {first.line}; keep one" if first else "keep one",
                )
            else:
                seen[k] = e
            if isinstance(e, S.Section) and e.keyword.name != "flow":
                self.duplicates(e.entries, "section")

    def compose(self, file: S.File, chain: tuple[Path, ...]) -> S.File:
        self.duplicates(file.entries, "top")
        base: tuple[S.Entry, ...] = ()
        own: list[S.Entry] = []
        for e in file.entries:
            if isinstance(e, S.Extends):
                target = self.resolve(file.path, e.path, e.span)
                parent = self.load(target, chain, e.span) if target else None
                if parent is not None:
                    base = merge(base, parent.entries)
            elif isinstance(e, S.Import):
                target = self.resolve(file.path, e.path, e.span)
                source = self.load(target, chain, e.span) if target else None
                if source is not None:
                    base = merge(base, self.imported(source, e))
            else:
                own.append(e)
        return S.File(file.path, merge(base, tuple(own)), file.comments)

    def imported(self, source: S.File, imp: S.Import) -> tuple[S.Entry, ...]:
        blocks = {
            e.label.name: e
            for e in source.entries
            if isinstance(e, S.Section) and e.keyword.name == "block" and e.label is not None
        }
        wanted: list[str] = []
        for ident in imp.names:
            if ident.name not in blocks:
                self.error(
                    "E003",
                    f"`{imp.path}` defines no block `{ident.name}`",
                    ident.span,
                    help=did_you_mean(ident.name, sorted(blocks)),
                )
            else:
                wanted.append(ident.name)
        # blocks the imported ones build on (`base = other`) come along
        i = 0
        while i < len(wanted):
            for entry in blocks[wanted[i]].entries:
                if isinstance(entry, S.Attr) and entry.key.name == "base" and isinstance(entry.value, S.Name):
                    if entry.value.name in blocks and entry.value.name not in wanted:
                        wanted.append(entry.value.name)
            i += 1
        consts = tuple(e for e in source.entries if isinstance(e, S.Attr))
        return consts + tuple(blocks[n] for n in blocks if n in wanted)


def compose_file(
    path: str, read: Reader, parse: Callable[[str, str], S.File]
) -> tuple[S.File, dict[str, str]]:
    """Load ``path`` with everything it extends and imports; return the merged file and the texts read.
    Raises :class:`~archdsl.frontend.SourceError` when ``path`` itself cannot be read, and
    :class:`SpecError` (carrying the texts read, to render its diagnostics) for errors in the files."""
    p = Path(path)
    c = Composer(p.parent if str(p.parent) else Path("."), read, parse)
    text = read(path)
    c.texts[path] = text
    file = c.parse_counted(text, path, None)
    composed = c.compose(file, (p.resolve(),)) if file is not None else None
    if c.diags or composed is None:
        raise SpecError(c.diags, c.texts)
    return composed, c.texts


def _path_problem(rel: str) -> str | None:
    """What makes an ``extends``/``import`` path unusable before the file system is asked."""
    if not rel.strip():
        return "is empty"
    if len(rel) > MAX_PATH_LENGTH:
        return f"is longer than {MAX_PATH_LENGTH} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in rel):
        return "holds a control character"
    if Path(rel).suffix.lower() not in (*TEXT_SUFFIXES, *YAML_SUFFIXES):
        return f"`{rel}` does not name a spec file (.arch, .yaml or .yml)"
    return None


_PATH_HELP = 'name a spec file in the spec\'s folder tree, e.g. extends "base.arch"'


def _moved(d: Diagnostic, path: str, shown: str) -> Diagnostic:
    """A diagnostic about ``path`` as the composition shows that file."""
    span = d.span
    if span is not None and span.file == path:
        span = Span(shown, span.line, span.col, span.end_line, span.end_col)
    return Diagnostic(d.code, d.message, span, d.help, d.severity, d.notes)


# ---------------------------------------------------------------------------------------------------
# Dotted overrides


def set_path(file: S.File, dotted: str, value: S.Expr) -> S.File:
    """Replace (or add) the value at ``model.block.attention.heads`` and the like."""
    segs = dotted.split(".")
    entries = _set(file.entries, segs, value, dotted, top=True)
    return replace(file, entries=entries)


def _fail(
    dotted: str, message: str, value: S.Expr, word: str = "", choices: list[str] | None = None
) -> SpecError:
    help = did_you_mean(word, choices) if choices else None
    return SpecError([Diagnostic("E015", f"--set {dotted}: {message}", value.span, help)])


def _set(
    entries: tuple[S.Entry, ...], segs: list[str], value: S.Expr, dotted: str, top: bool = False
) -> tuple[S.Entry, ...]:
    head, rest = segs[0], segs[1:]
    out = list(entries)
    names: list[str] = []
    for i, e in enumerate(out):
        if isinstance(e, S.Attr):
            names.append(e.key.name)
            if e.key.name == head:
                if not rest:
                    out[i] = S.Attr(e.key, value, e.span)
                elif isinstance(e.value, S.Call):
                    out[i] = S.Attr(e.key, _set_arg(e.value, rest, value, dotted), e.span)
                else:
                    raise _fail(dotted, f"`{head}` is a value, not a component", value)
                return tuple(out)
        elif isinstance(e, S.Section):
            label = e.label.name if e.label else None
            names.append(e.keyword.name if label is None or e.keyword.name == "model" else label)
            if e.keyword.name == head and (label is None or e.keyword.name == "model") and rest:
                out[i] = replace(e, entries=_set(e.entries, rest, value, dotted))
                return tuple(out)
            if e.keyword.name == head and label is not None and rest and rest[0] == label and rest[1:]:
                out[i] = replace(e, entries=_set(e.entries, rest[1:], value, dotted))
                return tuple(out)
            if top and label == head and rest:  # block definitions by name: --set dense.ffn.hidden=...
                out[i] = replace(e, entries=_set(e.entries, rest, value, dotted))
                return tuple(out)
    if not rest and not top:
        out.append(S.Attr(S.Ident(head, value.span), value, value.span))
        return tuple(out)
    labels = [
        e.label.name
        for e in entries
        if isinstance(e, S.Section) and e.keyword.name == head and e.label is not None and head != "model"
    ]
    if labels and rest:  # `tower audio` where the model has towers `vision` and `text`
        raise _fail(dotted, f"no `{head} {rest[0]}` here", value, rest[0], labels)
    raise _fail(dotted, f"no `{head}` here", value, head, names)


def _set_arg(call: S.Call, segs: list[str], value: S.Expr, dotted: str) -> S.Call:
    if len(segs) != 1:
        raise _fail(dotted, f"`{segs[0]}` is a parameter; nothing is nested in it", value)
    args = list(call.args)
    for i, a in enumerate(args):
        if a.key is not None and a.key.name == segs[0]:
            args[i] = S.Arg(a.key, value, a.span)
            return replace(call, args=tuple(args))
    args.append(S.Arg(S.Ident(segs[0], value.span), value, value.span))
    return replace(call, args=tuple(args))


def apply_overrides(file: S.File, dotted: Mapping[str, S.Expr]) -> S.File:
    diags: list[Diagnostic] = []
    for name, expr in dotted.items():
        try:
            file = set_path(file, name, expr)
        except SpecError as e:
            diags.extend(e.diagnostics)
    if diags:
        raise SpecError(diags)
    return file
