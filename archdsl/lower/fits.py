"""Before ``build`` allocates: does the model fit in the memory this process can have?

A spec can ask for ``d_model = 2**40``, or a sinusoidal table of a billion positions; allocating that
would take the machine down (or the out-of-memory killer would take archdsl). ``build`` first compares
the parameter count the analysis gives (nothing built) with the memory available, then builds the
module on the ``meta`` device (shapes only, nothing allocated, milliseconds) and counts the bytes of
its parameters *and* buffers exactly — positional tables, rotary caches, random projections — and
refuses (E020) with both figures when they do not fit. Under ``FakeTensorMode`` or on the meta device
nothing is allocated, so nothing is checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from archdsl.diagnostics import Diagnostic, SpecError


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> int:
    """Memory this process can still take: the system's available memory (``MemAvailable``), and the
    room left under the cgroup's limit (v2 ``memory.max``, or v1), whichever is smaller."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, used in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        cap, now = _read_int(limit), _read_int(used)
        if cap is not None and now is not None and cap < 1 << 60:
            candidates.append(max(0, cap - now))
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # nothing to go by: do not refuse
    return min(candidates)


def allocates() -> bool:
    """False under FakeTensorMode or with the meta device as default: building allocates nothing."""
    from torch._guards import detect_fake_mode

    if detect_fake_mode() is not None:
        return False
    return torch.empty(0).device.type != "meta"


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB"


def _refuse(what: str, need: int, have: int) -> SpecError:
    return SpecError(
        [
            Diagnostic(
                "E020",
                f"the model does not fit in memory: its {what} need {_gib(need)} ({need:,} bytes), "
                f"and {_gib(have)} are available",
                None,
                help="build a smaller variant (--set), or analyse it without building (archdsl report)",
            )
        ]
    )


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (a tied or shared tensor once)."""
    seen: dict[int, int] = {}
    for t in (*module.parameters(), *module.buffers()):
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def ensure_fits(ctor: Any, params: int, instantiate: Any) -> None:
    """Raise :class:`SpecError` (E020) unless the module ``ctor`` describes fits: first by its
    ``params`` count from the analysis, then exactly, built on the meta device."""
    if not allocates():
        return
    have = available_bytes()
    itemsize = torch.empty(0).element_size()
    if params * itemsize > have:
        raise _refuse("weights", params * itemsize, have)
    with torch.device("meta"):
        need = module_bytes(instantiate(ctor))
    if need > have:
        raise _refuse("weights and buffers", need, have)
