"""PyTorch modules for model structure: blocks and the whole transformer (nanoGPT style)."""

import torch
import torch.nn as nn


class Block(nn.Module):
    """One layer: attention and MLP sublayers with their norms; subclasses say where the norms sit."""

    def __init__(self, ln_1: nn.Module, attn: nn.Module, ln_2: nn.Module, mlp: nn.Module):
        super().__init__()
        self.ln_1 = ln_1
        self.attn = attn
        self.ln_2 = ln_2
        self.mlp = mlp


class PreNormBlock(Block):
    """Norm before each sublayer, residual around it: x + f(norm(x)) (GPT-2; Xiong et al. 2020)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class PostNormBlock(Block):
    """Residual, then norm: norm(x + f(x)) (Vaswani et al. 2017; BERT)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(x + self.attn(x))
        x = self.ln_2(x + self.mlp(x))
        return x


class Transformer(nn.Module):
    """Token ids (B, T) -> logits (B, T, V): embeddings, the blocks in order, final norm, head."""

    def __init__(
        self,
        wte: nn.Module,
        wpe: nn.Module,
        h: list[nn.Module],
        ln_f: nn.Module,
        lm_head: nn.Module,
        tie_weights: bool,
    ):
        super().__init__()
        self.wte = wte
        self.wpe = wpe
        self.h = nn.ModuleList(h)
        self.ln_f = ln_f
        self.lm_head = lm_head
        self.apply(self._init_weights)
        if tie_weights:
            self.lm_head.weight = self.wte.weight  # one matrix for input and output (Press & Wolf 2017)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wpe(self.wte(idx))  # (B, T) -> (B, T, C), positions added
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return self.lm_head(x)  # (B, T, V)
