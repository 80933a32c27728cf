"""The encoder families against transformers: BERT and RoBERTa (base model with its pooler, or masked
LM, chosen by the config's ``architectures``), ALBERT's factorised shared encoder, ViT and T5 — logits
equal on tiny odd configs at two weight scales, parameter counts equal (module and report), export
round trips, and full-size counts against HF on the meta device."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hf_cases import T, ids, meta_params, numel, ours_for, perturb

import archdsl
from archdsl.interop.hf import (
    FAMILIES,
    UnsupportedConfigError,
    export_hf,
    load_spec_from_config,
    spec_from_config,
)

SMALL = dict(
    vocab_size=53,
    hidden_size=24,
    num_hidden_layers=3,
    num_attention_heads=3,
    intermediate_size=40,
    max_position_embeddings=32,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def tokens(b: int = 2, t: int = 13) -> torch.Tensor:
    """Ids 3..52: no padding token (RoBERTa's 1 would shift its positions), no special ids."""
    return ids(50, b, t) + 3


def bert_mlm() -> Any:
    cfg = T.BertConfig(**SMALL)
    cfg.architectures = ["BertForMaskedLM"]
    return T.BertForMaskedLM(cfg)


def bert_base() -> Any:
    return T.BertModel(T.BertConfig(**{**SMALL, "num_hidden_layers": 2}))


def roberta_mlm() -> Any:
    cfg = T.RobertaConfig(**{**SMALL, "type_vocab_size": 1, "num_attention_heads": 6})
    cfg.architectures = ["RobertaForMaskedLM"]
    return T.RobertaForMaskedLM(cfg)


def roberta_base() -> Any:
    return T.RobertaModel(T.RobertaConfig(**{**SMALL, "type_vocab_size": 1, "num_hidden_layers": 2}))


def albert_mlm() -> Any:
    cfg = T.AlbertConfig(**SMALL, embedding_size=10, hidden_act="gelu_new")
    cfg.architectures = ["AlbertForMaskedLM"]
    return T.AlbertForMaskedLM(cfg)


def albert_base() -> Any:
    return T.AlbertModel(T.AlbertConfig(**SMALL, embedding_size=10, hidden_act="gelu_new"))


def vit() -> Any:
    return T.ViTForImageClassification(
        T.ViTConfig(
            image_size=24,
            patch_size=8,
            hidden_size=24,
            num_hidden_layers=2,
            num_attention_heads=3,
            intermediate_size=40,
            num_labels=7,
        )
    )


def t5(proj: str = "relu", tied: bool = True) -> Any:
    return T.T5ForConditionalGeneration(
        T.T5Config(
            vocab_size=53,
            d_model=24,
            d_kv=10,
            d_ff=40,
            num_layers=2,
            num_decoder_layers=3,
            num_heads=3,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            feed_forward_proj=proj,
            tie_word_embeddings=tied,
            dropout_rate=0.0,
            decoder_start_token_id=0,
        )
    )


def logits(m: Any, *x: torch.Tensor) -> torch.Tensor:
    return m(*x).logits


def pooled(m: Any, *x: torch.Tensor) -> torch.Tensor:
    return m(*x).pooler_output


def seq2seq(m: Any, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return m(input_ids=s, decoder_input_ids=t).logits


IMAGE = [torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))]
TEXT = [tokens()]
SEQ2SEQ = [tokens(t=9), tokens(t=7)]

# name: (make, HF output, inputs, the Auto class export is read back with)
CASES: dict[str, tuple[Callable[[], Any], Callable[..., torch.Tensor], list[torch.Tensor], Any]] = {
    "bert_mlm": (bert_mlm, logits, TEXT, T.AutoModelForMaskedLM),
    "bert": (bert_base, pooled, TEXT, T.AutoModel),
    "roberta_mlm": (roberta_mlm, logits, TEXT, T.AutoModelForMaskedLM),
    "roberta": (roberta_base, pooled, TEXT, T.AutoModel),
    "albert_mlm": (albert_mlm, logits, TEXT, T.AutoModelForMaskedLM),
    "albert": (albert_base, pooled, TEXT, T.AutoModel),
    "vit": (vit, logits, IMAGE, T.AutoModelForImageClassification),
    "t5": (t5, seq2seq, SEQ2SEQ, T.AutoModelForSeq2SeqLM),
    "flan_t5": (lambda: t5("gated-gelu", tied=False), seq2seq, SEQ2SEQ, T.AutoModelForSeq2SeqLM),
}


def params_total(spec: archdsl.Spec) -> int:
    if spec.model.type == "encoder_decoder":
        return archdsl.analyze(spec, seq_len=7, src_len=9).params_total
    if not spec.model.vocab:
        return archdsl.analyze(spec).params_total
    return archdsl.analyze(spec, seq_len=13).params_total


def assert_logits_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to fp32 rounding at the logits' scale: 1e-4, or 1e-5 of the largest logit where they
    are large (T5's unscaled scores give logits near 30, where fp32 rounding alone moves some by
    ~1e-4 — transformers' own fp32 logits differ from its fp64 ones by 7e-5 there)."""
    tol = max(1e-4, 1e-5 * float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, atol=tol, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_logits_and_parameter_counts(name: str, scale: float) -> None:
    torch.manual_seed(0)
    make, out, inputs, _ = CASES[name]
    hf = make().eval()
    # T5's scores are unscaled (no 1 / sqrt(d)): at x8 fp32 rounding of its large logits passes 1e-4
    perturb(hf, min(scale, 2.0) if "t5" in name else scale)
    spec, ours = ours_for(hf)
    assert numel(ours) == numel(hf)
    assert params_total(spec) == numel(hf)
    with torch.no_grad():
        assert_logits_close(ours(*inputs), out(hf, *inputs))


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    make, out, inputs, auto = CASES[name]
    hf = make().eval()
    perturb(hf, 2.0)
    spec, ours = ours_for(hf)
    claimed = [f.model_type for f in FAMILIES.values() if f.claims is not None and f.claims(spec)]
    assert claimed == [hf.config.model_type]
    export_hf(ours, spec, tmp_path)
    back = auto.from_pretrained(tmp_path).eval()
    assert type(back) is type(hf)
    with torch.no_grad():
        assert_logits_close(out(back, *inputs), ours(*inputs))
    again = load_spec_from_config(back.config.to_dict()).model  # named after the folder
    assert dataclasses.replace(again, name=spec.model.name) == spec.model


def test_the_head_follows_architectures() -> None:
    cfg = T.BertConfig(**SMALL).to_dict()
    assert "head           = pooler()" in spec_from_config(cfg)
    assert "mlm_head(eps = eps)" in spec_from_config({**cfg, "architectures": ["BertForMaskedLM"]})
    assert "pooler()" in spec_from_config({**cfg, "architectures": ["BertModel"]})
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config({**cfg, "architectures": ["BertForSequenceClassification"]})
    assert e.value.fields == ["architectures"]
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config({**cfg, "architectures": ["BertForMaskedLM"], "tie_word_embeddings": False})
    assert e.value.fields == ["tie_word_embeddings"]


@pytest.mark.parametrize("field", ["num_hidden_groups", "inner_group_num"])
def test_albert_groupings_are_refused_by_name(field: str) -> None:
    cfg = T.AlbertConfig(**SMALL, embedding_size=10).to_dict()
    with pytest.raises(UnsupportedConfigError) as e:
        spec_from_config({**cfg, field: 2})
    assert e.value.fields == [field]


def test_roberta_positions_start_after_the_padding_row() -> None:
    text = spec_from_config(T.RobertaConfig(**SMALL).to_dict())
    assert "learned(max_len = context - 2, offset = 2)" in text


def test_albert_like_is_the_imported_albert() -> None:
    cfg = T.AlbertConfig(
        vocab_size=30000,
        embedding_size=128,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        hidden_act="gelu_new",
    )
    cfg.architectures = ["AlbertForMaskedLM"]
    ours = load_spec_from_config(cfg.to_dict()).model
    ref = archdsl.load(Path(__file__).parent.parent / "specs" / "albert_like.arch").model
    assert dataclasses.replace(ours, name=ref.name) == ref


@pytest.mark.parametrize(
    ("cls", "make", "want"),
    [
        (
            T.AlbertForMaskedLM,
            lambda: T.AlbertConfig(
                vocab_size=30000,
                embedding_size=128,
                hidden_size=768,
                num_hidden_layers=12,
                num_attention_heads=12,
                intermediate_size=3072,
                hidden_act="gelu_new",
            ),
            11_221_680,
        ),
        (
            T.RobertaForMaskedLM,
            lambda: T.RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1),
            124_697_433,
        ),
        (T.BertForMaskedLM, lambda: T.BertConfig(vocab_size=30522), 109_514_298),
        (T.ViTForImageClassification, lambda: T.ViTConfig(num_labels=1000), 86_567_656),
        (
            T.T5ForConditionalGeneration,
            lambda: T.T5Config(d_model=768, d_ff=3072, num_layers=12, num_heads=12),
            222_903_552,
        ),
    ],
)
def test_full_size_parameter_counts(cls: type, make: Callable[[], Any], want: int) -> None:
    cfg = make()
    cfg.architectures = [cls.__name__]
    spec = load_spec_from_config(cfg.to_dict())
    n = meta_params(cls, cfg)
    assert params_total(spec) == n == want


@pytest.mark.parametrize("gated", [False, True])
def test_t5_greedy_generate_equals_hf(gated: bool) -> None:
    """T5ForConditionalGeneration.generate(do_sample=False) and ours from the same source: the same
    tokens, the decoder started from the pad id (0) in both."""
    torch.manual_seed(0)
    hf = T.T5ForConditionalGeneration(
        T.T5Config(
            vocab_size=53,
            d_model=24,
            d_kv=10,
            d_ff=40,
            num_layers=2,
            num_decoder_layers=2,  # HF's generate cache is sized by num_layers
            num_heads=3,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            feed_forward_proj="gated-gelu" if gated else "relu",
            dropout_rate=0.0,
            decoder_start_token_id=0,
        )
    ).eval()
    perturb(hf, 2.0)
    _, ours = ours_for(hf)
    src = ids(53, t=9)
    with torch.no_grad():
        got = ours.generate(src, 8, temperature=0, start_token_id=0)
        want = hf.generate(
            input_ids=src,
            max_new_tokens=8,
            min_new_tokens=8,
            do_sample=False,
            eos_token_id=None,
            decoder_start_token_id=0,
            pad_token_id=0,
        )
    assert torch.equal(got, want)
