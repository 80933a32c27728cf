"""GPT-2 small forward: the module archdsl builds vs a hand-written nanoGPT-style module, in one run.

    python benchmarks/bench_gpt2_forward.py [--seq 256] [--batch 1] [--repeats 10] [--threads N]

Both models have the same shapes and weights; the script checks their logits agree, then times the two
forwards interleaved (so machine noise hits both alike) and prints the median of each and the ratio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

import archdsl

ROOT = Path(__file__).resolve().parent.parent


# -- a hand-written nanoGPT (Karpathy), the yardstick ---------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.h = h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.h, C // self.h).transpose(1, 2)
        k = k.view(B, T, self.h, C // self.h).transpose(1, 2)
        v = v.view(B, T, self.h, C // self.h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d), CausalSelfAttention(d, h)
        self.ln_2, self.mlp = nn.LayerNorm(d), MLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int = 50257, ctx: int = 1024, d: int = 768, h: int = 12, layers: int = 12):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.h = nn.ModuleList(Block(d, h) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ours = archdsl.build(archdsl.load(ROOT / "specs" / "gpt2_small.arch")).eval()
    ref = NanoGPT().eval()
    ref.load_state_dict(ours.state_dict())  # same names, same shapes
    idx = torch.randint(0, 50257, (args.batch, args.seq))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), ref(idx), atol=1e-4, rtol=1e-4)

    times: dict[str, list[float]] = {"archdsl": [], "nanoGPT": []}
    with torch.inference_mode():
        for model in (ours, ref):  # warm up
            model(idx)
        for _ in range(args.repeats):
            for name, model in (("archdsl", ours), ("nanoGPT", ref)):
                t0 = time.perf_counter()
                model(idx)
                times[name].append(time.perf_counter() - t0)
    flops = archdsl.analyze(
        archdsl.load(ROOT / "specs" / "gpt2_small.arch"), args.batch, args.seq
    ).flops_forward
    print(f"GPT-2 small forward, batch {args.batch}, seq {args.seq}, {torch.get_num_threads()} threads")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"  {name:8s} median {t * 1e3:8.1f} ms   {flops / t / 1e9:6.1f} GFLOP/s")
    print(f"  ratio archdsl / nanoGPT: {med['archdsl'] / med['nanoGPT']:.3f}")
    assert math.isfinite(med["archdsl"])


if __name__ == "__main__":
    main()
