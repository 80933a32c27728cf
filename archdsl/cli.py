"""Command line: ``archdsl check | report | compile``.

Exit codes (as ruff): 0 clean, 1 spec errors, 2 usage, I/O or internal errors. Data goes to stdout,
diagnostics to stderr. No traceback for bad input; ``--debug`` shows one for internal errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from archdsl.diagnostics import Diagnostic, SourceCache, SpecError, render_all
from archdsl.ir import Spec

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


def _overrides(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name or not value.strip():
            raise _UsageError(f"--set expects NAME=VALUE, got {item!r}")
        out[name] = value.strip()
    return out


def _parser() -> argparse.ArgumentParser:
    from archdsl import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        help="override a constant of the spec (repeatable), e.g. --set n_layers=2",
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")

    p = argparse.ArgumentParser(
        prog="archdsl",
        description="Check, analyse and compile transformer architecture specs.",
    )
    p.add_argument("--version", action="version", version=f"archdsl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", parents=[common], help="validate specs and report every problem")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("--format", choices=("text", "json"), default="text", help="diagnostics format")

    r = sub.add_parser("report", parents=[common], help="parameters and FLOPs, per layer and in total")
    r.add_argument("spec", metavar="SPEC")
    r.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    r.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's context)")
    r.add_argument("--format", choices=("table", "json"), default="table")

    f = sub.add_parser("fmt", help="print specs in canonical form, or convert between text and YAML")
    f.add_argument("specs", nargs="+", metavar="SPEC")
    f.add_argument("--to", choices=("arch", "yaml"), help="convert to this form (default: the file's own)")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="rewrite the files in place")
    g.add_argument("--check", action="store_true", help="exit 1 if any file is not in canonical form")
    f.add_argument("-o", "--output", metavar="OUT", help="write the (single) result to OUT")
    f.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    sub.add_parser("schema", help="print the JSON Schema of the YAML form")

    x = sub.add_parser("explain", help="explain an error code, e.g. archdsl explain E011")
    x.add_argument("code", nargs="?", metavar="CODE")
    x.add_argument("--markdown", action="store_true", help="all codes, as docs/errors.md")

    k = sub.add_parser("compile", parents=[common], help="write a standalone PyTorch file for the spec")
    k.add_argument("spec", metavar="SPEC")
    k.add_argument("-o", "--output", metavar="OUT.py", default="-", help="output file (default: stdout)")
    return p


def _report_diags(diags: list[Diagnostic], cache: SourceCache, fmt: str = "text") -> None:
    print(render_all(diags, cache, "json" if fmt == "json" else "text"), file=sys.stderr)


def _load(path: str, sets: dict[str, str]) -> tuple[Spec | None, tuple[list[Diagnostic], SourceCache] | None]:
    """Load a spec; on spec errors return its diagnostics with the sources to render them."""
    from archdsl.pipeline import load

    try:
        return load(path, sets), None
    except SpecError as e:
        return None, (e.diagnostics, SourceCache({f"<--set {k}>": f"--set {k}={v}" for k, v in sets.items()}))


def cmd_check(args: argparse.Namespace) -> int:
    from archdsl.pipeline import check, sources

    sets = _overrides(args.set)
    status = EXIT_OK
    collected: list[dict[str, object]] = []
    for path in args.specs:
        spec, failed = _load(path, sets)
        if failed:
            diags, cache = failed
        else:
            diags, cache = check(spec), sources(spec)
        if args.format == "json":
            collected.extend(d.to_dict() for d in diags)
        elif diags:
            _report_diags(diags, cache)
        else:
            m = spec.model
            print(f"{path}: ok ({m.name}, {m.type}, {m.n_layers} blocks)")
        if diags:
            status = EXIT_SPEC
    if args.format == "json":
        print(json.dumps(collected, indent=2))
    return status


def cmd_report(args: argparse.Namespace) -> int:
    from archdsl.cost.render import table
    from archdsl.pipeline import analyze, sources

    if args.batch < 1 or (args.seq is not None and args.seq < 1):
        raise _UsageError("--batch and --seq must be positive integers")
    spec, failed = _load(args.spec, _overrides(args.set))
    if failed:
        _report_diags(*failed)
        return EXIT_SPEC
    try:
        report = analyze(spec, batch=args.batch, seq_len=args.seq)
    except SpecError as e:
        _report_diags(e.diagnostics, sources(spec))
        return EXIT_SPEC
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        sys.stdout.write(table(report))
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from archdsl.pipeline import emit_source, sources

    spec, failed = _load(args.spec, _overrides(args.set))
    if failed:
        _report_diags(*failed)
        return EXIT_SPEC
    try:
        src = emit_source(spec)
    except SpecError as e:
        _report_diags(e.diagnostics, sources(spec))
        return EXIT_SPEC
    if args.output == "-":
        sys.stdout.write(src)
    else:
        Path(args.output).write_text(src, encoding="utf-8")
        print(f"wrote {args.output} ({spec.model.name})", file=sys.stderr)
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    from archdsl.fmt import to_text, to_yaml
    from archdsl.frontend import YAML_SUFFIXES, parse_source

    if args.write and args.to:
        raise _UsageError("--write rewrites files in their own form; convert with --to FORM -o OUT")
    if args.output and len(args.specs) != 1:
        raise _UsageError("-o takes one spec")
    status = EXIT_OK
    for path in args.specs:
        text = Path(path).read_text(encoding="utf-8")
        try:
            file = parse_source(text, path)
        except SpecError as e:
            _report_diags(e.diagnostics, SourceCache({path: text}))
            status = EXIT_SPEC
            continue
        own = "yaml" if Path(path).suffix.lower() in YAML_SUFFIXES else "arch"
        out = to_yaml(file) if (args.to or own) == "yaml" else to_text(file)
        if args.check:
            if out != text:
                print(f"would reformat: {path}", file=sys.stderr)
                status = EXIT_SPEC
        elif args.write:
            if out != text:
                Path(path).write_text(out, encoding="utf-8")
                print(f"reformatted: {path}", file=sys.stderr)
        elif args.output:
            Path(args.output).write_text(out, encoding="utf-8")
        else:
            sys.stdout.write(out)
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    from archdsl.schema import schema

    print(json.dumps(schema(), indent=2))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from archdsl.diagnostics import did_you_mean
    from archdsl.errors import ERRORS, explain, markdown

    if args.markdown:
        sys.stdout.write(markdown())
        return EXIT_OK
    if args.code is None:
        for code, doc in ERRORS.items():
            print(f"{code}  {doc.title}")
        return EXIT_OK
    code = args.code.upper()
    if code not in ERRORS:
        hint = did_you_mean(code, list(ERRORS)) or ""
        raise _UsageError(f"no error code {args.code!r}. {hint}".strip())
    sys.stdout.write(explain(code))
    return EXIT_OK


COMMANDS = {
    "explain": cmd_explain,
    "check": cmd_check,
    "report": cmd_report,
    "compile": cmd_compile,
    "fmt": cmd_fmt,
    "schema": cmd_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help / --version exit 0, usage errors exit 2
        return int(e.code or 0)
    try:
        return COMMANDS[args.command](args)
    except _UsageError as e:
        print(f"archdsl: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"archdsl: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # an internal error: say so, without a traceback unless asked
        if getattr(args, "debug", False):
            raise
        print(
            f"archdsl: internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)",
            file=sys.stderr,
        )
        return EXIT_USAGE
