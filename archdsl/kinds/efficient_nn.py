"""PyTorch modules for efficient attention kinds: Reformer's LSH attention and kernelised linear
attention (elu + 1, Performer's FAVOR+). Both subclass the multi-head module and replace its core;
neither forms an n x n matrix."""

import torch
from torch.nn import functional as F

from archdsl.kinds.attention_nn import Attention, LinearState
from archdsl.kinds.peft_nn import linear


class LSHAttention(Attention):
    """Reformer LSH attention (Kitaev et al. 2020) with shared query-keys.

    One projection gives the shared query-key x and the values; keys are k = x / |x|. Per round r of
    ``n_hashes``, h_r(x) = argmax [x R_r; -x R_r] with a fixed random R_r (hs x n_buckets/2). Positions
    are sorted by (bucket, position) and cut into chunks of c = ``bucket_size``; a query in chunk i
    scores the keys of chunks i-1 and i (c x 2c) and keeps those of its own bucket. Causal attention
    keeps, of those, the keys in the c sorted slots up to the query's own (a window that slides with
    the query rather than one aligned to chunks, so what a query sees never depends on later tokens:
    within a bucket, sorted slots follow positions). A query's own key scores -1e5, so it is attended
    only when nothing else is visible; a key seen in N_ij rounds is down-weighted by log N_ij (Appendix
    A), so that the rounds combined by their log-partition functions Z_r,

        o_i = sum_r exp(Z_r(i) - logsumexp_r Z_r(i)) o_r(i),

    are softmax attention over the union of the rounds' windows. Time and memory O(n c r).
    """

    SELF = -1e5  # a query's own key: only when nothing else is visible (Reformer, §2.2)
    MASKED = -1e9  # keys outside the window or the bucket, later keys (causal), padding

    def __init__(self, bucket_size: int, n_buckets: int, n_hashes: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        bias, lora = kwargs.get("bias", True), kwargs.get("lora")
        # one projection for the shared query-key and the values; LoRA adapts the shared part when it
        # targets q or k (it gives both)
        qk = "k" if lora is not None and "k" in lora["targets"] and "q" not in lora["targets"] else "q"
        parts = [(qk, self.q_dim), ("v", self.kv_dim)]
        self.c_attn = linear(kwargs["d_model"], self.q_dim + self.kv_dim, bias, parts, lora)  # shared qk, v
        self.bucket_size, self.n_buckets, self.n_hashes = bucket_size, n_buckets, n_hashes
        g = torch.Generator().manual_seed(seed)
        rotations = torch.randn(self.head_dim, n_hashes, n_buckets // 2, generator=g)
        self.register_buffer("rotations", rotations)  # (hs, r, n_buckets/2), fixed at construction

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if mask is not None:
            raise NotImplementedError(
                "LSH attention takes no padding mask yet: pass sequences without padding"
            )
        B, T, _ = x.size()
        qk, v = self.c_attn(x).split([self.q_dim, self.kv_dim], dim=2)
        qk = self.heads(self.q_norm, qk, self.n_heads)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        if self.pos is not None:
            qk, _ = self.pos.rotate(qk, qk)  # RoPE turns the shared query-key
        y = self.attend(qk, qk, v)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, self.q_dim)
        return self.out_dropout(self.c_proj(y))

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        raise NotImplementedError(
            "LSH attention has no KV cache yet: its buckets are sorted over the whole sequence, so a "
            "new token can change which keys earlier queries met; generate with full forwards instead"
        )

    def hash(self, x: torch.Tensor) -> torch.Tensor:
        """Angular LSH: (B, nh, T, hs) -> bucket ids (B, nh, r, T)."""
        B, H, T, _ = x.shape
        if self.n_buckets == 1:
            return torch.zeros(B, H, self.n_hashes, T, dtype=torch.long, device=x.device)
        rotated = (x @ self.rotations.flatten(1)).view(B, H, T, self.n_hashes, self.n_buckets // 2)
        return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1).transpose(-1, -2)  # (B, nh, r, T)

    @staticmethod
    def look_back(x: torch.Tensor) -> torch.Tensor:
        """(B, nh, r, n_chunks, c, ...) -> (B, nh, r, n_chunks, 2c, ...): each chunk after the one before
        it (the first chunk's predecessor wraps around and is masked)."""
        return torch.cat([x.roll(1, dims=3), x], dim=4)

    def window_keys(self, buckets: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
        """One integer per position and round, (B, nh, r, Tp): bucket * M + its chunk (causal: its sorted
        slot), with M larger than any difference of those within a bucket, so that ``sees`` is one
        subtraction."""
        step = rank if self.causal else torch.div(rank, self.bucket_size, rounding_mode="floor")
        return buckets * (rank.size(-1) + self.bucket_size + 1) + step

    def sees(self, q_key: torch.Tensor, k_key: torch.Tensor) -> torch.Tensor:
        """Whether a key is in a query's window: the same bucket, and the same or previous chunk (causal:
        one of the c sorted slots before the query's, or its own)."""
        ahead = q_key - k_key
        return (ahead >= 0) & (ahead <= (self.bucket_size if self.causal else 1))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, H, T, D = q.shape  # q is the shared query-key; k is q, before normalising
        R, c = self.n_hashes, self.bucket_size
        nc = -(-T // c)  # chunks
        Tp = nc * c  # padded length
        v = v.repeat_interleave(H // v.size(1), dim=1)  # (B, nh, T, hs): grouped values
        qkv = torch.cat([q, F.normalize(k, dim=-1), v], dim=-1)  # (B, nh, T, 3hs), sorted together
        buckets = self.hash(q)  # (B, nh, r, T)
        if Tp > T:  # pad to whole chunks; padding sorts last (bucket n_buckets) and is never a key
            qkv = F.pad(qkv, (0, 0, 0, Tp - T))
            buckets = F.pad(buckets, (0, Tp - T), value=self.n_buckets)
        slots = torch.arange(Tp, device=q.device)
        order = (buckets * Tp + slots).argsort(dim=-1)  # (B, nh, r, Tp): sorted slot -> position
        rank = order.argsort(dim=-1)  # (B, nh, r, Tp): position -> sorted slot

        # sort, chunk, and give each chunk the keys of the previous one
        s = qkv.unsqueeze(2).expand(B, H, R, Tp, 3 * D).gather(3, order[..., None].expand(B, H, R, Tp, 3 * D))
        sq, sk, sv = s.view(B, H, R, nc, c, 3 * D).split(D, dim=-1)  # (B, nh, r, nc, c, hs)
        sk, sv = self.look_back(sk), self.look_back(sv)  # (B, nh, r, nc, 2c, hs)
        qpos = order.view(B, H, R, nc, c)  # original positions of the sorted queries
        key = self.window_keys(buckets, rank)  # (B, nh, r, Tp): bucket and slot of each position
        q_key = key.gather(-1, order).view(B, H, R, nc, c)
        kpos, k_key = self.look_back(qpos), self.look_back(q_key)  # (B, nh, r, nc, 2c)

        att = (sq @ sk.transpose(-2, -1)) * self.scale  # (B, nh, r, nc, c, 2c)
        if self.softcap:
            att = self.softcap * torch.tanh(att / self.softcap)
        first = torch.arange(nc, device=q.device)[:, None] == 0  # (nc, 1): chunk 0 looks back at nothing
        wrapped = first & (torch.arange(2 * c, device=q.device) < c)  # (nc, 2c): its wrapped-around half
        keep = self.sees(q_key[..., None], k_key[..., None, :])  # (B, nh, r, nc, c, 2c)
        keep = keep & (kpos[..., None, :] < T) & ~wrapped[:, None, :]
        if self.causal:
            keep = keep & (kpos[..., None, :] <= qpos[..., None])  # by original positions
        if R > 1:  # a key seen in N rounds counts once: subtract log N (Appendix A)
            kept = keep.flatten().nonzero().squeeze(1)  # (K,): the kept (query, key) pairs of every round
            seen = self.rounds_seen(key, qpos, kpos, kept).to(att.dtype)
            att = att.flatten().index_put((kept,), att.flatten()[kept] - seen.log()).view_as(att)
        att = att.masked_fill(keep & (kpos[..., None, :] == qpos[..., None]), self.SELF)
        att = att.masked_fill(~keep, self.MASKED)
        lse = att.logsumexp(dim=-1, keepdim=True)  # (B, nh, r, nc, c, 1): log-partition of each round
        w = F.dropout((att - lse).exp(), p=self.dropout, training=self.training)
        o = w @ sv  # (B, nh, r, nc, c, hs)

        # unsort, drop padding, combine the rounds
        o = torch.cat([o, lse], dim=-1).view(B, H, R, Tp, D + 1)
        o = o.gather(3, rank[..., None].expand(B, H, R, Tp, D + 1))[:, :, :, :T]  # (B, nh, r, T, hs + 1)
        o, lse = o.split([D, 1], dim=-1)
        return (o * lse.softmax(dim=2)).sum(dim=2)  # (B, nh, T, hs)

    def rounds_seen(
        self, key: torch.Tensor, qpos: torch.Tensor, kpos: torch.Tensor, kept: torch.Tensor
    ) -> torch.Tensor:
        """N_ij for K kept pairs, given as flat indices into (B, nh, r, nc, c, 2c): in how many rounds key
        j is in query i's window (at least 1, the pair's own round) -> (K,). Memory O(K), K <= n 2c r nh."""
        R, nc, c = qpos.shape[2:]
        w = 2 * c
        q_at = qpos.flatten()[kept // w]  # (K,): the query's position
        k_at = kpos.flatten()[kept // (c * w) * w + kept % w]  # (K,): the key's position
        bh = kept // (R * nc * c * w)  # (K,): which sequence and head
        Tp = key.size(-1)
        per_pos = key.transpose(2, 3).flatten()  # (B, nh, Tp, r') flat: window keys of every round
        q_at, k_at = (bh * Tp + q_at) * R, (bh * Tp + k_at) * R
        seen = torch.zeros_like(kept)
        for r in range(R):  # a loop over rounds keeps memory at O(K)
            seen += self.sees(per_pos[q_at + r], per_pos[k_at + r])
        return seen


class LinearAttention(Attention):
    """Kernelised linear attention: y_i = φ(q_i)^T S / φ(q_i)^T z with S = sum_j φ(k_j) v_j^T and
    z = sum_j φ(k_j), over all keys or (causal) the keys j <= i.

    φ is elu(x) + 1 (Katharopoulos et al. 2020) or FAVOR+ (Choromanski et al. 2021): positive
    orthogonal random features φ(x) = exp(W x' - |x'|^2 / 2) / sqrt(m), x' = x / hs^(1/4), so that
    E[φ(q)^T φ(k)] = exp(q^T k / sqrt(hs)). W (m x hs) is blocks of random orthogonal rows scaled by
    chi(hs) norms, fixed at construction from ``seed``. A ones column appended to the values carries z.
    Causal attention runs in chunks of ``chunk``: masked products inside a chunk plus the state of the
    chunks before it (an exclusive prefix sum over chunks), so memory stays O(n)."""

    eps = 1e-6  # added to the elu + 1 normaliser (Katharopoulos et al.)

    def __init__(
        self, feature_map: str = "elu", n_features: int = 0, seed: int = 0, chunk: int = 64, **kwargs
    ):
        super().__init__(**kwargs)
        self.feature_map, self.chunk = feature_map, chunk
        if feature_map == "favor":
            self.register_buffer("omega", self.orthogonal_features(n_features, self.head_dim, seed))

    @staticmethod
    def orthogonal_features(m: int, d: int, seed: int) -> torch.Tensor:
        """(m, d): rows orthogonal in blocks of d, each row as long as a Gaussian vector would be."""
        g = torch.Generator().manual_seed(seed)
        blocks = torch.linalg.qr(torch.randn(-(-m // d), d, d, generator=g))[0].transpose(1, 2)  # (m/d, d, d)
        norms = torch.randn(m, d, generator=g).norm(dim=1, keepdim=True)  # chi(d)
        return blocks.flatten(0, 1)[:m] * norms

    def phi(self, x: torch.Tensor, query: bool) -> torch.Tensor:
        """Feature map: (B, h, T, hs) -> (B, h, T, f)."""
        if self.feature_map == "elu":
            return F.elu(x).add_(1)  # (elu keeps its input, so its output may take the + 1 in place)
        x = x * self.head_dim**-0.25
        logits = x @ self.omega.T - x.square().sum(dim=-1, keepdim=True) / 2  # (B, h, T, m)
        # stabilisers: constants that the normalisation cancels, per query and (bidirectional) per head
        # over every key; causal keys get none, since a maximum over the sequence would look ahead
        if query:
            logits = logits - logits.amax(dim=-1, keepdim=True).detach()
        elif not self.causal:
            logits = logits - logits.amax(dim=(-2, -1), keepdim=True).detach()
        return logits.exp() * self.omega.size(0) ** -0.5

    def normalise(self, y: torch.Tensor) -> torch.Tensor:
        """(..., hs + 1) numerators and normaliser -> (..., hs). elu + 1 adds eps (Katharopoulos et al.);
        FAVOR+ features are positive and their largest query feature is 1/sqrt(m) after stabilising, so
        its normaliser only guards against underflow."""
        den = y[..., -1:]
        den = den + self.eps if self.feature_map == "elu" else den.clamp_min(torch.finfo(y.dtype).tiny)
        return y[..., :-1] / den

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, H, T, _ = q.shape
        KV = k.size(1)  # key/value heads
        fq, fk = self.phi(q, query=True), self.phi(k, query=False)  # (B, nh, T, f), (B, nkv, S, f)
        if key_mask is not None:  # padding keys add nothing to any state
            fk = fk * key_mask[:, None, :, None].to(fk.dtype)
        f = fq.size(-1)
        v1 = F.pad(v, (0, 1), value=1.0)  # (B, nkv, S, hs + 1): the ones column gives the normaliser
        fq = fq.view(B, KV, H // KV, T, f)  # query heads grouped by the key/value head they read
        if not self.causal:
            state = fk.transpose(-2, -1) @ v1  # (B, nkv, f, hs + 1)
            y = (fq.flatten(2, 3) @ state).view(B, H, T, -1)  # (B, nh, T, hs + 1)
        else:
            y = self.causal_chunks(fq, fk, v1)[:, :, :T]
            if self.cache is not None:  # the state of the positions decoded before
                y = y + (fq @ self.cache.state.unsqueeze(2).to(fq.dtype)).flatten(1, 2)
                self.cache.state += (fk.transpose(-2, -1) @ v1).to(self.cache.state.dtype)
        y = self.normalise(y)  # (B, nh, T, hs)
        if key_mask is None:
            return y
        return y.masked_fill(~key_mask.bool()[:, None, :, None], 0.0) if T == k.size(2) else y

    def masked(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        qpos: torch.Tensor,
        kpos: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Padding: masked keys add nothing to the sums, and masked queries (self-attention) get zeros."""
        return self.attend(q, k, v, mask)

    def cached(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Decoding keeps the running sums S = sum φ(k) v^T and z = sum φ(k) (Katharopoulos et al. 2020,
        §3.4: a linear transformer is an RNN): constant memory per token."""
        if self.pos is not None:
            q, k = self.pos.rotate(q, k, pos, pos)
        return self.attend(q, k, v, mask)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        if not self.causal:
            raise NotImplementedError("bidirectional linear attention cannot decode token by token")
        f = self.omega.size(0) if self.feature_map == "favor" else self.head_dim
        self.cache = LinearState(batch, self.n_kv_heads, f, self.head_dim + 1, dtype=dtype, device=device)

    def causal_chunks(self, fq: torch.Tensor, fk: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
        """Causal numerators and normaliser, chunk by chunk: (B, nkv, g, T, f), (B, nkv, T, f),
        (B, nkv, T, e) -> (B, nh, Tp, e), Tp = T rounded up to whole chunks."""
        B, KV, G, T, f = fq.shape
        c, e = self.chunk, v1.size(-1)
        nc = -(-T // c)
        pad = nc * c - T  # zero features at the end: padding adds nothing to any state
        if pad:
            fq, fk, v1 = (F.pad(t, (0, 0, 0, pad)) for t in (fq, fk, v1))
        # head-major, once: φ of the projection's (token-major) views would be copied by each product
        fq, fk, v1 = fq.contiguous(), fk.contiguous(), v1.contiguous()
        fq = fq.view(B, KV, G, nc, c, f)
        fk = fk.view(B, KV, 1, nc, c, f)
        v1 = v1.view(B, KV, 1, nc, c, e)
        causal = torch.ones(c, c, dtype=torch.bool, device=fq.device).tril()
        scores = (fq @ fk.transpose(-2, -1)).masked_fill_(~causal, 0.0)  # (B, nkv, g, nc, c, c)
        intra = scores @ v1  # (B, nkv, g, nc, c, e)
        states = fk.transpose(-2, -1) @ v1  # (B, nkv, 1, nc, f, e): each chunk's sum of φ(k) [v 1]^T
        before = F.pad(states.cumsum(dim=3)[:, :, :, :-1], (0, 0, 0, 0, 1, 0))  # the chunks before each
        y = intra.add_(fq @ before)  # (B, nkv, g, nc, c, e); products' outputs, so in place (fewer copies)
        return y.view(B, KV * G, nc * c, e)
