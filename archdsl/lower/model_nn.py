"""PyTorch modules for model structure: a single stack with its embedding and head, or an encoder and
a decoder (nanoGPT style). Blocks are generated per topology (:mod:`archdsl.lower.codegen`)."""

import torch
import torch.nn as nn


def init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: N(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class Transformer(nn.Module):
    """Inputs -> outputs through one stack: embed (token ids (B, T), or pixels (B, C, H, W)), add
    positions, run the blocks in order, final norm, head ((B, T, vocab) logits, or (B, classes))."""

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
        self.apply(init_weights)
        if tie_weights:
            self.lm_head.weight = self.wte.weight  # one matrix for input and output (Press & Wolf 2017)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wpe(self.wte(idx))  # (B, T, C), positions added
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return self.lm_head(x)


class Stack(nn.Module):
    """The encoder or the decoder of an encoder-decoder: positions, blocks, final norm."""

    def __init__(self, wpe: nn.Module, h: list[nn.Module], ln_f: nn.Module):
        super().__init__()
        self.wpe = wpe
        self.h = nn.ModuleList(h)
        self.ln_f = ln_f

    def forward(self, x: torch.Tensor, *memory: torch.Tensor) -> torch.Tensor:
        x = self.wpe(x)
        for block in self.h:
            x = block(x, *memory)  # decoder blocks also read the encoder output
        return self.ln_f(x)


class EncoderDecoder(nn.Module):
    """Source ids (B, S) and target ids (B, T) -> logits (B, T, vocab) (Vaswani et al. 2017): one token
    embedding shared by both stacks, the decoder attending to the encoder's output."""

    def __init__(self, wte: nn.Module, encoder: Stack, decoder: Stack, lm_head: nn.Module, tie_weights: bool):
        super().__init__()
        self.wte = wte
        self.encoder = encoder
        self.decoder = decoder
        self.lm_head = lm_head
        self.apply(init_weights)
        if tie_weights:
            self.lm_head.weight = self.wte.weight

    def forward(self, src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        memory = self.encoder(self.wte(src))  # (B, S, C)
        x = self.decoder(self.wte(idx), memory)  # (B, T, C)
        return self.lm_head(x)  # (B, T, V)
