"""Measuring the lowered module with PyTorch's own tools, to hold the cost model to account.

``FlopCounterMode`` has no formula for the CPU kernel behind ``F.scaled_dot_product_attention``
(``aten._scaled_dot_product_flash_attention_for_cpu``) and silently counts attention as 0 FLOPs. We
register the formula PyTorch already uses for its CUDA flash kernel (``sdpa_flop_count``: the score and
value matmuls over the full n x n), so the count is the dense convention archdsl reports.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _sdpa_cpu(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def _conv_backward(
    grad_out: Any,
    x: Any,
    w: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: bool,
    output_padding: Any,
    groups: int,
    output_mask: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """A convolution's backward: its forward once for the input's gradient and once for the weight's
    (as for a matmul). PyTorch's ``conv_backward_flop`` ignores ``groups`` in the weight gradient and
    counts a depthwise convolution's backward as if it were dense (d times too much: 384,384 FLOPs
    for a 23,296 one; tests/test_cost_vs_torch.py guards it). For groups = 1 this is PyTorch's count."""
    forward = flop_counter.conv_flop_count(x, w, grad_out, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


SDPA_CPU_FORMULAS: dict[Any, Any] = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu}
if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    SDPA_CPU_FORMULAS[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward
#: the formulas archdsl registers in FlopCounterMode: CPU SDPA (missing) and grouped convolutions'
#: backward (miscounted)
FORMULAS: dict[Any, Any] = {**SDPA_CPU_FORMULAS, aten.convolution_backward: _conv_backward}


def flop_counter_mode(**kwargs: Any) -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts CPU SDPA attention, and grouped convolutions' backward
    right."""
    kwargs.setdefault("display", False)
    return FlopCounterMode(custom_mapping=dict(FORMULAS), **kwargs)


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


class _Packed:
    """A tensor autograd saved for backward, as the pack hook hands it to the graph: the graph holds it
    for as long as some node may need it."""

    __slots__ = ("__weakref__", "module", "tensor")

    def __init__(self, tensor: torch.Tensor, module: str) -> None:
        self.tensor, self.module = tensor, module


def saved_bytes(model: torch.nn.Module, *inputs: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Bytes autograd keeps for backward after one forward, in total and by the module that saved them
    first: the tensors the graph still holds once the forward is done (a node that is dropped during
    the forward — the graph of a result that is then detached — frees what it saved), parameters and
    buffers excluded, a storage several nodes keep counted once (at its full size). Works under
    FakeTensorMode too (nothing allocated)."""
    # storages by identity (``_cdata``, the StorageImpl), which fake tensors have too, not by address:
    # the parameters' and buffers' before the forward, held so that none is freed and its identity
    # reused (a stateful module replaces its memory buffer with a view of this forward's activations)
    held = [t.untyped_storage() for t in (*model.parameters(), *model.buffers())]
    own = {s._cdata for s in held}
    names = {m: n for n, m in model.named_modules()}
    stack = [""]

    def enter(mod: torch.nn.Module, inp: Any) -> None:
        stack.append(names[mod])

    def leave(mod: torch.nn.Module, inp: Any, out: Any) -> None:
        stack.pop()

    hooks = []
    for m in model.modules():
        hooks.append(m.register_forward_pre_hook(enter))
        hooks.append(m.register_forward_hook(leave))
    packed: list[weakref.ref[_Packed]] = []

    def pack(t: torch.Tensor) -> _Packed:
        # detached: a node that saves its own output would otherwise hold itself through the tensor's
        # grad_fn, a cycle no collector sees, and never be freed
        p = _Packed(t.detach(), stack[-1])
        packed.append(weakref.ref(p))
        return p

    def unpack(p: _Packed) -> torch.Tensor:
        return p.tensor

    first: dict[int, tuple[int, str]] = {}  # storage -> (bytes, module), in the order of saving
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            out = model(*inputs)
        for ref in packed:
            p = ref()
            if p is None:
                continue  # its node is gone: nothing holds it for backward
            s = p.tensor.untyped_storage()
            if s._cdata not in own and s._cdata not in first:
                first[s._cdata] = (s.nbytes(), p.module)
        del out
    finally:
        for h in hooks:
            h.remove()
    per: dict[str, int] = {}
    for nbytes, module in first.values():
        per[module] = per.get(module, 0) + nbytes
    return sum(per.values()), per
