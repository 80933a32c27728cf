"""``archdsl bench``: measured figures beside the analysis's predictions (the same figures `report
--format json` prints), decode for decoders and encoder-decoders, usage errors as one line with exit 2,
spec errors as diagnostics with exit 1, and the measuring functions a benchmark script reuses. Nothing
here is timed against a target: times are only checked to be there and positive."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import archdsl
from archdsl import bench
from archdsl.cli import main
from tests.conftest import SPECS, TINY, run_cli

GPT2 = str(SPECS / "gpt2_small.arch")
BERT = str(SPECS / "bert_like.arch")
VASWANI = str(SPECS / "vaswani_base.arch")


def sets(name: str) -> list[str]:
    return [a for k, v in TINY[name].items() for a in ("--set", f"{k}={v}")]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def bench_json(capsys: pytest.CaptureFixture[str], spec: str, *args: str) -> dict[str, Any]:
    code, out, err = run(capsys, "bench", spec, *sets(_stem(spec)), *args, "--json")
    assert code == 0, err
    assert "Traceback" not in err
    return json.loads(out)  # type: ignore[no-any-return]


def report_json(capsys: pytest.CaptureFixture[str], spec: str, *args: str) -> dict[str, Any]:
    code, out, err = run(capsys, "report", spec, *sets(_stem(spec)), *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def _stem(spec: str) -> str:
    return spec.rsplit("/", 1)[-1].removesuffix(".arch")


def assert_measured(phase: dict[str, Any], runs: int) -> None:
    """Every figure there and positive; the FLOPs FlopCounterMode counts are the predicted ones for
    forward and the training step."""
    t = phase["time_s"]
    assert len(t["runs"]) == runs and all(x > 0 for x in t["runs"])
    assert 0 < t["min"] <= t["median"] <= t["max"]
    assert phase["tokens"] > 0 and phase["tokens_per_s"] > 0 and phase["flops_per_s"] > 0
    for what in ("flops", "memory_bytes"):
        assert phase[what]["measured"] > 0 and phase[what]["predicted"] > 0
        assert phase[what]["ratio"] == pytest.approx(phase[what]["measured"] / phase[what]["predicted"])
    assert phase["flops_per_s"] == pytest.approx(phase["flops"]["measured"] / t["median"])
    assert phase["tokens_per_s"] == pytest.approx(phase["tokens"] / t["median"])


def assert_predictions_are_the_reports(d: dict[str, Any], r: dict[str, Any]) -> None:
    fwd, train = d["phases"]["forward"], d["phases"]["forward+backward"]
    m = r["memory"]
    assert fwd["flops"]["predicted"] == r["flops"]["forward"]
    assert train["flops"]["predicted"] == r["flops"]["train_step"]
    assert fwd["memory_bytes"]["predicted"] == m["weights_bytes"] + m["largest_op_bytes"]
    assert train["memory_bytes"]["predicted"] == m["train_peak_bytes"] - m["optimizer_bytes"]
    assert fwd["tokens"] == train["tokens"] == r["flops"]["tokens_per_step"]
    assert d["params"] == r["params"]["total"]
    # what the module computes is what the analysis predicts (the registry tests hold every kind to it)
    assert fwd["flops"]["measured"] == fwd["flops"]["predicted"]
    assert train["flops"]["measured"] == train["flops"]["predicted"]


def test_decoder_json_beside_report(capsys: pytest.CaptureFixture[str]) -> None:
    d = bench_json(
        capsys, GPT2, "--batch", "2", "--seq", "16", "--prompt", "4", "--new-tokens", "6", "--repeats", "3"
    )
    assert d["model"] == "gpt2_small" and d["type"] == "decoder"
    assert d["settings"] == {
        "batch": 2,
        "seq_len": 16,
        "dtype": "float32",
        "device": "cpu",
        "compile": None,
        "repeats": 3,
        "warmup": 1,
        "seed": 0,
    }
    assert d["environment"]["timer"] == "time.perf_counter" and d["environment"]["threads"] >= 1
    for name in ("forward", "forward+backward", "decode"):
        assert_measured(d["phases"][name], runs=3)
    assert_predictions_are_the_reports(d, report_json(capsys, GPT2, "--batch", "2", "--seq", "16"))

    dec = d["phases"]["decode"]
    sizes = (dec["prompt"], dec["source"], dec["new_tokens"], dec["steps"], dec["tokens"])
    assert sizes == (4, None, 6, 5, 2)
    before, after, cache = (report_json(capsys, GPT2, "--batch", "2", "--seq", n) for n in ("4", "9", "10"))
    steps = after["flops"]["forward_mask_aware"] - before["flops"]["forward_mask_aware"]
    assert dec["flops"]["predicted"] == pytest.approx(steps / 5)
    assert dec["kv_cache_bytes"] == cache["memory"]["kv_cache_bytes"] > 0
    weights, largest = before["memory"]["weights_bytes"], before["memory"]["largest_op_bytes"]
    assert dec["memory_bytes"]["predicted"] == weights + dec["kv_cache_bytes"] + largest
    assert dec["bytes_per_step"]["predicted"] == weights + dec["kv_cache_bytes"]
    assert dec["bytes_per_step"]["per_s"] > 0
    # each step attends over the whole preallocated cache (static shapes): at least the mask-aware work
    assert dec["flops"]["measured"] >= dec["flops"]["predicted"]
    for t in (dec["prefill_s"], dec["generate_s"]):
        assert len(t["runs"]) == 3 and t["median"] > 0
    assert dec["end_to_end_tokens_per_s"] == pytest.approx(2 * 6 / dec["generate_s"]["median"])


def test_encoder_once_without_warmup_skips_decode(capsys: pytest.CaptureFixture[str]) -> None:
    d = bench_json(capsys, BERT, "--batch", "2", "--seq", "12", "--repeats", "1", "--warmup", "0")
    assert d["type"] == "encoder" and d["settings"]["warmup"] == 0
    assert_measured(d["phases"]["forward"], runs=1)
    assert_measured(d["phases"]["forward+backward"], runs=1)
    assert "does not generate" in d["phases"]["decode"]["skipped"]
    assert_predictions_are_the_reports(d, report_json(capsys, BERT, "--batch", "2", "--seq", "12"))


def test_encoder_decoder_decodes_from_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    d = bench_json(capsys, VASWANI, "--seq", "12", "--new-tokens", "5", "--repeats", "3")
    assert d["type"] == "encoder_decoder"
    for name in ("forward", "forward+backward", "decode"):
        assert_measured(d["phases"][name], runs=3)
    assert_predictions_are_the_reports(d, report_json(capsys, VASWANI, "--seq", "12"))
    dec = d["phases"]["decode"]
    assert (dec["prompt"], dec["source"], dec["new_tokens"], dec["steps"]) == (None, 12, 5, 4)
    one, five = (report_json(capsys, VASWANI, "--seq", m, "--src-seq", "12") for m in ("1", "5"))
    steps = five["flops"]["forward_mask_aware"] - one["flops"]["forward_mask_aware"]
    assert dec["flops"]["predicted"] == pytest.approx(steps / 4)


def test_table_names_each_measurement_beside_its_prediction(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "bench", GPT2, *sets("gpt2_small"), "--seq", "8", "--new-tokens", "3", "--repeats", "1"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "gpt2_small: decoder, 108,608 parameters"
    header = next(line for line in lines if "time (median)" in line)
    for column in ("min–max", "tokens/s", "FLOPs", "predicted", "×", "FLOP/s", "peak memory"):
        assert column in header
    rows = {line.split("  ")[0]: line for line in lines}
    assert {"forward", "forward+backward", "decode, per step"} <= set(rows)
    assert "1.00×" in rows["forward"] and "1.00×" in rows["forward+backward"]  # FLOPs as predicted
    assert "decode: prompt 29, 3 new tokens, greedy" in out  # the default prompt shrinks to fit 32 positions
    assert "predicted memory:" in out and "measured memory:" in out


def test_compile_time_is_reported_apart(capsys: pytest.CaptureFixture[str]) -> None:
    d = bench_json(
        capsys, BERT, "--seq", "8", "--compile", "--backend", "eager", "--repeats", "1", "--warmup", "0"
    )
    assert d["settings"]["compile"] == "eager"
    for name in ("forward", "forward+backward"):
        assert d["phases"][name]["compile_s"] > 0
        assert_measured(d["phases"][name], runs=1)


def test_bfloat16_predictions_follow_the_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    d = bench_json(capsys, BERT, "--seq", "8", "--dtype", "bf16", "--repeats", "1", "--warmup", "0")
    assert d["settings"]["dtype"] == "bfloat16"
    r = report_json(capsys, BERT, "--seq", "8", "--dtype", "bf16")
    assert_predictions_are_the_reports(d, r)


@pytest.mark.parametrize(
    ("spec", "args", "message"),
    [
        (GPT2, ["--device", "tpu"], "unknown device 'tpu'"),
        (GPT2, ["--new-tokens", "1"], "--new-tokens must be at least 2"),
        (GPT2, ["--prompt", "20", "--new-tokens", "20"], "positions reach 32"),
        (GPT2, ["--backend", "eager"], "goes with --compile"),
        (BERT, ["--new-tokens", "4"], "does not generate"),
        (BERT, ["--prompt", "4"], "does not generate"),
        (VASWANI, ["--prompt", "4"], "--prompt is for decoders"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], spec: str, args: list[str], message: str
) -> None:
    code, out, err = run(capsys, "bench", spec, *sets(_stem(spec)), *args)
    assert code == 2 and out == ""
    assert err.startswith("archdsl: error: ") and message in err and err.count("\n") == 1


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--warmup", "-1"], ["--repeats", "0"], ["--dtype", "int8"], ["--seq", "x"]):
        code, _, err = run(capsys, "bench", GPT2, *args)
        assert code == 2 and "Traceback" not in err, args


def test_cuda_asked_for_where_there_is_none(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "bench", GPT2, *sets("gpt2_small"), "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err and err.count("\n") == 1
    assert bench.resolve_device("auto") == torch.device("cpu")


def test_spec_errors_are_diagnostics_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    five_heads = [a for k, v in {**TINY["gpt2_small"], "n_heads": 5}.items() for a in ("--set", f"{k}={v}")]
    code, out, err = run(capsys, "bench", GPT2, *five_heads)
    assert code == 1 and out == "" and "error[E011]" in err and "help:" in err
    code, out, err = run(capsys, "bench", GPT2, *sets("gpt2_small"), "--seq", "64")  # past the table
    assert code == 1 and "error[E014]" in err


def test_full_size_spec_is_refused_before_building() -> None:
    r = run_cli("bench", "specs/llama2_70b.arch")  # a real process: the exit status and stderr a user sees
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("archdsl: error: llama2_70b needs about ") and r.stderr.count("\n") == 1
    assert "available on cpu" in r.stderr and "--set n_layers=2" in r.stderr
    assert "Traceback" not in r.stderr


# -- the functions a benchmark script reuses -----------------------------------------------------------


def test_cpu_allocation_peak_sees_a_temporary_tensor() -> None:
    peak, out = bench.cpu_allocation_peak(lambda: torch.ones(1 << 20).sum())  # 4 MiB, freed at once
    assert out.item() == 1 << 20
    assert peak is not None and 4 << 20 <= peak < (4 << 20) + (64 << 10)


def test_measure_counts_the_gradients_it_allocates() -> None:
    spec = archdsl.load(GPT2, overrides=TINY["gpt2_small"])
    model = archdsl.build(spec)
    (idx,) = archdsl.lower.targets.example_inputs(spec, 2, 8)
    m = bench.measure(model, [idx], train=True, repeats=2, warmup=0)
    assert len(m.timing.runs) == 2 and m.timing.median > 0
    weights = bench.live_bytes(model)
    grads = sum(p.numel() * p.element_size() for p in model.parameters())
    assert m.peak_bytes is not None and m.peak_bytes > weights + grads  # and activations
    assert all(p.grad is None for p in model.parameters())  # left as found
    f = bench.measure(model, [idx], repeats=1, warmup=0)
    assert f.peak_bytes is not None and weights < f.peak_bytes < m.peak_bytes
    assert f.output.shape == (2, 8, TINY["gpt2_small"]["vocab"])

    d = bench.measure_decode(model, [idx[:, :4]], 5, repeats=2, warmup=0)
    assert len(d.step.runs) == 2 and d.full.median > 0 and d.prefill.median > 0
    assert d.step.runs == tuple((k - p) / 4 for p, k in zip(d.prefill.runs, d.full.runs, strict=True))
