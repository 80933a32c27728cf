"""`archdsl report`: the JSON contract (docs/report-schema.md), published parameter counts, the memory
model's closed forms, recompute policies, conventions, sweeps and formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import SPECS, all_specs, run_cli

import archdsl
from archdsl.cli import main

# ../shared/reference/published_models.md: spec -> exact parameters (Hugging Face classes)
PUBLISHED = {
    "gpt2_small": 124_439_808,
    "gpt2_medium": 354_823_168,
    "gpt2_large": 774_030_080,
    "gpt2_xl": 1_557_611_200,
    "bert_base": 109_482_240,
    "bert_large": 335_141_888,
    "t5_base": 222_903_552,
    "vit_b16": 86_567_656,
    "llama2_7b": 6_738_415_616,
    "llama2_13b": 13_015_864_320,
    "llama2_70b": 68_976_648_192,
    "llama3_8b": 8_030_261_248,
    "llama3_70b": 70_553_706_496,
    "mistral_7b": 7_241_732_096,
    "mixtral_8x7b": 46_702_792_704,
    "deepseek_v2_lite": 15_706_484_224,
}
#: active parameters per token of the mixtures of experts (Hugging Face's counts less the routed experts
#: a token does not meet)
ACTIVE = {"mixtral_8x7b": 12_879_925_248, "deepseek_v2_lite": 2_661_150_208}


def report_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    assert main(["report", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts_from_report_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    j = report_json(capsys, str(SPECS / f"{name}.arch"), "--seq", "128")
    assert j["params"]["total"] == PUBLISHED[name]
    assert j["params"]["embedding"] + j["params"]["non_embedding"] == PUBLISHED[name]
    assert j["params"]["active"] == ACTIVE.get(name, PUBLISHED[name])
    assert j["params"]["trainable"] == PUBLISHED[name]


def test_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    j = report_json(capsys, "specs/llama2_7b_lora.arch", "--seq", "4k", "--batch", "2")
    assert set(j["params"]) >= {"total", "embedding", "non_embedding", "trainable", "active"}
    assert set(j["flops"]) >= {"forward", "backward", "train_step", "forward_mask_aware", "forward_poly"}
    assert set(j["memory"]) >= {
        "weights_bytes",
        "grads_bytes",
        "optimizer_bytes",
        "activation_bytes",
        "kv_cache_bytes",
        "train_peak_bytes",
        "infer_peak_bytes",
    }
    assert j["settings"]["batch"] == 2 and j["settings"]["seq_len"] == 4096
    assert j["settings"]["symbols"] == {"b": "batch", "n": "sequence length"}
    assert len(j["layers"]) == 35 and {"name", "params", "flops_forward", "big_o"} <= set(j["layers"][1])
    assert j["params"]["trainable"] == 4_194_304  # LoRA's, as PEFT counts them
    # every key the schema document promises is there
    doc = (Path(__file__).parent.parent / "docs" / "report-schema.md").read_text()
    for path in re.findall(r"^\| `([a-z0-9_.\[\]]+)` \|", doc, re.M):
        node: object = j
        for part in path.replace("[]", ".0").split("."):
            node = node[int(part)] if part.isdigit() else node[part]  # type: ignore[index]


def test_every_shipped_spec_reports_at_full_size() -> None:
    for path in all_specs():
        r = archdsl.analyze(archdsl.load(path))
        f = r.flops()
        assert f["train_step"] >= f["forward"] > 0, path.name
        assert r.memory["train_peak_bytes"] > r.memory["weights_bytes"] > 0, path.name


def test_kv_cache_closed_forms() -> None:
    """2 · L · n_kv_heads · head_dim · context · batch · bytes; a sliding window caps the context."""
    l70 = archdsl.analyze(archdsl.load(SPECS / "llama2_70b.arch"), batch=4, seq_len=4096, dtype="bf16")
    assert l70.memory["kv_cache_bytes"] == 2 * 80 * 8 * 128 * 4096 * 4 * 2
    mqa = archdsl.load(SPECS / "llama2_7b.arch", {"model.block.attention.kv_heads": 1})
    assert archdsl.analyze(mqa, seq_len=2048).memory["kv_cache_bytes"] == 2 * 32 * 1 * 128 * 2048 * 4
    mistral = archdsl.load(SPECS / "mistral_7b.arch")
    capped = archdsl.analyze(mistral, seq_len=32768, dtype="fp16").memory["kv_cache_bytes"]
    assert capped == 2 * 32 * 8 * 128 * 4096 * 2
    assert archdsl.analyze(mistral, seq_len=2048).memory["kv_cache_bytes"] == 2 * 32 * 8 * 128 * 2048 * 4
    # an encoder keeps no cache; an encoder-decoder's decoder caches itself and the encoder's keys
    assert archdsl.analyze(archdsl.load(SPECS / "bert_base.arch")).memory["kv_cache_bytes"] == 0
    t5 = archdsl.analyze(archdsl.load(SPECS / "t5_base.arch"), seq_len=100, src_len=300)
    assert t5.memory["kv_cache_bytes"] == 12 * 2 * 12 * 64 * (100 + 300) * 4


def test_weights_gradients_and_adamw_states() -> None:
    spec = archdsl.load(SPECS / "llama2_7b.arch")
    p = 6_738_415_616
    fp32 = archdsl.analyze(spec, seq_len=512).memory
    assert (fp32["weights_bytes"], fp32["grads_bytes"], fp32["optimizer_bytes"]) == (4 * p, 4 * p, 8 * p)
    bf16 = archdsl.analyze(spec, seq_len=512, dtype="bf16").memory
    assert (bf16["weights_bytes"], bf16["grads_bytes"], bf16["optimizer_bytes"]) == (2 * p, 2 * p, 12 * p)
    assert bf16["weights_by_dtype"] == {
        "fp32": 4 * p,
        "bf16": 2 * p,
        "fp16": 2 * p,
        "int8": p,
        "int4": p // 2,
    }
    # LoRA: gradients and optimizer states only for the adapters
    lora = archdsl.analyze(archdsl.load(SPECS / "llama2_7b_lora.arch"), seq_len=512, dtype="bf16").memory
    assert lora["grads_bytes"] == 2 * 4_194_304 and lora["optimizer_bytes"] == 12 * 4_194_304
    m = bf16
    assert m["train_peak_bytes"] == (
        m["weights_bytes"]
        + m["grads_bytes"]
        + m["optimizer_bytes"]
        + m["activation_bytes"]
        + m["largest_op_bytes"]
    )
    assert m["infer_peak_bytes"] == m["weights_bytes"] + m["kv_cache_bytes"] + m["largest_op_bytes"]


def test_recompute_policies_trade_memory_for_flops() -> None:
    spec = archdsl.load(SPECS / "gpt2_small.arch")
    r = {
        p: archdsl.analyze(spec, seq_len=1024, recompute=p, attention="materialized")
        for p in ("none", "selective", "full")
    }
    act = {p: x.memory["activation_bytes"] for p, x in r.items()}
    flops = {p: x.flops() for p, x in r.items()}
    assert act["full"] < act["selective"] < act["none"]
    assert flops["none"]["recompute"] == 0
    core = 12 * 4 * 1024 * 1024 * 768  # scores and values, per layer 4 n² d
    assert flops["selective"]["recompute"] == core
    blocks = sum(layer.flops_forward for layer in r["full"].layers if layer.name.startswith("h."))
    assert flops["full"]["recompute"] == blocks
    for p in r:
        assert flops[p]["train_step"] == flops[p]["forward"] + flops[p]["backward"] + flops[p]["recompute"]
    # with the flash kernel, backward recomputes the scores (half the core) whatever the policy
    flash = archdsl.analyze(spec, seq_len=1024).flops()
    assert flash["recompute"] == core // 2
    assert archdsl.analyze(spec, seq_len=1024, recompute="selective").flops()["recompute"] == core // 2
    # and the activation matrix holds every combination
    matrix = r["none"].memory["activations_by_policy"]
    assert matrix["none"]["materialized"] == act["none"] and matrix["full"]["materialized"] == act["full"]
    assert matrix["none"]["flash"] < matrix["none"]["materialized"]


def test_per_token_and_compute_optimal_tokens() -> None:
    r = archdsl.analyze(archdsl.load(SPECS / "gpt2_small.arch"), batch=8, seq_len=1024)
    f = r.flops()
    assert f["tokens_per_step"] == 8 * 1024
    assert f["per_token"]["train_step"] == pytest.approx(f["train_step"] / (8 * 1024))
    ch = f["chinchilla"]
    assert ch["tokens"] == 20 * 124_439_808 and ch["train_flops_6nd"] == 6 * 124_439_808 * ch["tokens"]
    assert ch["train_flops"] == pytest.approx(f["per_token"]["train_step"] * ch["tokens"], rel=1e-9)
    moe = archdsl.analyze(archdsl.load(SPECS / "mixtral_8x7b.arch"), seq_len=4096).flops()
    assert moe["chinchilla"]["params"] == 12_879_925_248  # a mixture of experts: the active parameters


def test_big_o_read_off_the_polynomials() -> None:
    def leading(name: str, layer: str = "h.1", **kw: object) -> str:
        r = archdsl.analyze(archdsl.load(SPECS / name, kw or None), seq_len=512)
        return next(x for x in r.to_dict()["layers"] if x["name"] == layer)["big_o_leading"]

    assert leading("gpt2_small.arch") == "O(n²·d)"
    assert leading("mistral_7b.arch") == "O(n·d² + n·w·d + n·d·h)"
    assert leading("linear_transformer.arch").startswith("O(n·")
    assert leading("sparse_transformer.arch").endswith("n²·d/l)")
    # the image fixes a ViT's length (n = 197 patches): its polynomials are in b alone, and its growth
    # is the kinds' own terms in that n
    vit = archdsl.analyze(archdsl.load(SPECS / "vit_b16.arch"))
    assert vit.flops()["forward_poly"].degree("n") == 0
    assert vit.to_dict()["layers"][1]["big_o"] == "O(n·d² + n²·d + n·d·h)"


def test_sweep_formats_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    j = report_json(capsys, "specs/llama3_8b.arch", "--seq", "1k,4k,8k")
    assert [x["settings"]["seq_len"] for x in j] == [1024, 4096, 8192]  # type: ignore[union-attr]
    assert main(["report", "specs/llama3_8b.arch", "--seq", "1k,4k", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert md.count("## llama3_8b") == 3 and "| layer | components |" in md and "|---|---|---:|" in md
    out = tmp_path / "r.txt"
    assert main(["report", "specs/llama3_8b.arch", "--dtype", "bf16", "-o", str(out)]) == 0
    text = out.read_text()
    assert "bf16" in text and "KV cache" in text and "FlopCounterMode" in text and "≈" not in text


def test_bad_settings_are_usage_errors() -> None:
    for args in (
        ("--seq", "4x"),
        ("--seq", "0"),
        ("--seq", "1k,,2k"),
        ("--dtype", "fp64"),
        ("--recompute", "some"),
        ("--batch", "-1"),
    ):
        r = run_cli("report", "specs/gpt2_small.arch", *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
