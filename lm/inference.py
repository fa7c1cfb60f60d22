"""Decoding with a KV cache: `Transformer.forward`'s math, one position at a time.

`InferenceModel(model)` prepares what decoding wants from `model.config` and `model.params` and
computes with the functions of `lm.layers` that training computes with (`rms_normalize`,
`rope_rotations` and `rotate`, `causal_attention`, `swiglu`): the math exists once.
`forward(ids, cache)` runs new positions through the model, writing their keys and values into
the cache at their absolute positions, and returns their logits; `step(token, cache)` is the
one-token, batch-one path that decoding spends its time in, the same calls on one row with
preallocated buffers.

Weights: the model's own arrays are read in place (tok_emb, wo, w1, w3, w2, the norms and the
output head), so a pretrained model of 500 MB is not held twice. What is prepared: each layer's
wq|wk|wv fused into one matrix with the attention norm's weight folded into its rows
(`(x̂ * w) @ W == x̂ @ (w[:, None] * W)`) and the q and k columns in `lm.layers.pair_order`, all
layers in one block. After the weights change (training), build a new `InferenceModel`.
w1 and w3 lie one after the other in a `Transformer`'s parameter buffer, so the step reads them
as one stacked `(2, C, F)` operand: one call for the gate and the value.

The cache holds keys already rotated, in the paired column order, for the key/value heads only
(grouped-query attention: `n_kv_heads` of them).

Letters: B batch, T new positions, S positions attended to (cache length after the write),
H query heads, KV key/value heads, G = H/KV, D head_dim, C d_model, F ffn_hidden, V vocabulary.
"""

from __future__ import annotations

import numpy as np

from lm.errors import LMError
from lm.kv_cache import KVCache
from lm.layers import causal_attention, pair_order, rms_normalize, rope_rotations, rope_tables, rotate, swiglu


class InferenceModel:
    """A decoding view of a model; see the module docstring."""

    def __init__(self, model) -> None:
        cfg = model.config
        params = model.params
        self.model = model
        self.config = cfg
        self.n_layers = int(cfg.n_layers)
        self.n_heads = int(cfg.n_heads)
        self.n_kv_heads = int(getattr(cfg, "n_kv_heads", None) or cfg.n_heads)
        self.d_model = int(cfg.d_model)
        self.head_dim = int(getattr(cfg, "head_dim", None) or self.d_model // self.n_heads)
        if self.head_dim % 2 or self.n_heads % self.n_kv_heads:
            raise LMError(
                f"{self.n_heads} query heads over {self.n_kv_heads} key/value heads of size "
                f"{self.head_dim}: the head size must be even (RoPE) and the heads must group evenly"
            )
        self.max_len = int(cfg.max_seq_len)
        self.eps = float(cfg.norm_eps)
        self.tok_emb = params["tok_emb"]  # (V, C)
        self.dtype = self.tok_emb.dtype
        self.lm_head = self.tok_emb.T if getattr(cfg, "tie_embeddings", False) else params["lm_head"]  # (C, V)
        self.norm = params["norm"]  # (C,)

        H, KV, D, C = self.n_heads, self.n_kv_heads, self.head_dim, self.d_model
        QD, KD = H * D, KV * D
        E = QD + 2 * KD
        qkv_block = np.empty((self.n_layers, C, E), dtype=self.dtype)  # every layer's wq|wk|wv
        self.layers = []
        for i in range(self.n_layers):
            p = f"layers.{i}."
            wqkv = qkv_block[i]
            np.take(params[p + "wq"], pair_order(H, D), axis=1, out=wqkv[:, :QD])
            np.take(params[p + "wk"], pair_order(KV, D), axis=1, out=wqkv[:, QD : QD + KD])
            wqkv[:, QD + KD :] = params[p + "wv"]
            wqkv *= params[p + "attn_norm"][:, None]
            w13 = _stacked(params[p + "w1"], params[p + "w3"])  # (2, C, F)
            self.layers.append((wqkv, params[p + "wo"], params[p + "ffn_norm"], w13, params[p + "w2"]))
        self._qkv_block = qkv_block
        self.ffn_hidden = int(params["layers.0.w2"].shape[0]) if self.n_layers else 0
        self.rot = rope_rotations(*rope_tables(self.max_len, D, float(cfg.rope_theta), self.dtype))  # (2, S, D/2)
        self.cdt = self.rot.dtype

        # Scratch buffers for `step`, reused by every token.
        F = self.ffn_hidden
        self._x = np.empty((1, C), dtype=self.dtype)
        self._h = np.empty((1, C), dtype=self.dtype)
        self._q = np.empty((1, KV, H // KV, 1, D), dtype=self.dtype)
        self._probs = np.empty(H * self.max_len, dtype=self.dtype)
        self._y = np.empty((1, KV, H // KV, 1, D), dtype=self.dtype)
        self._gu = np.empty((2, 1, F), dtype=self.dtype)
        self._out = np.empty((1, C), dtype=self.dtype)
        qkv = np.empty((1, E), dtype=self.dtype)
        qkv_c, G = qkv.view(self.cdt)[0], H // KV
        self._step_views = (  # views of the step's buffers, the same for every token
            qkv,
            qkv_c[: QD // 2].reshape(KV, G, D // 2),  # q's pairs, as complex numbers
            qkv_c[QD // 2 : (QD + KD) // 2].reshape(KV, D // 2),  # k's pairs
            qkv[0, QD + KD :].reshape(KV, D),  # v
            self._q.view(self.cdt).reshape(KV, G, D // 2),  # where the rotated q goes
            self._y.reshape(1, QD),  # the heads' outputs, concatenated
            self._out,
        )
        self._act = np.empty((1, F), dtype=self.dtype)
        self._logits = np.empty((1, self.lm_head.shape[1]), dtype=self.dtype)

    @property
    def vocab_size(self) -> int:
        return self.lm_head.shape[1]

    def new_cache(self, batch: int = 1, max_len: int | None = None) -> KVCache:
        """An empty cache for `batch` rows, sized to the model's context length by default."""
        length = self.max_len if max_len is None else min(int(max_len), self.max_len)
        return KVCache(self.n_layers, self.n_kv_heads, self.head_dim, length, batch, self.dtype)

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
        x, h, q, y, gu, act, eps = self._x, self._h, self._q, self._y, self._gu, self._act, self.eps
        qkv, q_src, k_src, v_src, qv, y_row, out_row = self._step_views
        probs = self._probs[: self.n_heads * n].reshape(q.shape[:4] + (n,))  # (1, KV, G, 1, n)
        rot_q, rot_k = self.rot[0, pos], self.rot[1, pos]  # (D/2,)
        # Every layer's slots for this position, and its keys and values so far: sliced once.
        new_keys = cache.keys.view(self.cdt)[:, 0, :, pos]  # (L, KV, D/2)
        new_values = cache.values[:, 0, :, pos]  # (L, KV, D)
        keys, values = cache.keys[:, :, :, :n], cache.values[:, :, :, :n]  # (L, 1, KV, n, D)
        x[0] = self.tok_emb[token]  # (1, C)
        with np.errstate(over="ignore"):  # see lm.layers.swiglu
            for li, (wqkv, wo, ffn_norm, w13, w2) in enumerate(self.layers):
                rms_normalize(x, eps, h)  # the norm's weight is in wqkv
                np.matmul(h, wqkv, out=qkv)  # (1, E)
                rotate(q_src, rot_q, qv)
                rotate(k_src, rot_k, new_keys[li])
                new_values[li] = v_src
                causal_attention(q, keys[li], values[li], probs, y, keep_probs=False)
                x += np.matmul(y_row, wo, out=out_row)  # (1, C)

                rms_normalize(x, eps, h)
                h *= ffn_norm
                np.matmul(h, w13, out=gu)  # (2, 1, F): gate and value in one call
                x += np.matmul(swiglu(gu[0], gu[1], act), w2, out=out_row)  # (1, C)

        rms_normalize(x, eps, h)
        h *= self.norm
        np.matmul(h, self.lm_head, out=self._logits)  # (1, V)
        return self._logits[0]

    # -- any number of new positions, any batch ---------------------------------------------------

    def forward(self, ids, cache: KVCache, *, last: bool = False) -> np.ndarray:
        """Logits (B, T, V) for new positions `ids` (B, T), extending `cache` by T positions.

        Position i of `ids` sits at absolute position `cache.length + i` (before the call) and
        attends to every cached position and to the new positions up to itself. With `last`,
        only the last position's logits, (B, 1, V): what a prefill needs, without a (T, V) array.
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
        H, KV, D, C = self.n_heads, self.n_kv_heads, self.head_dim, self.d_model
        QD, KD, G, N, cdt, dt, eps = H * D, KV * D, H // KV, B * T, self.cdt, self.dtype, self.eps
        F = self.ffn_hidden
        rot_q, rot_k = self.rot[0, start:S], self.rot[1, start:S]  # (T, D/2)
        x = self.tok_emb[ids.reshape(-1)].astype(dt)  # (N, C)
        h = np.empty((N, C), dtype=dt)
        q = np.empty((B, KV, G, T, D), dtype=dt)
        probs = np.empty((B, KV, G, T, S), dtype=dt)
        y = np.empty((B, T, KV, G, D), dtype=dt)
        a, b, act = (np.empty((N, F), dtype=dt) for _ in range(3))
        with np.errstate(over="ignore"):  # see lm.layers.swiglu
            for li, (wqkv, wo, ffn_norm, w13, w2) in enumerate(self.layers):
                rms_normalize(x, eps, h)
                qkv = h @ wqkv  # (N, E)
                rotate(qkv[:, :QD].view(cdt).reshape(B, T, KV, G, D // 2).transpose(0, 2, 3, 1, 4), rot_q, q.view(cdt))
                keys, values = cache.keys[li], cache.values[li]  # (B, KV, S_max, D)
                k_src = qkv[:, QD : QD + KD].view(cdt).reshape(B, T, KV, D // 2).transpose(0, 2, 1, 3)
                rotate(k_src, rot_k, keys[:, :, start:S].view(cdt))
                values[:, :, start:S] = qkv[:, QD + KD :].reshape(B, T, KV, D).transpose(0, 2, 1, 3)
                causal_attention(q, keys[:, :, :S], values[:, :, :S], probs, y.transpose(0, 2, 3, 1, 4))
                x += y.reshape(N, QD) @ wo  # (N, C)

                rms_normalize(x, eps, h)
                h *= ffn_norm
                np.matmul(h, w13[0], out=a)
                np.matmul(h, w13[1], out=b)
                x += swiglu(a, b, act) @ w2  # (N, C)
        if last:
            x = x.reshape(B, T, C)[:, -1]  # (B, C)
            h = h[:B]
            T = 1
        rms_normalize(x, eps, h)
        h *= self.norm
        return (h @ self.lm_head).reshape(B, T, -1)  # (B, T, V)


def _stacked(w1: np.ndarray, w3: np.ndarray) -> np.ndarray:
    """w1 and w3 as one `(2, C, F)` array, so that one matmul call gives gate and value.

    A `Transformer` stores w3 right after w1 in its parameter buffer, so this is a view of that
    memory; for parameters that lie elsewhere it is a stacked copy.
    """
    base = w1
    while isinstance(base.base, np.ndarray):
        base = base.base
    if (
        w1.shape == w3.shape and w1.dtype == w3.dtype and w1.flags.c_contiguous and w3.flags.c_contiguous
        and base.ndim == 1 and base.flags.c_contiguous
        and w3.ctypes.data == w1.ctypes.data + w1.nbytes
    ):
        start = (w1.ctypes.data - base.ctypes.data) // base.itemsize
        view = base[start : start + 2 * w1.size].reshape((2,) + w1.shape)
        if np.shares_memory(view[1], w3):
            return view
    return np.stack([w1, w3])
