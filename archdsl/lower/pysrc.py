"""Python source from untrusted text: literals that always parse back to the text, and the check every
emitted file passes before archdsl hands it out.

Specs are shared, and the file ``archdsl compile`` writes is then imported by whoever compiles the spec.
Two rules keep a spec from running code there:

1. Text reaches emitted source only as a literal made here (:func:`py_str`, :func:`py_docstring`,
   :func:`py_number`), each checked to read back as exactly the text or value it encodes; names reach
   it only after :mod:`archdsl.names` accepted them.
2. :func:`check_source` reads the finished file with :mod:`ast` and refuses it unless every import is
   one of :data:`IMPORTS` and every call is to a name the file itself defines, a builtin of
   :data:`BUILTINS`, or a method — never ``eval``, ``exec``, ``open``, ``__import__``, ``torch.load``
   and the like. ``archdsl.emit_source`` runs it on every file it makes (a failure is an internal
   error: the emitter, not the spec, went wrong).
"""

from __future__ import annotations

import ast
import math

#: modules an emitted file may import
IMPORTS = frozenset(
    (
        "__future__",
        "argparse",
        "dataclasses",
        "math",
        "random",
        "typing",
        "torch",
        "torch.nn",
        "torch.nn.functional",
        "torch.utils.checkpoint",
    )
)
#: builtins an emitted file may call
BUILTINS = frozenset(
    """
    abs all any bool dict divmod enumerate float frozenset int isinstance issubclass iter len list map
    max min next print range reversed round set sorted str sum super tuple type zip
    ArithmeticError AssertionError IndexError KeyError NotImplementedError RuntimeError TypeError ValueError
    """.split()
)
#: builtins an emitted file may call only as ``getattr(obj, "constant")``
CONSTANT_ATTRIBUTE_BUILTINS = frozenset(("getattr", "hasattr"))
#: names an emitted file may not even mention: they reach code execution, files or the interpreter
FORBIDDEN_NAMES = frozenset(
    """
    eval exec compile __import__ open input breakpoint globals locals vars setattr delattr memoryview
    __builtins__ __loader__ __spec__ exit quit help
    """.split()
)
#: attributes an emitted file may not use, whatever they belong to
FORBIDDEN_ATTRIBUTES = frozenset(
    """
    system popen spawn exec eval load loads hub package jit_load __import__ __builtins__ __globals__
    __subclasses__ __reduce__ __reduce_ex__ __getattribute__ __code__ __class__ __dict__ __bases__
    __mro__ __closure__ __func__ __self__ f_globals f_locals f_back gi_frame co_code
    """.split()
)


class UnsafeSourceError(AssertionError):
    """An emitted file failed :func:`check_source` (an archdsl bug, never the spec's fault)."""


def py_str(text: str) -> str:
    """A string literal for ``text`` (``repr``, checked)."""
    lit = repr(text)
    if ast.literal_eval(lit) != text:  # pragma: no cover - repr is exact for str
        raise UnsafeSourceError(f"string literal does not read back: {lit}")
    return lit


def py_docstring(text: str) -> str:
    """A triple-quoted literal for ``text`` that reads back as exactly ``text``, whatever it holds:
    backslashes doubled, a quote escaped where it could join others into a closing ``\"\"\"``,
    control, format and non-ASCII characters as escapes. Newlines stay, so it reads as prose."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"' and (i + 1 == len(text) or text[i + 1] == '"'):
            out.append('\\"')
        elif ch == "\n" or (ch.isascii() and ch.isprintable()):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    lit = '"""' + "".join(out) + '"""'
    if ast.literal_eval(lit) != text:  # pragma: no cover - the rules above are exact
        raise UnsafeSourceError("docstring literal does not read back")
    return lit


def py_number(value: object) -> str:
    """A literal for an int, a finite float or a bool (IR values)."""
    if isinstance(value, bool) or isinstance(value, int):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise UnsafeSourceError(f"not a literal number: {value!r}")


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the module binds anywhere: definitions, imports, assignments, arguments, loop and
    comprehension targets."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
    return out


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node


def source_problems(source: str) -> list[str]:
    """What makes ``source`` unsafe to hand out (empty: it is safe): imports outside IMPORTS, calls of
    names neither defined in the file nor allowed builtins, forbidden names and attributes."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"not valid Python: {e}"]
    problems: list[str] = []
    bound = _bound_names(tree)
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            problems += [f"{where}: imports {a.name}" for a in node.names if a.name not in IMPORTS]
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module not in IMPORTS:
                problems.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            problems.append(f"{where}: mentions {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            problems.append(f"{where}: uses the attribute {node.attr}")
        elif isinstance(node, ast.Call):
            problems += _call_problems(node, bound, where)
    return problems


def _call_problems(node: ast.Call, bound: set[str], where: str) -> list[str]:
    func = node.func
    if isinstance(func, ast.Name):
        name = func.id
        if name in CONSTANT_ATTRIBUTE_BUILTINS:
            ok = (
                len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            )
            return [] if ok else [f"{where}: {name} with a computed attribute name"]
        if name in bound or name in BUILTINS:
            return []
        return [f"{where}: calls {name}, which the file does not define"]
    if isinstance(func, ast.Attribute | ast.Subscript):
        root = _root(func)
        if isinstance(root, ast.Name) and root.id not in bound and root.id not in BUILTINS:
            return [f"{where}: calls into {root.id}, which the file does not define"]
        return []  # a method of a call's result: that call is checked on its own
    if isinstance(func, ast.Call):
        return []
    return [f"{where}: calls an expression ({type(func).__name__})"]


def check_source(source: str) -> None:
    """Raise :class:`UnsafeSourceError` unless ``source`` passes :func:`source_problems`."""
    problems = source_problems(source)
    if problems:
        raise UnsafeSourceError("emitted source failed its safety check: " + "; ".join(problems[:5]))
