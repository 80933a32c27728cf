"""Every registered family, from transformers' own default config of its model_type (full size, read
only — nothing built): the imported spec loads and checks, exactly one family claims it for export
(its own), and config → spec → config → spec gives the same IR. The default config is also the
full-size parameter check: the report's count equals the HF model's, built on the meta device."""

from __future__ import annotations

import pytest
import torch
import transformers as T

import archdsl
from archdsl.interop.hf import FAMILIES, config_from_spec, load_spec_from_config
from archdsl.interop.hf.base import Family

# the HF class whose parameters the default spec has (the base model where the head is a pooler)
AUTO = {"bert": T.AutoModel, "roberta": T.AutoModel, "albert": T.AutoModel, "t5": T.AutoModelForSeq2SeqLM}
AUTO_DEFAULT = T.AutoModelForCausalLM
IMAGE = {"vit": T.AutoModelForImageClassification}


def default_config(model_type: str) -> dict:
    cfg = T.AutoConfig.for_model(model_type)
    return cfg.to_dict()


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_default_config_round_trips_through_the_spec(model_type: str) -> None:
    fam: Family = FAMILIES[model_type]
    cfg = default_config(model_type)
    spec = load_spec_from_config(cfg)
    if fam.claims is None:
        pytest.fail(f"{model_type} has no export")
    claimed = [f.model_type for f in FAMILIES.values() if f.claims is not None and f.claims(spec)]
    assert claimed == [model_type]
    back = config_from_spec(spec)
    assert back["model_type"] == model_type
    assert load_spec_from_config(back).model == spec.model


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_default_config_parameter_count_equals_hf(model_type: str) -> None:
    cfg = T.AutoConfig.for_model(model_type)
    spec = load_spec_from_config(cfg.to_dict())
    auto = IMAGE.get(model_type) or AUTO.get(model_type) or AUTO_DEFAULT
    with torch.device("meta"):
        hf = auto.from_config(cfg)
    n = sum(p.numel() for p in hf.parameters())
    kw = {"seq_len": 16} if spec.model.vocab else {}  # an image model's length is its patch count
    if spec.model.type == "encoder_decoder":
        kw["src_len"] = 16
    assert archdsl.analyze(spec, **kw).params_total == n
