"""An inference-only forward pass with a KV cache: the same math as `Transformer.forward`.

`InferenceModel(model)` reads `model.config` and `model.params` (names and block math as in the
architecture contract) and prepares what decoding wants: wq|wk|wv fused into one matrix with the
attention scale folded into the query columns, w1|w3 fused into one, each RMSNorm weight folded
into the rows of the matrix that follows it (`(x̂ * w) @ W == x̂ @ (w[:, None] * W)`), and RoPE
tables for every position of the context. `forward(ids, cache)` runs new positions
through the model, writing their keys and values into the cache at their absolute positions, and
returns their logits; `step(token, cache)` is the one-token, batch-one fast path that decoding
spends its time in, written to keep the number of NumPy calls per layer small.

The weights are copied when the `InferenceModel` is built, so build it after training changes.

Letters: B batch, T new positions, S positions attended to (cache length after the write),
H heads, D head_dim, C d_model, F ffn_hidden, V vocabulary.
"""

from __future__ import annotations

import math

import numpy as np

from lm.errors import LMError
from lm.kv_cache import KVCache


class InferenceModel:
    """A decoding view of a trained model; see the module docstring."""

    def __init__(self, model) -> None:
        cfg = model.config
        params = model.params
        self.model = model
        self.config = cfg
        self.n_layers = int(cfg.n_layers)
        self.n_heads = int(cfg.n_heads)
        self.d_model = int(cfg.d_model)
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise LMError(
                f"d_model {self.d_model} must split into {self.n_heads} heads of an even size for RoPE"
            )
        self.head_dim = self.d_model // self.n_heads
        self.max_len = int(cfg.max_seq_len)
        self.eps = float(cfg.norm_eps)
        emb = params["tok_emb"]
        self.dtype = emb.dtype
        self.tok_emb = np.array(emb, order="C", copy=True)  # (V, C): a copy, as the docstring says
        if getattr(cfg, "tie_embeddings", False):
            head = emb.T
        else:
            head = params["lm_head"]
        self.lm_head = np.ascontiguousarray(params["norm"][:, None] * head, dtype=self.dtype)  # (C, V)

        scale = np.asarray(1.0 / math.sqrt(self.head_dim), dtype=self.dtype)
        self.layers = []
        for i in range(self.n_layers):
            p = f"layers.{i}."
            # RoPE is linear, so scaling q before the rotation equals scaling the scores after.
            wqkv = np.concatenate([params[p + "wq"] * scale, params[p + "wk"], params[p + "wv"]], axis=1)
            w13 = np.concatenate([params[p + "w1"], params[p + "w3"]], axis=1)
            self.layers.append(
                (
                    np.ascontiguousarray(params[p + "attn_norm"][:, None] * wqkv, dtype=self.dtype),  # (C, 3C)
                    np.ascontiguousarray(params[p + "wo"]),  # (C, C)
                    np.ascontiguousarray(params[p + "ffn_norm"][:, None] * w13, dtype=self.dtype),  # (C, 2F)
                    np.ascontiguousarray(params[p + "w2"]),  # (F, C)
                )
            )
        self.ffn_hidden = self.layers[0][3].shape[0] if self.layers else 0
        self._pack_weights()

        # Rotate-half RoPE: out = x * cos + rotate_half(x) * sin, with
        # rotate_half(x) = concat(-x[D/2:], x[:D/2]) = x[perm] * sign; sign is folded into sin.
        half = self.head_dim // 2
        inv_freq = float(cfg.rope_theta) ** (-np.arange(half, dtype=np.float64) * 2.0 / self.head_dim)
        angles = np.arange(self.max_len, dtype=np.float64)[:, None] * inv_freq[None, :]  # (S, D/2)
        cos = np.cos(angles)
        sin = np.sin(angles)
        self.rope_cos = np.concatenate([cos, cos], axis=1).astype(self.dtype)  # (S, D)
        self.rope_sin = np.concatenate([-sin, sin], axis=1).astype(self.dtype)  # (S, D), signed
        self.rope_perm = np.concatenate([np.arange(half, self.head_dim), np.arange(half)])

        # Scratch buffers for `step`, reused by every token.
        self._x = np.empty(self.d_model, dtype=self.dtype)  # (C,)
        self._h = np.empty(self.d_model, dtype=self.dtype)  # (C,)
        self._qk = np.empty((2 * self.n_heads, self.head_dim), dtype=self.dtype)  # (2H, D)
        self._rot = np.empty((2 * self.n_heads, 2, self.head_dim // 2), dtype=self.dtype)  # (2H, 2, D/2)
        self._act = np.empty(self.ffn_hidden, dtype=self.dtype)  # (F,)
        self._logits = np.empty(self.lm_head.shape[1], dtype=self.dtype)  # (V,)

    def _pack_weights(self) -> None:
        """Move the step's matrices into one contiguous block, in the order a token reads them.

        A decode step streams every weight once (14.7 MB at the benchmark's shape), more than a
        shared processor cache keeps, so the step is bound by memory traffic. One block of at
        least 4 MB gets huge pages from NumPy on Linux (it asks the kernel for them), which
        spares a TLB miss every 4 KB; read in order, it is one stream for the prefetcher.
        Measured at context 16 and 512 on the benchmark's model: about 5% less time per token.
        """
        mats = [m for layer in self.layers for m in layer] + [self.lm_head]
        block = np.empty(sum(m.size for m in mats), dtype=self.dtype)
        views, offset = [], 0
        for m in mats:
            view = block[offset : offset + m.size].reshape(m.shape)
            view[...] = m
            views.append(view)
            offset += m.size
        self.layers = [tuple(views[4 * i : 4 * i + 4]) for i in range(self.n_layers)]
        self.lm_head = views[-1]
        self._weights = block

    @property
    def vocab_size(self) -> int:
        return self.lm_head.shape[1]

    def new_cache(self, batch: int = 1, max_len: int | None = None) -> KVCache:
        """An empty cache for `batch` rows, sized to the model's context length by default."""
        length = self.max_len if max_len is None else min(int(max_len), self.max_len)
        return KVCache(self.n_layers, self.n_heads, self.head_dim, length, batch, self.dtype)

    # -- one token, batch one: the decoding hot path ------------------------------------------

    def step(self, token: int, cache: KVCache) -> np.ndarray:
        """Logits (V,) for `token` at the next position of a batch-one cache, which it extends.

        The returned array is a scratch buffer overwritten by the next call; copy it to keep it.
        """
        if cache.batch != 1:
            raise LMError("step() decodes one row; use forward() for a batch")
        if not 0 <= token < self.tok_emb.shape[0]:
            raise LMError(f"token id {token} is outside the vocabulary of {self.tok_emb.shape[0]}")
        pos = cache.reserve(1)
        n = pos + 1
        H, D, C = self.n_heads, self.head_dim, self.d_model
        half = D // 2
        cos = self.rope_cos[pos]  # (D,)
        sin2 = self.rope_sin[pos].reshape(2, half)  # (2, D/2)
        x, h, qk, rot, act = self._x, self._h, self._qk, self._rot, self._act
        F = act.shape[0]
        x[:] = self.tok_emb[token]  # (C,)
        eps = self.eps
        for li, (wqkv, wo, w13, w2) in enumerate(self.layers):
            np.multiply(x, 1.0 / math.sqrt(float(np.dot(x, x)) / C + eps), out=h)  # RMSNorm, weight in wqkv
            qkv = h @ wqkv  # (3C,)
            q_k = qkv[: 2 * C].reshape(2 * H, D)  # (2H, D): q heads then k heads
            np.multiply(q_k, cos, out=qk)
            # rotate_half as a reversed view of the two halves: no gather, no temporary index.
            np.multiply(q_k.reshape(2 * H, 2, half)[:, ::-1], sin2, out=rot)
            qk += rot.reshape(2 * H, D)
            keys = cache.keys[li, 0]  # (H, S, D)
            values = cache.values[li, 0]  # (H, S, D)
            keys[:, pos] = qk[H:]
            values[:, pos] = qkv[2 * C :].reshape(H, D)
            scores = np.matmul(qk[:H, None, :], keys[:, :n].transpose(0, 2, 1))  # (H, 1, S)
            scores -= scores.max(axis=2, keepdims=True)
            np.exp(scores, out=scores)
            att = np.matmul(scores, values[:, :n])  # (H, 1, D)
            att /= scores.sum(axis=2, keepdims=True)
            x += att.reshape(C) @ wo  # (C,)

            np.multiply(x, 1.0 / math.sqrt(float(np.dot(x, x)) / C + eps), out=h)  # weight in w13
            gu = h @ w13  # (2F,)
            gate, up = gu[:F], gu[F:]
            # silu(g) * u = g * u / (1 + exp(-g)), in a reused buffer.
            np.negative(gate, out=act)
            np.exp(act, out=act)
            act += 1.0
            np.divide(gate, act, out=act)
            act *= up
            x += act @ w2  # (C,)

        np.multiply(x, 1.0 / math.sqrt(float(np.dot(x, x)) / C + eps), out=h)  # weight in lm_head
        np.dot(h, self.lm_head, out=self._logits)  # (V,)
        return self._logits

    # -- any number of new positions, any batch ---------------------------------------------------

    def forward(self, ids, cache: KVCache) -> np.ndarray:
        """Logits (B, T, V) for new positions `ids` (B, T), extending `cache` by T positions.

        Position i of `ids` sits at absolute position `cache.length + i` (before the call) and
        attends to every cached position and to the new positions up to itself.
        """
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None, :]
        if ids.ndim != 2 or ids.shape[0] != cache.batch:
            raise LMError(f"ids must be (batch={cache.batch}, T); got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.tok_emb.shape[0]):
            raise LMError(f"token ids must be in [0, {self.tok_emb.shape[0]})")
        B, T = ids.shape
        start = cache.reserve(T)
        S = start + T
        H, D, C = self.n_heads, self.head_dim, self.d_model
        cos = self.rope_cos[start:S]  # (T, D)
        sin = self.rope_sin[start:S]  # (T, D)
        # Query i (absolute start+i) may see keys 0 .. start+i.
        mask = np.arange(S)[None, :] > (start + np.arange(T))[:, None]  # (T, S)
        x = self.tok_emb[ids].astype(self.dtype)  # (B, T, C)
        for li, (wqkv, wo, w13, w2) in enumerate(self.layers):
            h = self._rmsnorm(x)  # (B, T, C)
            qkv = (h @ wqkv).reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D)
            q = qkv[0] * cos + qkv[0][..., self.rope_perm] * sin  # (B, H, T, D)
            k = qkv[1] * cos + qkv[1][..., self.rope_perm] * sin  # (B, H, T, D)
            cache.keys[li, :, :, start:S] = k
            cache.values[li, :, :, start:S] = qkv[2]
            keys = cache.keys[li, :, :, :S]  # (B, H, S, D)
            values = cache.values[li, :, :, :S]  # (B, H, S, D)
            scores = q @ keys.transpose(0, 1, 3, 2)  # (B, H, T, S)
            scores[..., mask] = -np.inf
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            att = (scores @ values).transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
            x = x + att @ wo  # (B, T, C)

            h = self._rmsnorm(x)  # (B, T, C)
            gu = h @ w13  # (B, T, 2F)
            F = gu.shape[-1] // 2
            gate, up = gu[..., :F], gu[..., F:]
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w2  # (B, T, C)
        return self._rmsnorm(x) @ self.lm_head  # (B, T, V)

    def _rmsnorm(self, x: np.ndarray) -> np.ndarray:
        """RMSNorm without its weight, which is folded into the next matrix."""
        ms = np.mean(x * x, axis=-1, keepdims=True)  # (B, T, 1)
        return x / np.sqrt(ms + self.eps)  # (B, T, C)
