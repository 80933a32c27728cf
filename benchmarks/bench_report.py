"""How fast the analysis is: reports from the spec alone, against measuring a model with PyTorch.

    python benchmarks/bench_report.py [--repeats 7] [--skip-fake] [--skip-process] [--fake-moe] [--fake-all]

1. A full report of the 1-trillion-parameter MoE spec (specs/moe_1t.arch), in-process: load, check,
   analyse (params, FLOPs, memory, polynomials), JSON and table. Target: < 50 ms.
2. Every shipped spec at 8 sequence lengths (powers of two up to its context), in-process: load and
   the 8 reports. Target: < 1 s. (Printed beside it, for information: the same with every report's
   JSON made too.)
3. The cheapest way PyTorch can count the same: the model built under FakeTensorMode (nothing
   allocated) and run once under FlopCounterMode, at one length (n = min(context, 2048)), against
   archdsl's whole report (every figure, JSON included) at that length, both from the loaded spec, for
   a few representative specs (GPT-2 small; Llama 3 8B: GQA, SwiGLU, RoPE). Target: >= 50x. A
   mixture of experts cannot be counted this way (its routing makes shapes depend on the data,
   ``aten.nonzero``); ``--fake-moe`` times how long the attempt on moe_1t takes before it fails, once;
   ``--fake-all`` compares every shipped spec.
4. ``archdsl check SPEC`` and ``archdsl report SPEC`` as processes — ``python -m archdsl`` and the
   installed ``archdsl`` script — for GPT-2 small, Llama 3 8B and moe_1t. Target: < 0.5 s wall. The
   processes use this checkout (PYTHONPATH) with their bytecode cached, as an installed package has
   it (a warm-up run writes it under a temporary PYTHONPYCACHEPREFIX). A further process analyses
   every spec and checks that neither torch nor sympy was imported.

In-process times are medians over --repeats runs after a warm-up (the first load builds the parser);
pairs (3) and processes (4) alternate. The analysis never imports torch; part 3 does, after parts 1
and 2 have run (in a process that had not imported it already: the script then asserts it).

``analysis_rows(repeats)`` returns the rows for benchmarks/run.py: name, value, unit, target, ok.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # this checkout's archdsl, run from anywhere
    sys.path.insert(0, str(ROOT))

import archdsl  # noqa: E402
from archdsl.cost.render import table  # noqa: E402
from archdsl.pipeline import default_seq_len, sweep  # noqa: E402

SPECS = sorted([*ROOT.glob("specs/*.arch"), *ROOT.glob("specs/*.yaml")])
MOE = ROOT / "specs" / "moe_1t.arch"
#: representative specs for the comparison with FakeTensorMode + FlopCounterMode
FAKE_SPECS = ("gpt2_small.arch", "llama3_8b.arch")
#: specs whose check and report run as processes
PROCESS_SPECS = ("gpt2_small.arch", "llama3_8b.arch", "moe_1t.arch")

TARGET_MOE_MS = 50.0
TARGET_ALL_MS = 1000.0
TARGET_RATIO = 50.0
TARGET_PROCESS_S = 0.5


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


# -- 1 and 2: in-process ------------------------------------------------------------------------------


def full_report(path: Path) -> None:
    spec = archdsl.load(path)
    r = archdsl.analyze(spec, batch=1, seq_len=4096)
    r.to_dict()
    table(r)


def lengths(spec: archdsl.Spec) -> list[int]:
    top = default_seq_len(spec)
    return [max(1, top >> k) for k in range(7, -1, -1)]


def all_specs_sweep(json: bool = False) -> int:
    count = 0
    for path in SPECS:
        spec = archdsl.load(path)
        reports = sweep(spec, lengths(spec))
        if json:
            for r in reports:
                r.to_dict()
        count += len(reports)
    return count


def in_process(repeats: int, json: bool = False) -> dict[str, float]:
    """Parts 1 and 2: the times in ms, and the number of reports of part 2 (``json``: also part 2
    with every report's JSON)."""
    out = {
        "moe_ms": median_ms(lambda: full_report(MOE), repeats),
        "reports": all_specs_sweep(),
        "all_ms": median_ms(all_specs_sweep, max(3, repeats // 2)),
    }
    if json:
        out["all_json_ms"] = median_ms(lambda: all_specs_sweep(json=True), max(3, repeats // 2))
    return out


# -- 3: against FakeTensorMode + FlopCounterMode -----------------------------------------------------------


def fake_flop_count(spec: archdsl.Spec, seq_len: int) -> int:
    """What a user can do with PyTorch alone: build the model with fake tensors and count one forward."""
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


def our_report(spec: archdsl.Spec, seq_len: int) -> int:
    """archdsl's whole report at one length (the graph built anew: nothing kept from a run before)."""
    r = archdsl.analyze(spec, seq_len=seq_len)
    r.to_dict()
    return r.flops_forward


def against_fake(names: tuple[str, ...], repeats: int) -> list[dict[str, Any]]:
    """Part 3: per spec, medians of alternated pairs after a warm-up of each."""
    import torch

    torch.set_num_threads(2)
    rows = []
    for name in names:
        spec = archdsl.load(ROOT / "specs" / name)
        n = min(default_seq_len(spec), 2048)
        measured, ours = fake_flop_count(spec, n), our_report(spec, n)  # warm-up, and the counts
        fake_t, our_t = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            fake_flop_count(spec, n)
            fake_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            our_report(spec, n)
            our_t.append(time.perf_counter() - t)
        fake_ms, our_ms = statistics.median(fake_t) * 1e3, statistics.median(our_t) * 1e3
        rows.append(
            {
                "spec": name,
                "n": n,
                "fake_ms": fake_ms,
                "ours_ms": our_ms,
                "ratio": fake_ms / our_ms,
                "flops_equal": measured == ours,
            }
        )
    return rows


def fake_moe_attempt() -> tuple[float, str]:
    """How long FakeTensorMode + FlopCounterMode take on moe_1t before failing, once (and why)."""
    spec = archdsl.load(MOE)
    t = time.perf_counter()
    try:
        fake_flop_count(spec, min(default_seq_len(spec), 2048))
        why = "counted"
    except Exception as e:  # data-dependent shapes: DynamicOutputShapeException on aten.nonzero
        why = f"{type(e).__name__}: {str(e)[:60]}"
    return (time.perf_counter() - t) * 1e3, why


# -- 4: processes ----------------------------------------------------------------------------------------


def launchers() -> dict[str, list[str]]:
    """``python -m archdsl`` and the installed ``archdsl`` script (when there is one)."""
    out = {"python -m archdsl": [sys.executable, "-m", "archdsl"]}
    script = Path(sys.executable).with_name("archdsl")
    found = str(script) if script.exists() else shutil.which("archdsl")
    if found:
        out["archdsl"] = [found]
    return out


def _env(pycache: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode compiled
    env["PYTHONPYCACHEPREFIX"] = pycache
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


_IMPORT_CHECK = """
import sys
import archdsl
from archdsl.pipeline import sweep
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("specs/*.arch")):
    for r in sweep(archdsl.load(path), [None]):
        r.to_dict()
print(" ".join(m for m in ("torch", "sympy", "networkx", "yaml") if m in sys.modules))
"""


def processes(repeats: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Part 4: the wall (and CPU) time of each command as a process, medians over alternated runs;
    and the heavy modules analysing every spec imports."""
    runs = [
        (who, argv, cmd, name)
        for who, argv in launchers().items()
        for cmd in ("check", "report")
        for name in PROCESS_SPECS
    ]
    with tempfile.TemporaryDirectory(prefix="archdsl-pycache-") as pycache:
        env = _env(pycache)
        wall: dict[int, list[float]] = {i: [] for i in range(len(runs))}
        cpu: dict[int, list[float]] = {i: [] for i in range(len(runs))}
        for k in range(repeats + 1):  # the first round warms up (and writes the bytecode)
            for i, (_, argv, cmd, name) in enumerate(runs):
                before = os.times()
                t = time.perf_counter()
                subprocess.run(  # from ROOT: `python -m` puts the working folder first on the path
                    [*argv, cmd, str(ROOT / "specs" / name)],
                    env=env,
                    cwd=ROOT,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                elapsed = time.perf_counter() - t
                after = os.times()
                if k:
                    wall[i].append(elapsed)
                    cpu[i].append(
                        after.children_user
                        - before.children_user
                        + after.children_system
                        - before.children_system
                    )
        imported = subprocess.run(
            [sys.executable, "-c", _IMPORT_CHECK, str(ROOT)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    rows = [
        {
            "launcher": who,
            "command": cmd,
            "spec": name,
            "wall_s": statistics.median(wall[i]),
            "cpu_s": statistics.median(cpu[i]),
        }
        for i, (who, _, cmd, name) in enumerate(runs)
    ]
    return rows, imported


# -- the rows for benchmarks/run.py ------------------------------------------------------------------------


def _row(name: str, value: float, unit: str, target: float, below: bool) -> dict[str, Any]:
    sign = "<" if below else ">="
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "target": f"{sign} {target:g} {unit}",
        "ok": value < target if below else value >= target,
    }


def analysis_rows(repeats: int) -> list[dict[str, Any]]:
    """The analysis's figures with their targets: the moe_1t report, every spec x 8 lengths, the
    ratio to FakeTensorMode + FlopCounterMode per representative spec, and the worst process time of
    each command and launcher (over GPT-2 small, Llama 3 8B and moe_1t). Keys: name, value, unit,
    target (text), ok. Raises AssertionError if the analysis imported torch or sympy."""
    torch_before = "torch" in sys.modules
    fig = in_process(repeats)
    assert torch_before or "torch" not in sys.modules, "the analysis imported torch"
    rows = [
        _row("analysis: moe_1t full report (1T params, 61 blocks)", fig["moe_ms"], "ms", TARGET_MOE_MS, True),
        _row(
            f"analysis: {len(SPECS)} shipped specs x 8 lengths ({fig['reports']} reports, loading included)",
            fig["all_ms"],
            "ms",
            TARGET_ALL_MS,
            True,
        ),
    ]
    procs, imported = processes(repeats)
    assert not {"torch", "sympy"} & set(imported), f"the analysis imported {imported}"
    for who in dict.fromkeys(p["launcher"] for p in procs):
        for cmd in ("check", "report"):
            worst = max(p["wall_s"] for p in procs if p["launcher"] == who and p["command"] == cmd)
            rows.append(
                _row(
                    f"analysis: `{who} {cmd}` as a process (worst of {', '.join(PROCESS_SPECS)})",
                    worst,
                    "s",
                    TARGET_PROCESS_S,
                    True,
                )
            )
    for f in against_fake(FAKE_SPECS, repeats):
        rows.append(
            _row(
                f"analysis vs FakeTensorMode + FlopCounterMode: {f['spec']}, n = {f['n']}",
                f["ratio"],
                "x",
                TARGET_RATIO,
                False,
            )
        )
    return rows


# -- the script ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-fake", action="store_true", help="skip part 3 (FakeTensorMode)")
    ap.add_argument("--skip-process", action="store_true", help="skip part 4 (processes)")
    ap.add_argument("--fake-moe", action="store_true", help="part 3: also time the attempt on moe_1t (~30 s)")
    ap.add_argument("--fake-all", action="store_true", help="part 3: every shipped spec, not only the two")
    args = ap.parse_args()

    torch_before = "torch" in sys.modules
    r = archdsl.analyze(archdsl.load(MOE), seq_len=4096)
    fig = in_process(args.repeats, json=True)
    ms = fig["moe_ms"]
    print(
        f"1. full report of {MOE.name} ({r.params_total:,} parameters, {r.n_blocks} blocks): "
        f"{ms:.1f} ms (target < {TARGET_MOE_MS:g} ms: {ms / TARGET_MOE_MS:.2f} of it)"
    )
    ms = fig["all_ms"]
    print(
        f"2. {len(SPECS)} shipped specs x 8 lengths ({fig['reports']} reports): {ms:.0f} ms "
        f"(target < {TARGET_ALL_MS:g} ms: {ms / TARGET_ALL_MS:.2f} of it); "
        f"with every report's JSON: {fig['all_json_ms']:.0f} ms"
    )
    assert torch_before or "torch" not in sys.modules, "the analysis imported torch"

    if not args.skip_process:
        procs, imported = processes(args.repeats)
        print(f"4. check and report as processes (target < {TARGET_PROCESS_S:g} s wall; medians)")
        print("| command | spec | wall s | CPU s | of target |")
        print("|---|---|---:|---:|---:|")
        for p in procs:
            print(
                f"| `{p['launcher']} {p['command']}` | {p['spec']} | {p['wall_s']:.3f} | {p['cpu_s']:.3f} | "
                f"{p['wall_s'] / TARGET_PROCESS_S:.2f} |"
            )
        print(f"   heavy modules imported analysing every spec: {' '.join(imported) or 'none'}")
        assert not {"torch", "sympy"} & set(imported), f"the analysis imported {imported}"

    if args.skip_fake:
        return 0
    print(f"3. FakeTensorMode + FlopCounterMode vs archdsl's whole report (target >= {TARGET_RATIO:g}x)")
    print("| spec | n | FakeTensorMode + FlopCounterMode ms | archdsl report ms | ratio | FLOPs equal |")
    print("|---|---:|---:|---:|---:|---|")
    names = tuple(p.name for p in SPECS) if args.fake_all else FAKE_SPECS
    for name in names:
        try:
            [f] = against_fake((name,), args.repeats)
        except Exception as e:  # MoE routing, LSH buckets: shapes that depend on the data
            print(f"| {name} | | {type(e).__name__}: not measurable under FakeTensorMode | | | |")
            continue
        print(
            f"| {f['spec']} | {f['n']} | {f['fake_ms']:.0f} | {f['ours_ms']:.1f} | {f['ratio']:.0f}x | "
            f"{'yes' if f['flops_equal'] else 'NO'} |"
        )
    if args.fake_moe:
        ms, why = fake_moe_attempt()
        moe = archdsl.load(MOE)
        ours = median_ms(lambda: our_report(moe, 2048), args.repeats)
        print(f"| {MOE.name} | 2048 | {ms:.0f} until it fails ({why}) | {ours:.1f} | > {ms / ours:.0f}x | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
