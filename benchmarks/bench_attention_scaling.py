"""Time and peak memory of one attention layer as the sequence grows: sliding-window (w = 256) and
linear attention grow about linearly from n = 1k to 16k; dense attention grows quadratically (in
time always; in memory when the scores are materialised — SDPA's flash kernel keeps memory linear).

    python benchmarks/bench_attention_scaling.py [--max-n 16384] [--dense-max-n 8192]

Each (variant, n) runs in its own process so its peak resident memory is its own; the table shows the
peak above an idle process that imported the same modules, the median forward time, and the growth
factor per doubling of n (2 is linear, 4 quadratic).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

VARIANTS = {
    "sliding_window(w=256)": "sliding_window(heads = 4, window = 256, bias = false)",
    "linear(elu+1)": "linear(heads = 4, feature_map = elu, bias = false)",
    "dense (SDPA flash)": "mha(heads = 4, bias = false)",
    "dense (explicit scores)": "mha(heads = 4, bias = false, softcap = 1000.0)",
}

CHILD = r"""
import json, resource, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from archdsl.elaborate import Elaborator
from archdsl.kinds import REGISTRY, Ctx
from archdsl.lower.build import instantiate
from archdsl.frontend.text import parse_expr
call, n = sys.argv[1], int(sys.argv[2])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if call != "idle":
    ctx = Ctx(d_model=256, vocab=0, stack="decoder")
    node = Elaborator("bench").component("attention", "attention", parse_expr(call, "bench"), ctx)
    module = instantiate(REGISTRY[node.kind].ctor(node, ctx)).eval()
    x = torch.randn(1, n, 256)
    times = []
    with torch.inference_mode():
        module(x)  # warm up
        for _ in range(3):
            t0 = time.perf_counter(); module(x); times.append(time.perf_counter() - t0)
else:
    times = [0.0]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"time": statistics.median(times), "peak_kb": peak, "base_kb": base}))
"""


def run(call: str, n: int, threads: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, call, str(n), str(threads)], capture_output=True, text=True
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}  # type: ignore[dict-item]
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-n", type=int, default=16384)
    ap.add_argument("--dense-max-n", type=int, default=8192, help="explicit dense scores need ~n^2 memory")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sizes = [1024 * 2**k for k in range(10) if 1024 * 2**k <= args.max_n]
    idle = run("idle", 0, args.threads)["peak_kb"]
    print(
        f"one attention layer, d 256, 4 heads, batch 1, {args.threads} threads; memory above an idle process"
    )
    print(f"{'variant':26s} {'n':>6s} {'time ms':>9s} {'x/2n':>5s} {'peak MiB':>9s} {'x/2n':>5s}")
    results = {}
    for name, call in VARIANTS.items():
        prev = None
        for n in sizes:
            if name.startswith("dense (explicit") and n > args.dense_max_n:
                continue
            r = run(call, n, args.threads)
            if "error" in r:
                print(f"{name:26s} {n:6d}  {r['error']}")
                continue
            mib = max(r["peak_kb"] - idle, 0) / 1024
            t_growth = f"{r['time'] / prev[0]:5.1f}" if prev else "     "
            m_growth = f"{mib / prev[1]:5.1f}" if prev and prev[1] > 0 else "     "
            print(f"{name:26s} {n:6d} {r['time'] * 1e3:9.1f} {t_growth} {mib:9.1f} {m_growth}")
            prev = (r["time"], mib)
            results[f"{name}@{n}"] = {"time_s": r["time"], "peak_mib": mib}
    print(json.dumps(results))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
