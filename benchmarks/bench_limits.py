"""The slowest specs archdsl accepts, on the clock: `check` and `report` in a fresh process each.

    python benchmarks/bench_limits.py [--repeats 5]

The limits of archdsl/limits.py are chosen so that `check` and `report` finish in under a second and a
few hundred MB on any input (docs/security.md). The corpus test (tests/test_bad.py) holds every hostile
case to a second of CPU time; this measures what a user waits for, start-up included, on the inputs
that come closest to the limits while still being accepted:

* the deepest model: MAX_LAYERS layers, each overridden (`layer i { ... }`) so that no two are alike
  and no cost is shared — as many as MAX_TOKENS allows;
* the deepest encoder-decoder (T5, half the layers in each stack);
* MAX_TOKENS worth of constants, in each form;
* a 64 KiB file of comments;
* a 10 MB file (refused at once).

Target: every median under 1 s, every peak under 300 MB.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from archdsl.frontend import count_tokens
from archdsl.limits import MAX_LAYERS, MAX_SOURCE_BYTES, MAX_TOKENS

ROOT = Path(__file__).resolve().parent.parent
#: the command line in a process that reports its own wall time and memory high-water mark (kB)
MEASURE = (
    "import re, sys, time\n"
    "t = time.perf_counter()\n"
    "from archdsl.cli import main\n"
    "status = main(sys.argv[1:])\n"
    "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]\n"
    "sys.stderr.write(f'\\nMEASURED {time.perf_counter() - t:.3f} {peak}\\n')\n"
    "sys.exit(status)\n"
)


def deepest(path: Path) -> Path:
    head = [
        "model deep {",
        "  d_model = 32",
        "  vocab = 50",
        "  embedding = token_embedding()",
        "  position = learned(max_len = 64)",
        "  block {",
        f"    repeat = {MAX_LAYERS}",
        "    norm = layernorm()",
        "    attention = mha(heads = 4)",
        "    ffn = mlp(hidden = 64)",
        "  }",
    ]
    tail = ["  head = lm_head()", "}", ""]
    lines = list(head)
    for i in range(MAX_LAYERS):
        line = f"  layer {i} {{ ffn = mlp(hidden = {i + 1}) }}"
        if count_tokens("\n".join([*lines, line, *tail]), "x.arch") > MAX_TOKENS:
            break
        lines.append(line)
    path.write_text("\n".join([*lines, *tail]))
    return path


def constants(path: Path, yaml: bool) -> Path:
    sep = ": " if yaml else " = "
    lines: list[str] = []
    i = 0
    while count_tokens("\n".join(lines), path.name) < MAX_TOKENS - 400:
        lines.append(f"c{i}{sep}{i}")
        i += 1
    spec = (ROOT / "specs" / ("gpt2_small.yaml" if yaml else "gpt2_small.arch")).read_text()
    path.write_text("\n".join(lines) + "\n" + spec)
    return path


def run(args: list[str], repeats: int) -> tuple[float, int, int]:
    times, peaks, status = [], [], 0
    for _ in range(repeats):
        r = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, cwd=ROOT)
        seconds, peak = r.stderr.rsplit("MEASURED ", 1)[1].split()
        times.append(float(seconds))
        peaks.append(int(peak))
        status = r.returncode
    return statistics.median(times), max(peaks) // 1024, status


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        comments = d / "comments.arch"
        filler = ("# " + "x" * 78 + "\n") * ((MAX_SOURCE_BYTES - 2000) // 81)
        comments.write_text((ROOT / "specs" / "tiny.arch").read_text() + filler)
        huge = d / "huge.arch"
        huge.write_bytes(b"#" * (10 << 20))
        cases = {
            "deepest model (distinct layers)": [str(deepest(d / "deep.arch"))],
            f"T5, {MAX_LAYERS // 2} + {MAX_LAYERS // 2} layers": [
                str(ROOT / "specs" / "t5_base.arch"),
                "--set",
                f"n_layers={MAX_LAYERS // 2}",
            ],
            "constants, text form": [str(constants(d / "consts.arch", yaml=False))],
            "constants, YAML form": [str(constants(d / "consts.yaml", yaml=True))],
            "64 KiB of comments": [str(comments)],
            "10 MB file (refused)": [str(huge)],
        }
        print(f"{'input':36s} {'command':8s} {'median':>8s} {'peak':>8s}  exit")
        worst = 0.0
        for name, args in cases.items():
            for command in ("check", "report"):
                t, peak, status = run([command, *args], opts.repeats)
                worst = max(worst, t)
                print(f"{name:36s} {command:8s} {t * 1e3:6.0f} ms {peak:5d} MB  {status}")
        print(f"slowest: {worst * 1e3:.0f} ms (target < 1000 ms)")


if __name__ == "__main__":
    main()
