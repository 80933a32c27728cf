"""The cost model equals PyTorch's own count on the lowered module: params == numel and forward FLOPs
== FlopCounterMode (with the CPU SDPA formula registered), in total and per module."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.utils.checkpoint
from conftest import all_specs, first_output, model_inputs, tiny_overrides

import archdsl
from archdsl.graph import build_graph, input_shapes
from archdsl.measure import count_forward_flops, count_params, flop_counter_mode
from archdsl.passes import run_passes


def assert_costs_match(spec: archdsl.Spec, batch: int, seq_len: int) -> None:
    model = archdsl.build(spec).eval()
    report = archdsl.analyze(spec, batch=batch, seq_len=seq_len)
    inputs = model_inputs(spec, batch, seq_len)

    assert report.params_total == count_params(model)
    with torch.no_grad(), flop_counter_mode(depth=99) as fc:
        out = model(*inputs)
    total = int(fc.get_total_flops())
    assert report.flops_forward == total

    # per module: each graph node lowers to the module at its path
    _, per_module = count_forward_flops(model, *inputs)
    fqns = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    analysed: Counter[str] = Counter()
    seen: set[int] = set()
    for layer in report.layers:
        for c in layer.components:
            module = model.get_submodule(c.module)
            fresh = [p for p in module.parameters() if id(p) not in seen]
            seen.update(id(p) for p in fresh)
            assert c.params == sum(p.numel() for p in fresh), c.path
            analysed[c.module] += c.flops_forward
    for path, flops in analysed.items():
        if fqns[id(model.get_submodule(path))] == 1:  # a module shared between layers has several names
            assert flops == per_module.get(path, 0), path

    # the declared output shape is the real one
    g = build_graph(spec.model)
    assert run_passes(g) == []
    sizes = {"B": batch, "T": seq_len, "S": seq_len}
    declared = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in g.nodes["output"]["shape"])
    assert tuple(first_output(out).shape) == declared


def measured_train_step(
    spec: archdsl.Spec, batch: int, seq_len: int, recompute: str = "none"
) -> tuple[int, dict[str, int]]:
    """FlopCounterMode over one forward and ``backward()`` of the lowered module (every block
    checkpointed under full recomputation): in total and per module path."""
    model = archdsl.build(spec).train()
    for m in model.modules():
        if hasattr(m, "reset_memory"):
            m.reset_memory()
        if recompute == "full" and hasattr(m, "checkpoint") and hasattr(m, "h"):
            m.checkpoint = [True] * len(m.h)
    inputs = model_inputs(spec, batch, seq_len)
    # whole blocks recomputed, as the convention says (PyTorch's default stops early, once the last
    # tensor backward needs is recomputed, and skips a block's trailing projection)
    with torch.utils.checkpoint.set_checkpoint_early_stop(False), flop_counter_mode(depth=99) as fc:
        out = model(*inputs)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    per = {
        name.partition(".")[2]: int(sum(ops.values()))
        for name, ops in fc.get_flop_counts().items()
        if name != "Global"
    }
    return int(fc.get_total_flops()), per


def assert_train_step_matches(spec: archdsl.Spec, batch: int, seq_len: int, recompute: str = "none") -> None:
    """Training-step FLOPs (forward + backward + recomputation) equal FlopCounterMode's; on a mismatch,
    the modules that differ are named."""
    if any(s.layerdrop for s in spec.model.stacks):
        return  # LayerDrop skips random layers in training: no fixed count to compare
    report = archdsl.analyze(spec, batch=batch, seq_len=seq_len, recompute=recompute)
    total, per = measured_train_step(spec, batch, seq_len, recompute)
    if report.flops()["train_step"] != total:
        predicted: Counter[str] = Counter()
        for layer in report.layers:
            for c in layer.components:
                predicted[c.module] += c.flops_forward + c.flops_backward + c.flops_recompute
        off = {m: (p, per.get(m, 0)) for m, p in predicted.items() if p != per.get(m, 0)}
        raise AssertionError(
            f"train step {report.flops()['train_step']} != {total}; (predicted, measured): {off}"
        )


@pytest.mark.parametrize("path", all_specs(), ids=lambda p: p.name)
@pytest.mark.parametrize(("batch", "seq_len"), [(1, 8), (2, 13)])
def test_shipped_specs_at_tiny_size(path: Path, batch: int, seq_len: int) -> None:
    spec = archdsl.load(path, tiny_overrides(path))
    assert_costs_match(spec, batch, seq_len)
    assert_train_step_matches(spec, batch, seq_len)


# swin_t: a checkpointed layer that begins a stage recomputes the stage's transition too
@pytest.mark.parametrize(
    "name", ["gpt2_small.arch", "llama3_8b.arch", "vaswani_base.arch", "t5_base.arch", "swin_t.arch"]
)
def test_full_recompute_flops_match_checkpointing(name: str) -> None:
    path = Path(__file__).parent.parent / "specs" / name
    assert_train_step_matches(archdsl.load(path, tiny_overrides(path)), 2, 9, recompute="full")


def test_flop_counter_misses_cpu_sdpa_without_our_formula() -> None:
    """Guard for the premise: if PyTorch starts counting CPU SDPA itself, this tells us."""
    from torch.utils.flop_counter import FlopCounterMode

    q = torch.randn(1, 2, 8, 4)
    with FlopCounterMode(display=False) as plain:
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    with flop_counter_mode() as ours:
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert plain.get_total_flops() == 0
    assert ours.get_total_flops() == 4 * 1 * 2 * 8 * 8 * 4  # QK^T and AV over the full n x n


def test_gpt2_small_full_size_matches_published_numbers() -> None:
    """../shared/reference/published_models.md: 124,439,808 params; 36,864 n^2 + 247,064,064 n FLOPs."""
    spec = archdsl.load(Path(__file__).parent.parent / "specs" / "gpt2_small.arch")
    assert list(input_shapes(spec.model)) == ["idx"]
    for n in (1, 1024, 777):
        r = archdsl.analyze(spec, batch=1, seq_len=n)
        assert r.params_total == 124_439_808
        assert r.flops_forward == 36_864 * n * n + 247_064_064 * n
    assert archdsl.analyze(spec, batch=3, seq_len=1024).flops_forward == 3 * 291_648_307_200


def test_flop_counter_miscounts_grouped_convolution_backward_without_our_formula() -> None:
    """Guard for the premise of measure._conv_backward: PyTorch's formula ignores `groups` in the
    weight gradient; ours counts a convolution's backward as twice its forward, as for a matmul."""
    from torch.utils.flop_counter import FlopCounterMode

    d, k, b, n = 32, 7, 2, 13
    conv = torch.nn.Conv1d(d, d, k, groups=d, padding=k // 2)
    x = torch.randn(b, d, n, requires_grad=True)
    forward = 2 * b * n * d * k
    with FlopCounterMode(display=False) as plain:
        conv(x).sum().backward()
    with flop_counter_mode() as ours:
        conv(x).sum().backward()
    assert plain.get_total_flops() > 10 * 3 * forward  # counted as if dense
    assert ours.get_total_flops() == 3 * forward
    dense = torch.nn.Conv1d(d, d, k, padding=k // 2)  # without groups the two agree
    with FlopCounterMode(display=False) as plain:
        dense(x).sum().backward()
    with flop_counter_mode() as ours:
        dense(x).sum().backward()
    assert plain.get_total_flops() == ours.get_total_flops() == 3 * 2 * b * n * d * d * k
