"""Hugging Face transformers interop: a config as spec text, HF weights into a built model, and a
built model back out as an HF checkpoint.

    text = spec_from_config(json.load(open("config.json")))    # idiomatic .arch text
    spec = load_spec_from_config(config)                        # the loaded Spec
    model = archdsl.build(spec)
    load_hf_weights(model, "path/to/checkpoint")                # state dict, .safetensors, or a folder
    export_hf(model, spec, "out/")                              # config.json + model.safetensors

Every config field is accounted for: the ones that shape the model become spec values, a per-family
list names the ones that do not (ids, dropout, initialisation, dtype, …), and any other field — or a
value archdsl cannot express — raises :class:`UnsupportedConfigError` (E021) naming it. Nothing is
silently dropped. One module per family (``archdsl/interop/hf/<family>.py``) registers its config
reader, weight rules and export; the families handled and their quirks are in docs/interop.md.

Torch (and safetensors) are imported only by the weight functions; transformers never.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# the family modules register themselves on import
from archdsl.interop.hf import (  # noqa: F401
    albert,
    bert,
    bloom,
    gpt2,
    jamba,
    llama,
    mamba,
    mamba2,
    opt,
    parallel,
    roberta,
    rwkv,
    t5,
    vit,
)
from archdsl.interop.hf.base import (
    FAMILIES,
    Family,
    UnsupportedConfigError,
    diag,
    geometry,
)
from archdsl.ir import Spec

if TYPE_CHECKING:
    import torch
    from torch import nn

    Tensor = torch.Tensor
else:
    Tensor = Any

__all__ = [
    "FAMILIES",
    "UnsupportedConfigError",
    "WeightMismatchError",
    "config_from_spec",
    "export_hf",
    "load_hf_weights",
    "load_spec_from_config",
    "read_state",
    "spec_from_config",
    "supported",
]


def supported() -> list[str]:
    """The ``model_type`` values :func:`spec_from_config` reads."""
    return sorted(FAMILIES)


def spec_from_config(config: Mapping[str, Any]) -> str:
    """A Hugging Face config (``config.json`` as a dict, or ``PretrainedConfig.to_dict()``) as the text
    of an equivalent spec. Raises :class:`UnsupportedConfigError` (E021) naming every field archdsl
    cannot express (or does not know) — none is ignored silently."""
    if not isinstance(config, Mapping):
        raise UnsupportedConfigError([diag("model_type", "the config is not a JSON object")])
    mt = config.get("model_type")
    if mt not in FAMILIES:
        msg = f"{json.dumps(mt)} is not supported (supported: {', '.join(supported())})"
        raise UnsupportedConfigError([diag("model_type", msg)])
    return FAMILIES[mt].to_text(config).render()


def load_spec_from_config(config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Spec:
    """:func:`spec_from_config`, loaded (through a temporary ``.arch`` file) as a :class:`Spec`."""
    from archdsl.pipeline import load

    text = spec_from_config(config)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{config.get('model_type')}.arch"
        path.write_text(text, encoding="utf-8")
        return load(path, overrides)


# -- weights -----------------------------------------------------------------------------------------


def layout_of_state(keys: set[str]) -> tuple[Family, str]:
    """The family whose weight layout a Hugging Face state dict has, and the prefix of its names."""
    layouts = sorted((f for f in FAMILIES.values() if f.detect is not None), key=lambda f: -f.priority)
    for fam in layouts:
        assert fam.detect is not None
        prefix = fam.detect(keys)
        if prefix is not None:
            return fam, prefix
    raise ValueError(
        "not a Hugging Face state dict of a supported layout ("
        + ", ".join(sorted({str(f.layout) for f in layouts}))
        + ")"
    )


HF_IGNORED = (
    re.compile(r"(^|\.)rotary_emb\.inv_freq$"),
    re.compile(r"(^|\.)h\.\d+\.attn\.(masked_)?bias$"),  # GPT-2's old causal-mask buffers
    re.compile(r"(^|\.)position_ids$"),
    re.compile(r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$"),
)
# HF names that hold the same tensor as another (tied): consumed when they equal it
HF_TIED = {
    "lm_head.weight": ("model.embed_tokens.weight", "transformer.wte.weight", "shared.weight"),
    "encoder.embed_tokens.weight": ("shared.weight",),
    "decoder.embed_tokens.weight": ("shared.weight",),
}


def read_state(source: Any) -> dict[str, Tensor]:
    """A state dict from a mapping, a ``.safetensors`` file, a ``.bin`` file (``torch.load`` with
    ``weights_only=True``) or a folder of ``*.safetensors`` (else ``pytorch_model*.bin``)."""
    import torch

    if isinstance(source, Mapping):
        return {str(k): v for k, v in source.items()}
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise FileNotFoundError(f"{path}: no *.safetensors or pytorch_model*.bin")
    elif path.exists():
        files = [path]
    else:
        raise FileNotFoundError(f"{path}: no such file or directory")
    state: dict[str, Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(f)))
        else:
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return state


class WeightMismatchError(ValueError):
    """A checkpoint that does not fit the model: every missing, unexpected and mis-shaped name."""


def aliases_of(model: nn.Module) -> dict[str, str]:
    """Each state-dict name whose tensor another name already holds (tied or shared), to that name."""
    seen: dict[int, str] = {}
    out: dict[str, str] = {}
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) in seen:
            out[k] = seen[id(v)]
        else:
            seen[id(v)] = k
    return out


def load_hf_weights(model: nn.Module, source: Any) -> dict[str, Tensor]:
    """Copy a Hugging Face checkpoint's weights into ``model`` (built by archdsl from the matching spec):
    names and layouts mapped per family (GPT-2's Conv1D transposed, q/k/v fused, fused experts split,
    ViT's position table unbatched), tied weights checked. Raises :class:`WeightMismatchError` listing
    every missing, unexpected or mis-shaped tensor; nothing is loaded then. Returns the mapped state."""
    import torch

    from archdsl.interop.hf.legacy import modernise

    hf = modernise(read_state(source))  # transformers 4 names as transformers 5 has them
    layout, prefix = layout_of_state(set(hf))
    family = layout.layout
    own = model.state_dict()
    aliases = aliases_of(model)
    g = geometry(model)
    ours: dict[str, Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    assert layout.rules is not None
    for r in layout.rules(g, prefix):
        if not all(o in own for o in r.ours):
            continue
        if any(o in aliases or o in ours for o in r.ours):  # the first rule for a tensor wins
            continue
        absent = [h for h in r.hf if h not in hf]
        if absent:
            missing += absent
            continue
        used.update(r.hf)
        for o, t in zip(r.ours, r.fwd([hf[h] for h in r.hf]), strict=True):
            ours[o] = t
    head_tied = "lm_head.weight" in aliases
    if "lm_head.weight" in own and not head_tied and "lm_head.weight" not in ours:  # (RWKV's `head`: a rule)
        if "lm_head.weight" in hf:
            ours["lm_head.weight"] = hf["lm_head.weight"]
            used.add("lm_head.weight")
        else:
            missing.append("lm_head.weight")
    problems: list[str] = []
    for k, others in {**HF_TIED, **dict(layout.tied)}.items():
        if k in hf and k not in used:
            base = next((o for o in others if o in hf), None)
            if base is not None and torch.equal(hf[k], hf[base]):
                used.add(k)
            elif k == "lm_head.weight" and head_tied:
                problems.append(f"{k}: the checkpoint's output head is untied, the model's is tied")
                used.add(k)
    ignored = [*HF_IGNORED, *(re.compile(p) for p in layout.ignored)]
    unexpected = sorted(k for k in hf if k not in used and not any(p.search(k) for p in ignored))
    not_filled = sorted(k for k in own if k not in ours and k not in aliases)
    shapes = [
        f"{k}: model {tuple(own[k].shape)}, checkpoint gives {tuple(v.shape)}"
        for k, v in ours.items()
        if tuple(own[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes or problems or (not_filled and not missing):
        lines = [f"the {family} checkpoint does not fit the model:"]
        if missing:
            lines.append(f"  missing in the checkpoint ({len(missing)}): {', '.join(sorted(missing))}")
        if not_filled and not missing:
            lines.append(
                f"  model tensors with no checkpoint tensor ({len(not_filled)}): {', '.join(not_filled)}"
            )
        if unexpected:
            lines.append(f"  unexpected in the checkpoint ({len(unexpected)}): {', '.join(unexpected)}")
        if shapes:
            lines.append(f"  mis-shaped ({len(shapes)}): " + "; ".join(shapes))
        lines += [f"  {p}" for p in problems]
        raise WeightMismatchError("\n".join(lines))
    with torch.no_grad():
        params = model.state_dict(keep_vars=True)
        for k, v in ours.items():
            params[k].copy_(v.to(params[k].dtype))
    return ours


# -- export ------------------------------------------------------------------------------------------


def family_of_spec(spec: Spec) -> Family:
    """The exportable family a spec belongs to (each family's ``claims`` decides)."""
    # the families read a model of one or two stacks: a towers model (CLIP) is in none of them
    found = [
        f for f in FAMILIES.values() if not spec.model.towers and f.claims is not None and f.claims(spec)
    ]
    if not found:
        exportable = ", ".join(sorted(f.model_type for f in FAMILIES.values() if f.claims is not None))
        raise ValueError(
            f"export_hf: {spec.model.name} is not in an exportable Hugging Face family ({exportable})"
        )
    return max(found, key=lambda f: f.priority)


def config_from_spec(spec: Spec) -> dict[str, Any]:
    """The Hugging Face config (as a dict for ``config.json``) of a spec in an exportable family."""
    fam = family_of_spec(spec)
    assert fam.to_config is not None
    return fam.to_config(spec)


def export_hf(model: nn.Module, spec: Spec, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` in ``directory`` that the matching Hugging Face
    class loads (``AutoModelFor….from_pretrained(directory)``). Returns the directory."""
    from safetensors.torch import save_file

    fam = family_of_spec(spec)
    assert fam.to_config is not None and fam.rules is not None
    cfg = fam.to_config(spec)
    own = {k: v.detach() for k, v in model.state_dict().items()}
    aliases = aliases_of(model)
    out: dict[str, Tensor] = {}
    done: set[str] = set()
    for r in fam.rules(geometry(model), fam.hf_prefix):
        if not all(o in own for o in r.ours) or any(o in aliases or o in done for o in r.ours):
            continue
        done.update(r.ours)  # the first rule for a tensor wins (a masked-LM head before a pooler)
        for h, t in zip(r.hf, r.back([own[o] for o in r.ours]), strict=True):
            out[h] = t.contiguous().clone()
    if "lm_head.weight" in own and "lm_head.weight" not in aliases and "lm_head.weight" not in done:
        out["lm_head.weight"] = own["lm_head.weight"].contiguous().clone()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    save_file(out, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d
