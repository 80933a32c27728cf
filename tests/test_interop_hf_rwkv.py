"""RWKV-4: equal to Hugging Face ``RwkvForCausalLM`` (its CPU path, ``rwkv_linear_attention_cpu``) on
odd tiny configs — logits, parameter counts, greedy generation through HF's state passing, chunked
decoding against HF's state — the import of ``RwkvConfig`` and the export back; ``rescale_every``;
the published 169M model's parameter count."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import torch
from conftest import SPECS
from hf_cases import T, check_export, ids, meta_params, numel, ours_for, perturb

import archdsl
from archdsl.interop.hf import UnsupportedConfigError, load_spec_from_config, spec_from_config

VOCAB = 53


def config(**kw: object) -> T.RwkvConfig:
    base = {"vocab_size": VOCAB, "context_length": 64, "rescale_every": 0}
    return T.RwkvConfig(**{**base, **kw})


CASES = {
    # odd widths, k/v/r narrower than the model, an odd feed-forward, three layers
    "odd": config(hidden_size=21, num_hidden_layers=3, attention_hidden_size=15, intermediate_size=37),
    # tied head, another eps (ln_out keeps 1e-5), the default 4d feed-forward
    "tied": config(hidden_size=19, num_hidden_layers=2, tie_word_embeddings=True, layer_norm_epsilon=1e-6),
    "wide": config(hidden_size=23, num_hidden_layers=3, attention_hidden_size=31, intermediate_size=41),
    "untied": config(hidden_size=17, num_hidden_layers=4, intermediate_size=29),
}
#: HF keeps the WKV state at hidden_size: it can pass state only where attention_hidden_size equals it
STATEFUL = ("tied", "untied")


def hf_model(name: str, scale: float = 1.0, rescale_every: int = 0) -> torch.nn.Module:
    """A random HF model of the case, away from HF's initialisation (whose near-zero embeddings give
    near-tied logits): embeddings N(0, 1), norms perturbed, every other weight times ``scale``."""
    torch.manual_seed(0)
    cfg = T.RwkvConfig(**{**CASES[name].to_dict(), "rescale_every": rescale_every})
    hf = T.RwkvForCausalLM(cfg)
    perturb(hf, scale)
    with torch.no_grad():
        hf.rwkv.embeddings.weight.normal_(0.0, 1.0)
    return hf.eval()


@pytest.mark.parametrize(("scale", "atol"), [(1.0, 1e-5), (2.0, 5e-5)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_and_parameter_counts_equal_hf(name: str, scale: float, atol: float) -> None:
    hf = hf_model(name, scale)
    spec, ours = ours_for(hf)  # HF's weights before any eval forward (rescaling would change them)
    assert numel(ours) == numel(hf)
    assert archdsl.analyze(spec, seq_len=13).params_total == numel(hf)
    x = ids(VOCAB)
    with torch.no_grad():
        want = hf(x, use_cache=False).logits
        torch.testing.assert_close(ours(x), want, atol=atol, rtol=1e-5)
        for m in ours.modules():
            if hasattr(m, "chunk"):
                m.chunk = 4  # several chunks and a padded last one (13 = 3 * 4 + 1)
        torch.testing.assert_close(ours(x), want, atol=atol, rtol=1e-5)


# HF's single-token state path (``hidden.size(1) == 1 and state is not None``) broadcasts the (B, 1, C)
# input against the (B, C) state into (B, B, C) (transformers 5.25): with several sequences its
# logits are wrong ((B, B, V)). So HF's generation and single-token steps are compared one sequence at a
# time; its chunks of several tokens with a state are right at any batch.


@pytest.mark.parametrize("name", STATEFUL)
def test_greedy_generate_equals_hf_state_passing(name: str) -> None:
    """Our batched greedy generation, each sequence equal to HF's ``generate`` (which passes its state
    from step to step) of that sequence alone."""
    hf = hf_model(name)
    _, ours = ours_for(hf)
    prompt = ids(VOCAB)[:, :5]
    with torch.no_grad():
        got = ours.generate(prompt, 10, temperature=0)
        for i in range(prompt.size(0)):
            want = hf.generate(
                prompt[i : i + 1],
                max_new_tokens=10,
                min_new_tokens=10,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
            assert torch.equal(got[i : i + 1], want)


@pytest.mark.parametrize(
    ("batch", "cuts"),
    [(2, [0, 6, 9, 11, 14]), (1, [0, 5, *range(6, 15)])],
    ids=["chunks", "tokens"],
)
@pytest.mark.parametrize("name", STATEFUL)
def test_decoding_equals_hf_state(name: str, batch: int, cuts: list[int]) -> None:
    """A prompt, then chunks of several tokens (two sequences) or single tokens (one): our cache against
    HF's ``state`` argument, piece by piece, and both against the full forward."""
    hf = hf_model(name, 2.0)
    _, ours = ours_for(hf)
    x = ids(VOCAB, b=batch, t=14)
    ours.setup_cache(batch, 14)
    state = None
    with torch.no_grad():
        full = hf(x, use_cache=False).logits
        for a, b in itertools.pairwise(cuts):
            out = hf(x[:, a:b], state=state, use_cache=True)
            state = out.state
            got = ours(x[:, a:b], pos=torch.arange(a, b))
            torch.testing.assert_close(got, out.logits, atol=5e-5, rtol=1e-5)
            torch.testing.assert_close(got, full[:, a:b], atol=5e-5, rtol=1e-5)
    ours.clear_cache()


def test_rescale_every_changes_only_rounding() -> None:
    """HF's ``rescale_every`` (in eval: the hidden states halved after every k layers, the later layers'
    output weights divided to match) computes the same function but for rounding and the LayerNorms'
    eps, which then acts on smaller numbers (after j halvings as eps 4^j). Read as irrelevant, it
    imports to the same spec; with the default (6) on 12 layers, as RWKV-4 169M has, our logits are
    within 1e-4 of HF's rescaled model (and within 1e-5 of HF's with ``rescale_every = 0``, above)."""
    torch.manual_seed(0)
    cfg = config(hidden_size=16, num_hidden_layers=12, rescale_every=6)
    hf = T.RwkvForCausalLM(cfg)
    perturb(hf)
    with torch.no_grad():
        hf.rwkv.embeddings.weight.normal_(0.0, 1.0)
    hf.eval()
    spec, ours = ours_for(hf)  # read before HF's first eval forward rescales its weights in place
    assert spec.model == load_spec_from_config({**cfg.to_dict(), "rescale_every": 0}).model
    x = ids(VOCAB)
    with torch.no_grad():
        rescaled = hf(x, use_cache=False).logits
        assert hf.rwkv.layers_are_rescaled
        torch.testing.assert_close(ours(x), rescaled, atol=1e-4, rtol=1e-4)
        assert not torch.equal(ours(x), rescaled)  # it did rescale


@pytest.mark.parametrize("name", ["odd", "tied"])
def test_export_round_trip(name: str, tmp_path: Path) -> None:
    check_export(lambda: T.RwkvForCausalLM(CASES[name]), tmp_path, [ids(VOCAB)], out=hf_logits)


def hf_logits(m: torch.nn.Module, *x: torch.Tensor) -> torch.Tensor:
    return m(*x, use_cache=False).logits if isinstance(m, T.RwkvForCausalLM) else m(*x)


def test_export_writes_head_and_no_rescaling(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    hf = hf_model("untied")
    spec, ours = ours_for(hf)
    archdsl.interop.hf.export_hf(ours, spec, tmp_path)
    written = load_file(str(tmp_path / "model.safetensors"))
    assert "head.weight" in written and "lm_head.weight" not in written
    assert written["rwkv.blocks.0.attention.time_mix_key"].shape == (1, 1, 17)
    assert archdsl.interop.hf.config_from_spec(spec)["rescale_every"] == 0


def test_rwkv_169m_parameter_count_and_import() -> None:
    """RWKV/rwkv-4-169m-pile: 169,342,464 parameters on the meta device; its config imports to
    specs/rwkv_169m.arch."""
    cfg = T.RwkvConfig(
        vocab_size=50277,
        hidden_size=768,
        num_hidden_layers=12,
        attention_hidden_size=768,
        intermediate_size=3072,
        layer_norm_epsilon=1e-5,
        context_length=1024,
        tie_word_embeddings=False,
    )
    spec = archdsl.load(SPECS / "rwkv_169m.arch")
    n = meta_params(T.RwkvForCausalLM, cfg)
    assert n == 169_342_464
    assert archdsl.analyze(spec, seq_len=1024).params_total == n
    imported = load_spec_from_config({**cfg.to_dict(), "_name_or_path": "RWKV/rwkv-4-169m-pile"})
    assert imported.model == dataclasses.replace(spec.model, name=imported.model.name)


def test_unknown_fields_are_refused_by_name() -> None:
    cfg = {**CASES["odd"].to_dict(), "head_size": 8}
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config(cfg)
    assert "head_size" in e.value.fields


def test_imported_spec_text() -> None:
    """A config as idiomatic spec text: the mixer slot, no positions, ln_out at eps 1e-5 whatever
    ``layer_norm_epsilon`` says."""
    text = spec_from_config({**CASES["odd"].to_dict(), "layer_norm_epsilon": 1e-6})
    for line in (
        "d_att    = 15",
        "eps      = 1e-06",
        "position       = none",
        "embedding_norm = layernorm(eps = eps)",
        "mixer     = rwkv_time_mix(hidden = d_att)",
        "ffn       = rwkv_channel_mix(hidden = d_ff)",
        "final_norm     = layernorm(eps = 1e-05)",
        "head           = lm_head(tied = false)",
    ):
        assert line in text, line
