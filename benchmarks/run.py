"""archdsl's performance targets, measured in one run on this machine: one table of ratios.

    python benchmarks/run.py [--repeats 5] [--only forward,decode,long,analysis] [--quick] [--json FILE]

Every comparison runs its contenders in one process, alternated (A B C A B C ...) after a warm-up, and
takes medians of at least ``--repeats`` runs, so machine noise hits all alike; the targets are ratios,
never absolute times. The limits are measured here too: fp32 GEMM throughput (the FLOP/s a forward can
reach) and GEMV bandwidth (the bytes/s one decoding step, which reads every weight once, can reach).

- forward, forward + backward: GPT-2 small (batch 4, n 256) and a Llama-style model (d 1024, 8 layers,
  16 heads / 4 kv heads, SwiGLU; batch 2, n 512): archdsl vs Hugging Face (same config, SDPA) vs a
  hand-written nanoGPT-style module vs x-transformers.
- decode: batch 1, 32-token prompt, 128 new tokens, greedy: archdsl's ``generate`` vs Hugging Face's,
  in float32, bfloat16 (where the CPU has it) and compiled.
- long context: sliding-window (w 512), linear and dense attention, n = 1k ... 32k
  (benchmarks/bench_attention_scaling.py).
- analysis: every shipped spec x 8 lengths; the 1T-parameter MoE; vs FlopCounterMode; the CLI.

``--quick`` runs everything at test size (a smoke test: the targets are not meaningful there).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402

import archdsl  # noqa: E402


@dataclass
class Row:
    """One line of the table: a measured figure, what it is compared with, the target it must meet."""

    section: str
    what: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None  # None: reported, no target

    def cells(self) -> list[str]:
        mark = {True: "ok", False: "MISSED", None: ""}[self.ok]
        return [
            self.section,
            self.what,
            f"{self.value:,.3f}".rstrip("0").rstrip("."),
            self.unit,
            self.target,
            mark,
        ]


def alternate(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, called in turn (A B C A B C ...) after ``warmup`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


# -- limits ---------------------------------------------------------------------------------------------


def gemm_flops(repeats: int, sizes: tuple[int, ...] = (1024, 2048, 3072)) -> float:
    """fp32 FLOP/s of square matmuls, the best of a few sizes (each a median): the most a forward's
    matmuls can reach on this machine."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        t = alternate({"mm": lambda a=a, b=b: torch.mm(a, b)}, repeats, warmup=2)["mm"]
        best = max(best, 2 * n**3 / t)
    return best


def gemv_bandwidth(repeats: int, dtype: torch.dtype = torch.float32, mib: int = 256) -> float:
    """Bytes/s of a matrix-vector product over a matrix far larger than the caches: a decoding step
    reads each weight once, so this bounds its speed."""
    n = int(math.sqrt(mib * 2**20 / torch.finfo(dtype).bits * 8))
    w, x = torch.randn(n, n).to(dtype), torch.randn(1, n).to(dtype)
    t = alternate({"mv": lambda: torch.nn.functional.linear(x, w)}, repeats, warmup=2)["mv"]
    return w.numel() * w.element_size() / t


def bf16_supported() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), or a GPU is used."""
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


# -- forward and forward + backward ---------------------------------------------------------------------


def contenders(s: peers.Shape) -> tuple[dict[str, torch.nn.Module], archdsl.Spec]:
    """archdsl, Hugging Face, nanoGPT and x-transformers at shape ``s``, and archdsl's spec; the first
    three share weights and are checked to agree."""
    hf = peers.hf_model(s)
    ours, spec = peers.archdsl_model(s, hf)
    nano = peers.NanoGPT(s)
    nano.load_state_dict(ours.state_dict())
    models = {"archdsl": ours, "Hugging Face": hf, "nanoGPT": nano}
    xt = peers.xtransformers_model(s)
    if xt is not None:
        models["x-transformers"] = xt
    idx = torch.randint(0, s.vocab, (2, 8))
    with torch.no_grad():
        ref = ours.eval()(idx)
        torch.testing.assert_close(hf.eval()(idx).logits, ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(nano.eval()(idx), ref, atol=1e-4, rtol=1e-4)
    return models, spec


def loss_fn(name: str, model: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Each model's training loss, the way its users compute it."""
    if name == "Hugging Face":
        return lambda idx, tgt: model(idx, labels=idx).loss  # it shifts the labels itself
    if name == "x-transformers":
        return lambda idx, tgt: torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), tgt.flatten())
    return lambda idx, tgt: model(idx, tgt)[1]


GEMM = "GEMM"


def model_rows(s: peers.Shape, repeats: int, peak: float) -> list[Row]:
    """Forward and forward + backward of every contender at shape ``s``, and archdsl's FLOP/s against
    the GEMM peak: the best of ``peak`` and a 2048^3 matmul timed in the same rounds as the forwards
    (a peak measured at another moment of a shared machine says little)."""
    models, spec = contenders(s)
    idx = torch.randint(0, s.vocab, (s.batch, s.seq))
    tgt = torch.randint(0, s.vocab, (s.batch, s.seq))
    title = f"{s.name} (batch {s.batch}, n {s.seq})"
    print(f"forward and forward + backward, {title} ...", file=sys.stderr)
    report = archdsl.analyze(spec, s.batch, s.seq)
    rows: list[Row] = []

    def forward(m: torch.nn.Module) -> Callable[[], object]:
        return lambda: m(idx)

    for m in models.values():
        m.eval()
    n = 64 if s.d < 256 else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    fns = {name: forward(m) for name, m in models.items()}
    fns[GEMM] = lambda: torch.mm(a, b)  # the peak, measured in the same rounds as the models
    with torch.inference_mode():
        fwd = alternate(fns, repeats)
    peak = max(peak, 2 * n**3 / fwd.pop(GEMM))
    rows += ratio_rows(f"forward, {title}", fwd, {"nanoGPT": 1.03, "Hugging Face": 0.95})

    def step(name: str, m: torch.nn.Module) -> Callable[[], object]:
        loss = loss_fn(name, m)

        def run() -> None:
            m.zero_grad(set_to_none=True)
            loss(idx, tgt).backward()

        return run

    for m in models.values():
        m.train()
    both = alternate({n: step(n, m) for n, m in models.items()}, repeats)
    rows += ratio_rows(f"forward + backward, {title}", both, {"nanoGPT": 1.03, "Hugging Face": 0.85})
    achieved = report.flops_forward / fwd["archdsl"] / peak
    rows.append(
        Row(f"forward, {title}", "archdsl FLOP/s / GEMM peak", achieved, "", ">= 0.85", achieved >= 0.85)
    )
    train = report.flops()["train_step"] / both["archdsl"] / peak
    rows.append(Row(f"forward + backward, {title}", "archdsl FLOP/s / GEMM peak", train, ""))
    return rows


def ratio_rows(section: str, med: dict[str, float], targets: dict[str, float]) -> list[Row]:
    rows = [Row(section, f"{name} median", t * 1e3, "ms") for name, t in med.items()]
    for peer, t in med.items():
        if peer == "archdsl":
            continue
        r = med["archdsl"] / t
        target = targets.get(peer)
        rows.append(
            Row(
                section,
                f"archdsl / {peer}",
                r,
                "",
                f"<= {target}" if target else "",
                None if target is None else r <= target,
            )
        )
    return rows


# -- decode ---------------------------------------------------------------------------------------------


def bytes_per_token(model: torch.nn.Module, context: float) -> float:
    """Bytes one decoding step must read: every weight once — except embedding tables, of which it
    reads one row (a table tied to the head is read whole, as the head) — plus the keys and values
    of ``context`` positions in each layer's cache."""
    head = model.lm_head.weight
    total = 0.0
    seen: set[int] = set()
    for m in model.modules():
        for p in m.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            lookup = isinstance(m, torch.nn.Embedding) and p is not head
            total += (p[0].numel() if lookup else p.numel()) * p.element_size()
    kv = 0
    for m in model.modules():
        if hasattr(m, "n_kv_heads") and hasattr(m, "head_dim"):
            kv += 2 * m.n_kv_heads * m.head_dim * head.element_size()
    return total + kv * context


def decode_rows(
    s: peers.Shape,
    repeats: int,
    bandwidth: dict[torch.dtype, float],
    prompt: int,
    new: int,
    compiled: bool = True,
) -> list[Row]:
    hf = peers.hf_model(s).eval()
    ours, _ = peers.archdsl_model(s, hf)
    ours.eval()
    idx = torch.randint(0, s.vocab, (1, prompt))
    section = f"decode, {s.name} (batch 1, prompt {prompt}, {new} new, greedy)"
    print(f"{section} ...", file=sys.stderr)
    rows: list[Row] = []
    dtypes = [torch.float32] + ([torch.bfloat16] if torch.bfloat16 in bandwidth else [])
    for dtype in dtypes:
        hf.to(dtype)
        ours.to(dtype)

        def mine() -> torch.Tensor:
            return ours.generate(idx, new, temperature=0)

        def theirs() -> torch.Tensor:
            return hf.generate(
                idx,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=None,
            )

        name = str(dtype).removeprefix("torch.")
        with torch.inference_mode():
            same = torch.equal(mine(), theirs())
            med = alternate({"archdsl": mine, "Hugging Face": theirs}, repeats)
        tps = {k: new / t for k, t in med.items()}
        sec = f"{section}, {name}"
        rows.append(Row(sec, "archdsl tokens/s", tps["archdsl"], "tok/s"))
        rows.append(Row(sec, "Hugging Face tokens/s", tps["Hugging Face"], "tok/s"))
        if dtype == torch.float32:  # in bfloat16 rounding differs between the two: argmax ties may flip
            rows.append(Row(sec, "same tokens as Hugging Face", float(same), "", "== 1", same))
        r = tps["archdsl"] / tps["Hugging Face"]
        rows.append(Row(sec, "archdsl / Hugging Face tokens/s", r, "", ">= 1.25", r >= 1.25))
        limit = bandwidth[dtype] / bytes_per_token(ours, prompt + new / 2)
        rows.append(Row(sec, "bandwidth limit", limit, "tok/s"))
        rows.append(
            Row(
                sec,
                "archdsl / bandwidth limit",
                tps["archdsl"] / limit,
                "",
                ">= 0.85",
                tps["archdsl"] / limit >= 0.85,
            )
        )
    hf.float()
    ours.float()
    if not compiled:
        return rows
    return rows + compiled_decode_rows(ours, idx, new, section, bandwidth[torch.float32], repeats)


def compiled_decode_rows(
    model: torch.nn.Module, idx: torch.Tensor, new: int, section: str, bandwidth: float, repeats: int
) -> list[Row]:
    """archdsl's ``generate`` with its forward compiled (inductor): the prompt and the one-token step
    each compile once (static cache shapes)."""
    eager = lambda: model.generate(idx, new, temperature=0)  # noqa: E731
    with torch.inference_mode():
        want = eager()
    t0 = time.perf_counter()
    model.compile(dynamic=False)  # in place: generate's calls of the model run compiled
    with torch.inference_mode():
        first = model.generate(idx, new, temperature=0)
    compile_s = time.perf_counter() - t0
    with torch.inference_mode():
        med = alternate({"compiled": lambda: model.generate(idx, new, temperature=0)}, repeats)
    model._compiled_call_impl = None  # back to eager
    tps = new / med["compiled"]
    sec = f"{section}, float32, torch.compile"
    limit = bandwidth / bytes_per_token(model, idx.size(1) + new / 2)
    same = torch.equal(first, want)
    return [
        Row(sec, "archdsl tokens/s", tps, "tok/s"),
        Row(sec, "compile time (first generate)", compile_s, "s"),
        Row(sec, "same tokens as eager", float(same), "", "== 1", same),
        Row(sec, "archdsl / bandwidth limit", tps / limit, "", ">= 0.85", tps / limit >= 0.85),
    ]


# -- long context and the analysis (their own scripts) ---------------------------------------------------


def long_rows(repeats: int, quick: bool) -> list[Row]:
    """Sliding window (w 512), linear and dense attention from n = 1k to 32k
    (benchmarks/bench_attention_scaling.py, measured in child processes): time and peak memory per
    doubling (≤ 2.3×), and the window against dense at each n (never slower nor costlier)."""
    import bench_attention_scaling as scaling

    ns = [256, 512] if quick else [1024 * 2**i for i in range(6)]
    rows: list[Row] = []
    for r in scaling.attention_scaling_rows(ns, repeats):
        section = f"long context, {r['variant']}"
        rows.append(Row(section, f"n {r['n']}: median", r["ms"], "ms"))
        rows.append(Row(section, f"n {r['n']}: peak", r["peak_mib"], "MiB"))
        if r["variant"] != "dense" and r["ms_x"] is not None:
            ok = r["ms_x"] <= 2.3 and r["peak_x"] <= 2.3
            growth = max(r["ms_x"], r["peak_x"])
            rows.append(
                Row(
                    section,
                    f"n {r['n']}: growth per doubling (worse of time, peak)",
                    growth,
                    "x",
                    "<= 2.3",
                    ok,
                )
            )
        if "vs_dense" in r:
            worst = max(r["vs_dense"].values())
            rows.append(
                Row(
                    section,
                    f"n {r['n']}: window / dense (worst of ms, FLOPs, activations, peak)",
                    worst,
                    "",
                    "<= 1",
                    r["window_le_dense"],
                )
            )
    return rows


def analysis_rows(repeats: int, quick: bool) -> list[Row]:
    import bench_report

    return [
        Row("analysis", r["name"], r["value"], r["unit"], str(r["target"]), r["ok"])
        for r in bench_report.analysis_rows(1 if quick else repeats)
    ]


# -- the table ------------------------------------------------------------------------------------------


def progress(rows: list[Row]) -> list[Row]:
    """Each section's rows on stderr as soon as they are measured (the table comes at the end)."""
    for r in rows:
        print("  " + " | ".join(r.cells()), file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[Row]) -> None:
    cells = [["section", "figure", "value", "unit", "target", ""]] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    section = None
    for i, c in enumerate(cells):
        if i and c[0] != section:
            section = c[0]
            print(f"\n{section}")
        if i:
            print(
                "  "
                + "  ".join(c[j].rjust(widths[j]) if j == 2 else c[j].ljust(widths[j]) for j in range(1, 6))
            )
    missed = [r for r in rows if r.ok is False]
    print(f"\n{sum(r.ok is True for r in rows)} targets met, {len(missed)} missed")


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per contender (median; at least 5)")
    ap.add_argument("--only", default="forward,decode,long,analysis", help="comma-separated sections")
    ap.add_argument("--quick", action="store_true", help="test sizes, one repeat: a smoke test")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled decode (inductor)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    only = set(args.only.split(","))
    repeats = 1 if args.quick else max(5, args.repeats)
    shapes = [peers.GPT2_SMALL, peers.LLAMA_STYLE]
    if args.quick:
        shapes = [s.tiny() for s in shapes]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    peak = gemm_flops(repeats, (256, 512) if args.quick else (1024, 2048, 3072))
    bandwidth = {torch.float32: gemv_bandwidth(repeats, mib=16 if args.quick else 256)}
    if bf16_supported():
        bandwidth[torch.bfloat16] = gemv_bandwidth(repeats, torch.bfloat16, mib=16 if args.quick else 256)
    rows = [Row("limits", "fp32 GEMM peak (best square matmul)", peak / 1e9, "GFLOP/s")]
    rows += [Row("limits", f"GEMV bandwidth, {str(d)[6:]}", b / 1e9, "GB/s") for d, b in bandwidth.items()]
    progress(rows)
    prompt, new = (8, 8) if args.quick else (32, 128)
    parts: list[Callable[[], list[Row]]] = []
    if "forward" in only:
        parts += [lambda s=s: model_rows(s, repeats, peak) for s in shapes]
    if "decode" in only:
        parts += [
            lambda s=s: decode_rows(s, repeats, bandwidth, prompt, new, not args.no_compile) for s in shapes
        ]
    if "long" in only:
        parts.append(lambda: long_rows(repeats, args.quick))
    if "analysis" in only:
        parts.append(lambda: analysis_rows(repeats, args.quick))
    for part in parts:
        rows += progress(part())
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return rows


if __name__ == "__main__":
    main()
