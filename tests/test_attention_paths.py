"""Attention's fast paths compute what its general path does."""

import pytest
import torch

from archdsl.kinds.attention_nn import Attention


@pytest.mark.parametrize("t", [1, 3, Attention.few])
@pytest.mark.parametrize(("heads", "kv_heads"), [(6, 6), (6, 2), (6, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_few_queries_equal_sdpa(t: int, heads: int, kv_heads: int, dtype: torch.dtype) -> None:
    """A decoding step (a few queries, no autograd) runs two matmuls instead of SDPA's fused kernel:
    same output, with grouped key/value heads, empty cache slots and padding."""
    torch.manual_seed(t * heads + kv_heads)
    attn = Attention(d_model=24, n_heads=heads, n_kv_heads=kv_heads, head_dim=8, causal=True).eval()
    B, S, T = 2, 11, t
    q = torch.randn(B, heads, T, 8, dtype=dtype)
    k, v = torch.randn(B, kv_heads, S, 8, dtype=dtype), torch.randn(B, kv_heads, S, 8, dtype=dtype)
    qpos = torch.arange(S - T - 2, S - 2)  # the last two slots are not written yet
    kpos = torch.cat([torch.arange(S - 2), torch.tensor([-1, -1])])
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, :3] = False  # the second sequence is left-padded
    with torch.enable_grad():
        want = attn.masked(q, k, v, qpos, kpos, mask)  # SDPA (autograd on: the general path)
    with torch.no_grad():
        got = attn.masked(q, k, v, qpos, kpos, mask)
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    assert got.dtype == dtype
