"""benchmarks/run.py at test size: every contender builds, agrees with archdsl, and gets its row.

The speed targets themselves are measured by running the script on a quiet machine (docs/performance.md);
here only that the table is complete and its checks (same logits, same greedy tokens) hold.
"""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

pytest.importorskip("transformers")
run = pytest.importorskip("run")


def test_forward_and_decode_rows_at_test_size(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run.main(["--quick", "--only", "forward,decode", "--no-compile"])
    table = capsys.readouterr().out
    figures = {(r.section, r.what): r for r in rows}
    for shape in ("GPT-2 small", "Llama-style"):
        for mode in ("forward", "forward + backward"):
            section = next(s for s, _ in figures if s.startswith(f"{mode}, {shape}"))
            for peer in ("Hugging Face", "nanoGPT", "x-transformers"):
                ratio = figures[(section, f"archdsl / {peer}")]
                assert ratio.value > 0 and ratio.value < 100
            assert figures[(section, "archdsl FLOP/s / GEMM peak")].value > 0
        decode = [r for r in rows if r.section.startswith(f"decode, {shape}")]
        same = [r for r in decode if r.what == "same tokens as Hugging Face"]
        assert same and all(r.ok for r in same)  # greedy decoding gives Hugging Face's tokens
        assert any(r.what == "archdsl / bandwidth limit" for r in decode)
    assert "archdsl / Hugging Face" in table and "targets met" in table
    limits = [r for r in rows if r.section == "limits"]
    assert len(limits) >= 2 and all(r.value > 0 for r in limits)
