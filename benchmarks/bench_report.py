"""How fast the analysis is: reports from the spec alone, against measuring a model with PyTorch.

    python benchmarks/bench_report.py [--repeats 7] [--skip-fake]

1. A full report of the 1-trillion-parameter MoE spec (specs/moe_1t.arch), in-process: load, check,
   analyse (params, FLOPs, memory, polynomials), JSON and table. Target: < 50 ms.
2. Every shipped spec at 8 sequence lengths (powers of two up to its context), in-process. Target: < 1 s.
3. The same specs measured the cheapest way PyTorch can: built under FakeTensorMode (nothing allocated)
   and run once under FlopCounterMode, at one length — and the ratio of that to archdsl's report.

Times are medians over --repeats runs after a warm-up (the first load compiles the grammar). The
analysis never imports torch; part 3 does, after parts 1 and 2 have run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import archdsl
from archdsl.cost.render import table
from archdsl.pipeline import default_seq_len, sweep

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted([*ROOT.glob("specs/*.arch"), *ROOT.glob("specs/*.yaml")])


def median_ms(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def full_report(path: Path) -> None:
    spec = archdsl.load(path)
    r = archdsl.analyze(spec, batch=1, seq_len=4096)
    r.to_dict()
    table(r)


def lengths(spec: archdsl.Spec) -> list[int]:
    top = default_seq_len(spec)
    return [max(1, top >> k) for k in range(7, -1, -1)]


def all_specs_sweep() -> int:
    count = 0
    for path in SPECS:
        spec = archdsl.load(path)
        count += len(sweep(spec, lengths(spec)))
    return count


def fake_flop_count(spec: archdsl.Spec, seq_len: int) -> int:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from archdsl.graph import input_shapes, input_vocabs
    from archdsl.measure import flop_counter_mode

    vocabs = input_vocabs(spec.model)
    with FakeTensorMode():
        model = archdsl.build(spec)
        inputs = []
        for name, shape in input_shapes(spec.model).items():
            dims = [1 if d == "B" else seq_len if d in ("T", "S") else d for d in shape]
            inputs.append(torch.randint(0, vocabs[name], dims) if len(dims) == 2 else torch.randn(dims))
        with torch.no_grad(), flop_counter_mode() as fc:
            model(*inputs)
    return int(fc.get_total_flops())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-fake", action="store_true", help="skip part 3 (FakeTensorMode)")
    args = ap.parse_args()

    moe = ROOT / "specs" / "moe_1t.arch"
    r = archdsl.analyze(archdsl.load(moe), seq_len=4096)
    ms = median_ms(lambda: full_report(moe), args.repeats)
    print(f"1. full report of {moe.name} ({r.params_total:,} parameters, {r.n_blocks} blocks): {ms:.1f} ms")

    n_reports = all_specs_sweep()
    ms = median_ms(all_specs_sweep, max(1, args.repeats // 2))
    print(f"2. {len(SPECS)} shipped specs x 8 lengths ({n_reports} reports): {ms:.0f} ms")
    assert "torch" not in sys.modules, "the analysis imported torch"
    if args.skip_fake:
        return 0

    print("3. FlopCounterMode under FakeTensorMode vs archdsl, one length each (n = min(context, 2048))")
    print("| spec | params | FakeTensorMode + FlopCounterMode ms | archdsl report ms | ratio | FLOPs equal |")
    print("|---|---:|---:|---:|---:|---|")
    total_fake = total_ours = 0.0
    for path in SPECS:
        spec = archdsl.load(path)
        n = min(default_seq_len(spec), 2048)
        t = time.perf_counter()
        try:
            measured = fake_flop_count(spec, n)
        except Exception as e:  # MoE routing: data-dependent shapes FakeTensorMode cannot run
            print(f"| {path.name} | | {type(e).__name__}: not measurable under FakeTensorMode | | | |")
            continue
        fake_ms = (time.perf_counter() - t) * 1e3
        ours_ms = median_ms(lambda spec=spec, n=n: archdsl.analyze(spec, seq_len=n).to_dict(), 3)
        report = archdsl.analyze(spec, seq_len=n)
        total_fake += fake_ms
        total_ours += ours_ms
        same = "yes" if report.flops_forward == measured else f"NO ({measured:,})"
        print(
            f"| {path.name} | {report.params_total:,} | {fake_ms:.0f} | {ours_ms:.1f} | "
            f"{fake_ms / ours_ms:.0f}x | {same} |"
        )
    print(f"| all | | {total_fake:.0f} | {total_ours:.0f} | {total_fake / total_ours:.0f}x | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
