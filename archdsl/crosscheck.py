"""``archdsl report --measure``: the report's predictions beside what PyTorch's own tools measure on the
lowered module — parameters from ``module.parameters()``, FLOPs from ``FlopCounterMode`` (with the CPU
SDPA formula registered) and from fvcore's ``FlopCountAnalysis``, training-step FLOPs from
FlopCounterMode over forward and backward, and activation bytes from ``saved_tensors_hooks``.

Small models are built and run for real. A model whose weights or activations would not fit
comfortably is built and run under ``FakeTensorMode``: shapes and dtypes only, nothing allocated, so a
70B spec is measured in seconds (fvcore traces real tensors and is skipped there).

fvcore counts one "flop" per multiply-add and skips operators it has no handle for — among them
``aten::scaled_dot_product_attention``: its figure is doubled here and the operators it skipped listed,
which is where its count falls short.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from archdsl.cost.render import human, human_bytes
from archdsl.cost.report import Report
from archdsl.ir import Spec

#: above this many bytes of weights or activations (fp32), measure under FakeTensorMode
REAL_LIMIT = 1 << 30
#: saved activations are held to the prediction within this relative difference
ACTIVATION_TOLERANCE = 0.05


@dataclass
class Row:
    what: str
    predicted: int | None
    measured: int | None
    tool: str
    unit: str = "count"  # "count" | "flops" | "bytes"
    note: str = ""
    exact: bool = True  # held to equality (else to ACTIVATION_TOLERANCE)

    @property
    def agrees(self) -> bool | None:
        if self.predicted is None or self.measured is None:
            return None
        if self.exact:
            return self.predicted == self.measured
        return abs(self.predicted - self.measured) <= ACTIVATION_TOLERANCE * max(self.measured, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "predicted": self.predicted,
            "measured": self.measured,
            "tool": self.tool,
            "agrees": self.agrees,
            "note": self.note,
        }


@dataclass
class Measured:
    report: Report
    mode: str  # "real" | "fake"
    rows: list[Row] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        s = self.report.settings
        return {
            "model": self.report.model,
            "settings": {
                "batch": s.batch,
                "seq_len": s.seq_len,
                "dtype": s.dtype,
                "recompute": s.recompute,
                "attention": s.attention,
            },
            "mode": self.mode,
            "rows": [r.to_dict() for r in self.rows],
        }


def _fits(report: Report) -> bool:
    return report.params_total * 4 <= REAL_LIMIT and report.memory["activation_bytes"] <= REAL_LIMIT


def _inputs(spec: Spec, report: Report) -> list[Any]:
    import torch

    from archdsl.graph import input_shapes, input_vocabs

    s = report.settings
    sizes = {"B": s.batch, "T": s.seq_len, "S": s.src_len or s.seq_len}
    vocabs = input_vocabs(spec.model)
    out = []
    gen = torch.Generator().manual_seed(0)
    for name, shape in input_shapes(spec.model).items():
        dims = [sizes.get(d, d) if isinstance(d, str) else d for d in shape]
        if len(dims) == 2:
            out.append(torch.randint(0, max(vocabs[name], 1), dims, generator=gen))
        else:
            out.append(torch.randn(dims, generator=gen))
    return out


def _prepare(model: Any, report: Report, train: bool) -> None:
    """Put the module in the state the report assumes: fresh stateful memories, materialised scores if
    asked, every block checkpointed under full recomputation."""
    s = report.settings
    model.train(train)
    for m in model.modules():
        if hasattr(m, "reset_memory"):
            m.reset_memory()
        if hasattr(m, "materialize"):
            m.materialize = s.attention == "materialized"
        if s.recompute == "full" and hasattr(m, "checkpoint") and hasattr(m, "h"):
            m.checkpoint = [True] * len(m.h)


def _build(build: Any, spec: Spec, dtype: Any) -> Any:
    """The module with its weights in ``dtype`` (made so from the start: a fake module cannot be
    converted afterwards)."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return build(spec)
    finally:
        torch.set_default_dtype(before)


def _logits(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def measured_report(spec: Spec, report: Report) -> Measured:
    """Build the lowered module at the report's sizes and measure it."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from archdsl.measure import count_params
    from archdsl.pipeline import build

    real = _fits(report)
    s = report.settings
    f = report.flops()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[s.dtype]
    selective = s.recompute == "selective"
    no_selective = "the lowered module has no selective recomputation to measure"
    rows: list[Row] = []
    mode = contextlib.nullcontext() if real else FakeTensorMode(allow_non_fake_inputs=False)
    with mode:
        model = _build(build, spec, dtype)
        inputs = [x.to(dtype) if x.is_floating_point() else x for x in _inputs(spec, report)]
        rows.append(Row("parameters", report.params_total, count_params(model), "sum(p.numel())"))
        steps = [
            ("forward FLOPs", f["forward"], "FlopCounterMode", "flops", True, _forward_flops),
            (
                "training-step FLOPs",
                f["train_step"],
                "FlopCounterMode (forward + backward)",
                "flops",
                True,
                None if selective else _train_flops,
            ),
            (
                "activations saved for backward",
                report.memory["activation_bytes"],
                "saved_tensors_hooks",
                "bytes",
                False,
                None if selective else _saved,
            ),
        ]
        for what, predicted, tool, unit, exact, step in steps:
            if step is None:
                rows.append(Row(what, predicted, None, tool, unit, no_selective, exact))
                continue
            try:
                measured = step(model, inputs, report)
                note = ""
            except Exception as e:  # data-dependent shapes (MoE routing) under FakeTensorMode, say
                measured, note = None, _why(e, real)
            rows.append(Row(what, predicted, measured, tool, unit, note, exact))
            if what == "forward FLOPs":
                rows.append(
                    _fvcore(model, inputs, f["forward"])
                    if real
                    else Row(what, predicted, None, "fvcore", "flops", "skipped: fvcore traces real tensors")
                )
    return Measured(report, "real" if real else "fake (FakeTensorMode)", rows)


def _why(e: Exception, real: bool) -> str:
    name = type(e).__name__
    if not real and "DynamicOutputShape" in name:
        return (
            "not measurable under FakeTensorMode: the module's shapes depend on its data (a mixture "
            "of experts' routing, LSH buckets); measure a smaller version (--set) for real"
        )
    return f"could not be measured: {name}: {e}".replace("\n", " ")[:300]


def _forward_flops(model: Any, inputs: list[Any], report: Report) -> int:
    import torch

    from archdsl.measure import flop_counter_mode

    _prepare(model, report, train=False)
    with torch.no_grad(), flop_counter_mode() as fc:
        model(*inputs)
    return int(fc.get_total_flops())


def _train_flops(model: Any, inputs: list[Any], report: Report) -> int:
    """FlopCounterMode over forward and backward, whole blocks recomputed as the report counts them
    (PyTorch's checkpoint by default stops once backward has what it needs, skipping a block's
    trailing projection)."""
    import torch
    from torch.utils.checkpoint import set_checkpoint_early_stop

    from archdsl.measure import flop_counter_mode

    _prepare(model, report, train=True)
    torch.manual_seed(0)
    try:
        with set_checkpoint_early_stop(False), flop_counter_mode() as fc:
            _logits(model(*inputs)).float().sum().backward()
    finally:
        model.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def _saved(model: Any, inputs: list[Any], report: Report) -> int:
    import torch

    from archdsl.measure import saved_bytes

    _prepare(model, report, train=True)
    torch.manual_seed(0)
    return saved_bytes(model, *inputs)[0]


def _fvcore(model: Any, inputs: list[Any], predicted: int) -> Row:
    """fvcore's forward count, doubled (it counts multiply-adds), with the operators it skipped."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    try:
        with torch.no_grad():
            fa = FlopCountAnalysis(model, tuple(inputs))
            fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = int(fa.total()) * 2
            skipped = sorted(fa.unsupported_ops())
    except Exception as e:  # fvcore's tracer cannot follow every module
        return Row("forward FLOPs", predicted, None, "fvcore FlopCountAnalysis × 2", "flops", f"failed: {e}")
    missed = [
        op for op in skipped if "attention" in op or op in ("aten::einsum", "aten::bmm", "aten::matmul")
    ]
    note = "skipped " + ", ".join(missed) if missed else ""
    return Row("forward FLOPs", predicted, total, "fvcore FlopCountAnalysis × 2", "flops", note)


def _fmt(x: int | None, unit: str) -> str:
    if x is None:
        return "-"
    if unit == "bytes":
        return f"{x:,} ({human_bytes(x)})"
    if unit == "flops":
        return f"{x:,} ({human(x)})"
    return f"{x:,}"


def render_measured(m: Measured, fmt: str = "table") -> str:
    from archdsl.cost.render import columns, header, markdown_table

    rows: list[tuple[str, ...]] = [("", "predicted", "measured", "by", "agrees", "")]
    for r in m.rows:
        agrees = {True: "yes", False: "NO", None: "-"}[r.agrees]
        if r.agrees is not None and not r.exact and r.measured:
            agrees += f" ({float(Fraction(r.predicted or 0, r.measured)) - 1:+.1%})"
        elif r.agrees is False and r.predicted and r.measured:
            agrees += f" ({r.measured / r.predicted - 1:+.1%})"
        rows.append((r.what, _fmt(r.predicted, r.unit), _fmt(r.measured, r.unit), r.tool, agrees, r.note))
    right = (False, True, True, False, False, False)
    lines = markdown_table(rows, right) if fmt == "md" else columns(rows, right)
    return "\n".join([*header(m.report), f"measured: {m.mode}", "", *lines, ""]) + "\n"
