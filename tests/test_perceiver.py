"""Perceiver (Jaegle et al. 2021): a learned latent array as a stack's queries, the embedded input its
memory. Equal to Hugging Face's ``PerceiverModel`` on an odd tiny config (HF's weights loaded into the
module archdsl builds from specs/perceiver_like.arch, its input our embedded tokens, with and without
padding); its costs linear in the input's length, exactly; its output independent of the order of
the input without positions; and its checks."""

from __future__ import annotations

import itertools

import pytest
import torch
import transformers
from conftest import SPECS, TINY
from test_hf_equivalence import State, cat, load_into

import archdsl
from archdsl.cost.poly import Poly

SPEC = SPECS / "perceiver_like.arch"

#: odd sizes: the input 15 wide, 5 latents 21 wide; the cross-attention has 3 heads of 5 (HF projects
#: queries and keys to the input's width), the latent blocks 7 heads of 3; three latent blocks
ODD = {
    "vocab": 41,
    "context": 23,
    "width": 15,
    "d_model": 21,
    "n_latents": 5,
    "n_heads": 7,
    "n_layers": 3,
    "classes": 4,
    "read.attn.heads": 3,
    "read.attn.head_dim": 5,
    "model.position": "none",
}


def hf_map(n_layers: int) -> callable:  # type: ignore[valid-type]
    """HF PerceiverModel's state dict -> ours: its cross-attention layer is our `read` block (its kv
    layernorm our embedding norm), its self-attention layers our `latent` blocks."""

    def block(s: State, p: str, q: str, cross: bool) -> State:
        a = p + "attention.self."
        out = {}
        for part in ("weight", "bias"):
            out[q + f"ln_1.{part}"] = s[a + f"layernorm1.{part}"]
            if cross:
                out[q + f"attn.q_proj.{part}"] = s[a + f"query.{part}"]
                out[q + f"attn.kv_proj.{part}"] = cat(s[a + f"key.{part}"], s[a + f"value.{part}"])
            else:
                out[q + f"attn.c_attn.{part}"] = cat(
                    *(s[a + f"{x}.{part}"] for x in ("query", "key", "value"))
                )
            out[q + f"attn.c_proj.{part}"] = s[p + f"attention.output.dense.{part}"]
            out[q + f"ln_2.{part}"] = s[p + f"layernorm.{part}"]
            out[q + f"mlp.c_fc.{part}"] = s[p + f"mlp.dense1.{part}"]
            out[q + f"mlp.c_proj.{part}"] = s[p + f"mlp.dense2.{part}"]
        return out

    def m(s: State) -> State:
        out = {"latents.weight": s["embeddings.latents"]}
        cross = "encoder.cross_attention.attention.self."
        out["ln_emb.weight"], out["ln_emb.bias"] = (
            s[cross + "layernorm2.weight"],
            s[cross + "layernorm2.bias"],
        )
        out.update(block(s, "encoder.cross_attention.", "h.0.", cross=True))
        for i in range(n_layers):
            out.update(block(s, f"encoder.self_attends.{i}.", f"h.{i + 1}.", cross=False))
        return out

    return m


def test_equals_hf_perceiver_model() -> None:
    config = transformers.PerceiverConfig(
        num_latents=ODD["n_latents"],
        d_latents=ODD["d_model"],
        d_model=ODD["width"],
        num_blocks=1,
        num_self_attends_per_block=ODD["n_layers"],
        num_self_attention_heads=ODD["n_heads"],
        num_cross_attention_heads=ODD["read.attn.heads"],
        hidden_act="gelu",
    )
    hf = transformers.PerceiverModel(config).eval()
    spec = archdsl.load(SPEC, ODD)
    ours = archdsl.build(spec).eval()
    own = {"wte", "ln_f", "lm_head"}  # the token table, final norm and classifier HF's encoder has not
    extra = sum(p.numel() for n, p in ours.named_parameters() if n.split(".")[0] in own)
    assert sum(p.numel() for p in ours.parameters()) - extra == sum(p.numel() for p in hf.parameters())
    state = hf_map(ODD["n_layers"])(hf.state_dict())
    state.update({k: v for k, v in ours.state_dict().items() if k.split(".")[0] in own})
    load_into(ours, state)

    latents: list[torch.Tensor] = []
    ours.ln_f.register_forward_pre_hook(lambda m, args: latents.append(args[0]))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, ODD["vocab"], (3, 11), generator=g)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    for m in (None, mask):
        latents.clear()
        with torch.no_grad():
            logits = ours(ids, attention_mask=m)
            want = hf(inputs=ours.wte(ids), attention_mask=m).last_hidden_state
        torch.testing.assert_close(latents[0], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits, ours.lm_head(ours.ln_f(want)), atol=1e-5, rtol=1e-5)
    # padding: the padded rows read only their tokens
    with torch.no_grad():
        short = ours(ids[2:, :3])
    torch.testing.assert_close(logits[2:], short, atol=1e-5, rtol=1e-5)


def test_costs_are_linear_in_the_input_length() -> None:
    """Forward, backward and activations: a polynomial of degree 1 in n, exact at every length; the
    cross-attention grows as n·N·d, the latent blocks as N²·d and not with n."""
    spec = archdsl.load(SPEC)
    r = archdsl.analyze(spec, batch=2, seq_len=512)
    f = r.flops()
    for poly in (f["forward_poly"], f["train_step_poly"], r.memory["activation_poly"]):
        assert isinstance(poly, Poly) and poly.degree("n") == 1
    counts = [archdsl.analyze(spec, batch=2, seq_len=n).flops_forward for n in (256, 512, 768, 1024)]
    steps = {b - a for a, b in itertools.pairwise(counts)}
    assert len(steps) == 1  # linear: equal steps
    rows = {row.name: row for row in r.layers}
    assert "N·n·d" in rows["h.0"].big_o and rows["h.1"].big_o == ("N·d²", "N²·d", "N·d·h")
    longer = {row.name: row for row in archdsl.analyze(spec, batch=2, seq_len=2048).layers}
    assert all(longer[f"h.{i}"].flops_forward == rows[f"h.{i}"].flops_forward for i in range(1, 7))
    assert longer["h.0"].flops_forward > rows["h.0"].flops_forward
    # n·N·d: the cross-attention's scores and values, 4·b·n·N·q for its one head of q = 512, and its
    # key and value projections from the input's width, 2·b·n·128·2q
    n_latents, width, q = 256, 128, 512
    cross = rows["h.0"].components[1]
    assert cross.kind == "mha"
    assert cross.forward_poly.terms[(1, 1, 0)] == 4 * n_latents * q + 2 * width * 2 * q


def test_output_ignores_the_order_of_the_input_without_positions() -> None:
    spec = archdsl.load(SPEC, {**TINY["perceiver_like"], "model.position": "none"})
    model = archdsl.build(spec).eval()
    ids = torch.randint(0, 50, (2, 13), generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(13, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids[:, perm]), model(ids), atol=1e-5, rtol=1e-5)
        assert model.latents(model.wte(ids)).shape == (2, 5, 24)
        for n in (1, 7, 32):  # any length up to the table: the output is one vector per example
            assert model(ids.repeat(1, 3)[:, :n]).shape == (2, 7)
    with_positions = archdsl.build(archdsl.load(SPEC, TINY["perceiver_like"])).eval()
    with torch.no_grad():
        assert not torch.allclose(with_positions(ids[:, perm]), with_positions(ids), atol=1e-5)


def _edit(write_spec, old: str, new: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    text = SPEC.read_text()
    for a, b in zip(old.split("|"), new.split("|"), strict=True):
        assert a in text
        text = text.replace(a, b)
    path = write_spec("p.arch", text)
    diags = archdsl.check(path)
    assert diags and all(d.span is not None for d in diags)
    return [(d.code, d.message) for d in diags]


BAD = {
    "decoder": (
        "type           = encoder",
        "type           = decoder",
        ("E016", "latents belong to an encoder; this is a decoder"),
    ),
    "lm_head": (
        "classifier(classes = classes, pool = mean)",
        "lm_head(tied = false)",
        ("E016", "`lm_head` reads every position, but the blocks run over the latents, not the input"),
    ),
    "no_latents": (
        "  latents        = latent_array(length = n_latents)\n|[read] + [latent]",
        "|[latent]",
        ("E016", "`project = none` leaves the input at the table's width: only latents read it that way"),
    ),
    "bilinear_reads_a_wide_memory": (
        "attn = mha(heads = 1)",
        "attn = mha(heads = 1, score = bilinear)",
        ("E016", "`score = bilinear` cross-attends to a memory d_model (512) wide; this one is 128 wide"),
    ),
    "window_reads_a_wide_memory": (
        "attn = mha(heads = 1)",
        "attn = sliding_window(heads = 1, window = 8)",
        ("E016", "`sliding_window` cross-attends to a memory d_model (512) wide; this one is 128 wide"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_diagnostics(case: str, write_spec) -> None:  # type: ignore[no-untyped-def]
    old, new, expected = BAD[case]
    assert expected in _edit(write_spec, old, new)


def test_latents_stay_out_of_decoders_and_towers(write_spec) -> None:  # type: ignore[no-untyped-def]
    t5 = (SPECS / "t5_base.arch").read_text()
    assert "  decoder {\n" in t5
    path = write_spec(
        "t.arch", t5.replace("  decoder {\n", "  decoder {\n    latents = latent_array(length = 4)\n")
    )
    got = [(d.code, d.message) for d in archdsl.check(path)]
    assert ("E016", "a decoder that reads an encoder's output cannot run over latents") in got
    clip = (SPECS / "clip_vit_b32.arch").read_text()
    path = write_spec(
        "c.arch", clip.replace("  tower text {\n", "  tower text {\n    latents = latent_array(length = 4)\n")
    )
    got = [(d.code, d.message) for d in archdsl.check(path)]
    assert ("E016", "a tower's stack cannot run over latents") in got


def test_full_size_counts() -> None:
    """11,085,834 parameters: the input table and positions (262·128 + 2048·128), its norm, 256 x 512
    latents, one cross-attention block and six latent blocks, the final norm and the classifier."""
    spec = archdsl.load(SPEC)
    r = archdsl.analyze(spec, seq_len=2048)
    d, c, n_lat = 512, 128, 256
    cross = (d * d + d) + (c * 2 * d + 2 * d) + (d * d + d)  # q (d -> d), k and v (c -> d), out
    block = 2 * 2 * d + (2 * d * d + d + d)  # two norms, the MLP (hidden = d)
    latent = 2 * 2 * d + 4 * (d * d + d) + (2 * d * d + d + d)
    expected = 262 * c + 2048 * c + 2 * c + n_lat * d + cross + block + 6 * latent + 2 * d + d * 10 + 10
    assert r.params_total == expected == 11_085_834
