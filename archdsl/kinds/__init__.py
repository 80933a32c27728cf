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
    latent,
    local,
    norm,
    peft,
    perceiver,
    position,
    relative,
    retention,
    rwkv,
    ssm,
    towers,
    vision,
)
from archdsl.kinds.base import ROLES, ActCfg, Ctx, Kind, Param, Saved, Shape, ShapeError

#: the families in registry order (the order kinds are listed in, per role); one line each
FAMILIES = (
    embed,
    position,
    relative,
    norm,
    attention,
    local,
    efficient,
    latent,
    retention,
    ssm,
    ffn,
    conv,
    rwkv,
    peft,
    vision,
    towers,
    perceiver,
)
REGISTRY: dict[str, Kind] = {}
for _family in FAMILIES:
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
