"""``archdsl bench``: the lowered model timed on this machine, beside what the analysis predicts.

Three measurements, each the median of ``repeats`` runs after ``warmup`` runs:

* **forward**: eval mode, under ``torch.no_grad``;
* **forward + backward**: train mode, the model's own loss (cross-entropy on random targets; a towers
  model's contrastive loss; the sum of the output where the head gives features, not logits), then
  ``loss.backward()``; gradients are set to None before each run, so each run allocates them;
* **decode** (decoders and encoder-decoders): greedy ``generate(x, K)`` and its prefill (a decoder's
  cache for P + K positions, the prompt's forward and its token; an encoder-decoder's
  ``generate(src, 1)``: see :func:`prefill_call`) are timed in alternation; a decode step's time is
  their difference over the K - 1 steps, pair by pair, so the prompt's forward is left out. Tokens
  per second: B per step; end to end: B·K over the whole ``generate``.

Time: ``time.perf_counter`` around each call on CPU; on CUDA, CUDA events recorded around it on the
stream (the device synchronised before and after), so the GPU's time is what counts.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, the
highest over the timed runs (everything torch holds on the device: weights, inputs, activations,
gradients, cache). On CPU, where torch keeps no such statistic, one more run under
``torch.profiler`` (``profile_memory=True``) records every allocation and free of torch's CPU
allocator; the peak of the bytes allocated and not yet freed during the run, plus the parameters,
buffers and inputs that were live before it, is the figure. It counts tensors, not the process's
resident set (no allocator caching, no oneDNN scratch space, no Python objects).

FLOPs: ``FlopCounterMode`` (with archdsl's formulas, :func:`archdsl.measure.flop_counter_mode`) over
one eager run of each measurement, before any ``torch.compile``: what the module computes. Achieved
FLOP/s is that count over the median time.

Predicted: the analysis's figures (``archdsl report --format json``) at the same batch, length and
dtype — forward FLOPs, training-step FLOPs, and memory:

* forward: weights + the largest op's inputs and output (the inference peak without a KV cache);
* forward + backward: weights + gradients + saved activations + the largest op (the training peak
  without AdamW's states: no optimizer runs);
* decode: weights + the KV cache (or recurrent state) for P + K positions + the prompt's largest op;
  per step, the mask-aware forward FLOPs of the positions decoded — F(P + K - 1) - F(P), each new
  token attending to the ones before it (an encoder-decoder: F(S, K) - F(S, 1)) — over K - 1 steps,
  and the bytes a step reads at least: weights + KV cache.

Functions a benchmark script can reuse: :func:`measure` (a module's forward or training step),
:func:`measure_decode` (its ``generate``), :func:`measure_call` (any callable), :class:`Clock`,
:func:`cpu_allocation_peak`, :func:`count_flops`, and :func:`bench` (the whole command).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archdsl.cost.render import columns, human, human_bytes
from archdsl.diagnostics import printable
from archdsl.ir import Spec

#: refuse to build when the predicted memory exceeds this fraction of the memory available
MEMORY_FRACTION = 0.9
DEFAULT_PROMPT = 32
DEFAULT_NEW_TOKENS = 128
DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
PHASES = ("forward", "forward+backward", "decode")
#: a spec's constants named so are the first ones to shrink (suggested when a model does not fit)
SIZE_NAMES = ("n_layers", "d_model", "n_heads", "d_ff", "vocab", "context", "experts", "image")

#: progress(phase, runs done, runs in all), after each run
Progress = Callable[[str, int, int], None]


class BenchUsageError(ValueError):
    """Options that cannot be measured as asked (a device that is not there, decode options for a
    model that does not generate, a model that does not fit): one line for the user, exit 2."""


# -- measuring ---------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (``cuda:N``) or ``auto`` (CUDA when available, else CPU)."""
    text = name.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise BenchUsageError(f"unknown device {printable(repr(name))}: use cpu, cuda or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise BenchUsageError(f"unknown device {printable(repr(name))}: use cpu, cuda or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchUsageError("--device cuda: CUDA is not available here (torch sees no GPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BenchUsageError(f"--device {text}: there are {torch.cuda.device_count()} CUDA devices")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Seconds one call takes: ``time.perf_counter`` around it on CPU; on CUDA, two events recorded on
    the current stream around it, the device synchronised before (so earlier work is not counted) and
    after."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def __call__(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        if self.device.type == "cuda":
            synchronize(self.device)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3, out
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null: Kineto prints a ``USDT: … profiler_start`` line there at
    every start and stop of the profiler, whatever its log level (and whatever ``sys.stderr`` is)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no descriptor 2: nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def cpu_allocation_peak(fn: Callable[[], Any]) -> tuple[int | None, Any]:
    """(peak bytes, fn's result): the highest of the bytes torch's CPU allocator handed out and had
    not got back during ``fn()``, from ``torch.profiler``'s allocation events (``profile_memory``).
    Tensors that were live before the call are not counted; one freed during it counts negatively.
    None where the profiler's events cannot be read."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    # quiet throughout: c10 also warns there about blocks allocated before the profiler started (their
    # frees have no size, and are left out, as they should be). The run repeats one already timed.
    with _quiet_stderr(), prof:
        out = fn()
    try:
        from torch._C._profiler import _EventType

        events = []
        stack = list(prof.profiler.kineto_results.experimental_event_tree())  # type: ignore[union-attr]
        while stack:
            e = stack.pop()
            if e.tag == _EventType.Allocation and e.extra_fields.device.type == "cpu":
                events.append((e.start_time_ns, e.extra_fields.alloc_size))
            stack.extend(e.children)
    except (AttributeError, ImportError, RuntimeError):  # the profiler's private API moved
        return None, out
    live = peak = 0
    for _, size in sorted(events, key=lambda e: e[0]):
        live += size
        peak = max(peak, live)
    return peak, out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one ``fn()`` by ``FlopCounterMode``, with archdsl's formulas (CPU SDPA, grouped
    convolutions' backward)."""
    from archdsl.measure import flop_counter_mode

    with flop_counter_mode() as fc:
        fn()
    return int(fc.get_total_flops())


def live_bytes(model: nn.Module, inputs: Sequence[torch.Tensor] = ()) -> int:
    """Bytes of the module's parameters and buffers (a shared tensor once) and of the inputs."""
    from archdsl.lower.fits import module_bytes

    return module_bytes(model) + sum(x.numel() * x.element_size() for x in inputs)


@dataclass(frozen=True)
class Timing:
    """Seconds of each measured run."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def min(self) -> float:
        return min(self.runs)

    @property
    def max(self) -> float:
        return max(self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.min, "max": self.max, "runs": list(self.runs)}


@dataclass
class Measurement:
    """One measured call: its times, the peak memory (None where not measured), the first call's time
    when it compiled (``first``), and the last run's output."""

    timing: Timing
    peak_bytes: int | None
    first_s: float | None = None
    output: Any = field(default=None, repr=False)


def measure_call(
    fn: Callable[[], Any],
    *,
    setup: Callable[[], None] | None = None,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    base_bytes: int = 0,
    first: bool = False,
    memory: bool = True,
    tick: Callable[[], None] | None = None,
) -> Measurement:
    """Time ``fn()``: ``first`` times one call on its own before the warm-ups (a compiled module's
    compilation), then ``warmup`` calls, then ``repeats`` timed calls; ``setup()`` runs before each,
    untimed. Peak memory (``memory``): on CUDA the highest ``max_memory_allocated`` over the timed
    calls; on CPU one more call under the profiler (:func:`cpu_allocation_peak`) plus ``base_bytes``
    (what was live before: see :func:`live_bytes`)."""
    device = torch.device(device)
    clock = Clock(device)
    tick = tick or (lambda: None)

    def once() -> tuple[float, Any]:
        if setup is not None:
            setup()
        if device.type == "cuda" and memory:
            synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        return clock(fn)

    first_s = None
    if first:
        first_s, _ = once()
        tick()
    for _ in range(warmup):
        once()
        tick()
    times, peak, out = [], None, None
    for _ in range(repeats):
        out = None  # the last run's output is not live during the next
        t, out = once()
        times.append(t)
        if device.type == "cuda" and memory:
            peak = max(peak or 0, torch.cuda.max_memory_allocated(device))
        tick()
    if device.type == "cpu" and memory:
        if setup is not None:
            setup()
        growth, _ = cpu_allocation_peak(fn)
        peak = None if growth is None else base_bytes + growth
        tick()
    return Measurement(Timing(tuple(times)), peak, first_s, out)


def _reset_state(model: nn.Module) -> None:
    for m in model.modules():  # Transformer-XL's memory: every run starts from an empty one
        if getattr(type(m), "reset_memory", None):
            m.reset_memory()


def gives_logits(model: nn.Module) -> bool:
    """Whether the model's head gives logits (it has a loss for targets); a pooler gives features."""
    return getattr(model, "label_smoothing", 0.0) is not None


def takes_targets(model: nn.Module) -> bool:
    """A model of one stack (or an encoder-decoder) takes targets; a towers model computes its own
    contrastive loss over pairs (``return_loss``)."""
    return "return_loss" not in inspect.signature(model.forward).parameters


def make_targets(logits: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Random targets aligned with ``logits``: (B, T) next tokens, or (B,) classes."""
    gen = torch.Generator().manual_seed(seed)
    shape = logits.shape[:-1]
    return torch.randint(0, logits.size(-1), shape, generator=gen).to(logits.device)


def model_loss(
    model: nn.Module, inputs: Sequence[torch.Tensor], targets: torch.Tensor | None
) -> torch.Tensor:
    """The model's own training loss: cross-entropy on ``targets`` (one stack, an encoder-decoder),
    the contrastive loss (towers), or — a head that gives features — the sum of its output."""
    if not takes_targets(model):
        return model(*inputs, return_loss=True)[-1]  # type: ignore[no-any-return]
    if not gives_logits(model) or targets is None:
        out = model(*inputs)
        return (out[0] if isinstance(out, tuple) else out).float().sum()
    return model(*inputs, targets)[1]  # type: ignore[no-any-return]


def needs_targets(model: nn.Module) -> bool:
    return takes_targets(model) and gives_logits(model)


def forward_call(model: nn.Module, inputs: Sequence[torch.Tensor]) -> Callable[[], Any]:
    """One inference forward (no_grad); the caller puts the model in eval mode."""

    def run() -> Any:
        with torch.no_grad():
            return model(*inputs)

    return run


def train_call(
    model: nn.Module, inputs: Sequence[torch.Tensor], targets: torch.Tensor | None
) -> Callable[[], None]:
    """One forward with the model's loss and its backward; the caller puts the model in train mode."""

    def run() -> None:
        model_loss(model, inputs, targets).backward()

    return run


def measure(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    train: bool = False,
    targets: torch.Tensor | None = None,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
    first: bool = False,
    memory: bool = True,
    tick: Callable[[], None] | None = None,
) -> Measurement:
    """Time the model's forward (``train=False``: eval mode, no_grad) or its training step (forward
    with its own loss, then backward; gradients set to None before each run). ``targets`` default to
    random ones shaped like the logits (one extra eval forward). ``device`` defaults to the
    parameters'. The model is left in eval mode, its gradients None. See :func:`measure_call` for the
    rest."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    base = live_bytes(model, inputs)
    if not train:
        model.eval()
        return measure_call(
            forward_call(model, inputs),
            setup=lambda: _reset_state(model),
            repeats=repeats,
            warmup=warmup,
            device=device,
            base_bytes=base,
            first=first,
            memory=memory,
            tick=tick,
        )
    if targets is None and needs_targets(model):
        model.eval()
        _reset_state(model)
        out = forward_call(model, inputs)()
        targets = make_targets(out[0] if isinstance(out, tuple) else out)
    model.train()

    def setup() -> None:
        model.zero_grad(set_to_none=True)
        _reset_state(model)

    try:
        return measure_call(
            train_call(model, inputs, targets),
            setup=setup,
            repeats=repeats,
            warmup=warmup,
            device=device,
            base_bytes=base,
            first=first,
            memory=memory,
            tick=tick,
        )
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


@dataclass
class DecodeMeasurement:
    """Greedy decoding: ``prefill`` (the prompt's forward and its token, see :func:`prefill_call`),
    ``full`` (``generate(x, K)``), and ``step`` (one decode step: (full - prefill) / (K - 1), pair by
    pair)."""

    new_tokens: int
    prefill: Timing
    full: Timing
    step: Timing
    peak_bytes: int | None
    first_s: float | None = None


def generate_call(model: nn.Module, inputs: Sequence[torch.Tensor], new_tokens: int) -> Callable[[], Any]:
    """Greedy ``model.generate(*inputs, max_new_tokens=new_tokens)``."""
    return lambda: model.generate(*inputs, max_new_tokens=new_tokens, temperature=0.0)


def prefill_call(model: nn.Module, inputs: Sequence[torch.Tensor], new_tokens: int) -> Callable[[], Any]:
    """What ``generate(x, K)`` does before its K - 1 decode steps. A decoder (``setup_cache``): the
    cache for P + K positions, the prompt's forward and its greedy token, the cache cleared — so that
    the difference is exactly the steps. An encoder-decoder: ``generate(src, 1)`` (its one step reads
    a cache of 2 positions where generate(src, K)'s read K + 1: a difference of under one step's
    self-attention)."""
    if not callable(getattr(model, "setup_cache", None)):
        return generate_call(model, inputs, 1)
    (idx,) = inputs
    B, T = idx.shape

    @torch.no_grad()
    def run() -> torch.Tensor:
        model.setup_cache(B, T + new_tokens)
        try:
            logits = model(idx, pos=torch.arange(T, device=idx.device))[:, -1]  # (B, V)
            return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        finally:
            model.clear_cache()

    return run


def measure_decode(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    new_tokens: int,
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
    first: bool = False,
    memory: bool = True,
    tick: Callable[[], None] | None = None,
) -> DecodeMeasurement:
    """Time greedy ``model.generate(*inputs, max_new_tokens=K)`` (a decoder's prompt, or an
    encoder-decoder's source) and its prefill (:func:`prefill_call`) in alternation, ``repeats`` pairs
    after ``warmup`` pairs (``first``: one pair on its own before, its time reported: compilation).
    Peak memory is that of ``generate(x, K)`` (see :func:`measure_call`)."""
    if new_tokens < 2:
        raise ValueError("decode needs at least 2 new tokens (a step is generate(K) less its prefill)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    clock = Clock(device)
    tick = tick or (lambda: None)
    prefill_fn, full_fn = prefill_call(model, inputs, new_tokens), generate_call(model, inputs, new_tokens)
    cuda_peak = device.type == "cuda" and memory
    peak = None

    def pair() -> tuple[float, float]:
        nonlocal peak
        t1, _ = clock(prefill_fn)
        if cuda_peak:
            synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        tk, _ = clock(full_fn)
        if cuda_peak:
            peak = max(peak or 0, torch.cuda.max_memory_allocated(device))
        tick()
        return t1, tk

    first_s = sum(pair()) if first else None
    for _ in range(warmup):
        pair()
    peak = None  # of the timed runs
    prefill, full = zip(*(pair() for _ in range(repeats)), strict=True)
    if device.type == "cpu" and memory:
        growth, _ = cpu_allocation_peak(full_fn)
        peak = None if growth is None else live_bytes(model, inputs) + growth
        tick()
    step = tuple((k - p) / (new_tokens - 1) for p, k in zip(prefill, full, strict=True))
    return DecodeMeasurement(new_tokens, Timing(prefill), Timing(full), Timing(step), peak, first_s)


# -- the command -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodePlan:
    """What decode runs: a decoder's prompt of ``prompt`` tokens, or an encoder-decoder's source of
    ``source`` tokens, and ``new_tokens`` tokens; or why it is skipped."""

    prompt: int | None = None
    source: int | None = None
    new_tokens: int | None = None
    skipped: str | None = None


def plan_decode(spec: Spec, seq_len: int, prompt: int | None, new_tokens: int | None) -> DecodePlan:
    """Decode sizes: the defaults (a 32-token prompt, 128 new tokens) shrink to fit the positional
    tables; sizes asked for that do not fit, or decode options for a model that does not generate,
    are usage errors."""
    from archdsl.pipeline import position_limits

    m = spec.model
    asked = prompt is not None or new_tokens is not None
    if m.type not in ("decoder", "encoder_decoder"):
        what = "a towers model" if m.towers else f"an {m.type}" if m.type[0] in "aeiou" else f"a {m.type}"
        if asked:
            raise BenchUsageError(
                f"--prompt and --new-tokens measure decoding; {m.name} is {what}, which does not generate"
            )
        return DecodePlan(skipped=f"{what} does not generate (decode is for decoders and encoder-decoders)")
    if new_tokens is not None and new_tokens < 2:
        raise BenchUsageError(
            "--new-tokens must be at least 2 (a step is generate(K) less the prompt's forward, over K - 1)"
        )
    limit = min(position_limits(m), default=None)
    if m.type == "encoder_decoder":
        if prompt is not None:
            raise BenchUsageError(
                f"{m.name} is an encoder-decoder: it decodes from a source of --seq tokens ({seq_len}) "
                "and a start token; --prompt is for decoders"
            )
        room = None if limit is None else limit - 1  # the start token, then K
        k = new_tokens if new_tokens is not None else DEFAULT_NEW_TOKENS
        if new_tokens is None and room is not None:
            k = min(DEFAULT_NEW_TOKENS, room)
        elif room is not None and k > room:
            raise BenchUsageError(
                f"--new-tokens {k}: {m.name}'s positions reach {limit}, so it decodes at most {room} tokens"
            )
        if k < 2:
            return DecodePlan(skipped=f"its positions reach {limit}: too few to decode two tokens")
        return DecodePlan(source=seq_len, new_tokens=k)
    p, k = prompt, new_tokens
    if limit is not None and (p or DEFAULT_PROMPT) + (k or DEFAULT_NEW_TOKENS) > limit:
        if p is not None and k is not None:
            raise BenchUsageError(
                f"--prompt {p} + --new-tokens {k} = {p + k} positions: {m.name}'s positions reach {limit}"
            )
        if p is None and k is None:
            p = min(DEFAULT_PROMPT, max(1, limit // 4))
            k = limit - p
        elif p is None:
            assert k is not None
            if k >= limit:
                raise BenchUsageError(f"--new-tokens {k}: {m.name}'s positions reach {limit}")
            p = min(DEFAULT_PROMPT, limit - k)
        else:
            if p + 2 > limit:
                raise BenchUsageError(f"--prompt {p}: {m.name}'s positions reach {limit}")
            k = min(DEFAULT_NEW_TOKENS, limit - p)
    p = p if p is not None else DEFAULT_PROMPT
    k = k if k is not None else DEFAULT_NEW_TOKENS
    if k < 2:
        return DecodePlan(skipped=f"its positions reach {limit}: too few to decode two tokens")
    return DecodePlan(prompt=p, new_tokens=k)


@dataclass
class Phase:
    """One measurement beside its prediction: FLOPs, tokens and time of one call (decode: of one step,
    a token for each sequence; its FLOPs are those of the K - 1 steps over K - 1)."""

    name: str
    tokens: int
    predicted_flops: float | None
    predicted_bytes: int | None
    predicted_memory_is: str
    timing: Timing | None = None
    flops: float | None = None
    peak_bytes: int | None = None
    first_s: float | None = None
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float | None:
        if self.timing is None or self.timing.median <= 0:
            return None
        return self.tokens / self.timing.median

    @property
    def flops_per_s(self) -> float | None:
        work = self.flops if self.flops is not None else self.predicted_flops
        if self.timing is None or work is None or self.timing.median <= 0:
            return None
        return work / self.timing.median

    def to_dict(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"skipped": self.skipped}
        assert self.timing is not None
        return {
            "time_s": self.timing.to_dict(),
            "tokens": self.tokens,
            "tokens_per_s": self.tokens_per_s,
            "flops": {
                "measured": self.flops,
                "predicted": self.predicted_flops,
                "ratio": _ratio(self.flops, self.predicted_flops),
            },
            "flops_per_s": self.flops_per_s,
            "flops_per_s_of": "measured" if self.flops is not None else "predicted",
            "memory_bytes": {
                "measured": self.peak_bytes,
                "predicted": self.predicted_bytes,
                "ratio": _ratio(self.peak_bytes, self.predicted_bytes),
                "predicted_is": self.predicted_memory_is,
            },
            "compile_s": self.first_s,
            **self.extra,
        }


def _ratio(measured: float | None, predicted: float | None) -> float | None:
    if measured is None or not predicted:
        return None
    return measured / predicted


@dataclass
class BenchResult:
    model: str
    model_type: str
    settings: dict[str, Any]
    params: int
    phases: list[Phase]
    environment: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "type": self.model_type,
            "settings": self.settings,
            "params": self.params,
            "environment": self.environment,
            "phases": {p.name: p.to_dict() for p in self.phases},
        }

    def render(self) -> str:
        return render(self)


def _predictions(
    spec: Spec, batch: int, seq_len: int, plan: DecodePlan, dtype: str
) -> tuple[dict[str, Phase], int]:
    """The analysis's figures for each measurement (see the module's docstring), and the parameters."""
    from archdsl.pipeline import analyze

    fp = DTYPES[dtype]

    def at(n: int, src: int | None = None) -> Any:
        return analyze(spec, batch, n, src, dtype=fp)

    r = at(seq_len)
    f, mem = r.flops(), r.memory
    weights, largest = mem["weights_bytes"], mem["largest_op_bytes"]
    tokens = int(f["tokens_per_step"])
    phases = {
        "forward": Phase(
            "forward", tokens, f["forward"], weights + largest, "weights + largest op (no KV cache)"
        ),
        "forward+backward": Phase(
            "forward+backward",
            tokens,
            f["train_step"],
            mem["train_peak_bytes"] - mem["optimizer_bytes"],
            "weights + gradients + saved activations + largest op (no optimizer states)",
        ),
    }
    if plan.skipped is not None:
        phases["decode"] = Phase("decode", batch, None, None, "", skipped=plan.skipped)
        return phases, r.params_total
    k = plan.new_tokens
    assert k is not None
    if plan.prompt is not None:
        p = plan.prompt
        before, after, cache = at(p), at(p + k - 1), at(p + k)
        what = f"F(P + K - 1) - F(P), F mask-aware forward FLOPs, P = {p}, K = {k}"
    else:
        s = plan.source
        before, after, cache = at(1, s), at(k, s), at(k + 1, s)
        what = f"F(S, K) - F(S, 1), F mask-aware forward FLOPs, S = {s}, K = {k}"
    kv = cache.memory["kv_cache_bytes"]
    steps = after.flops()["forward_mask_aware"] - before.flops()["forward_mask_aware"]
    phases["decode"] = Phase(
        "decode",
        batch,
        _per(steps, k - 1),
        weights + kv + before.memory["largest_op_bytes"],  # the prompt's (the source's) forward
        "weights + KV cache (or state) for all positions + the prompt's largest op",
        extra={
            "prompt": plan.prompt,
            "source": plan.source,
            "new_tokens": k,
            "steps": k - 1,
            "predicted_flops_are": what,
            "kv_cache_bytes": kv,
            "bytes_per_step": {"predicted": weights + kv, "predicted_is": "weights + KV cache (or state)"},
        },
    )
    return phases, r.params_total


def _per(total: int | None, steps: int) -> float | None:
    """Per step: an int where it divides evenly."""
    if total is None:
        return None
    return total // steps if total % steps == 0 else total / steps


def available_memory(device: torch.device) -> int:
    """Bytes free on the device: on CUDA, ``torch.cuda.mem_get_info``; on CPU, the system's available
    memory within the cgroup's limit (:func:`archdsl.lower.fits.available_bytes`)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    from archdsl.lower.fits import available_bytes

    return available_bytes()


def _refuse_if_too_big(spec: Spec, phases: dict[str, Phase], device: torch.device, where: str) -> None:
    need = max((p.predicted_bytes or 0) for p in phases.values())
    have = available_memory(device)
    if need <= MEMORY_FRACTION * have:
        return
    names = dict(spec.constants)
    ints = [n for n, v in names.items() if isinstance(v, int) and not isinstance(v, bool)]
    sizes = [n for n in SIZE_NAMES if n in ints] or ints[:6]
    example = f"e.g. --set {sizes[0]}=2; its sizes: {', '.join(sizes)}" if sizes else "--set NAME=VALUE"
    hint = f"measure a smaller variant with --set ({example}) or a smaller --batch/--seq"
    raise BenchUsageError(
        f"{spec.model.name} needs about {human_bytes(need)} to measure at {where} (predicted), more than "
        f"{MEMORY_FRACTION:.0%} of the {human_bytes(have)} available on {device.type}: {hint}"
    )


def _environment(device: torch.device) -> dict[str, Any]:
    import platform

    env: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "timer": "CUDA events" if device.type == "cuda" else "time.perf_counter",
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["memory"] = "torch.cuda.max_memory_allocated over the timed runs (reset_peak_memory_stats)"
    else:
        env["device_name"] = platform.processor() or platform.machine()
        env["memory"] = (
            "parameters, buffers and inputs + the peak of the bytes torch's CPU allocator held during "
            "one more run (torch.profiler allocation events)"
        )
        env["bf16_native"] = bool(
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return env


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``n`` inside (None: left as they are), restored after."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bench(
    spec: Spec,
    *,
    batch: int = 1,
    seq_len: int | None = None,
    prompt: int | None = None,
    new_tokens: int | None = None,
    dtype: str = "float32",
    device: str = "auto",
    compile: bool = False,
    backend: str = "inductor",
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
    threads: int | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Build the spec and measure forward, forward + backward and decode beside the analysis's
    predictions (``seq_len`` defaults to the model's context, as ``archdsl report``'s; the decode
    sizes to a 32-token prompt and 128 new tokens, fewer where the positions run out). ``threads``
    sets torch's CPU threads while it runs (default: torch's own). ``progress(phase, done, total)``
    is called after each run.

    Raises :class:`BenchUsageError`, before anything is built, for options that cannot be measured —
    a model whose predicted memory exceeds what the device has available among them — and
    :class:`~archdsl.diagnostics.SpecError` for an invalid spec or sizes (E014, E020)."""
    from archdsl.pipeline import checked_graph, default_seq_len, dtype_name

    if repeats < 1 or warmup < 0:
        raise BenchUsageError("--repeats must be at least 1 and --warmup at least 0")
    try:
        dtype = dtype_name(dtype)
    except ValueError as e:
        raise BenchUsageError(str(e)) from None
    dev = resolve_device(device)
    checked_graph(spec)  # the spec's own diagnostics first
    n = seq_len if seq_len is not None else default_seq_len(spec)
    plan = plan_decode(spec, n, prompt, new_tokens)
    phases, params = _predictions(spec, batch, n, plan, dtype)
    _refuse_if_too_big(spec, phases, dev, f"batch {batch}, n {n}, {dtype}")
    # runs in all: the FLOP counts, then for each measurement the compiling call, the warm-ups, the
    # timed runs and on CPU the profiled run (decode: in pairs)
    per = int(compile) + warmup + repeats + int(dev.type == "cpu")
    runs = _Runs(2 + 2 * per + (1 + per if plan.skipped is None else 0), progress)
    with cpu_threads(threads):
        _run(spec, batch, n, plan, phases, dtype, dev, compile, backend, repeats, warmup, seed, runs)
        env = _environment(dev)
    settings = {
        "batch": batch,
        "seq_len": n,
        "dtype": dtype,
        "device": str(dev),
        "compile": backend if compile else None,
        "repeats": repeats,
        "warmup": warmup,
        "seed": seed,
    }
    order = [phases[name] for name in PHASES]
    return BenchResult(spec.model.name, spec.model.type, settings, params, order, env)


class _Runs:
    """Counts the runs and reports them to ``progress``."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def tick(self, phase: str) -> Callable[[], None]:
        def step() -> None:
            self.done += 1
            if self.progress is not None:
                self.progress(phase, self.done, self.total)

        return step


def _run(
    spec: Spec,
    batch: int,
    n: int,
    plan: DecodePlan,
    phases: dict[str, Phase],
    dtype: str,
    dev: torch.device,
    compile: bool,
    backend: str,
    repeats: int,
    warmup: int,
    seed: int,
    runs: _Runs,
) -> None:
    """Build, count FLOPs (eager), compile if asked, and measure: fills in ``phases``."""
    from archdsl.lower.targets import compile_module, example_inputs
    from archdsl.pipeline import build

    model = build(spec, seed, dtype=dtype).to(dev)
    cast = getattr(torch, dtype)
    inputs = [
        (x.to(cast) if x.is_floating_point() else x).to(dev) for x in example_inputs(spec, batch, n, n, seed)
    ]
    prompt: list[torch.Tensor] = []
    if plan.prompt is not None:  # a decoder's prompt: token ids (B, P)
        prompt = [x.to(dev) for x in example_inputs(spec, batch, plan.prompt, plan.prompt, seed + 1)]
    elif plan.source is not None:  # an encoder-decoder's source (B, S): the forward's
        prompt = [inputs[0]]
    fwd, train, decode = (phases[name] for name in PHASES)

    # FLOPs: FlopCounterMode over the eager module (before any compilation)
    model.eval()
    _reset_state(model)
    fwd.flops, out = count_and_keep(forward_call(model, inputs))
    runs.tick("count FLOPs")()
    targets = None
    if needs_targets(model):
        targets = make_targets(out[0] if isinstance(out, tuple) else out, seed)
    del out
    model.train()
    model.zero_grad(set_to_none=True)
    _reset_state(model)
    train.flops = count_flops(train_call(model, inputs, targets))
    model.zero_grad(set_to_none=True)
    model.eval()
    runs.tick("count FLOPs")()
    if plan.new_tokens is not None:
        decode.flops = _decode_flops(model, prompt, plan.new_tokens, decode)
        runs.tick("count FLOPs")()

    if compile:
        compile_module(model, backend=backend)
    common: dict[str, Any] = {"repeats": repeats, "warmup": warmup, "device": dev, "first": compile}
    m = measure(model, inputs, tick=runs.tick("forward"), **common)
    fwd.timing, fwd.peak_bytes, fwd.first_s = m.timing, m.peak_bytes, m.first_s
    del m
    m = measure(model, inputs, train=True, targets=targets, tick=runs.tick("forward+backward"), **common)
    train.timing, train.peak_bytes, train.first_s = m.timing, m.peak_bytes, m.first_s
    del m
    if decode.skipped is not None or plan.new_tokens is None:
        return
    d = measure_decode(model, prompt, plan.new_tokens, tick=runs.tick("decode"), **common)
    decode.timing, decode.peak_bytes, decode.first_s = d.step, d.peak_bytes, d.first_s
    step = d.step.median
    decode.extra["prefill_s"] = d.prefill.to_dict()
    decode.extra["generate_s"] = d.full.to_dict()
    decode.extra["end_to_end_tokens_per_s"] = batch * plan.new_tokens / d.full.median
    read = decode.extra["bytes_per_step"]
    read["per_s"] = read["predicted"] / step if step > 0 else None


def count_and_keep(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(FLOPs of ``fn()`` by FlopCounterMode, its result)."""
    from archdsl.measure import flop_counter_mode

    with flop_counter_mode() as fc:
        out = fn()
    return int(fc.get_total_flops()), out


def _decode_flops(model: nn.Module, inputs: Sequence[torch.Tensor], k: int, decode: Phase) -> float | None:
    """FLOPs of a decode step: FlopCounterMode over generate(x, K) less its prefill
    (:func:`prefill_call`), over the K - 1 steps. A model whose kinds keep no cache says so
    (NotImplementedError): decode is then skipped, in its words."""
    try:
        steps = count_flops(generate_call(model, inputs, k)) - count_flops(prefill_call(model, inputs, k))
        return _per(steps, k - 1)
    except NotImplementedError as e:
        decode.skipped, decode.extra = f"not measured: {e}", {}
        return None


# -- rendering ---------------------------------------------------------------------------------------


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x * 1e9:.3g} ns"


def _num(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{human(x)}{unit}".strip()


def _bytes(x: float | None) -> str:
    return "-" if x is None else human_bytes(x)


def _times(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}×" if 0.01 <= r < 1000 else f"{r:.2e}×"


def _rate(x: float | None) -> str:
    if x is None:
        return "-"
    return human(x) if x >= 1000 else f"{x:.1f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render(result: BenchResult) -> str:
    """The text table: each measurement's time (median, min–max), tokens/s, FLOPs and peak memory,
    measured beside predicted, with the ratios."""
    s, env = result.settings, result.environment
    compiled = f"torch.compile ({s['compile']})" if s["compile"] else "eager"
    lines = [
        f"{result.model}: {result.model_type.replace('_', '-')}, {result.params:,} parameters",
        f"batch {s['batch']}, seq_len {s['seq_len']}, {s['dtype']}, {env['device']} "
        f"({env['device_name'] or 'unknown'}, {_plural(env['threads'], 'thread')}), {compiled}; "
        f"median of {_plural(s['repeats'], 'run')} after {_plural(s['warmup'], 'warm-up')}",
        "",
    ]
    head = (
        "",
        "time (median)",
        "min–max",
        "tokens/s",
        "FLOPs",
        "predicted",
        "×",
        "FLOP/s",
        "peak memory",
        "predicted",
        "×",
    )
    rows: list[tuple[str, ...]] = [head]
    notes = []
    for p in result.phases:
        label = "decode, per step" if p.name == "decode" else p.name
        if p.skipped is not None:
            rows.append((label, "skipped", "", "", "", "", "", "", "", "", ""))
            notes.append(f"decode skipped: {p.skipped}")
            continue
        assert p.timing is not None
        rows.append(
            (
                label,
                _secs(p.timing.median),
                f"{_secs(p.timing.min)} – {_secs(p.timing.max)}",
                _rate(p.tokens_per_s),
                _num(p.flops),
                _num(p.predicted_flops),
                _times(_ratio(p.flops, p.predicted_flops)),
                _num(p.flops_per_s),
                _bytes(p.peak_bytes),
                _bytes(p.predicted_bytes),
                _times(_ratio(p.peak_bytes, p.predicted_bytes)),
            )
        )
    right = (False, True, True, True, True, True, True, True, True, True, True)
    lines += columns(rows, right)
    lines.append("")
    for p in result.phases:
        if p.skipped is None and p.first_s is not None:
            lines.append(f"{p.name}: first call (compilation) {_secs(p.first_s)}")
    if s["compile"]:
        lines.append("")
    for p in result.phases:
        if p.name != "decode" or p.skipped is not None:
            continue
        e = p.extra
        start = f"prompt {e['prompt']}" if e.get("prompt") is not None else f"source {e['source']}"
        bps = e["bytes_per_step"]
        lines.append(
            f"decode: {start}, {e['new_tokens']} new tokens, greedy; a step makes one token "
            + ("(batch 1)" if s["batch"] == 1 else f"for each of the {s['batch']} sequences")
        )
        prefill, whole = _secs(e["prefill_s"]["median"]), _secs(e["generate_s"]["median"])
        first = "the prompt's forward" if e.get("prompt") is not None else "the source encoded"
        lines.append(
            f"  prefill ({first} and the first token) {prefill}; generate {e['new_tokens']} "
            f"tokens {whole}, {_rate(e['end_to_end_tokens_per_s'])} tokens/s end to end"
        )
        lines.append(
            f"  a step reads at least {_bytes(bps['predicted'])}, {bps['predicted_is']}: "
            f"{_bytes(bps.get('per_s'))}/s achieved"
        )
        lines.append(f"  predicted FLOPs per step: ({e['predicted_flops_are']}) / {e['steps']} steps")
    lines.append("")
    lines.append("predicted memory:")
    for p in result.phases:
        if p.skipped is None:
            lines.append(f"  {p.name}: {p.predicted_memory_is}")
    lines.append(f"measured memory: {env['memory']}")
    lines.append(
        "FLOPs: FlopCounterMode over one eager run (2 per multiply-add, matmuls only); "
        "FLOP/s: those over the median time"
    )
    if s["dtype"] == "bfloat16" and env.get("bf16_native") is False:
        notes.append("bfloat16: this CPU has no native bfloat16 arithmetic (AVX512-BF16, AMX): emulated")
    for note in notes:
        lines.append(note)
    return "\n".join(lines) + "\n"
