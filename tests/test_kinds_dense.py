"""Dense attention and RoPE against the papers' formulas, written out plainly; mask-aware pair counts
against brute force."""

from __future__ import annotations

import math

import pytest
import torch

from archdsl.ir import Node
from archdsl.kinds import REGISTRY
from archdsl.kinds.attention_nn import AdditiveAttention, Attention, BilinearAttention
from archdsl.kinds.position_nn import RotaryEmbedding

torch.manual_seed(0)


def plain(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, scores=None
) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """softmax over allowed keys of the given scores (default q.k / sqrt(hs)), times v."""
    s = scores if scores is not None else q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    s = s.masked_fill(~allowed, float("-inf"))
    return s.softmax(-1) @ v


def module(cls=Attention, **kw):  # type: ignore[no-untyped-def]
    args = {"d_model": 16, "n_heads": 2, "n_kv_heads": 2, "head_dim": 8, "causal": True} | kw
    return cls(**args).eval()


def heads(m: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, T, _ = x.shape
    q, k, v = m.c_attn(x).split([m.q_dim, m.kv_dim, m.kv_dim], dim=2)
    return tuple(t.view(B, T, -1, m.head_dim).transpose(1, 2) for t in (q, k, v))  # type: ignore[return-value]


def finish(m: Attention, y: torch.Tensor) -> torch.Tensor:
    B, _, T, _ = y.shape
    return m.c_proj(y.transpose(1, 2).reshape(B, T, -1))


@pytest.mark.parametrize("prefix", [0, 3])
def test_causal_and_prefix_lm_masks(prefix: int) -> None:
    m = module(prefix=prefix)
    x = torch.randn(2, 7, 16)
    q, k, v = heads(m, x)
    i, j = torch.arange(7)[:, None], torch.arange(7)[None, :]
    allowed = (j <= i) | ((i < prefix) & (j < prefix))
    with torch.no_grad():
        torch.testing.assert_close(m(x), finish(m, plain(q, k, v, allowed)))


def test_unscaled_dot_and_bidirectional() -> None:
    m = module(causal=False, scale=1.0)
    x = torch.randn(1, 5, 16)
    q, k, v = heads(m, x)
    with torch.no_grad():
        expected = finish(
            m, plain(q, k, v, torch.ones(5, 5, dtype=torch.bool), scores=q @ k.transpose(-2, -1))
        )
        torch.testing.assert_close(m(x), expected)


def test_additive_scores_are_bahdanau() -> None:
    m = module(AdditiveAttention)
    x = torch.randn(1, 5, 16)
    q, k, v = heads(m, x)
    # score_ij = w . tanh(q_i + k_j), per head
    s = torch.einsum("hd,bhijd->bhij", m.w, torch.tanh(q[:, :, :, None, :] + k[:, :, None, :, :]))
    with torch.no_grad():
        torch.testing.assert_close(m(x), finish(m, plain(q, k, v, torch.ones(5, 5).tril().bool(), scores=s)))


def test_bilinear_scores_are_luong_general() -> None:
    m = module(BilinearAttention)
    with torch.no_grad():
        m.w.copy_(torch.randn(2, 8, 8))
    x = torch.randn(1, 5, 16)
    q, k, v = heads(m, x)
    s = torch.einsum("bhid,hde,bhje->bhij", q, m.w, k) / math.sqrt(8)  # q^T W k, scaled
    with torch.no_grad():
        torch.testing.assert_close(m(x), finish(m, plain(q, k, v, torch.ones(5, 5).tril().bool(), scores=s)))


def test_grouped_query_attention_shares_keys_within_groups() -> None:
    m = module(n_heads=4, n_kv_heads=2, head_dim=4)
    x = torch.randn(1, 6, 16)
    q, k, v = heads(m, x)
    k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)  # heads 0,1 share kv 0; 2,3 kv 1
    with torch.no_grad():
        torch.testing.assert_close(m(x), finish(m, plain(q, k, v, torch.ones(6, 6).tril().bool())))


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_rotates_pairs_by_position_times_frequency(interleaved: bool) -> None:
    """Su et al. 2021: pair p of a head at position m turns by m * theta^(-2p/d)."""
    hs, T = 8, 5
    rope = RotaryEmbedding(head_dim=hs, max_len=16, theta=10000.0, interleaved=interleaved)
    x = torch.randn(1, 1, T, hs)
    got, _ = rope.rotate(x, x)
    expected = torch.empty_like(x)
    for m in range(T):
        for p in range(hs // 2):
            a = m * 10000.0 ** (-2 * p / hs)
            i, j = (2 * p, 2 * p + 1) if interleaved else (p, p + hs // 2)
            c, s = math.cos(a), math.sin(a)
            expected[..., m, i] = c * x[..., m, i] - s * x[..., m, j]
            expected[..., m, j] = s * x[..., m, i] + c * x[..., m, j]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_on_offsets_only() -> None:
    rope = RotaryEmbedding(head_dim=8, max_len=32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(mq: int, mk: int) -> torch.Tensor:
        qs = torch.zeros(1, 1, 32, 8)
        ks = torch.zeros(1, 1, 32, 8)
        qs[..., mq, :], ks[..., mk, :] = q[..., 0, :], k[..., 0, :]
        rq, rk = rope.rotate(qs, ks)
        return (rq[..., mq, :] * rk[..., mk, :]).sum()

    torch.testing.assert_close(score(5, 2), score(13, 10))


def test_partial_rotary_leaves_the_rest() -> None:
    rope = RotaryEmbedding(head_dim=8, max_len=16, fraction=0.5)
    x = torch.randn(1, 1, 4, 8)
    got, _ = rope.rotate(x, x)
    torch.testing.assert_close(got[..., 4:], x[..., 4:])
    assert not torch.allclose(got[..., 1:, :4], x[..., 1:, :4])


@pytest.mark.parametrize(("causal", "prefix"), [(True, 0), (True, 4), (False, 0)])
def test_mask_aware_pairs_equal_brute_force(causal: bool, prefix: int) -> None:
    kind = REGISTRY["mha"]
    for n in (1, 2, 5, 9, 16):
        node = Node("mha", (("heads", 2), ("causal", causal), ("cross", False), ("prefix", prefix)))
        i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
        allowed = torch.ones(n, n, dtype=torch.bool)
        if causal:
            allowed = (j <= i) | ((i < prefix) & (j < prefix))
        assert kind.pairs(node, n, n) == int(allowed.sum()), n
