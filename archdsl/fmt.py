"""The formatter: a spec's surface tree printed in canonical text or YAML form, comments kept.

Both printers work from the surface tree (before composition), so ``extends`` and ``import`` stay as
written. Comments are attached to entries by line: the ones above an entry lead it, one at the end of
its line trails it, ones before a section's close end the section; single blank lines between entries
are kept. Canonical layout:

* ``extends`` and ``import`` first; labelled sections of one keyword (``block NAME``, ``layer N``,
  ``tower NAME``) next to each other, where the first of them stands (YAML groups them under one key);
* two-space indentation; in each section, the ``=`` of its attributes aligned;
* expressions with single spaces around operators and only the parentheses precedence needs; number
  literals as written.

Text -> YAML -> text returns the canonical text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from archdsl import syntax as S

INDENT = "  "
WIDTH = 100
LABELLED = ("block", "layer", "stage", "tower")


# ---------------------------------------------------------------------------------------------------
# Comment and blank-line attachment


@dataclass
class Notes:
    lead: list[str] = field(default_factory=list)
    trail: str | None = None  # on the entry's (header) line
    blank_before: bool = False
    dangling: list[str] = field(default_factory=list)  # a section's comments after its last entry


def _lines(e: S.Entry) -> tuple[int, int]:
    s = e.span
    if s is None:
        return (0, 0)
    return (s.line, s.end_line)


def _with_blanks(comments: list[S.Comment], until: int) -> list[str]:
    """Comment lines, with "" where the source had blank lines between them (or before ``until``)."""
    out: list[str] = []
    for i, c in enumerate(comments):
        out.append(c.text)
        nxt = comments[i + 1].line if i + 1 < len(comments) else until
        if nxt - c.line > 1:
            out.append("")
    return out


class Attacher:
    def __init__(self, comments: tuple[S.Comment, ...]) -> None:
        self.comments = sorted(comments, key=lambda c: (c.line, c.col))
        self.used: set[int] = set()
        self.notes: dict[int, Notes] = {}

    def take(self, lo: int, hi: int) -> list[S.Comment]:
        """The unused comments on lines ``lo`` to ``hi`` (inclusive)."""
        out = []
        for i, c in enumerate(self.comments):
            if i not in self.used and lo <= c.line <= hi:
                self.used.add(i)
                out.append(c)
        return out

    def container(self, entries: tuple[S.Entry, ...], after: int, until: int = 1 << 30) -> int:
        """Attach comments to ``entries`` (which follow line ``after`` and end before ``until``);
        return the last line used."""
        prev = after
        ordered = sorted(entries, key=lambda x: _lines(x)[0])
        for k, e in enumerate(ordered):
            start, end = _lines(e)
            nxt = _lines(ordered[k + 1])[0] if k + 1 < len(ordered) else until
            n = self.notes.setdefault(id(e), Notes())
            lead = self.take(prev + 1, start - 1)
            first = min([start, *(c.line for c in lead)])
            n.blank_before = prev > 0 and first - prev > 1
            n.lead = _with_blanks(lead, start)
            if isinstance(e, S.Section):
                trail = self.take(start, start)
                last = self.container(e.entries, start, end + 1)
                n.dangling = [c.text for c in self.take(last + 1, end)]
                anchor = e.label.span if e.label and e.label.span else e.keyword.span
                col = anchor.col if anchor else 1
                # YAML: comments indented under the section after its last entry still belong to it
                deeper = [c for c in self.peek(end + 1, nxt - 1) if c.col > col]
                n.dangling += [c.text for c in self.take_these(deeper)]
                end = max([end, *(c.line for c in deeper)])
            else:
                n.lead += [c.text for c in self.take(start, end - 1)]  # inside a multi-line value
                trail = self.take(end, end)
            n.trail = trail[0].text if trail else None
            prev = max(prev, end)
        return prev

    def peek(self, lo: int, hi: int) -> list[S.Comment]:
        return [c for i, c in enumerate(self.comments) if i not in self.used and lo <= c.line <= hi]

    def take_these(self, wanted: list[S.Comment]) -> list[S.Comment]:
        for i, c in enumerate(self.comments):
            if c in wanted:
                self.used.add(i)
        return wanted

    def rest(self) -> list[S.Comment]:
        return self.take(0, 1 << 30)


def attach(file: S.File) -> tuple[dict[int, Notes], list[str], bool]:
    """Notes per entry (by id), the file's trailing comments, and whether a blank line precedes them."""
    a = Attacher(file.comments)
    last = a.container(file.entries, 0)
    tail = a.rest()
    blank = bool(tail) and bool(file.entries) and tail[0].line - last > 1
    return a.notes, _with_blanks(tail, tail[-1].line + 1 if tail else 0), blank


# ---------------------------------------------------------------------------------------------------
# Canonical order


def canonical_order(entries: tuple[S.Entry, ...], top: bool) -> list[S.Entry]:
    """``extends``/``import`` first (top level); labelled sections of one keyword kept together."""
    head = [e for e in entries if isinstance(e, S.Extends)] + [e for e in entries if isinstance(e, S.Import)]
    out: list[S.Entry] = []
    placed: set[str] = set()
    for e in entries:
        if isinstance(e, S.Extends | S.Import):
            continue
        if isinstance(e, S.Section) and e.label is not None and e.keyword.name in LABELLED:
            kw = e.keyword.name
            if kw in placed:
                continue
            placed.add(kw)
            out.extend(
                x
                for x in entries
                if isinstance(x, S.Section) and x.keyword.name == kw and x.label is not None
            )
            continue
        out.append(e)
    return head + out


# ---------------------------------------------------------------------------------------------------
# Text form


class TextPrinter:
    def __init__(self, notes: dict[int, Notes]) -> None:
        self.notes = notes
        self.out: list[str] = []

    def line(self, level: int, text: str) -> None:
        self.out.append((INDENT * level + text).rstrip() if text else "")

    def entries(self, entries: tuple[S.Entry, ...], level: int, top: bool = False) -> None:
        ordered = canonical_order(entries, top)
        keys = [e.key.name for e in ordered if isinstance(e, S.Attr)]
        width = max((len(k) for k in keys), default=0)
        for i, e in enumerate(ordered):
            n = self.notes.get(id(e), Notes())
            if i and n.blank_before:
                self.out.append("")
            for c in n.lead:
                self.line(level, c)
            trail = f"  {n.trail}" if n.trail else ""
            if isinstance(e, S.Attr):
                self.attr(e, level, width, trail)
            elif isinstance(e, S.Section):
                head = e.keyword.name + (f" {e.label.name}" if e.label else "")
                if not e.entries and not n.dangling:
                    self.line(level, f"{head} {{}}{trail}")
                    continue
                self.line(level, f"{head} {{{trail}")
                self.entries(e.entries, level + 1)
                for c in n.dangling:
                    self.line(level + 1, c)
                self.line(level, "}")
            elif isinstance(e, S.Extends):
                self.line(level, f'extends "{e.path}"{trail}')
            else:
                assert isinstance(e, S.Import)
                names = ", ".join(i.name for i in e.names)
                self.line(level, f'import {names} from "{e.path}"{trail}')

    def attr(self, e: S.Attr, level: int, width: int, trail: str) -> None:
        key = e.key.name.ljust(width)
        text = S.expr_text(e.value)
        if (
            isinstance(e.value, S.Call)
            and len(INDENT * level) + len(key) + 3 + len(text) > WIDTH
            and e.value.args
        ):
            self.line(level, f"{key} = {e.value.func.name}({trail}")
            for a in e.value.args:
                arg = f"{a.key.name} = {S.expr_text(a.value)}" if a.key else S.expr_text(a.value)
                self.line(level + 2, arg + ",")
            self.line(level, ")")
            return
        self.line(level, f"{key} = {text}{trail}")


def _print(file: S.File, printer: type[TextPrinter]) -> str:
    notes, tail, blank = attach(file)
    p = printer(notes)
    p.entries(file.entries, 0, top=True)
    if tail:
        if blank and p.out:
            p.out.append("")
        p.out.extend(tail)
    return "\n".join(p.out).strip("\n") + "\n"


def to_text(file: S.File) -> str:
    return _print(file, TextPrinter)


# ---------------------------------------------------------------------------------------------------
# YAML form

_PLAIN_BAD_START = set("-?:,[]{}#&*!|>'\"%@`")
_NUMBERISH = re.compile(r"[-+]?[0-9.]")


def yaml_scalar(text: str, flow: bool = False) -> str:
    """``text`` as a YAML scalar that reads back as the same text: plain where YAML allows it."""
    plain = (
        text
        and text == text.strip()
        and (text[0] not in _PLAIN_BAD_START or (text[0] == "-" and len(text) > 1 and text[1] != " "))
        and ": " not in text
        and " #" not in text
        and not text.endswith(":")
        and not (flow and any(ch in text for ch in ",[]{}"))
    )
    if plain:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _yaml_call(c: S.Call) -> str:
    parts = [f"kind: {c.func.name}"]
    for a in c.args:
        assert a.key is not None
        parts.append(f"{a.key.name}: {_yaml_value(a.value, flow=True)}")
    return "{" + ", ".join(parts) + "}"


def _yaml_value(e: S.Expr, flow: bool = False) -> str:
    if isinstance(e, S.Call) and e.func.name not in ("min", "max") and all(a.key is not None for a in e.args):
        return _yaml_call(e)
    if isinstance(e, S.List) and all(not isinstance(x, S.List) for x in e.items):
        return "[" + ", ".join(_yaml_value(x, flow=True) for x in e.items) + "]"
    return yaml_scalar(S.expr_text(e), flow)


class YamlPrinter(TextPrinter):
    def entries(self, entries: tuple[S.Entry, ...], level: int, top: bool = False) -> None:
        ordered = canonical_order(entries, top)
        i = 0
        first = True
        while i < len(ordered):
            e = ordered[i]
            n = self.notes.get(id(e), Notes())
            if not first and n.blank_before:
                self.out.append("")
            first = False
            trail = f"  {n.trail}" if n.trail else ""
            if isinstance(e, S.Extends):
                for c in n.lead:
                    self.line(level, c)
                self.line(level, f"extends: {yaml_scalar(e.path)}{trail}")
            elif isinstance(e, S.Import):
                group = [x for x in ordered[i:] if isinstance(x, S.Import)]
                for c in n.lead:
                    self.line(level, c)
                self.line(level, "import:")
                for j, imp in enumerate(group):
                    m = self.notes.get(id(imp), Notes())
                    if j:
                        for c in m.lead:
                            self.line(level + 1, c)
                    t = f"  {m.trail}" if m.trail else ""
                    names = ", ".join(x.name for x in imp.names)
                    self.line(
                        level + 1, f"- {{from: {yaml_scalar(imp.path, flow=True)}, blocks: [{names}]}}{t}"
                    )
                i += len(group)
                continue
            elif isinstance(e, S.Section) and e.label is not None and e.keyword.name in LABELLED:
                group = [
                    x for x in ordered[i:] if isinstance(x, S.Section) and x.keyword.name == e.keyword.name
                ]
                for c in n.lead:
                    self.line(level, c)
                self.line(level, f"{e.keyword.name}:")
                for j, sec in enumerate(group):
                    m = self.notes.get(id(sec), Notes())
                    if j and m.blank_before:
                        self.out.append("")
                    if j:
                        for c in m.lead:
                            self.line(level + 1, c)
                    self.section(sec, level + 1, sec.label.name, m)  # type: ignore[union-attr]
                i += len(group)
                continue
            elif isinstance(e, S.Section):
                for c in n.lead:
                    self.line(level, c)
                self.section(e, level, e.keyword.name, n)
            else:
                assert isinstance(e, S.Attr)
                for c in n.lead:
                    self.line(level, c)
                self.line(level, f"{e.key.name}: {_yaml_value(e.value)}{trail}")
            i += 1

    def section(self, e: S.Section, level: int, key: str, n: Notes) -> None:
        trail = f"  {n.trail}" if n.trail else ""
        if e.keyword.name == "flow":
            self.line(level, f"{key}:{trail}")
            for st in e.entries:
                m = self.notes.get(id(st), Notes())
                for c in m.lead:
                    self.line(level + 1, c)
                t = f"  {m.trail}" if m.trail else ""
                assert isinstance(st, S.Attr)
                self.line(level + 1, f"- {st.key.name}: {_yaml_value(st.value)}{t}")
            for c in n.dangling:
                self.line(level + 1, c)
            return
        if not e.entries and e.label is None and not n.dangling:
            self.line(level, f"{key}: {{}}{trail}")
            return
        self.line(level, f"{key}:{trail}")
        if e.label is not None and e.keyword.name not in LABELLED:
            self.line(level + 1, f"name: {e.label.name}")
        self.entries(e.entries, level + 1)
        for c in n.dangling:
            self.line(level + 1, c)


def to_yaml(file: S.File) -> str:
    return _print(file, YamlPrinter)
