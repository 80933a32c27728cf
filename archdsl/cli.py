"""Command line: ``archdsl check | report | compare | compile | bench | fmt | schema | explain``.

Exit codes (as ruff): 0 clean, 1 spec errors, 2 usage, I/O or internal errors. Data goes to stdout,
diagnostics to stderr. No traceback for bad input; ``--debug`` shows one for internal errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from archdsl.diagnostics import Diagnostic, SourceCache, Span, SpecError, printable, render_all
from archdsl.ir import Spec
from archdsl.limits import MAX_LENGTHS, MAX_VARIANTS

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


class _UsageError(Exception):
    pass


DTYPE_CHOICES = ("fp32", "bf16", "fp16")
TARGETS = ("py", "export", "weights")
POLICY_CHOICES = ("none", "selective", "full")
_SUFFIX = {"k": 1024, "m": 1024**2}


def _length(text: str) -> int:
    """``4096``, ``4k`` (4096) or ``1m`` (1,048,576): sizes of contexts count in powers of two."""
    t = text.strip().lower().replace("_", "")
    scale = _SUFFIX.get(t[-1:], 1)
    digits = t[:-1] if scale != 1 else t
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12 or int(digits) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive length such as 1024 or 4k, got {printable(repr(text))}"
        )
    return int(digits) * scale


def _lengths(text: str) -> list[int]:
    parts = text.split(",")
    if len(parts) > MAX_LENGTHS:
        raise argparse.ArgumentTypeError(f"at most {MAX_LENGTHS} lengths, got {len(parts)}")
    return [_length(part) for part in parts]


def _positive(text: str) -> int:
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or len(t) > 12 or int(t) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {printable(repr(text))}")
    return int(t)


def _model_dtype(text: str) -> str:
    from archdsl.pipeline import dtype_name

    try:
        return dtype_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(text: str) -> int:
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or len(t) > 12:
        raise argparse.ArgumentTypeError(f"expected a count (0 or more), got {printable(repr(text))}")
    return int(t)


def _seed(text: str) -> int:
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or len(t) > 19 or int(t) >= 2**63:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 2**63 - 1, got {printable(repr(text))}")
    return int(t)


def _overrides(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name or not value.strip():
            raise _UsageError(f"--set expects NAME=VALUE, got {item!r}")
        if name in out:
            raise _UsageError(f"--set {name} is given twice")
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

    costs = argparse.ArgumentParser(add_help=False)
    costs.add_argument("--batch", type=_positive, default=1, help="batch size (default 1)")
    costs.add_argument(
        "--seq",
        type=_lengths,
        default=None,
        metavar="N[,N...]",
        help="sequence length, or a list (1024, 4k, 1k,4k,16k); default: the model's context",
    )
    costs.add_argument(
        "--src-seq",
        type=_length,
        default=None,
        metavar="N",
        help="encoder-decoder source length (default: --seq)",
    )
    costs.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="fp32", help="weights, activations, KV cache"
    )
    costs.add_argument(
        "--recompute", choices=POLICY_CHOICES, default="none", help="activation recomputation in backward"
    )
    costs.add_argument(
        "--attention",
        choices=("flash", "materialized"),
        default="flash",
        help="attention through a fused kernel, or with its scores materialised (memory)",
    )
    costs.add_argument("--format", choices=("table", "md", "json", "html"), default="table")
    costs.add_argument("-o", "--output", metavar="OUT", default="-", help="write to OUT (default: stdout)")

    r = sub.add_parser(
        "report", parents=[common, costs], help="parameters, FLOPs and memory, per layer and in total"
    )
    r.add_argument("spec", metavar="SPEC")
    r.add_argument(
        "--measure",
        action="store_true",
        help="also build the module and measure it (fvcore, FlopCounterMode, saved tensors)",
    )

    v = sub.add_parser(
        "compare", parents=[common, costs], help="variants side by side, with ratios and crossover points"
    )
    v.add_argument("specs", nargs="+", metavar="SPEC")

    f = sub.add_parser(
        "fmt", parents=[common], help="print specs in canonical form, or convert between text and YAML"
    )
    f.add_argument("specs", nargs="+", metavar="SPEC")
    f.add_argument("--to", choices=("arch", "yaml"), help="convert to this form (default: the file's own)")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="rewrite the files in place")
    g.add_argument("--check", action="store_true", help="exit 1 if any file is not in canonical form")
    f.add_argument("-o", "--output", metavar="OUT", help="write the (single) result to OUT")

    sch = sub.add_parser("schema", help="print the JSON Schema of the YAML form")
    sch.add_argument("--set", metavar="NAME=VALUE", action="append", help=argparse.SUPPRESS)

    x = sub.add_parser("explain", help="explain an error code, e.g. archdsl explain E011")
    x.add_argument("code", nargs="?", metavar="CODE")
    x.add_argument("--markdown", action="store_true", help="all codes, as docs/errors.md")

    h = sub.add_parser(
        "import-hf", help="write the spec of a Hugging Face config.json (transformers not needed)"
    )
    h.add_argument("config", metavar="CONFIG.json")
    h.add_argument("-o", "--output", metavar="OUT", default="-", help="write to OUT (default: stdout)")
    h.add_argument("--to", choices=("arch", "yaml"), default=None, help="form (default: from OUT, else arch)")
    h.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")

    k = sub.add_parser(
        "compile",
        parents=[common],
        help="write a standalone PyTorch file, a torch.export program or the weights for the spec",
    )
    k.add_argument("spec", metavar="SPEC")
    k.add_argument(
        "--target",
        choices=TARGETS,
        default="py",
        help="py: a standalone .py file (default); export: a torch.export program (.pt2) with dynamic "
        "batch and length; weights: the initialised weights as safetensors",
    )
    k.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        default="-",
        help="output file (default: stdout, for --target py only)",
    )
    k.add_argument(
        "--dtype",
        type=_model_dtype,
        default=None,
        metavar="float32|bfloat16|float16",
        help="the weights' dtype (fp32, bf16, fp16 also accepted; default float32)",
    )
    k.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="the seed of the initial weights, for --target export and weights (default 0)",
    )
    _bench_parser(sub, common)
    return p


def _bench_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    b = sub.add_parser(
        "bench",
        parents=[common],
        help="build the spec and time forward, forward + backward and decode beside the predictions",
    )
    b.add_argument("spec", metavar="SPEC")
    b.add_argument("--batch", type=_positive, default=1, metavar="B", help="batch size (default 1)")
    b.add_argument(
        "--seq",
        type=_length,
        default=None,
        metavar="N",
        help="sequence length of forward and forward + backward (an encoder-decoder: source and "
        "target; default: the model's context, as report)",
    )
    b.add_argument(
        "--prompt", type=_positive, default=None, metavar="P", help="decode: prompt tokens (default 32)"
    )
    b.add_argument(
        "--new-tokens",
        type=_positive,
        default=None,
        metavar="K",
        help="decode: tokens generated (default 128; both defaults shrink to fit the positions)",
    )
    b.add_argument(
        "--dtype",
        type=_model_dtype,
        default="float32",
        metavar="float32|bfloat16|float16",
        help="the weights' and activations' dtype (fp32, bf16, fp16 also accepted; default float32)",
    )
    b.add_argument("--device", default="auto", metavar="cpu|cuda|auto", help="where to run (default auto)")
    b.add_argument(
        "--threads", type=_positive, default=None, metavar="N", help="torch's CPU threads (default: torch's)"
    )
    b.add_argument("--compile", action="store_true", help="torch.compile the model (its time is shown apart)")
    b.add_argument(
        "--backend", default=None, metavar="NAME", help="torch.compile backend with --compile (inductor)"
    )
    b.add_argument("--repeats", type=_positive, default=5, metavar="R", help="timed runs (default 5)")
    b.add_argument("--warmup", type=_count, default=1, metavar="W", help="untimed runs first (default 1)")
    b.add_argument("--json", action="store_true", help="print the results as JSON (docs/cli.md)")


def _report_diags(diags: list[Diagnostic], cache: SourceCache, fmt: str = "text") -> None:
    print(render_all(diags, cache, "json" if fmt == "json" else "text"), file=sys.stderr)


class _UnreadableError(Exception):
    """A spec file that cannot be read: its diagnostics are shown, and the exit status is 2 (I/O)."""

    def __init__(self, diags: list[Diagnostic], cache: SourceCache) -> None:
        self.diags, self.cache = diags, cache


def _load(path: str, sets: dict[str, str]) -> tuple[Spec | None, tuple[list[Diagnostic], SourceCache] | None]:
    """Load a spec; on spec errors return its diagnostics with the sources to render them. A file that
    cannot be read raises _UnreadableError."""
    from archdsl.frontend import SourceError
    from archdsl.pipeline import load

    try:
        return load(path, sets), None
    except SourceError as e:
        raise _UnreadableError(e.diagnostics, SourceCache(e.sources)) from None
    except SpecError as e:
        return None, (e.diagnostics, SourceCache(e.sources))


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
            print(f"{printable(path)}: ok ({m.name}, {m.type}, {m.n_layers} blocks)")
        if diags:
            status = EXIT_SPEC
    if args.format == "json":
        print(json.dumps(collected, indent=2))
    return status


def _write(text: str, output: str, what: str = "") -> None:
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
        print(f"wrote {printable(output)}{f' ({what})' if what else ''}", file=sys.stderr)


def _progress(total: int, what: str) -> Callable[[Iterable[T]], Iterable[T]]:
    """A progress bar on stderr for sweeps, shown only when stderr is a terminal (tqdm's disable=None)."""

    def wrap(items: Iterable[T]) -> Iterable[T]:
        if total < 2:
            return items
        from tqdm import tqdm

        return tqdm(items, total=total, desc=what, unit="step", disable=None, file=sys.stderr, leave=False)

    return wrap


def _settings(args: argparse.Namespace) -> dict[str, str]:
    return {"dtype": args.dtype, "recompute": args.recompute, "attention": args.attention}


def cmd_report(args: argparse.Namespace) -> int:
    from archdsl.cost.render import markdown, sweep_table, table
    from archdsl.pipeline import sources, sweep

    spec, failed = _load(args.spec, _overrides(args.set))
    if failed:
        _report_diags(*failed)
        return EXIT_SPEC
    seqs: list[int | None] = list(args.seq) if args.seq else [None]
    try:
        reports = sweep(
            spec, seqs, args.batch, args.src_seq, progress=_progress(len(seqs), "report"), **_settings(args)
        )
    except SpecError as e:
        _report_diags(e.diagnostics, sources(spec))
        return EXIT_SPEC
    if args.measure:
        from archdsl.crosscheck import measured_report, render_measured

        rows = [measured_report(spec, r) for r in _progress(len(reports), "measure")(reports)]
        if args.format == "json":
            _write(
                json.dumps([r.to_dict() for r in rows] if len(rows) > 1 else rows[0].to_dict(), indent=2)
                + "\n",
                args.output,
            )
        else:
            _write("".join(render_measured(r, args.format) for r in rows), args.output)
        return EXIT_OK
    if args.format == "json":
        data = [r.to_dict() for r in reports]
        text = json.dumps(data if len(data) > 1 else data[0], indent=2) + "\n"
    elif args.format == "html":
        from archdsl.cost.html import report_page

        text = report_page(reports)
    else:
        one = markdown if args.format == "md" else table
        parts = [one(r) for r in reports]
        if len(reports) > 1:
            parts.append(sweep_table(reports, args.format))
        text = "\n".join(parts)
    _write(text, args.output)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from archdsl.cost.compare import compare

    sets = _overrides(args.set)
    if len(args.specs) > MAX_VARIANTS:
        raise _UsageError(f"compare takes at most {MAX_VARIANTS} specs, got {len(args.specs)}")
    specs = []
    for path in args.specs:
        spec, failed = _load(path, sets)
        if failed:
            _report_diags(*failed)
            return EXIT_SPEC
        specs.append(spec)
    seqs: list[int | None] = list(args.seq) if args.seq else [None]
    try:
        result = compare(
            specs,
            seqs,
            batch=args.batch,
            src_len=args.src_seq,
            progress=_progress(len(specs) * len(seqs), "compare"),
            **_settings(args),
        )
    except SpecError as e:
        _report_diags(e.diagnostics, SourceCache({k: v for s in specs for k, v in s.sources}))
        return EXIT_SPEC
    if args.format == "json":
        text = json.dumps(result.to_dict(), indent=2) + "\n"
    elif args.format == "html":
        from archdsl.cost.html import compare_page

        text = compare_page(result)
    else:
        text = result.render(args.format)
    _write(text, args.output)
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from archdsl.pipeline import sources

    if args.target != "py":
        _binary_output(args.output, args.target)
    elif args.seed is not None:
        raise _UsageError(
            "--seed sets the weights of --target export and weights; the .py file's "
            "build_model(seed=N) takes one when it is called"
        )
    spec, failed = _load(args.spec, _overrides(args.set))
    if failed:
        _report_diags(*failed)
        return EXIT_SPEC
    try:
        if args.target == "py":
            _write(_emit(spec, args.dtype), args.output, spec.model.name)
        elif args.target == "export":
            _export(spec, args)
        else:
            _weights(spec, args)
    except SpecError as e:
        _report_diags(e.diagnostics, sources(spec))
        return EXIT_SPEC
    return EXIT_OK


def _binary_output(output: str, target: str) -> None:
    """Check an output path before building anything: a file to (over)write in a directory that exists."""
    if output == "-":
        raise _UsageError(f"--target {target} writes a binary file: name it with -o PATH")
    path = Path(output)
    if path.is_dir():
        raise _UsageError(f"{output}: is a directory")
    if not path.parent.is_dir():
        raise _UsageError(f"{output}: no such directory {str(path.parent)!r}")


def _emit(spec: Spec, dtype: str | None) -> str:
    from archdsl.pipeline import emit_source

    return emit_source(spec, dtype=dtype)


def _export(spec: Spec, args: argparse.Namespace) -> None:
    import torch

    from archdsl.pipeline import export_program

    try:
        program = export_program(spec, args.seed or 0, args.dtype)
    except SpecError:
        raise
    except Exception as e:  # torch.export's errors: a model that specialises on a length, say
        if args.debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _UsageError(
            f"torch.export cannot export {spec.model.name} with a dynamic batch and length "
            f"(its shapes depend on the length here; --debug shows torch's message): {first}"
        ) from None
    torch.export.save(program, args.output)
    print(f"wrote {printable(args.output)} ({spec.model.name}, torch.export program)", file=sys.stderr)


def _weights(spec: Spec, args: argparse.Namespace) -> None:
    from archdsl.pipeline import save_weights

    shared = save_weights(spec, args.output, args.seed or 0, args.dtype)
    note = "".join(f"; {a} is stored as {b} (tied)" for a, b in shared.items())
    print(f"wrote {printable(args.output)} ({spec.model.name}, safetensors{note})", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    from archdsl.pipeline import sources

    if args.backend is not None and not args.compile:
        raise _UsageError("--backend chooses torch.compile's backend: it goes with --compile")
    spec, failed = _load(args.spec, _overrides(args.set))
    if failed:
        _report_diags(*failed)
        return EXIT_SPEC
    bar = None

    def progress(what: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="bench", unit="run", disable=None, file=sys.stderr, leave=False)
        bar.set_description(what, refresh=False)
        bar.update()

    from archdsl.bench import BenchUsageError, bench  # imports torch

    try:
        result = bench(
            spec,
            batch=args.batch,
            seq_len=args.seq,
            prompt=args.prompt,
            new_tokens=args.new_tokens,
            dtype=args.dtype,
            device=args.device,
            compile=args.compile,
            backend=args.backend or "inductor",
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            progress=progress,
        )
    except BenchUsageError as e:
        raise _UsageError(str(e)) from None
    except SpecError as e:
        _report_diags(e.diagnostics, sources(spec, e.sources))
        return EXIT_SPEC
    finally:
        if bar is not None:
            bar.close()
    _write(json.dumps(result.to_dict(), indent=2) + "\n" if args.json else result.render(), "-")
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    from archdsl.fmt import to_text, to_yaml
    from archdsl.frontend import YAML_SUFFIXES, SourceError, parse_source, read_source
    from archdsl.pipeline import override_file

    if args.write and args.to:
        raise _UsageError("--write rewrites files in their own form; convert with --to FORM -o OUT")
    if args.set and (args.write or args.check):
        raise _UsageError("--set prints a changed spec; it does not go with --write or --check")
    if args.output and len(args.specs) != 1:
        raise _UsageError("-o takes one spec")
    sets = _overrides(args.set)
    status = EXIT_OK
    for path in args.specs:
        try:
            text = read_source(path)
        except SourceError as e:
            raise _UnreadableError(e.diagnostics, SourceCache(e.sources)) from None
        except SpecError as e:
            _report_diags(e.diagnostics, SourceCache(e.sources))
            status = EXIT_SPEC
            continue
        try:
            file = override_file(parse_source(text, path), sets)
        except SpecError as e:
            _report_diags(e.diagnostics, SourceCache({path: text, **e.sources}))
            status = EXIT_SPEC
            continue
        own = "yaml" if Path(path).suffix.lower() in YAML_SUFFIXES else "arch"
        out = to_yaml(file) if (args.to or own) == "yaml" else to_text(file)
        if args.check:
            if out != text:
                print(f"would reformat: {printable(path)}", file=sys.stderr)
                status = EXIT_SPEC
        elif args.write:
            if out != text:
                Path(path).write_text(out, encoding="utf-8")
                print(f"reformatted: {printable(path)}", file=sys.stderr)
        elif args.output:
            Path(args.output).write_text(out, encoding="utf-8")
        else:
            sys.stdout.write(out)
    return status


def cmd_import_hf(args: argparse.Namespace) -> int:
    from archdsl.fmt import to_yaml
    from archdsl.frontend import YAML_SUFFIXES, parse_source
    from archdsl.interop.hf import UnsupportedConfigError, spec_from_config

    try:
        raw = Path(args.config).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _UsageError(f"{args.config}: not UTF-8 text") from None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _UsageError(f"{args.config}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
    try:
        text = spec_from_config(config)
    except UnsupportedConfigError as e:
        diags = [
            replace(d, span=_json_span(args.config, raw, f))
            for d, f in zip(e.diagnostics, e.fields, strict=True)
        ]
        _report_diags(diags, SourceCache({args.config: raw}))
        return EXIT_SPEC
    form = args.to or ("yaml" if Path(args.output).suffix.lower() in YAML_SUFFIXES else "arch")
    out = to_yaml(parse_source(text, "import.arch")) if form == "yaml" else text
    if args.output == "-":
        sys.stdout.write(out)
    else:
        Path(args.output).write_text(out, encoding="utf-8")
        print(f"wrote {printable(args.output)} ({config.get('model_type')})", file=sys.stderr)
    return EXIT_OK


def _json_span(path: str, raw: str, field: str) -> Span:
    """Where a config field is written in the JSON text (its key), else the file's first line."""
    key = json.dumps(field.split(".")[-1])
    for i, line in enumerate(raw.splitlines(), 1):
        col = line.find(key + ":") + 1 or line.find(key) + 1
        if col:
            return Span(path, i, col, i, col + len(key))
    return Span(path, 1, 1, 1, 2)


def cmd_schema(args: argparse.Namespace) -> int:
    from archdsl.schema import schema

    if args.set:
        raise _UsageError("`schema` reads no spec, so --set has nothing to change")
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
    "compare": cmd_compare,
    "compile": cmd_compile,
    "bench": cmd_bench,
    "fmt": cmd_fmt,
    "schema": cmd_schema,
    "import-hf": cmd_import_hf,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help / --version exit 0, usage errors exit 2
        return _flushed(int(e.code or 0))
    try:
        return _flushed(COMMANDS[args.command](args))
    except BrokenPipeError:
        return _closed_pipe()
    except _UnreadableError as e:
        _report_diags(e.diags, e.cache, getattr(args, "format", "text"))
        return EXIT_USAGE
    except _UsageError as e:
        print(f"archdsl: error: {printable(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as e:  # a pass the command did not expect to fail: still the spec's diagnostics
        _report_diags(e.diagnostics, SourceCache(e.sources))
        return EXIT_SPEC
    except OSError as e:
        where = printable(str(e.filename)) + ": " if e.filename else ""
        print(f"archdsl: error: {where}{printable(e.strerror or str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # an internal error: say so, without a traceback unless asked
        if getattr(args, "debug", False):
            raise
        print(
            f"archdsl: internal error: {type(e).__name__}: {printable(str(e))} "
            "(rerun with --debug for a traceback)",
            file=sys.stderr,
        )
        return EXIT_USAGE


def _flushed(status: int) -> int:
    """Flush stdout inside the guard, so a reader that went away is seen here, not at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    return status


def _closed_pipe() -> int:
    """The reader closed the pipe (``archdsl schema | head``): stop quietly. Python's documentation
    (signal, "Note on SIGPIPE"): point stdout at devnull so the interpreter's final flush cannot fail
    again, and exit with status 1, as Python itself does on EPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 1
