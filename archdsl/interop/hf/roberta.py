"""RoBERTa (Liu et al. 2019): BERT's layout under ``roberta.``, ``RobertaModel`` with its pooler or
``RobertaForMaskedLM`` (``lm_head.*``, its decoder tied to the token table). Positions start after the
padding row: position p reads row ``pad_token_id + 1 + p`` (transformers derives them from the
non-padding tokens, so inputs without padding see 2, 3, …)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archdsl.interop.hf.base import Family, Geometry, Rule, Text, register
from archdsl.interop.hf.bert import (
    embedding_rules,
    encoder_config,
    encoder_text,
    is_bert_like,
    layer_rules,
    mlm_rule,
    pooler_rules,
)
from archdsl.ir import Spec


def to_text(c: Mapping[str, Any]) -> Text:
    pad = c.get("pad_token_id")
    offset = 1 if pad is None else int(pad) + 1
    return encoder_text(
        c,
        family="roberta",
        title="RoBERTa (Liu et al. 2019)",
        base="RobertaModel",
        mlm="RobertaForMaskedLM",
        position=f"learned(max_len = context - {offset}, offset = {offset})",
    )


def rules(g: Geometry, p: str) -> list[Rule]:
    return [
        *embedding_rules(p),
        mlm_rule("lm_head.dense", "lm_head.layer_norm", "lm_head.bias"),
        *pooler_rules(p),
        *layer_rules(g, p),
    ]


def claims(spec: Spec) -> bool:
    pos = spec.model.stacks[0].position if spec.model.stacks else None
    return (
        is_bert_like(spec)
        and spec.model.embedding["width"] in (None, spec.model.d_model)
        and pos is not None
        and int(pos["offset"] or 0) > 0
    )


def to_config(spec: Spec) -> dict[str, Any]:
    cfg = encoder_config(spec, "roberta", "RobertaModel", "RobertaForMaskedLM")
    pos = spec.model.stacks[0].position
    assert pos is not None
    pad = int(pos["offset"]) - 1
    cfg["pad_token_id"] = pad
    # transformers' defaults (0 and 2) would collide with a padding id other than 1
    cfg["bos_token_id"], cfg["eos_token_id"] = (0, 2) if pad == 1 else (None, None)
    return cfg


def detect(keys: set[str]) -> str | None:
    if "roberta.embeddings.word_embeddings.weight" in keys:
        return "roberta."
    if "lm_head.layer_norm.weight" in keys and "embeddings.word_embeddings.weight" in keys:
        return ""
    return None  # a bare RobertaModel's names are BertModel's: the BERT layout reads it


register(
    Family(
        "roberta",
        to_text,
        layout="roberta",
        rules=rules,
        detect=detect,
        priority=6,
        claims=claims,
        to_config=to_config,
        hf_prefix="roberta.",
        tied=(
            ("lm_head.decoder.weight", ("roberta.embeddings.word_embeddings.weight",)),
            ("lm_head.decoder.bias", ("lm_head.bias",)),
        ),
    )
)
