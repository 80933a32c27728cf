"""PyTorch modules for model structure: a single stack with its embedding and head, or an encoder and
a decoder (nanoGPT style), with the training loss and, for decoders, cached generation. Blocks are
generated per topology (:mod:`archdsl.lower.codegen`)."""

import torch
import torch.nn as nn
from torch.nn import functional as F


def init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: N(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def freeze_base(model: nn.Module) -> nn.Module:
    """Parameter-efficient fine-tuning: only LoRA updates and adapters train."""
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name
    for m in model.modules():
        if type(m).__name__ == "Adapter":
            m.requires_grad_(True)
    return model


def lm_loss(model: nn.Module, logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean cross-entropy over the targets that are not -100 (0, not NaN, when all are), with label
    smoothing, plus each mixture of experts' load-balancing loss times its coefficient."""
    targets = targets.flatten()  # (B*T,) or (B,) for a classifier
    total = F.cross_entropy(
        logits.flatten(0, -2).float(), targets, ignore_index=-100, label_smoothing=smoothing, reduction="sum"
    )
    loss = total / (targets != -100).sum().clamp(min=1)
    for m in model.modules():
        coef = getattr(m, "aux_coef", None)
        if isinstance(coef, float) and coef:  # a number (never a sublayer that is so named)
            loss = loss + coef * m.aux_loss  # Switch load balancing (Fedus et al. 2021)
    return loss


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None
) -> torch.Tensor:
    """(B, V) last-position logits -> (B, 1) next tokens: greedy at temperature 0, otherwise sampled
    from the softmax at that temperature, within the top_k tokens and the nucleus of mass top_p
    (Holtzman et al. 2020)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs > top_p  # the mass before a token already exceeds top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(outside, float("-inf")))
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1)


def next_tokens(
    logits: torch.Tensor,
    done: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    eos_token_id: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next (B, 1) tokens from (B, V) logits and which sequences have ended: a sequence that
    produced ``eos_token_id`` repeats it."""
    nxt = sample_next(logits, temperature, top_k, top_p)
    if eos_token_id is not None:
        nxt = nxt.masked_fill(done[:, None], eos_token_id)
        done = done | (nxt[:, 0] == eos_token_id)
    return nxt, done


def setup_caches(module: nn.Module, batch: int, max_len: int, like: torch.Tensor) -> None:
    """Preallocate the cache of every self-attention in ``module``, in the dtype and on the device of
    ``like`` (static shapes: one decode step compiles once). Kinds without a cache raise
    NotImplementedError, naming themselves; positions past the model's tables are refused."""
    limit = min(
        (m.max_len for m in module.modules() if isinstance(getattr(m, "max_len", None), int)), default=0
    )
    if limit and max_len > limit:
        raise ValueError(f"the model's positions reach {limit}: it cannot decode a sequence of {max_len}")
    for m in module.modules():  # the class's method (never a sublayer so named); cross-attention: remember
        if (
            getattr(type(m), "setup_cache", None)
            and getattr(m, "cross", None) is not True
            and m is not module
        ):
            m.setup_cache(batch, max_len, like.dtype, like.device)


def clear_caches(module: nn.Module) -> None:
    for m in module.modules():  # attention's caches and recurrent mixers' states
        if m is not module and (getattr(type(m), "remember", None) or getattr(type(m), "setup_cache", None)):
            m.cache = None
        if getattr(type(m), "reset_memory", None):
            m.reset_memory()  # Transformer-XL: its memory was the cache


class Stack(nn.Module):
    """Positions, embedding norm and dropout, the blocks in order, final norm. LayerDrop (Fan et al.
    2019) skips whole layers while training; checkpointed layers recompute their activations in
    backward instead of keeping them. ``mask`` (B, T) marks real tokens (False: padding), ``pos`` (T,)
    the positions of x when decoding with a cache."""

    def __init__(
        self,
        wpe: nn.Module | None,
        h: list[nn.Module],
        ln_f: nn.Module,
        ln_emb: nn.Module | None = None,
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        checkpoint: list[bool] | None = None,
        pos: nn.Module | None = None,
        proj_emb: nn.Module | None = None,
    ):
        super().__init__()
        self.pos = pos  # a relative-position table every self-attention reads (T5), or None
        self.wpe = wpe  # positions added to the embeddings, or None
        self.ln_emb = ln_emb if ln_emb is not None else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.proj_emb = proj_emb  # the embeddings' width -> d_model after their norm (ALBERT), or None
        self.h = nn.ModuleList(h)
        self.ln_f = ln_f
        self.layerdrop = layerdrop
        self.checkpoint = checkpoint or [False] * len(h)

    def forward(
        self,
        x: torch.Tensor,
        *memory: torch.Tensor,
        mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.wpe is not None:
            x = self.wpe(x, pos)  # (B, T, C), positions added
        x = self.drop(self.ln_emb(x))
        if self.proj_emb is not None:
            x = self.proj_emb(x)  # (B, T, width) -> (B, T, C)
        kw = {"mask": mask, "pos": pos, **({"memory_mask": memory_mask} if memory else {})}
        for block, recompute in zip(self.h, self.checkpoint, strict=True):
            if self.training and self.layerdrop and torch.rand(()) < self.layerdrop:
                continue  # LayerDrop: this layer sits out this step
            if self.training and recompute:
                x = torch.utils.checkpoint.checkpoint(block, x, *memory, use_reentrant=False, **kw)
            else:
                x = block(x, *memory, **kw)  # decoder blocks also read the encoder output
        return self.ln_f(x)


class Transformer(Stack):
    """Inputs -> outputs through one stack: embed (token ids (B, T), or pixels (B, C, H, W)), the
    stack, then the head ((B, T, vocab) logits, or (B, classes)). Parameter names follow GPT-2."""

    def __init__(
        self,
        wte: nn.Module,
        wpe: nn.Module | None,
        h: list[nn.Module],
        ln_f: nn.Module,
        lm_head: nn.Module,
        tie_weights: bool,
        ln_emb: nn.Module | None = None,
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        checkpoint: list[bool] | None = None,
        pos: nn.Module | None = None,
        label_smoothing: float | None = 0.0,
        proj_emb: nn.Module | None = None,
    ):
        super().__init__(wpe, h, ln_f, ln_emb, dropout, layerdrop, checkpoint, pos, proj_emb)
        self.wte = wte
        self.lm_head = lm_head
        self.label_smoothing = label_smoothing  # None: the head gives features, not logits (no loss)
        self.apply(init_weights)
        if tie_weights:
            self.lm_head.weight = self.wte.weight  # one matrix for input and output (Press & Wolf 2017)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; with ``targets`` (aligned with the logits: (B, T) next tokens, or (B,) classes;
        -100 is ignored) also the loss. ``attention_mask`` (B, T): 1 for tokens, 0 for padding."""
        x = super().forward(self.wte(idx), mask=attention_mask, pos=pos)  # (B, T, C)
        pools = getattr(type(self.lm_head), "pools", False)  # a head that averages over positions
        logits = self.lm_head(x, attention_mask) if pools else self.lm_head(x)
        if targets is None:
            return logits
        if self.label_smoothing is None:
            raise ValueError("this model's head gives features, not logits: it has no loss for targets")
        return logits, lm_loss(self, logits, targets, self.label_smoothing)


class CausalLM(Transformer):
    """A decoder: the Transformer, plus incremental decoding. ``setup_cache`` preallocates each
    layer's cache (full, or rolling for sliding windows; key/value heads only), then forwards with
    ``pos`` (the absolute positions of the new tokens) extend it; ``generate`` does both."""

    def setup_cache(self, batch_size: int, max_len: int) -> None:
        setup_caches(self, batch_size, max_len, self.wte.weight)

    def clear_cache(self) -> None:
        clear_caches(self)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
    ) -> torch.Tensor:
        """(B, T) prompt -> (B, T + new) tokens: the prompt in one forward, then one token per step
        from the cache. Sequences that produced ``eos_token_id`` continue with it; generation stops
        when all have."""
        B, T = idx.shape
        self.setup_cache(B, T + max_new_tokens)
        try:
            pos = torch.arange(T, device=idx.device)
            logits = self(idx, pos=pos)[:, -1]  # (B, V)
            out, done = [idx], torch.zeros(B, dtype=torch.bool, device=idx.device)
            for t in range(max_new_tokens):
                nxt, done = next_tokens(logits, done, temperature, top_k, top_p, eos_token_id)  # (B, 1)
                out.append(nxt)
                if t == max_new_tokens - 1 or (eos_token_id is not None and bool(done.all())):
                    break
                logits = self(nxt, pos=pos[-1:] + t + 1)[:, -1]
        finally:
            self.clear_cache()
        return torch.cat(out, dim=1)


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
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.wte = wte
        self.encoder = encoder
        self.decoder = decoder
        self.lm_head = lm_head
        self.label_smoothing = label_smoothing
        self.apply(init_weights)
        if tie_weights:
            self.lm_head.weight = self.wte.weight

    def forward(
        self,
        src: torch.Tensor,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; with ``targets`` (B, T) also the loss. ``src_mask`` (B, S) and ``tgt_mask`` (B, T):
        1 for tokens, 0 for padding."""
        memory = self.encoder(self.wte(src), mask=src_mask)  # (B, S, C)
        x = self.decoder(self.wte(idx), memory, mask=tgt_mask, memory_mask=src_mask, pos=pos)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V)
        if targets is None:
            return logits
        return logits, lm_loss(self, logits, targets, self.label_smoothing)

    @torch.no_grad()
    def generate(
        self,
        src: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        *,
        src_mask: torch.Tensor | None = None,
        start_token_id: int = 0,
    ) -> torch.Tensor:
        """(B, S) source -> (B, 1 + new) target tokens, from ``start_token_id`` (T5: the pad id, 0).
        The source is encoded once; each cross-attention projects it once, and every step reads
        those keys and values and the self-attention caches."""
        B = src.size(0)
        memory = self.encoder(self.wte(src), mask=src_mask)  # (B, S, C)
        setup_caches(self.decoder, B, 1 + max_new_tokens, self.wte.weight)
        for m in self.decoder.modules():
            if getattr(m, "cross", None) is True:  # a cross-attention (not a sublayer named so)
                m.remember(memory)
        try:
            idx = torch.full((B, 1), start_token_id, dtype=torch.long, device=src.device)
            out, done = [idx], torch.zeros(B, dtype=torch.bool, device=src.device)
            for t in range(max_new_tokens):
                x = self.decoder(
                    self.wte(idx), memory, memory_mask=src_mask, pos=torch.full((1,), t, device=src.device)
                )
                idx, done = next_tokens(self.lm_head(x)[:, -1], done, temperature, top_k, top_p, eos_token_id)
                out.append(idx)
                if eos_token_id is not None and bool(done.all()):
                    break
        finally:
            clear_caches(self.decoder)
        return torch.cat(out, dim=1)


class Tower(Stack):
    """One tower of a towers model (CLIP's image or text encoder): its input — token ids (B, T) or
    pixels (B, C, H, W) — embedded, its stack, then its head pools it into the embedding space the
    towers share: (B, width)."""

    def __init__(
        self,
        wte: nn.Module,
        wpe: nn.Module | None,
        h: list[nn.Module],
        ln_f: nn.Module,
        head: nn.Module,
        ln_emb: nn.Module | None = None,
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        checkpoint: list[bool] | None = None,
        pos: nn.Module | None = None,
        proj_emb: nn.Module | None = None,
    ):
        super().__init__(wpe, h, ln_f, ln_emb, dropout, layerdrop, checkpoint, pos, proj_emb)
        self.wte = wte
        self.head = head

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` (B, T): 1 for tokens, 0 for padding (token towers)."""
        h = super().forward(self.wte(x), mask=mask)  # (B, T, C)
        return self.head(h, x, mask)  # (B, width); pooling at a token reads the ids


class Towers(nn.Module):
    """Several towers, each from its own input to one embedding per example, and a head that combines
    them (CLIP, Radford et al. 2021: contrastive logits). The inputs come in the order of the towers;
    ``masks`` maps a token tower's name to its (B, T) padding mask."""

    def __init__(self, head: nn.Module, **towers: nn.Module):
        super().__init__()
        self.names = list(towers)  # the towers, in the order of the inputs
        for name, tower in towers.items():
            self.add_module(name, tower)
        self.head = head
        self.apply(init_weights)

    def embed(
        self, *inputs: torch.Tensor, masks: dict[str, torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """Each tower's (B_i, width) embeddings of its input (CLIP's image and text features)."""
        masks, towers = masks or {}, dict(self.named_children())
        return [towers[name](x, mask=masks.get(name)) for name, x in zip(self.names, inputs, strict=True)]

    def forward(
        self, *inputs: torch.Tensor, return_loss: bool = False, masks: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """CLIP: (logits_per_image (B_img, B_txt), logits_per_text), and the loss with ``return_loss``
        (image i and text i are the pairs)."""
        return self.head(*self.embed(*inputs, masks=masks), return_loss=return_loss)


class LatentTransformer(Stack):
    """An encoder over a learned latent array (Perceiver, Jaegle et al. 2021): the input — token ids
    (B, n) — embedded, with its positions, norm and dropout, is the memory the blocks' cross-attentions
    read; the blocks run over the latents (B, N, d), and the head pools them: costs linear in n.
    ``reads_memory[i]``: block i takes the memory (a cross-attention block) or the latents alone."""

    def __init__(
        self,
        wte: nn.Module,
        wpe: nn.Module | None,
        latents: nn.Module,
        h: list[nn.Module],
        ln_f: nn.Module,
        lm_head: nn.Module,
        reads_memory: list[bool],
        ln_emb: nn.Module | None = None,
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        checkpoint: list[bool] | None = None,
        pos: nn.Module | None = None,
        label_smoothing: float | None = 0.0,
    ):
        super().__init__(wpe, h, ln_f, ln_emb, dropout, layerdrop, checkpoint, pos)
        self.wte, self.latents, self.lm_head = wte, latents, lm_head
        self.reads_memory = reads_memory
        self.label_smoothing = label_smoothing  # None: the head gives features, not logits (no loss)
        self.apply(init_weights)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits of the pooled latents; with ``targets`` (B,) also the loss. ``attention_mask`` (B, n):
        1 for the input's tokens, 0 for padding (the cross-attentions skip it)."""
        memory = self.wte(idx)  # (B, n, c)
        if self.wpe is not None:
            memory = self.wpe(memory, None)
        memory = self.drop(self.ln_emb(memory))
        x = self.latents(memory)  # (B, N, d)
        for block, reads, recompute in zip(self.h, self.reads_memory, self.checkpoint, strict=True):
            if self.training and self.layerdrop and torch.rand(()) < self.layerdrop:
                continue  # LayerDrop: this layer sits out this step
            args, kw = ((x, memory), {"memory_mask": attention_mask}) if reads else ((x,), {})
            if self.training and recompute:
                x = torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False, **kw)
            else:
                x = block(*args, **kw)
        logits = self.lm_head(self.ln_f(x))  # pooled over the latents
        if targets is None:
            return logits
        if self.label_smoothing is None:
            raise ValueError("this model's head gives features, not logits: it has no loss for targets")
        return logits, lm_loss(self, logits, targets, self.label_smoothing)
