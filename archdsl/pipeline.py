"""The pipeline, as a table of contents. Each step is a named, pure function of the one before:

    read -> parse (Lark | strict YAML) -> compose (extends, import, --set) -> elaborate -> IR
    IR -> graph view -> validation passes (acyclic, connected, shapes) -> diagnostics
    IR + graph -> analysis (params, FLOPs, memory; exact and as polynomials) -> Report
    IR -> lower (registry, generated blocks) -> constructor tree -> nn.Module | standalone .py

Only ``build`` and the targets made from its module (``export_program``, ``save_weights``) import
torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from archdsl import syntax as S
from archdsl.compose import apply_overrides, compose_file
from archdsl.cost import Report, Settings, build_report, ensure_seq_len
from archdsl.cost.analysis import params_total
from archdsl.cost.report import size_values
from archdsl.diagnostics import Diagnostic, SourceCache, Span, SpecError, did_you_mean, printable
from archdsl.elaborate import elaborate
from archdsl.frontend import parse_source, read_source
from archdsl.frontend.text import parse_expr
from archdsl.graph import build_graph, ctx_of, input_shapes, input_vocabs
from archdsl.ir import Model, Spec
from archdsl.kinds import REGISTRY
from archdsl.names import OVERRIDE_HELP, override_name_problem
from archdsl.passes import run_passes

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_SEQ_LEN = 1024

Override = str | int | float | bool


def parse_overrides(overrides: Mapping[str, Override] | None) -> tuple[dict[str, S.Expr], dict[str, str]]:
    """``{"n_layers": 2, "d_model": "64"}`` -> expressions (strings are parsed like spec values)."""
    exprs: dict[str, S.Expr] = {}
    texts: dict[str, str] = {}
    diags: list[Diagnostic] = []
    for name, value in (overrides or {}).items():
        where = f"<--set {name}>"
        if isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = value if isinstance(value, str) else repr(value)
        prefix = f"--set {name}="
        texts[where] = prefix + text  # diagnostics show the option as written
        span = Span(where, 1, 1, 1, len(prefix))
        problem = override_name_problem(name)
        try:
            if problem is not None:
                raise SpecError([Diagnostic("E015", f"--set {name}: {problem}", span, OVERRIDE_HELP)])
            exprs[name] = parse_expr(text, where, 1, len(prefix) + 1)  # held to a spec's limits
        except SpecError as e:
            diags.extend(e.diagnostics)
    if diags:
        raise SpecError(diags, texts)
    return exprs, texts


def read(path: str | Path) -> str:
    """One spec file's text, read as untrusted input (see :func:`archdsl.frontend.read_source`)."""
    return read_source(str(path))


def load(path: str | Path, overrides: Mapping[str, Override] | None = None) -> Spec:
    """Read, parse, compose and elaborate a spec. Raises :class:`SpecError` (with every diagnostic, and
    the source texts to render them) if it is not a valid spec — its subclass
    :class:`~archdsl.frontend.SourceError` (E019) if the file cannot be read at all.

    ``overrides`` replace constants (``{"n_layers": 2}``) or, with a dotted name, any value in the
    spec (``{"model.block.attention.heads": 4}``)."""
    path = str(path)
    texts: dict[str, str] = {}
    try:
        exprs, texts = parse_overrides(overrides)
        file, read_texts = compose_file(path, read, parse_source)
        texts = {**read_texts, **texts}
        dotted = {k: v for k, v in exprs.items() if "." in k}
        file = apply_overrides(file, dotted)
        model, env = elaborate(file, {k: v for k, v in exprs.items() if "." not in k})
    except SpecError as e:
        raise type(e)(located(e.diagnostics, Span(path, 1, 1, 1, 2)), {**texts, **e.sources}) from None
    return Spec(model=model, constants=tuple(env.items()), path=path, sources=tuple(texts.items()))


def override_file(file: S.File, overrides: Mapping[str, Override] | None) -> S.File:
    """A surface file with ``--set`` overrides applied as written: constants replaced (their
    expressions, so values derived from them follow), dotted paths set (what ``fmt --set`` prints)."""
    if not overrides:
        return file
    exprs, texts = parse_overrides(overrides)
    consts = {e.key.name for e in file.entries if isinstance(e, S.Attr)}
    diags = [
        Diagnostic(
            "E015",
            f"--set {name}: the spec has no constant `{name}`",
            expr.span,
            help=did_you_mean(name, sorted(consts)),
        )
        for name, expr in exprs.items()
        if "." not in name and name not in consts
    ]
    if diags:
        raise SpecError(diags, texts)
    entries = tuple(
        S.Attr(e.key, exprs[e.key.name], e.span) if isinstance(e, S.Attr) and e.key.name in exprs else e
        for e in file.entries
    )
    try:
        return apply_overrides(replace(file, entries=entries), {k: v for k, v in exprs.items() if "." in k})
    except SpecError as e:
        raise SpecError(e.diagnostics, texts) from None


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
    return located(run_passes(graph(spec)), _where(spec))


def _where(spec: Spec) -> Span:
    """Where a diagnostic about the whole model points: the model section, else the file."""
    return spec.model.span or Span(spec.path, 1, 1, 1, 2)


def located(diags: list[Diagnostic], where: Span) -> list[Diagnostic]:
    """Every diagnostic with a place: one the graph could not place (a guard on the graph view) points
    at ``where``, the model or the file."""
    return [d if d.span is not None else replace(d, span=where) for d in diags]


def checked_graph(spec: Spec) -> nx.DiGraph:
    g = graph(spec)
    diags = located(run_passes(g), _where(spec))
    if diags:
        raise SpecError(diags, dict(spec.sources))
    return g


def default_seq_len(spec: Spec) -> int:
    """The model's context: the shortest positional table, or 1024 without one. A towers model's is
    that of its towers whose input does not fix the length (CLIP's text, not its image)."""
    return min(position_limits(spec.model), default=DEFAULT_SEQ_LEN)


def position_limits(model: Model) -> list[int]:
    """The positional tables' lengths (``max_len``) that bound the length ``--seq`` sets: every stack's,
    or in a towers model those of its towers that read token ids (or all, if none does)."""
    if model.towers:
        free = [t for t in model.towers if _fixed(t) is None] or list(model.towers)
        return [x for t in free for x in position_limits(t)]
    return [
        limit
        for s in model.stacks
        if s.position is not None
        for limit in [REGISTRY[s.position.kind].max_seq_len(s.position, ctx_of(model, s.role))]
        if limit is not None
    ]


def _fixed(tower: Model) -> tuple[int, str] | None:
    """The length a tower's input fixes (an image's patches), or None (token ids)."""
    assert tower.embedding is not None
    return REGISTRY[tower.embedding.kind].fixed_length(tower.embedding)


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


def report_at(spec: Spec, g: nx.DiGraph, s: Settings, past_context: bool = False) -> Report:
    """The report at settings ``s``, for the spec's checked graph ``g``. Raises :class:`SpecError`
    (E014) for a length past a positional table, unless ``past_context``: then it gives the costs as
    if the tables were longer, the weights unchanged (``compare`` sets lengths past one variant's
    context beside another's, and marks them)."""
    if not past_context:
        ensure_seq_len(g, size_values(spec.model, s))
    return build_report(g, spec.model, s)


DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def dtype_name(name: str) -> str:
    """A model dtype's torch name: ``float32``, ``bfloat16`` or ``float16`` (``fp32``, ``bf16`` and
    ``fp16``, as ``report --dtype`` spells them, are the same)."""
    try:
        return DTYPE_NAMES[name.strip().lower()]
    except (KeyError, AttributeError):
        got = printable(repr(name))
        raise ValueError(f"expected a dtype float32, bfloat16 or float16, got {got}") from None


def build(
    spec: Spec,
    seed: int = 0,
    *,
    dtype: str | torch.dtype | None = None,
    compile: bool = False,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = None,
    fullgraph: bool = False,
    dynamic: bool | None = None,
) -> nn.Module:
    """The spec as a randomly initialised ``nn.Module`` (deterministic in ``seed``). Raises
    :class:`SpecError` (E020) before allocating anything when its weights and buffers do not fit in
    the memory available (see :mod:`archdsl.lower.fits`).

    ``dtype`` (``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype) casts its parameters and
    buffers after initialisation (so every dtype starts from the same weights). ``compile=True``
    applies ``torch.compile`` to its forward in place (``nn.Module.compile``: the class, methods and
    parameter names stay) with ``backend``, ``mode``, ``fullgraph`` and ``dynamic``. The default
    ``dynamic=None`` is automatic dynamic shapes: the first call at a second sequence length recompiles
    once with the length symbolic, and later lengths reuse that graph."""
    from archdsl.lower.build import build_module, instantiate
    from archdsl.lower.fits import ensure_fits
    from archdsl.lower.lowering import lower

    g = checked_graph(spec)
    ctor = lower(spec.model)
    cast = None
    if dtype is not None:
        from archdsl.lower.targets import torch_dtype

        cast = torch_dtype(dtype)
    try:
        ensure_fits(ctor, params_total(g), instantiate)
        model = build_module(ctor, seed=seed)
    except SpecError as e:
        raise SpecError(located(e.diagnostics, _where(spec))) from None
    if cast is not None:
        model = model.to(cast)
    if compile:
        from archdsl.lower.targets import compile_module

        model = compile_module(model, backend=backend, mode=mode, fullgraph=fullgraph, dynamic=dynamic)
    return model


def export_program(
    spec: Spec, seed: int = 0, dtype: str | torch.dtype | None = None
) -> torch.export.ExportedProgram:
    """The model (in eval mode) through ``torch.export``, with a dynamic batch and sequence lengths
    (from 1 to the model's context: its shortest positional table, else 1024). Raises torch's error
    when the model's shapes depend on the length in a way a range cannot say."""
    from archdsl.lower.targets import export_program as export

    return export(build(spec, seed, dtype=dtype), spec, default_seq_len(spec))


def save_weights(
    spec: Spec, path: str | Path, seed: int = 0, dtype: str | torch.dtype | None = None
) -> dict[str, str]:
    """Write the initialised state dict (``build(spec, seed, dtype=dtype)``) to ``path`` as safetensors.
    A tensor under several names (tied embeddings) is written once; ``safetensors.torch.load_model``
    fills in the others. Returns each name left out, with the name its tensor is stored under."""
    from archdsl import __version__
    from archdsl.lower.targets import save_weights as save
    from archdsl.lower.targets import torch_dtype

    dt = str(torch_dtype(dtype if dtype is not None else "float32")).removeprefix("torch.")
    model = build(spec, seed, dtype=dt)
    meta = {"archdsl": __version__, "model": spec.model.name, "seed": str(seed), "dtype": dt}
    return save(model, path, meta)


def example_inputs_source(spec: Spec, batch: int = 2, seq_len: int = 16) -> str:
    """Python that makes example inputs for the model, named as its forward's arguments."""
    lines = []
    names = []
    vocabs = input_vocabs(spec.model)
    for name, shape in input_shapes(spec.model).items():
        dims = tuple(batch if d == "B" else seq_len if d in ("T", "S") else d for d in shape)
        if len(shape) == 2:
            lines.append(f"{name} = torch.randint(0, {vocabs[name]}, {dims})  # token ids")
        else:
            lines.append(f"{name} = torch.randn{dims}  # images")
        names.append(name)
    lines.append(f"out = model({', '.join(names)})")
    return "\n".join(lines)


def emit_source(spec: Spec, dtype: str | None = None) -> str:
    """A standalone Python file (torch + standard library only) defining the same model: a ``Config``
    of the spec's constants, and ``build_model(config, seed, **overrides)`` whose sizes follow it
    (see :mod:`archdsl.lower.config`). ``dtype`` is Config's default parameter dtype (float32)."""
    from archdsl import __version__
    from archdsl.lower.config import plan, spec_hash
    from archdsl.lower.emit import emit
    from archdsl.lower.pysrc import check_source

    params = params_total(checked_graph(spec))
    m = spec.model
    p = plan(spec)
    fixed = [f.name for f in p.fields if f.fixed is not None]
    names = ", ".join(input_shapes(m))
    if m.towers:
        what = f"A towers model ({names}) with {m.n_layers} blocks, embedding width {m.d_model}"
        calls = (
            f"    logits_per_image, logits_per_text = model({names})\n"
            f"    *logits, loss = model({names}, return_loss=True)  # pair i: input i of each tower\n"
        )
    else:
        what = f"A {m.type.replace('_', '-')} with {m.n_layers} blocks, d_model {m.d_model}" + (
            f", vocab {m.vocab}" if m.vocab else ""
        )
        calls = f"    out = model({names})\n" + (
            f"    logits, loss = model({names}, targets)  # targets: -100 is ignored\n"
            if m.head.kind != "pooler"
            else ""
        )
    header = (
        f"{m.name}: generated by archdsl {__version__} from {printable(Path(spec.path).name)}\n"
        f"(spec sha256 {spec_hash(spec)}).\n\n"
        f"{what}: {params:,} parameters.\n"
        "Standalone: needs only torch.\n\n"
        "    model = build_model()                        # the spec's values (Config)\n"
        "    model = build_model(n_layers=2, seed=0)      # a field changed; sizes follow\n"
        + calls
        + (
            "    tokens = model.generate(idx, max_new_tokens=20)  # with a KV cache\n"
            if m.type == "decoder"
            else ""
        )
        + "\n    python this_file.py --n_layers 2 --d_model 64   # build and run once\n"
        + (f"\nFixed here (recompile the spec to change): {', '.join(fixed)}.\n" if fixed else "")
    )
    limits = position_limits(p.model)
    source = emit(p, header, list(input_shapes(p.model).items()), limits, dtype_name(dtype or "float32"))
    check_source(source)  # imports and calls only from the allowlists (see archdsl.lower.pysrc)
    return source


def sources(spec: Spec | None = None, extra: Mapping[str, str] | None = None) -> SourceCache:
    texts = dict(spec.sources) if spec else {}
    texts.update(extra or {})
    return SourceCache(texts)
