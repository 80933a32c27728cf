"""``build`` refuses a model that does not fit in memory before allocating it (E020, with the bytes it
needs and the bytes available) — by its weights, or by its weights and buffers counted exactly."""

from __future__ import annotations

import resource
import time

import pytest
import torch
from conftest import SPECS

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.lower import fits


def refusal(overrides: dict[str, object]) -> str:
    spec = archdsl.load(SPECS / "tiny.arch", overrides)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as e:
        archdsl.build(spec)
    assert time.perf_counter() - t0 < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: nothing allocated
    [d] = e.value.diagnostics
    assert d.code == "E020" and d.span is not None and "available" in d.message
    return d.message


def test_huge_weights_are_refused_by_the_analysis() -> None:
    message = refusal({"d_model": "2**40"})
    assert "weights need" in message and "bytes" in message


def test_huge_buffers_are_refused_by_a_meta_build() -> None:
    """A sinusoidal table of 2**33 positions: few parameters, a 1 TiB buffer."""
    message = refusal({"context": "2**33"})
    assert "weights and buffers need 1,024.00 GiB" in message


def test_a_model_that_fits_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = archdsl.load(SPECS / "tiny.arch")
    model = archdsl.build(spec)
    need = fits.module_bytes(model)
    assert need == 4 * (sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()))
    monkeypatch.setattr(fits, "available_bytes", lambda: need - 1)  # one byte short
    with pytest.raises(SpecError) as e:
        archdsl.build(spec)
    assert e.value.diagnostics[0].code == "E020"
    monkeypatch.setattr(fits, "available_bytes", lambda: need)
    assert fits.module_bytes(archdsl.build(spec)) == need


def test_nothing_is_checked_where_nothing_is_allocated() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    spec = archdsl.load(SPECS / "tiny.arch", {"d_model": 2**16, "n_heads": 4})
    with FakeTensorMode():
        model = archdsl.build(spec)
    assert sum(p.numel() for p in model.parameters()) > 2**32
    with torch.device("meta"):
        assert archdsl.build(spec) is not None


def test_available_memory_is_a_positive_number() -> None:
    assert 0 < fits.available_bytes() < 1 << 62
