"""The registry: every component kind, by name. Adding a kind is one class plus one line here.

Kind modules are torch-free; their PyTorch classes live in sibling ``*_nn.py`` files that are read only
when a model is built or emitted.
"""

from __future__ import annotations

import functools

from archdsl.kinds import (
    attention,
    conv,
    efficient,
    embed,
    ffn,
    local,
    norm,
    peft,
    perceiver,
    position,
    relative,
    towers,
)
from archdsl.kinds.base import ROLES, ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError

REGISTRY: dict[str, Kind] = {}
for _family in (
    embed,
    position,
    relative,
    norm,
    attention,
    local,
    efficient,
    ffn,
    conv,
    peft,
    towers,
    perceiver,
):
    for _kind in _family.KINDS:
        assert _kind.name not in REGISTRY, _kind.name
        assert _kind.role in ROLES, _kind.role
        REGISTRY[_kind.name] = _kind


def kinds_for(role: str) -> list[str]:
    return list(_kinds_for(role))


@functools.cache
def _kinds_for(role: str) -> tuple[str, ...]:
    return tuple(k.name for k in REGISTRY.values() if k.role == role)


__all__ = ["REGISTRY", "ROLES", "ActCfg", "Ctx", "Kind", "Param", "Saved", "Shape", "ShapeError", "kinds_for"]
