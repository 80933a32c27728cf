"""Incremental decoding with the cache equals the full forward, for every decoder spec shipped; what the
cache allocates is what the report counts; kinds without a cache are refused."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import archdsl
from tests.conftest import all_specs, tiny_overrides

DECODERS = [p for p in all_specs() if archdsl.load(p, overrides=tiny_overrides(p)).model.type == "decoder"]
NO_CACHE = {"reformer"}  # LSH attention: refused, see test_refused


def cache_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """What decoding allocates: attention's KV caches and recurrent mixers' states (by class name, so
    the classes of an emitted file count too)."""
    names = ("KVCache", "LatentCache", "RecurrentState")
    return [m for m in model.modules() if any(c.__name__ in names for c in type(m).__mro__)]


def tiny(path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    return archdsl.build(archdsl.load(path, overrides=tiny_overrides(path)), seed=0).eval()


def length(model: torch.nn.Module) -> int:
    """12 positions, fewer where Transformer-XL's memory could not hold them (its context is the memory)."""
    mem = [m.mem_len for m in model.modules() if hasattr(m, "mem_len")]
    return min([12, *(m + 1 for m in mem)])


@pytest.mark.parametrize("path", [p for p in DECODERS if p.stem not in NO_CACHE], ids=lambda p: p.stem)
def test_incremental_equals_full(path: Path) -> None:
    model = tiny(path)
    T = length(model)
    vocab = archdsl.load(path, overrides=tiny_overrides(path)).model.vocab
    idx = torch.randint(0, vocab, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.clear_cache()
        full = model(idx)
        model.setup_cache(2, T)
        # a prompt of 5 (longer than the tiny windows: the rolling cache's chunk path), a chunk of 2,
        # then one token at a time
        cuts = [0, 5, 7, *range(8, T + 1)]
        pieces = [model(idx[:, a:b], pos=torch.arange(a, b)) for a, b in itertools.pairwise(cuts) if b > a]
        model.clear_cache()
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("path", [p for p in DECODERS if p.stem not in NO_CACHE], ids=lambda p: p.stem)
def test_greedy_generate_matches_full_forward_argmax(path: Path) -> None:
    """Each generated token is the argmax of a full forward over everything before it."""
    model = tiny(path)
    vocab = archdsl.load(path, overrides=tiny_overrides(path)).model.vocab
    prompt = torch.randint(0, vocab, (2, 3), generator=torch.Generator().manual_seed(2))
    new = length(model) - 3
    out = model.generate(prompt, new, temperature=0)
    assert out.shape == (2, 3 + new)
    with torch.no_grad():
        model.clear_cache()
        logits = model(out[:, :-1])
    assert torch.equal(out[:, 3:], logits[:, 2:].argmax(-1))


def test_refused() -> None:
    path = next(p for p in DECODERS if p.stem == "reformer")
    model = tiny(path)
    with pytest.raises(NotImplementedError, match="LSH attention has no KV cache"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 2)


@pytest.mark.parametrize("path", [p for p in DECODERS if p.stem not in NO_CACHE], ids=lambda p: p.stem)
def test_cache_bytes_equal_report(path: Path) -> None:
    spec = archdsl.load(path, overrides=tiny_overrides(path))
    model = tiny(path)
    T = length(model)
    report = archdsl.analyze(spec, batch=2, seq_len=T).to_dict()
    model.setup_cache(2, T)
    allocated = sum(b.numel() * b.element_size() for m in cache_modules(model) for b in m.buffers()) + sum(
        m.mem.numel() * m.mem.element_size() for m in model.modules() if hasattr(m, "mem_len")
    )
    model.clear_cache()
    assert allocated == report["memory"]["kv_cache_bytes"]


# Every attention and position kind a decoder can use, in a tiny spec of its own: windows and strides
# shorter than the sequence, so the rolling cache and the patterns are exercised.
VARIANT = """
model v {{
  type = decoder
  d_model = 24
  vocab = 31
  embedding = token_embedding()
  position = {position}
  block {{
    repeat = 2
    placement = pre
    norm = layernorm()
    attention = {attention}
    ffn = {ffn}
  }}
  final_norm = layernorm()
  head = lm_head(tied = false)
}}
"""
ATTENTIONS = {
    "mha": "mha(heads = 3)",
    "gqa": "mha(heads = 6, kv_heads = 2, head_dim = 5)",
    "mqa": "mha(heads = 3, kv_heads = 1)",
    "prefix": "mha(heads = 3, prefix = 4)",
    "softcap": "mha(heads = 3, softcap = 5.0, qk_norm = rmsnorm)",
    "qwen3": "mha(heads = 6, kv_heads = 2, head_dim = 5, qk_norm = rmsnorm, qk_norm_scope = head)",
    "additive": "mha(heads = 3, score = additive)",
    "bilinear": "mha(heads = 3, score = bilinear)",
    "dot": "mha(heads = 3, score = dot)",
    "window": "sliding_window(heads = 6, kv_heads = 3, window = 3)",
    "longformer": "longformer(heads = 3, window = 3, global_tokens = 2)",
    "strided": "sparse(heads = 4, kv_heads = 2, pattern = strided, stride = 3)",
    "fixed": "sparse(heads = 4, pattern = fixed, stride = 4, summary = 2)",
    "elu": "linear(heads = 3, chunk = 4)",
    "favor": "linear(heads = 3, feature_map = favor, features = 16, chunk = 4)",
    # the latent cache, with the up-projections absorbed: values narrower, then wider than q·k
    "mla": "mla(heads = 3, head_dim = 5, rope_dim = 4, v_dim = 3, kv_rank = 6, softcap = 5.0)",
    "mla_q": "mla(heads = 2, head_dim = 3, rope_dim = 2, v_dim = 7, kv_rank = 5, q_rank = 4, bias = false)",
}
# recurrent sequence mixers: no positional scheme (they know order without one)
MIXERS = {
    "retention": "retention(heads = 3)",
    "retention_chunks": "retention(heads = 3, form = chunkwise, chunk = 4, norm = rmsnorm, bias = false)",
    "rwkv": "rwkv_time_mix(hidden = 20, chunk = 4)",
    "mamba": "mamba(d_state = 5, d_conv = 3, expand = 3, dt_rank = 4, chunk = 4)",
    "mamba_k1": "mamba(d_state = 2, d_conv = 1, chunk = 3, bias = true, conv_bias = false)",
    "mamba2": "mamba2(head_dim = 4, n_groups = 3, d_state = 5, d_conv = 3, chunk = 4)",
    "mamba2_k1": "mamba2(heads = 8, head_dim = 6, d_state = 2, d_conv = 1, chunk = 3, bias = true)",
}
#: feed-forwards other than the plain MLP, by attention case: those that keep a decoding state
FFNS = {"rwkv": "rwkv_channel_mix(hidden = 33)"}
POSITIONS = {
    "learned": "learned(max_len = 32)",
    "sinusoidal": "sinusoidal(max_len = 32)",
    "rope": "rope(max_len = 32)",
    "rope_partial": "rope(max_len = 32, fraction = 0.5, layout = interleaved)",
    "alibi": "alibi()",
    "t5": "t5(buckets = 8, max_distance = 6)",
    "shaw": "shaw(k = 3)",
    "none": "none",  # recurrent mixers know order without positions
}
CASES = (
    [(a, "rope") for a in ATTENTIONS]
    + [("gqa", p) for p in POSITIONS]
    + [("prefix", "alibi"), ("mqa", "t5")]
    + [(m, "none") for m in MIXERS]
)


@pytest.mark.parametrize(("attention", "position"), CASES, ids=[f"{a}-{p}" for a, p in CASES])
def test_incremental_equals_full_per_kind(attention: str, position: str, write_spec) -> None:  # type: ignore[no-untyped-def]
    ffn = FFNS.get(attention, "mlp(hidden = 32)")
    text = VARIANT.format(
        attention={**ATTENTIONS, **MIXERS}[attention], position=POSITIONS[position], ffn=ffn
    )
    spec = archdsl.load(write_spec("v.arch", text))
    model = archdsl.build(spec, seed=0).eval()
    with torch.no_grad():  # away from the initialisation (identity bilinear maps, zero biases)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    T = 14
    idx = torch.randint(0, 31, (2, T), generator=torch.Generator().manual_seed(3))
    # the one-token steps through torch.compile (fullgraph: one graph, static cache shapes)
    torch._dynamo.reset()  # each case compiles afresh (not against the cache limit of the ones before)
    step = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        full = model(idx)
        model.setup_cache(2, T)
        cuts = [0, 5, 7, *range(8, T + 1)]
        pieces = [
            (step if b - a == 1 else model)(idx[:, a:b], pos=torch.arange(a, b))
            for a, b in itertools.pairwise(cuts)
        ]
        model.clear_cache()
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)
    report = archdsl.analyze(spec, batch=2, seq_len=T).to_dict()["memory"]["kv_cache_bytes"]
    model.setup_cache(2, T)
    caches = cache_modules(model)
    assert sum(b.numel() * b.element_size() for m in caches for b in m.buffers()) == report


@pytest.mark.parametrize(
    "path",
    [p for p in all_specs() if archdsl.load(p, overrides=tiny_overrides(p)).model.type == "encoder_decoder"],
    ids=lambda p: p.stem,
)
def test_encoder_decoder_cache_bytes_equal_report(path: Path) -> None:
    """Self-attention caches for the target and each cross-attention's keys and values of the source."""
    from archdsl.lower.model_nn import setup_caches

    spec = archdsl.load(path, overrides=tiny_overrides(path))
    model = tiny(path)
    T = 12
    report = archdsl.analyze(spec, batch=2, seq_len=T).to_dict()["memory"]["kv_cache_bytes"]
    setup_caches(model.decoder, 2, T, model.wte.weight)
    memory = model.encoder(model.wte(torch.zeros(2, T, dtype=torch.long)))
    crosses = [m for m in model.decoder.modules() if getattr(m, "cross", None) is True]
    for m in crosses:
        m.remember(memory)
    assert crosses
    caches = [m for m in model.modules() if type(m).__name__ == "KVCache"]
    assert sum(b.numel() * b.element_size() for m in caches for b in m.buffers()) == report


def test_cache_sizes_follow_the_layer_pattern() -> None:
    """Gemma 2 alternates local (a rolling cache of the window) and global (every position) layers;
    key/value heads only (GQA)."""
    path = next(p for p in DECODERS if p.stem == "gemma2_9b")
    model = tiny(path)
    model.setup_cache(3, 20)
    caches = [m for m in model.modules() if type(m).__name__ == "KVCache"]
    window = tiny_overrides(path)["window"]
    kv = tiny_overrides(path)["n_kv_heads"]
    assert [c.k.shape for c in caches] == [
        (3, kv, window if i % 2 == 0 else 20, tiny_overrides(path)["head_dim"]) for i in range(len(caches))
    ]
    assert [c.rolling for c in caches] == [i % 2 == 0 for i in range(len(caches))]


def test_sampling_options() -> None:
    """top_k = 1 and a tiny nucleus are greedy; eos ends a sequence (later tokens repeat it) and stops
    generation once every sequence has ended; sampling is reproducible under a seed."""
    path = next(p for p in DECODERS if p.stem == "llama2_7b")
    model = tiny(path)
    prompt = torch.randint(0, 50, (3, 4), generator=torch.Generator().manual_seed(8))
    greedy = model.generate(prompt, 6, temperature=0)
    assert torch.equal(model.generate(prompt, 6, top_k=1), greedy)
    assert torch.equal(model.generate(prompt, 6, top_p=1e-6), greedy)
    eos = int(greedy[0, 5])  # the second new token of the first sequence
    out = model.generate(prompt, 6, temperature=0, eos_token_id=eos)
    first = (out[0, 4:] == eos).nonzero()[0, 0] + 4
    assert (out[0, first:] == eos).all() and torch.equal(out[0, :first], greedy[0, :first])
    torch.manual_seed(0)
    a = model.generate(prompt, 6, temperature=0.8, top_k=10, top_p=0.9)
    torch.manual_seed(0)
    assert torch.equal(a, model.generate(prompt, 6, temperature=0.8, top_k=10, top_p=0.9))
    assert a.shape == (3, 10) and ((a >= 0) & (a < 50)).all()
    single = model.generate(prompt[:1], 20, temperature=0, eos_token_id=int(greedy[0, 4]))
    assert single.shape[1] == 5  # stopped at the first new token: every sequence had ended
