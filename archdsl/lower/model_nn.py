"""PyTorch modules for model structure: a single stack with its embedding and head, or an encoder and
a decoder (nanoGPT style). Blocks are generated per topology (:mod:`archdsl.lower.codegen`)."""

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: N(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def freeze_base(model: nn.Module) -> None:
    """Parameter-efficient fine-tuning: only LoRA updates and adapters train."""
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name
    for m in model.modules():
        if type(m).__name__ == "Adapter":
            m.requires_grad_(True)


def moe_losses(model: nn.Module) -> torch.Tensor:
    losses = [m.aux_loss for m in model.modules() if isinstance(getattr(m, "aux_loss", None), torch.Tensor)]
    return sum(losses, torch.zeros(()))


class Stack(nn.Module):
    """Positions, embedding norm and dropout, the blocks in order, final norm. LayerDrop (Fan et al.
    2019) skips whole layers while training; checkpointed layers recompute their activations in
    backward instead of keeping them."""

    def __init__(
        self,
        wpe: nn.Module,
        h: list[nn.Module],
        ln_f: nn.Module,
        ln_emb: nn.Module | None = None,
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        checkpoint: list[bool] | None = None,
        pos: nn.Module | None = None,
    ):
        super().__init__()
        self.pos = pos  # a relative-position table every self-attention reads (T5), or None
        self.wpe = wpe
        self.ln_emb = ln_emb if ln_emb is not None else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(h)
        self.ln_f = ln_f
        self.layerdrop = layerdrop
        self.checkpoint = checkpoint or [False] * len(h)

    def forward(self, x: torch.Tensor, *memory: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.ln_emb(self.wpe(x)))  # (B, T, C), positions added
        for block, recompute in zip(self.h, self.checkpoint, strict=True):
            if self.training and self.layerdrop and torch.rand(()) < self.layerdrop:
                continue  # LayerDrop: this layer sits out this step
            if self.training and recompute:
                x = checkpoint(block, x, *memory, use_reentrant=False)
            else:
                x = block(x, *memory)  # decoder blocks also read the encoder output
        return self.ln_f(x)


class Transformer(Stack):
    """Inputs -> outputs through one stack: embed (token ids (B, T), or pixels (B, C, H, W)), the
    stack, then the head ((B, T, vocab) logits, or (B, classes)). Parameter names follow GPT-2."""

    def __init__(
        self,
        wte: nn.Module,
        wpe: nn.Module,
        h: list[nn.Module],
        ln_f: nn.Module,
        lm_head: nn.Module,
        tie_weights: bool,
        ln_emb: nn.Module | None = None,
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        checkpoint: list[bool] | None = None,
        pos: nn.Module | None = None,
        frozen: bool = False,
    ):
        super().__init__(wpe, h, ln_f, ln_emb, dropout, layerdrop, checkpoint, pos)
        self.wte = wte
        self.lm_head = lm_head
        self.apply(init_weights)
        if tie_weights:
            self.lm_head.weight = self.wte.weight  # one matrix for input and output (Press & Wolf 2017)
        if frozen:
            freeze_base(self)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(super().forward(self.wte(idx)))

    def aux_loss(self) -> torch.Tensor:
        """The mixture-of-experts load-balancing losses of the last forward, summed (0 without MoE)."""
        return moe_losses(self)


class EncoderDecoder(nn.Module):
    """Source ids (B, S) and target ids (B, T) -> logits (B, T, vocab) (Vaswani et al. 2017): one token
    embedding shared by both stacks, the decoder attending to the encoder's output."""

    def __init__(
        self,
        wte: nn.Module,
        encoder: Stack,
        decoder: Stack,
        lm_head: nn.Module,
        tie_weights: bool,
        frozen: bool = False,
    ):
        super().__init__()
        self.wte = wte
        self.encoder = encoder
        self.decoder = decoder
        self.lm_head = lm_head
        self.apply(init_weights)
        if tie_weights:
            self.lm_head.weight = self.wte.weight
        if frozen:
            freeze_base(self)

    def forward(self, src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        memory = self.encoder(self.wte(src))  # (B, S, C)
        x = self.decoder(self.wte(idx), memory)  # (B, T, C)
        return self.lm_head(x)  # (B, T, V)

    def aux_loss(self) -> torch.Tensor:
        """The mixture-of-experts load-balancing losses of the last forward, summed (0 without MoE)."""
        return moe_losses(self)
