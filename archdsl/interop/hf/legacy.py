"""Checkpoints saved by transformers 4 (most of the Hub) use older tensor names for some families;
transformers 5 renames them on load (``transformers/conversion_mapping.py``), and so does
:func:`modernise`, before the weight rules (written against transformers 5's names) read them:

- Mixtral: ``block_sparse_moe`` is ``mlp``, and the per-expert ``experts.{e}.w1`` (gate), ``w3`` (up),
  ``w2`` (down) are fused into ``experts.gate_up_proj`` (E, 2f, d) and ``experts.down_proj`` (E, d, f);
- ViT: ``encoder.layer.{i}.attention.attention.query`` … become ``layers.{i}.attention.q_proj`` …,
  ``attention.output.dense`` ``attention.o_proj``, ``intermediate.dense`` / ``output.dense``
  ``mlp.fc1`` / ``mlp.fc2``;
- GPT-NeoX: the untied head ``embed_out`` is ``lm_head``;
- any family: TensorFlow-era LayerNorm ``gamma`` / ``beta`` are ``weight`` / ``bias``.

Names already in the new form pass through unchanged."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    Tensor = torch.Tensor
else:
    Tensor = Any

_EXPERT = re.compile(r"^(?P<p>.*\.)experts\.(?P<e>\d+)\.(?P<w>w[123])\.weight$")
_VIT_LAYER = re.compile(r"(^|\.)encoder\.layer\.(\d+)\.")
VIT_RENAMES = (
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
)


def modernise(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with transformers 4 names turned into transformers 5's (see the module docstring)."""
    import torch

    out: dict[str, Tensor] = {}
    experts: dict[str, dict[int, dict[str, Tensor]]] = {}
    vit = any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in state)
    for k, v in state.items():
        if k.endswith(".gamma") or k.endswith(".beta"):
            k = k.rsplit(".", 1)[0] + (".weight" if k.endswith(".gamma") else ".bias")
        k = k.replace(".block_sparse_moe.", ".mlp.")
        if k.startswith("embed_out."):  # GPT-NeoX
            k = "lm_head." + k.removeprefix("embed_out.")
        if (m := _EXPERT.match(k)) is not None:
            experts.setdefault(m["p"], {}).setdefault(int(m["e"]), {})[m["w"]] = v
            continue
        if vit and _VIT_LAYER.search(k):
            k = _VIT_LAYER.sub(r"\1layers.\2.", k)
            for old, new in VIT_RENAMES:
                if old in k:
                    k = k.replace(old, new)
                    break
        out[k] = v
    for prefix, per in experts.items():
        n = max(per) + 1
        if sorted(per) != list(range(n)) or any(set(w) != {"w1", "w2", "w3"} for w in per.values()):
            # leave an incomplete set as it was: the weight rules report what is missing
            for e, ws in per.items():
                out.update({f"{prefix}experts.{e}.{w}.weight": t for w, t in ws.items()})
            continue
        out[f"{prefix}experts.gate_up_proj"] = torch.stack(
            [torch.cat([per[e]["w1"], per[e]["w3"]], dim=0) for e in range(n)]
        )
        out[f"{prefix}experts.down_proj"] = torch.stack([per[e]["w2"] for e in range(n)])
    return out
