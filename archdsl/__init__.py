"""archdsl: a compiler for transformer architectures.

    spec = archdsl.load("specs/gpt2_small.arch", overrides={"n_layers": 2})
    archdsl.check(spec)                        # -> list[Diagnostic] (empty: valid)
    archdsl.analyze(spec, batch=1, seq_len=1024).to_dict()   # params, FLOPs, memory; polynomials
    archdsl.sweep(spec, [1024, 4096])          # one report per length
    model = archdsl.build(spec, seed=0)        # nn.Module: (B, T) ids -> (B, T, V) logits
    model = archdsl.build(spec, dtype="bfloat16", compile=True)   # cast, then torch.compile'd
    source = archdsl.emit_source(spec)         # standalone .py, torch only
    archdsl.bench.bench(spec, batch=2, seq_len=128).render()   # built and timed (import archdsl.bench)

Importing archdsl does not import torch; only ``build`` does.
"""

from archdsl.cost import Report
from archdsl.diagnostics import Diagnostic, Span, SpecError
from archdsl.ir import Spec
from archdsl.pipeline import analyze, build, check, emit_source, load, sweep

__version__ = "0.1.0"

__all__ = [
    "Diagnostic",
    "Report",
    "Span",
    "Spec",
    "SpecError",
    "__version__",
    "analyze",
    "build",
    "check",
    "emit_source",
    "load",
    "sweep",
]
