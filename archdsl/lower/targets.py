"""The built module's other targets: cast to a dtype, ``torch.compile``-d, exported with ``torch.export``
(dynamic batch and length), or its initial weights written as safetensors. Imports torch; the names of
dtypes, which the CLI checks, live torch-free in :mod:`archdsl.pipeline`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archdsl.graph import input_shapes, input_vocabs
from archdsl.ir import Spec


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` (or ``"fp32"``), ``"bfloat16"``, ``"float16"``, or a floating torch dtype."""
    from archdsl.pipeline import dtype_name

    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"a model's dtype must be floating point, got {dtype}")
        return dtype
    return getattr(torch, dtype_name(dtype))  # type: ignore[no-any-return]


def compile_module(
    model: nn.Module,
    *,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = None,
    fullgraph: bool = False,
    dynamic: bool | None = None,
) -> nn.Module:
    """Compile ``model``'s forward in place (``nn.Module.compile``: the module keeps its class, its
    methods and its parameter names). ``dynamic=None`` is torch's automatic dynamic shapes: the first
    call compiles for its shapes, the first call at a new length recompiles once with that length
    symbolic, and every later length reuses that graph."""
    model.compile(backend=backend, mode=mode, fullgraph=fullgraph, dynamic=dynamic)
    return model


def example_inputs(
    spec: Spec, batch: int = 2, seq_len: int = 17, src_len: int = 13, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Inputs in the forward's argument order: token ids (B, T) — an encoder-decoder's source (B, S)
    first — or images (B, C, H, W); a towers model's, one per tower. Deterministic in ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    vocabs = input_vocabs(spec.model)
    out = []
    for name, shape in input_shapes(spec.model).items():
        dims = [batch if d == "B" else seq_len if d == "T" else src_len if d == "S" else d for d in shape]
        if len(dims) == 2:
            out.append(torch.randint(0, vocabs[name], dims, generator=gen))
        else:
            out.append(torch.randn([int(d) for d in dims], generator=gen))  # type: ignore[call-overload]
    return tuple(out)


def export_program(model: nn.Module, spec: Spec, max_len: int) -> torch.export.ExportedProgram:
    """``torch.export`` of the model in eval mode, with the batch and the sequence lengths dynamic:
    ``Dim``s from 1 to ``max_len`` (a positional table's length) for lengths, from 1 up for the batch;
    images have a dynamic batch only. Example sizes are distinct primes, so no two dims are taken to be
    equal. The ranges start at 1 (one sequence, one decoded token): torch 2.13 traces the example
    sizes without specialising on 1 (the "0/1 specialisation" that once made ranges start at 2), and
    every shipped spec that exports from 2 exports from 1."""
    model.eval()
    dtype = next((t.dtype for t in model.parameters() if t.is_floating_point()), torch.float32)
    seq, src = min(17, max_len - 1), min(13, max_len - 2)
    args = tuple(
        x.to(dtype) if x.is_floating_point() else x
        for x in example_inputs(spec, batch=3, seq_len=seq, src_len=src)
    )
    if max_len < 4:
        raise ValueError(f"export needs a context of at least 4 positions, this model has {max_len}")
    with torch.no_grad():
        return torch.export.export(model, args, dynamic_shapes=_dynamic_shapes(spec, max_len))


def _dynamic_shapes(spec: Spec, max_len: int) -> tuple[Any, ...]:
    from torch.export import Dim

    batch = Dim("batch", min=1)
    length = {"T": Dim("seq", min=1, max=max_len), "S": Dim("src_seq", min=1, max=max_len)}
    shapes = input_shapes(spec.model)
    # a towers model's inputs each have their own batch (CLIP: 3 images against 2 texts)
    batches = {name: Dim(f"{name}_batch", min=1) if spec.model.towers else batch for name in shapes}
    out = tuple(
        {
            i: batches[name] if d == "B" else length[str(d)]
            for i, d in enumerate(shape)
            if d in ("B", "T", "S")
        }
        for name, shape in shapes.items()
    )
    return (out,) if spec.model.towers else out  # a towers model's forward takes them as *inputs


def save_weights(model: nn.Module, path: str | Path, metadata: Mapping[str, str]) -> dict[str, str]:
    """Write the state dict as safetensors with ``safetensors.torch.save_model``: a tensor shared by
    several names (tied input and output embeddings) is stored once, under one of them, and
    ``safetensors.torch.load_model`` restores every name. Returns each name left out, with the name
    its tensor is stored under. The file gets the usual permissions (safetensors writes it 0600)."""
    import os

    from safetensors import safe_open
    from safetensors.torch import save_model

    state = model.state_dict()
    save_model(model, str(path), metadata=dict(metadata))
    with safe_open(str(path), framework="pt") as f:
        kept = set(f.keys())
    where = {_storage(t): name for name, t in state.items() if name in kept}
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return {name: where[_storage(t)] for name, t in state.items() if name not in kept}


def _storage(t: torch.Tensor) -> tuple[int, int]:
    return t.untyped_storage().data_ptr(), t.storage_offset()
