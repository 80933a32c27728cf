"""Constructor tree -> live ``nn.Module`` (imports torch)."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from archdsl.lower.ctor import ClassRef, Ctor, ModuleList, Repeat


def resolve(ref: ClassRef) -> type:
    mod = nn if ref.is_torch else importlib.import_module(ref.module)
    return getattr(mod, ref.name)  # type: ignore[no-any-return]


def instantiate(x: Any) -> Any:
    if isinstance(x, Ctor):
        args = [instantiate(a) for a in x.args]
        kwargs = {k: instantiate(v) for k, v in x.kwargs}
        return resolve(x.cls)(*args, **kwargs)
    if isinstance(x, ModuleList):
        out: list[nn.Module] = []
        for item in x.items:
            if isinstance(item, Repeat):
                out.extend(instantiate(item.ctor) for _ in range(item.n))
            else:
                out.append(instantiate(item))
        return out
    return x


def build_module(ctor: Ctor, seed: int = 0) -> nn.Module:
    """Instantiate with a fixed seed, so ``build(spec, seed)`` is reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = instantiate(ctor)
    assert isinstance(module, nn.Module)
    return module
