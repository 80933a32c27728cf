"""The pipeline, as a table of contents. Each step is a named, pure function of the one before:

    read -> parse (Lark | strict YAML) -> compose (extends, import, --set) -> elaborate -> IR
    IR -> graph view -> validation passes (acyclic, connected, shapes) -> diagnostics
    IR + graph -> analysis (params, FLOPs, memory; exact and as polynomials) -> Report
    IR -> lower (registry, generated blocks) -> constructor tree -> nn.Module | standalone .py

Only ``build`` imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx

from archdsl import syntax as S
from archdsl.compose import apply_overrides, compose_file
from archdsl.cost import Report, Settings, build_report, ensure_seq_len
from archdsl.cost.report import size_values
from archdsl.diagnostics import Diagnostic, SourceCache, SpecError
from archdsl.elaborate import elaborate
from archdsl.frontend import parse_source
from archdsl.frontend.text import parse_expr
from archdsl.graph import build_graph, ctx_of, input_shapes
from archdsl.ir import Spec
from archdsl.kinds import REGISTRY
from archdsl.lower.lowering import lower
from archdsl.passes import run_passes

if TYPE_CHECKING:
    from torch import nn

DEFAULT_SEQ_LEN = 1024

Override = str | int | float | bool


def parse_overrides(overrides: Mapping[str, Override] | None) -> tuple[dict[str, S.Expr], dict[str, str]]:
    """``{"n_layers": 2, "d_model": "64"}`` -> expressions (strings are parsed like spec values)."""
    exprs: dict[str, S.Expr] = {}
    texts: dict[str, str] = {}
    for name, value in (overrides or {}).items():
        where = f"<--set {name}>"
        if isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = value if isinstance(value, str) else repr(value)
        prefix = f"--set {name}="
        texts[where] = prefix + text  # diagnostics show the option as written
        exprs[name] = parse_expr(text, where, 1, len(prefix) + 1)
    return exprs, texts


def read(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")


def load(path: str | Path, overrides: Mapping[str, Override] | None = None) -> Spec:
    """Read, parse, compose and elaborate a spec. Raises :class:`SpecError` (with every diagnostic)
    if it is not a valid spec, and ``OSError`` if it cannot be read.

    ``overrides`` replace constants (``{"n_layers": 2}``) or, with a dotted name, any value in the
    spec (``{"model.block.attention.heads": 4}``)."""
    path = str(path)
    exprs, texts = parse_overrides(overrides)
    file, read_texts = compose_file(path, read, parse_source)
    dotted = {k: v for k, v in exprs.items() if "." in k}
    file = apply_overrides(file, dotted)
    model, env = elaborate(file, {k: v for k, v in exprs.items() if "." not in k})
    return Spec(
        model=model, constants=tuple(env.items()), path=path, sources=(*read_texts.items(), *texts.items())
    )


def graph(spec: Spec) -> nx.DiGraph:
    return build_graph(spec.model)


def check(spec: Spec | str | Path, overrides: Mapping[str, Override] | None = None) -> list[Diagnostic]:
    """All diagnostics for a spec (empty when it is valid). Accepts a loaded spec, or a path (and
    overrides) to load."""
    if not isinstance(spec, Spec):
        try:
            spec = load(spec, overrides)
        except SpecError as e:
            return e.diagnostics
    return run_passes(graph(spec))


def checked_graph(spec: Spec) -> nx.DiGraph:
    g = graph(spec)
    diags = run_passes(g)
    if diags:
        raise SpecError(diags)
    return g


def default_seq_len(spec: Spec) -> int:
    """The model's context: the shortest positional table, or 1024 without one."""
    limits = [
        limit
        for s in spec.model.stacks
        if s.position is not None
        for limit in [REGISTRY[s.position.kind].max_seq_len(s.position, ctx_of(spec.model, s.role))]
        if limit is not None
    ]
    return min(limits) if limits else DEFAULT_SEQ_LEN


def analyze(
    spec: Spec,
    batch: int = 1,
    seq_len: int | None = None,
    src_len: int | None = None,
    *,
    dtype: str = "fp32",
    recompute: str = "none",
    attention: str = "flash",
) -> Report:
    """Exact parameters, FLOPs and memory, per layer and in total, at ``batch`` x ``seq_len`` (and an
    encoder input of ``src_len``, default ``seq_len``, for encoder-decoders), with their polynomials in
    b, n (and m). ``seq_len`` defaults to the model's context (its positional table's ``max_len``) or
    1024; image models take their length from the image. ``dtype`` (fp32, bf16, fp16) is that of
    weights, activations and cache; ``recompute`` (none, selective, full) and ``attention`` (flash,
    materialized) say how backward gets its activations."""
    return sweep(spec, [seq_len], batch, src_len, dtype=dtype, recompute=recompute, attention=attention)[0]


def sweep(
    spec: Spec,
    seq_lens: Sequence[int | None],
    batch: int = 1,
    src_len: int | None = None,
    *,
    dtype: str = "fp32",
    recompute: str = "none",
    attention: str = "flash",
    progress: Callable[[Iterable[int | None]], Iterable[int | None]] | None = None,
) -> list[Report]:
    """One report per sequence length, sharing the checked graph (and the cached node costs)."""
    g = checked_graph(spec)
    out = []
    for n in progress(seq_lens) if progress else seq_lens:
        s = Settings(
            batch=batch,
            seq_len=default_seq_len(spec) if n is None else n,
            src_len=src_len,
            dtype=dtype,
            recompute=recompute,
            attention=attention,
        )
        out.append(report_at(spec, g, s))
    return out


def report_at(spec: Spec, g: nx.DiGraph, s: Settings) -> Report:
    """The report at settings ``s``, for the spec's checked graph ``g``. Raises :class:`SpecError`
    (E014) for a length past a positional table."""
    ensure_seq_len(g, size_values(spec.model, s))
    return build_report(g, spec.model, s)


def build(spec: Spec, seed: int = 0) -> nn.Module:
    """The spec as a randomly initialised ``nn.Module`` (deterministic in ``seed``)."""
    checked_graph(spec)
    from archdsl.lower.build import build_module

    return build_module(lower(spec.model), seed=seed)


def example_inputs_source(spec: Spec, batch: int = 2, seq_len: int = 16) -> str:
    """Python that makes example inputs for the model, named as its forward's arguments."""
    lines = []
    names = []
    for name, shape in input_shapes(spec.model).items():
        dims = tuple(batch if d == "B" else seq_len if d in ("T", "S") else d for d in shape)
        if len(shape) == 2:
            lines.append(f"{name} = torch.randint(0, {spec.model.vocab}, {dims})  # token ids")
        else:
            lines.append(f"{name} = torch.randn{dims}  # images")
        names.append(name)
    lines.append(f"out = model({', '.join(names)})")
    return "\n".join(lines)


def emit_source(spec: Spec) -> str:
    """A standalone Python file (torch + standard library only) defining the same model."""
    from archdsl import __version__
    from archdsl.lower.emit import emit

    params = analyze(spec, batch=1, seq_len=1).params_total
    m = spec.model
    inputs = ", ".join(input_shapes(m))
    header = (
        f"{m.name}: generated by archdsl {__version__} from {Path(spec.path).name}.\n\n"
        f"A {m.type.replace('_', '-')} with {m.n_layers} blocks, d_model {m.d_model}"
        + (f", vocab {m.vocab}" if m.vocab else "")
        + f": {params:,} parameters.\n"
        "Standalone: needs only torch.\n\n"
        "    model = build_model()\n"
        f"    out = model({inputs})\n"
    )
    return emit(lower(m), header, example_inputs_source(spec))


def sources(spec: Spec | None = None, extra: Mapping[str, str] | None = None) -> SourceCache:
    texts = dict(spec.sources) if spec else {}
    texts.update(extra or {})
    return SourceCache(texts)
