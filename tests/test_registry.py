"""Generated over the registry, so every kind (today's and tomorrow's) is held to its implementation:
for random valid parameters, the analysed params equal the module's numel and the analysed forward FLOPs
equal FlopCounterMode, module by module; the declared output shape is the real one."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_cost_vs_torch import assert_costs_match, assert_train_step_matches

import archdsl
from archdsl.diagnostics import SpecError
from archdsl.kinds import REGISTRY, ROLES, Kind, Param

D_MODEL = 24  # many divisors: 1, 2, 3, 4, 6, 8, 12, 24
VOCAB = 37

BASE = {
    "embedding": "token_embedding()",
    "position": "learned(max_len = 64)",
    "norm": "layernorm(eps = 1e-5)",
    "attention": "mha(heads = 4)",
    "ffn": "mlp(hidden = 40)",
    "head": "lm_head(tied = false)",
}


def spec_text(slots: dict[str, str], model_type: str = "decoder", placement: str = "pre") -> str:
    c = {**BASE, **slots}
    stack = f"""
    position = {c["position"]}
    block {{
      repeat = 2
      placement = {placement}
      norm = {c["norm"]}
      attention = {c["attention"]}
      {"cross_attention = " + c["cross_attention"] if "cross_attention" in c else ""}
      ffn = {c["ffn"]}
      {"adapter = " + c["adapter"] if "adapter" in c else ""}
    }}
    final_norm = {c["norm"]}
"""
    if model_type == "encoder_decoder":
        enc = stack.replace("cross_attention = " + c.get("cross_attention", ""), "")
        body = f"encoder {{ {enc} }}\n  decoder {{ {stack} }}"
    else:
        body = stack
    return f"""
model probe {{
  type = {model_type}
  d_model = {D_MODEL}
  vocab = {VOCAB}
  embedding = {c["embedding"]}
  {body}
  head = {c["head"]}
}}
"""


def reads_images(kind: Kind) -> bool:
    """An embedding that reads images (B, C, H, W), not token ids: it says so by its input shape."""
    return type(kind).input_shape is not Kind.input_shape


def grid_spec_text(slots: dict[str, str]) -> str:
    """An image encoder in two stages around a kind that reads the token grid (``Kind.reads_grid``): a
    9 x 9 grid of patches at width D_MODEL, then (through ``transition``) a 5 x 5 grid at twice it —
    odd, so windows and merging pad — with ``attention`` in both stages."""
    c = {"attention": "mha(heads = 4)", "transition": "patch_merging()", **slots}
    block = f"""block {{
        repeat = 2
        norm = layernorm(eps = 1e-5)
        attention = {c["attention"]}
        ffn = mlp(hidden = 40)
      }}"""
    return f"""
model probe {{
  type = encoder
  d_model = {D_MODEL}
  embedding = patch_embedding(image = 18, patch = 2, cls_token = false)
  stage a {{
      {block}
  }}
  stage b {{
      d_model = {2 * D_MODEL}
      transition = {c["transition"]}
      {block}
  }}
  final_norm = layernorm()
  head = classifier(classes = 5, pool = mean)
}}
"""


def towers_text(slots: dict[str, str]) -> str:
    """A two-tower model (an image tower and a text tower, CLIP-like) with ``head`` (the model's) and
    ``tower_head`` (the text tower's) replaced; the image tower projects to the text tower's width."""
    head = slots.get("head", "contrastive()")
    tower_head = slots.get("tower_head", "projection(pool = eos, eos_id = 3)")
    width = re.search(r"width = (\d+)", tower_head)
    image_head = f"projection(width = {width.group(1)})" if width else "projection()"
    block = """block {
      repeat = 2
      norm = layernorm()
      attention = mha(heads = 4)
      ffn = mlp(hidden = 40, activation = quick_gelu)
    }
    final_norm = layernorm()"""
    return f"""
model probe {{
  type = towers
  d_model = 12
  head = {head}
  tower image {{
    d_model = {D_MODEL}
    embedding = patch_embedding(image = 8, patch = 4)
    position = learned(max_len = 5)
    {block}
    head = {image_head}
  }}
  tower text {{
    d_model = {D_MODEL}
    vocab = {VOCAB}
    embedding = token_embedding()
    position = learned(max_len = 64)
    {block}
    head = {tower_head}
  }}
}}
"""


def latents_text(call: str) -> str:
    """An encoder whose blocks run over the latent array ``call`` (Perceiver-like): a cross-attention
    block reads the input (a table of its own width), a self-attention block the latents."""
    return f"""
block read {{
  ln = layernorm()
  attn = mha(heads = 2)
  flow {{ x = x + attn(ln(x), memory) }}
}}
block latent {{
  norm = layernorm()
  attention = mha(heads = 4)
  ffn = mlp(hidden = 40)
}}
model probe {{
  type = encoder
  d_model = {D_MODEL}
  vocab = {VOCAB}
  embedding = token_embedding(width = 10, project = none)
  position = learned(max_len = 64)
  latents = {call}
  layers = [read, latent]
  final_norm = layernorm()
  head = classifier(classes = 3, pool = mean)
}}
"""


#: heads of towers models: the model's (combining towers) and the towers' own
TOWER_HEADS = {"contrastive": "head", "projection": "tower_head"}


def load_text(text: str) -> archdsl.Spec | None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "probe.arch"
        p.write_text(text)
        try:
            return archdsl.load(p)
        except SpecError:
            return None


def param_strategy(p: Param) -> st.SearchStrategy[Any]:
    if p.type == "bool":
        return st.booleans()
    if p.type == "enum":
        return st.sampled_from(p.choices)
    if p.type == "int":
        lo = int(p.min if p.min is not None else 1)
        return st.integers(lo, lo + 24)
    lo = p.gt if p.gt is not None else (p.min or 0.0)
    hi = p.lt if p.lt is not None else (p.max if p.max is not None else 1.0)
    return st.floats(
        min_value=max(lo, 1e-6),
        max_value=min(hi, 1.0),
        exclude_min=p.gt is not None,
        exclude_max=p.lt is not None,
    )


def call_strategy(kind: Kind) -> st.SearchStrategy[str]:
    fields = {
        p.name: st.one_of(st.none(), param_strategy(p)) if not p.required else param_strategy(p)
        for p in kind.params
    }

    def render(values: dict[str, Any]) -> str:
        args = []
        for name, v in values.items():
            if v is None:
                continue  # leave it to its default
            text = (
                ("true" if v else "false")
                if isinstance(v, bool)
                else repr(v)
                if not isinstance(v, str)
                else v
            )
            args.append(f"{name} = {text}")
        return f"{kind.name}({', '.join(args)})"

    return st.fixed_dictionaries(fields).map(render)


def test_registry_covers_every_role() -> None:
    assert {k.role for k in REGISTRY.values()} == set(ROLES)
    for kind in REGISTRY.values():
        assert kind.name == kind.name.lower() and kind.name.isidentifier()
        assert kind.doc or type(kind).__doc__, f"{kind.name} explains itself"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_kind_cost_equals_its_implementation(name: str) -> None:
    kind = REGISTRY[name]
    slot = {"embedding": "embedding", "position": "position", "norm": "norm", "attention": "attention"}.get(
        kind.role, kind.role
    )
    slot = {"ffn": "ffn", "head": "head"}.get(kind.role, slot)

    checked = []

    @settings(
        max_examples=10,
        deadline=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(call=call_strategy(kind), seq_len=st.integers(1, 9), batch=st.integers(1, 2), cross=st.booleans())
    def check(call: str, seq_len: int, batch: int, cross: bool) -> None:
        slots = {slot: call}
        model_type = "decoder"
        if kind.role == "attention" and cross and 2 in kind.arities:  # as cross-attention in a decoder
            slots = {"cross_attention": call}
            model_type = "encoder_decoder"
        if reads_images(kind):  # an image model: a classifier, no positional table to fit
            slots["head"] = "classifier(classes = 5)"
            slots["position"] = "none"
        if kind.name in TOWER_HEADS:  # in a towers model (CLIP-like)
            spec = load_text(towers_text({TOWER_HEADS[kind.name]: call}))
        elif kind.role == "latents":  # a stack's queries (Perceiver-like)
            spec = load_text(latents_text(call))
        elif kind.reads_grid:  # an image encoder in stages
            spec = load_text(grid_spec_text(slots))
        else:
            spec = load_text(spec_text(slots, model_type))
        assume(spec is not None)
        assert any(n.kind == name for n in spec.model.components()), "the probe holds the kind"
        try:
            archdsl.analyze(spec, batch, seq_len)
        except SpecError:
            assume(False)  # e.g. a positional table shorter than seq_len
        assert_costs_match(spec, batch, seq_len)
        # training needs more than one value per channel (batch norm): two sequences of one token, or
        # two images (a stem may end on a grid of one position)
        assert_train_step_matches(
            spec, max(batch, 2) if seq_len == 1 or reads_images(kind) else batch, seq_len
        )
        checked.append(call)

    check()
    assert len(checked) >= 3, f"only {len(checked)} valid examples of {name}: {checked}"


@pytest.mark.parametrize(
    "placement", ["pre", "post", "sandwich", "parallel", "parallel(shared_norm = true)", "deepnorm"]
)
def test_placements_cost_and_run(placement: str) -> None:
    spec = load_text(spec_text({}, placement=placement))
    assert spec is not None
    assert_costs_match(spec, 2, 7)
    assert_train_step_matches(spec, 2, 7)


def test_causal_attention_does_not_look_ahead() -> None:
    """Perturbing tokens after position t leaves the logits up to t unchanged in a decoder, and
    changes them in an encoder."""
    dec = archdsl.build(load_text(spec_text({}))).eval()
    enc = archdsl.build(load_text(spec_text({}, "encoder"))).eval()
    idx = torch.randint(0, VOCAB, (1, 10))
    idx2 = idx.clone()
    idx2[0, 6:] = (idx2[0, 6:] + 1) % VOCAB
    with torch.no_grad():
        a, b = dec(idx), dec(idx2)
        torch.testing.assert_close(a[:, :6], b[:, :6])
        assert not torch.allclose(a[:, 6:], b[:, 6:])
        assert not torch.allclose(enc(idx)[:, :6], enc(idx2)[:, :6])


#: attention kinds that can be causal (not Swin's windows over an image, bidirectional by nature)
ATTENTION_KINDS = sorted(k.name for k in REGISTRY.values() if k.role == "attention" and k.param("causal"))


@pytest.mark.parametrize("name", ATTENTION_KINDS)
def test_causal_attention_kinds_do_not_look_ahead(name: str) -> None:
    """For every attention kind, with random valid parameters and `causal = true`: perturbing tokens
    after position t leaves the outputs up to t unchanged."""
    kind = REGISTRY[name]
    checked = []

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(call=call_strategy(kind), t=st.integers(1, 10))
    def check(call: str, t: int) -> None:
        call = call.replace("causal = false", "causal = true")
        prefix = re.search(r"prefix = (\d+)", call)
        assume(prefix is None or t >= int(prefix.group(1)))  # a prefix-LM's prefix sees itself whole
        if "causal" not in call and kind.param("causal") is not None:  # mixers are causal by construction
            call = call[:-1] + (", " if call[-2] != "(" else "") + "causal = true)"
        spec = load_text(spec_text({"attention": call}))
        assume(spec is not None)
        model = archdsl.build(spec).eval()
        n = 12
        idx = torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(1))
        idx2 = idx.clone()
        idx2[0, t:] = (idx2[0, t:] + 1) % VOCAB

        def fresh(x: torch.Tensor) -> torch.Tensor:  # stateful kinds (Transformer-XL memory) start empty
            for m in model.modules():
                if hasattr(m, "reset_memory"):
                    m.reset_memory()
            return model(x)

        with torch.no_grad():
            try:
                a, b = fresh(idx), fresh(idx2)
            except Exception:  # a length the kind rejects at run time (e.g. above its table)
                assume(False)
        torch.testing.assert_close(a[:, :t], b[:, :t])
        checked.append(call)

    check()
    assert checked, f"no valid causal example of {name}"
