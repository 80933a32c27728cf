"""One attention layer as the sequence grows, n = 1k … 32k: sliding window (w = 512), linear attention
(elu + 1) and dense causal SDPA — time, peak memory and the analysis's FLOPs and activations.

    python benchmarks/bench_attention_scaling.py [--max-n 32768] [--repeats 5] [--threads 2]
                                                 [--glibc-default]

The layer: d 256, 4 heads, batch 1, causal, forward under ``torch.inference_mode``.

Time: medians of ``repeats`` rounds after a warm-up, in one child process. Each round runs every length
and variant, the variants alternated, so machine noise hits every point alike; dense attention past
n = 16k (5–8 s a forward on 2 cores) runs once, in the middle round, without a warm-up of its own. The
process keeps freed memory for reuse (``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` 4 GiB),
as PyTorch's caching allocator does on GPU and jemalloc or tcmalloc do on CPU: with glibc's defaults a
block over 32 MiB goes back to the system when freed and is faulted in again by the next forward, about
1 ms per MiB on the project's machines, so a layer's time per token jumps where its temporaries pass 32
MiB (linear attention from 16k to 32k: 2.8× instead of 2.0×). ``--glibc-default`` measures that way.

Peak memory: per point, in a fresh process whose large allocations are mmapped
(``MALLOC_MMAP_THRESHOLD_`` 64 KiB, so a free returns memory at once), the peak resident memory of one
forward above what the process held before it, read from ``VmHWM`` reset through
``/proc/self/clear_refs``, after a warm-up forward at the same n (one-time costs — thread pools,
kernels' buffers — are not counted); the median of 3 forwards (dense past 16k: one).

FLOPs (forward) and activations (what a training step keeps, fused attention) come from the analysis of
the same component. "×" is the growth per doubling of n (2 is linear, 4 quadratic).

:func:`attention_scaling_rows` returns the rows (``benchmarks/run.py`` prints them with the other
targets): the targets are × ≤ 2.3 for the window and linear attention in time and peak memory, and
window ≤ dense in time, FLOPs, activations and peak memory at every n.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

D_MODEL = 256
VARIANTS = {
    "window": "sliding_window(heads = 4, window = 512, bias = false)",
    "linear": "linear(heads = 4, feature_map = elu, bias = false)",
    "dense": "mha(heads = 4, bias = false)",
}
LABELS = {"window": "sliding window (w 512)", "linear": "linear (elu + 1)", "dense": "dense SDPA (causal)"}
DENSE_ONCE_ABOVE = 16384  # dense attention past this length: one timed forward
GROWTH_TARGET = 2.3  # per doubling of n, in time and peak memory (window and linear)
#: both layers peak while the out projection runs, holding the same tensors (q, k, v, the attention's
#: output and the projection's): equal peaks, measured to about a page; "≤" allows this much above
PEAK_TOLERANCE = 0.01


def _component(call: str) -> tuple[Any, Any, Any]:
    """(kind, node, ctx) of one attention layer of a causal decoder."""
    from archdsl.elaborate import Elaborator
    from archdsl.frontend.text import parse_expr
    from archdsl.kinds import REGISTRY, Ctx

    ctx = Ctx(d_model=D_MODEL, vocab=0, stack="decoder")
    node = Elaborator("bench").component("attention", "attention", parse_expr(call, "bench"), ctx)
    return REGISTRY[node.kind], node, ctx


def analysed(call: str, n: int) -> tuple[int, int]:
    """(forward FLOPs, bytes a training step keeps) of the layer at batch 1, from the analysis."""
    from archdsl.kinds import ActCfg

    kind, node, ctx = _component(call)
    shape = [(1, n, D_MODEL)]
    saved = kind.saved(node, ctx, shape, ActCfg())
    kept = sum(1 * n * D_MODEL * 4 for keep in saved.inputs if keep)
    return int(kind.flops(node, ctx, shape)), int(saved.internal + kept)


def build(call: str) -> Any:
    from archdsl.lower.build import instantiate

    kind, node, ctx = _component(call)
    return instantiate(kind.ctor(node, ctx)).eval()


# -- time: in one child process, alternated ------------------------------------------------------------


def timed_here(ns: list[int], repeats: int) -> dict[tuple[str, int], float]:
    """Median forward ms per (variant, n) in this process. Every round runs every length and variant
    (the variants' order turning from round to round), so each point's median spans the whole run and
    a burst of load elsewhere hits every point alike — the growth per doubling compares like with
    like. Dense attention past :data:`DENSE_ONCE_ABOVE` runs once, in the middle round."""
    import torch

    modules = {name: build(call) for name, call in VARIANTS.items()}
    gen = torch.Generator().manual_seed(0)
    xs = {n: torch.randn(1, n, D_MODEL, generator=gen) for n in ns}
    names = list(VARIANTS)
    times: dict[tuple[str, int], list[float]] = {(name, n): [] for name in names for n in ns}

    def once(name: str, n: int) -> bool:
        return name == "dense" and n > DENSE_ONCE_ABOVE

    with torch.inference_mode():
        for n in ns:
            for name in names:
                if not once(name, n):
                    modules[name](xs[n])  # warm-up
        for r in range(repeats):
            for n in ns:
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    if once(name, n) and r != repeats // 2:
                        continue
                    t0 = time.perf_counter()
                    modules[name](xs[n])
                    times[(name, n)].append(time.perf_counter() - t0)
    return {key: statistics.median(ts) * 1e3 for key, ts in times.items()}


TIMER = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[4])
from benchmarks.bench_attention_scaling import timed_here
torch.set_num_threads(int(sys.argv[3]))
times = timed_here(json.loads(sys.argv[1]), int(sys.argv[2]))
print(json.dumps([[name, n, ms] for (name, n), ms in times.items()]))
"""

#: the timing process keeps freed blocks instead of returning those over 32 MiB to the system
KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def timed(
    ns: list[int], repeats: int, threads: int, glibc_default: bool = False
) -> dict[tuple[str, int], float]:
    """:func:`timed_here` in a fresh process (its allocator settings, :data:`KEEP_FREED` unless
    ``glibc_default``, are its own, not the caller's)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({} if glibc_default else KEEP_FREED)}
    args = [json.dumps(ns), str(repeats), str(threads), str(ROOT)]
    out = subprocess.run(
        [sys.executable, "-c", TIMER, *args], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"timing failed: {out.stderr.strip().splitlines()[-1:]}")
    return {(name, n): ms for name, n, ms in json.loads(out.stdout)}


# -- peak memory: one forward in a fresh process ---------------------------------------------------

CHILD = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[4])
from benchmarks.bench_attention_scaling import build, D_MODEL
torch.set_num_threads(int(sys.argv[3]))

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB

module, n, runs = build(sys.argv[1]), int(sys.argv[2]), int(sys.argv[5])
peaks = []
with torch.inference_mode():
    x = torch.randn(1, n, D_MODEL)
    module(x)  # warm-up at this length: threads, kernels and their buffers (freed memory goes back)
    for _ in range(runs):
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        y = module(x)
        peaks.append(status("VmHWM") - before)
        del y
print(json.dumps({"peak_kb": sorted(peaks)[len(peaks) // 2]}))
"""


def peak_mib(call: str, n: int, threads: int, runs: int = 3) -> float:
    """The median over ``runs`` forwards of one forward's peak, MiB (see the module's docstring)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, call, str(n), str(threads), str(ROOT), str(runs)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{call} at n = {n}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)["peak_kb"] / 1024


# -- the rows ----------------------------------------------------------------------------------------


def attention_scaling_rows(
    ns: list[int], repeats: int, threads: int = 2, glibc_default: bool = False
) -> list[dict[str, Any]]:
    """One row per (variant, n), n ascending within each variant: ``variant``, ``n``, ``ms`` (median
    forward), ``peak_mib`` (one forward's peak resident memory), ``flops`` (forward, analysis),
    ``act_mib`` (a training step's activations, analysis), ``ms_x`` and ``peak_x`` (growth since the
    previous n, None for the first; ``growth_ok``: both ≤ 2.3 per doubling, for the window and linear
    attention) and, for the window, ``vs_dense`` — its ms, FLOPs, activations and peak over dense's at
    the same n — with ``window_le_dense`` (all four ≤ 1; the peak within 1%, the measurement's
    resolution). Measured in child processes (see the module's docstring): the caller's threads and
    allocator are left as they are."""
    times = timed(ns, repeats, threads, glibc_default)
    rows: list[dict[str, Any]] = []
    for name, call in VARIANTS.items():
        prev: dict[str, Any] | None = None
        for n in ns:
            flops, act = analysed(call, n)
            row: dict[str, Any] = {
                "variant": name,
                "n": n,
                "ms": times[(name, n)],
                "peak_mib": peak_mib(call, n, threads, 1 if name == "dense" and n > DENSE_ONCE_ABOVE else 3),
                "flops": flops,
                "act_mib": act / 2**20,
                "timed_once": name == "dense" and n > DENSE_ONCE_ABOVE,
            }
            if prev is not None and n == 2 * prev["n"]:
                row["ms_x"] = row["ms"] / prev["ms"]
                row["peak_x"] = row["peak_mib"] / prev["peak_mib"]
            else:
                row["ms_x"] = row["peak_x"] = None
            if name != "dense" and row["ms_x"] is not None:
                row["growth_ok"] = max(row["ms_x"], row["peak_x"]) <= GROWTH_TARGET
            rows.append(row)
            prev = row
    dense = {r["n"]: r for r in rows if r["variant"] == "dense"}
    for r in rows:
        if r["variant"] == "window":
            d = dense[r["n"]]
            r["vs_dense"] = {k: r[k] / d[k] for k in ("ms", "flops", "act_mib", "peak_mib")}
            r["window_le_dense"] = all(
                v <= 1 + PEAK_TOLERANCE * (k == "peak_mib") for k, v in r["vs_dense"].items()
            )
    return rows


def _x(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| variant | n | ms | × | peak MiB | × | GFLOP | act MiB | window / dense: ms, FLOPs, act, peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        vs = r.get("vs_dense")
        check = ""
        if vs is not None:
            ok = "✓" if r["window_le_dense"] else "✗"
            check = f"{ok} {vs['ms']:.2f}, {vs['flops']:.2f}, {vs['act_mib']:.2f}, {vs['peak_mib']:.2f}"
        ms = f"{r['ms']:.1f}" + (" (once)" if r["timed_once"] else "")
        lines.append(
            f"| {LABELS[r['variant']]} | {r['n']:,} | {ms} | {_x(r['ms_x'])} | {r['peak_mib']:.1f} | "
            f"{_x(r['peak_x'])} | {r['flops'] / 1e9:.2f} | {r['act_mib']:.1f} | {check} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--max-n", type=int, default=32768)
    ap.add_argument("--min-n", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--glibc-default", action="store_true", help="time with glibc's allocator defaults")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = ap.parse_args()
    ns = [n for n in (args.min_n * 2**k for k in range(16)) if n <= args.max_n]
    t0 = time.perf_counter()
    rows = attention_scaling_rows(ns, args.repeats, args.threads, args.glibc_default)
    alloc = "glibc defaults" if args.glibc_default else "freed memory kept"
    print(
        f"one attention layer: d {D_MODEL}, 4 heads, batch 1, causal, {args.threads} threads, forward "
        f"({alloc}); load average {os.getloadavg()[0]:.2f} at the end"
    )
    print(table(rows))
    growth = [r for r in rows if "growth_ok" in r]
    print(
        f"growth ≤ {GROWTH_TARGET} per doubling (window, linear): "
        f"{sum(r['growth_ok'] for r in growth)}/{len(growth)}; "
        f"window ≤ dense: {sum(r['window_le_dense'] for r in rows if 'vs_dense' in r)}/{len(ns)}"
    )
    if args.json:
        print(json.dumps(rows))
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
