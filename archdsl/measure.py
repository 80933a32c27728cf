"""Measuring the lowered module with PyTorch's own tools, to hold the cost model to account.

``FlopCounterMode`` has no formula for the CPU kernel behind ``F.scaled_dot_product_attention``
(``aten._scaled_dot_product_flash_attention_for_cpu``) and silently counts attention as 0 FLOPs. We
register the formula PyTorch already uses for its CUDA flash kernel (``sdpa_flop_count``: the score and
value matmuls over the full n x n), so the count is the dense convention archdsl reports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _sdpa_cpu(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


SDPA_CPU_FORMULAS: dict[Any, Any] = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu}
if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    SDPA_CPU_FORMULAS[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward


def flop_counter_mode(**kwargs: Any) -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts CPU SDPA attention."""
    kwargs.setdefault("display", False)
    return FlopCounterMode(custom_mapping=dict(SDPA_CPU_FORMULAS), **kwargs)


def count_forward_flops(model: torch.nn.Module, *inputs: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Total forward FLOPs, and FLOPs per module path (``h.0.attn``; the root is ``""``)."""
    with torch.no_grad(), flop_counter_mode(depth=99) as fc:
        model(*inputs)
    # FlopCounterMode names modules "<RootClass>.h.0.attn"; drop the root's name to get module paths.
    per = {
        name.partition(".")[2]: int(sum(ops.values()))
        for name, ops in fc.get_flop_counts().items()
        if name != "Global"
    }
    return int(fc.get_total_flops()), per


def count_params(model: torch.nn.Module) -> int:
    """``sum(p.numel())``: shared (tied) parameters are counted once, as ``parameters()`` yields them."""
    return sum(p.numel() for p in model.parameters())
