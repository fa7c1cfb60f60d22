"""The transformer's layers, each a `forward`/`backward` pair written out in NumPy.

Every layer is bound at construction to its parameter arrays and to gradient buffers of the same
shapes. `forward(x)` returns `(out, cache)`; `backward(dout, cache)` returns the gradient with
respect to `x` and *adds* parameter gradients into the bound buffers (so micro-batches accumulate
and a tied weight can receive gradient from two places). Layers work in whatever float dtype
their parameters have: float32 for training, float64 for gradient checks.

The math of each piece (RMSNorm, RoPE, causal attention, SwiGLU) is a function here that the
layers call and that decoding (`lm.inference`) calls too, so it exists once.

Shape letters: B batch, T time, S positions attended to, C model width, H query heads, KV
key/value heads, G = H/KV query heads per key/value head, D head size, F feed-forward hidden
width, V vocabulary, N = B*T rows.
"""

from __future__ import annotations

import math

import numpy as np

from lm.loss import exp_rows_, grad_rows_, target_rows


class Buffers:
    """Named arrays a layer reuses from one call to the next instead of allocating afresh.

    Fresh large arrays cost page faults on first touch, which in training costs as much as the
    arithmetic; reusing them removes that. With no store (the default) every request is a new
    array, so a layer used on its own has no hidden state. The model gives each layer a store
    for its forward caches and one store shared by all layers for backward temporaries (a
    backward's temporaries are dead once it returns), so the arrays a `forward` or `backward`
    returns stay valid only until the next call of the same kind.
    """

    __slots__ = ("store", "prefix")

    def __init__(self, store: dict | None = None, prefix: str = "") -> None:
        self.store, self.prefix = store, prefix

    def __call__(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        if self.store is None:
            return np.empty(shape, dtype=dtype)
        key = self.prefix + name
        buf = self.store.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self.store[key] = np.empty(shape, dtype=dtype)
        return buf


class Embedding:
    """Token ids to vectors: a row lookup; the backward sums each id's rows into its gradient row."""

    def __init__(self, weight: np.ndarray, grad: np.ndarray) -> None:
        self.weight, self.grad = weight, grad  # (V, C)
        self.fwd = Buffers()

    def forward(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.fwd("out", ids.shape + self.weight.shape[1:], self.weight.dtype)  # (B, T, C)
        np.take(self.weight, ids, axis=0, out=out)
        return out, ids

    def backward(self, dout: np.ndarray, ids: np.ndarray) -> None:
        # Repeated ids must accumulate, which fancy-index `+=` would not do: sort the rows by id
        # and sum each run (np.add.at does the same but row by row, several times slower).
        flat = ids.reshape(-1)  # (N,)
        order = np.argsort(flat, kind="stable")
        sorted_ids = flat[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # (U,)
        sums = np.add.reduceat(dout.reshape(-1, dout.shape[-1])[order], starts, axis=0)  # (U, C)
        self.grad[sorted_ids[starts]] += sums


# -- the model math, shared by training (the layers below) and decoding (lm.inference) ---------
#
# Each piece exists once, as a function over arrays that the training layers and the decoding
# paths call alike: `rms_normalize`, `rope_tables` with `rope_rotations` and `rotate`,
# `causal_attention`, and `swiglu`.


def rms_normalize(x2: np.ndarray, eps: float, out: np.ndarray) -> np.ndarray:
    """`out = x2 / sqrt(mean(x2²) + eps)` row by row (RMSNorm without its weight); returns the
    reciprocal root mean squares, (N, 1) (a float for one row). `x2` is (N, C)."""
    N, C = x2.shape
    if N == 1:  # the decoding step: two NumPy calls instead of six
        r = 1.0 / math.sqrt(float(np.vdot(x2, x2)) / C + eps)
        np.multiply(x2, r, out=out)
        return r  # a float broadcasts as the (1, 1) array would
    rstd = np.einsum("nc,nc->n", x2, x2)[:, None]  # (N, 1) sums of squares
    rstd *= 1.0 / C
    rstd += eps
    np.sqrt(rstd, out=rstd)
    np.reciprocal(rstd, out=rstd)
    np.multiply(x2, rstd, out=out)
    return rstd


def rope_tables(max_seq_len: int, head_dim: int, theta: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position·frequency, `(max_seq_len, head_dim/2)`, computed in float64.

    Pair j couples dimensions (j, j + head_dim/2) with frequency theta^(-2j/head_dim), position
    counting from 0 (the rotate-half convention of GPT-NeoX and Llama in Hugging Face).
    """
    half = head_dim // 2
    freqs = theta ** (-2.0 * np.arange(half, dtype=np.float64) / head_dim)  # (D/2,)
    angles = np.arange(max_seq_len, dtype=np.float64)[:, None] * freqs[None, :]  # (T, D/2)
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def rope_rotations(cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """The tables as `(2, max_T, D/2)` complex rotations: [0] turns queries and carries the
    attention scale 1/sqrt(D) (RoPE is linear, so scaling q before the rotation scales the
    scores after it, and saves a pass over them), [1] turns keys. complex64 for float32."""
    cdt = np.result_type(cos.dtype, np.complex64)
    rot = cos.astype(np.float64) + 1j * sin.astype(np.float64)  # (max_T, D/2)
    D = 2 * cos.shape[1]
    return np.stack((rot / math.sqrt(D), rot)).astype(cdt)


# RoPE on vectors whose columns are in paired order (see `pair_order`), read as complex: one
# complex multiply by the rotations (`rotate(pairs, rot, out)`, positions on the second-last axis
# of `pairs`). It is NumPy's multiply itself, not a wrapper: decoding calls it twice per layer
# per token, where a Python call's overhead is measurable.
rotate = np.multiply


def pair_order(n_heads: int, head_dim: int, inverse: bool = False) -> np.ndarray:
    """Column order that puts each head's rotated pairs (j, j + D/2) side by side (cached).

    Columns in this order, read as complex numbers, make RoPE one complex multiply. q·k is
    unchanged by a reordering shared by q and k, so only the gradients (and nothing outside
    the attention) need the original order back (`inverse`).
    """
    key = (n_heads, head_dim, inverse)
    order = _PAIR_ORDERS.get(key)
    if order is None:
        order = np.arange(n_heads * head_dim).reshape(n_heads, 2, head_dim // 2).transpose(0, 2, 1).reshape(-1)
        if inverse:
            order = np.argsort(order)
        _PAIR_ORDERS[key] = order
    return order


_PAIR_ORDERS: dict[tuple[int, int, bool], np.ndarray] = {}
_MASKS: dict[tuple[int, int, str], np.ndarray] = {}
_ONES: dict[np.dtype, np.ndarray] = {}


def _causal_mask(T: int, S: int, dtype) -> np.ndarray:
    """Additive (T, S) mask for T queries at positions S-T .. S-1 over keys 0 .. S-1: 0 where a
    key is at or before the query, -inf after it; cached."""
    key = (T, S, np.dtype(dtype).str)
    mask = _MASKS.get(key)
    if mask is None:
        mask = np.triu(np.full((T, S), -np.inf, dtype=dtype), k=S - T + 1)
        if len(_MASKS) > 64:
            _MASKS.clear()
        _MASKS[key] = mask
    return mask


def _ones(S: int, dtype) -> np.ndarray:
    """S ones of `dtype` (a slice of one cached array per dtype)."""
    ones = _ONES.get(dtype)
    if ones is None or ones.shape[0] < S:
        ones = _ONES[dtype] = np.ones(max(S, 1024), dtype=dtype)
    return ones[:S]


def causal_softmax_backward_(dprobs: np.ndarray, probs: np.ndarray) -> None:
    """Turn d(probabilities) into d(scores) in place: ds = p * (dp - sum(dp * p)) per row.
    Masked entries have p = 0 and stay 0."""
    dprobs -= np.einsum("...ij,...ij->...i", dprobs, probs)[..., None]  # (..., T, 1)
    dprobs *= probs


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, probs: np.ndarray, y: np.ndarray,
                     keep_probs: bool = True) -> None:
    """Grouped-query causal attention: `probs = softmax(q kᵀ)` (masked), `y = probs v`.

    q `(B, KV, G, T, D)`, contiguous, already rotated and scaled: query head kv*G + g is the
    g-th of the G heads that share key/value head kv (the head order of Hugging Face's
    `repeat_kv`). k and v `(B, KV, S, D)`, S >= T: query t sits at position S-T+t, so a cache
    holding earlier positions works as it is. `probs` `(B, KV, G, T, S)` (contiguous) and `y`
    `(B, KV, G, T, D)` (any strides) are written.

    Every row keeps its own position, so every row max is finite and exp(-inf) gives exactly 0
    for future positions. With `keep_probs=False` (decoding: nothing needs the probabilities
    after) `probs` is left unnormalised and the row sums divide `y` instead, which is D values
    per row rather than S; `y` must then be contiguous.
    """
    B, KV, G, T, D = q.shape
    S = k.shape[2]
    # The G query heads of a group share one key matrix: as G*T rows, one product per group.
    scores = probs.reshape(B, KV, G * T, S)
    np.matmul(q.reshape(B, KV, G * T, D), k.transpose(0, 1, 3, 2), out=scores)
    if T > 1:
        probs += _causal_mask(T, S, probs.dtype)
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    if not keep_probs:  # decoding: a few rows, where sum() is one call
        y2 = y.reshape(B, KV, G * T, D)
        np.matmul(scores, v, out=y2)
        y2 /= scores.sum(axis=-1, keepdims=True)
        return
    # Row sums as a matrix-vector product: BLAS does them several times faster than sum().
    total = np.matmul(scores, _ones(S, scores.dtype))[..., None]  # (B, KV, G*T, 1)
    scores *= np.reciprocal(total, out=total)  # one multiply per element is cheaper than a divide
    if y.flags.c_contiguous:
        np.matmul(scores, v, out=y.reshape(B, KV, G * T, D))
    else:
        np.matmul(probs, v[:, :, None], out=y)


def swiglu(a: np.ndarray, b: np.ndarray, out: np.ndarray, sig: np.ndarray | None = None,
           silu: np.ndarray | None = None) -> np.ndarray:
    """`out = silu(a) * b`, silu(a) = a * sigmoid(a). Training passes `sig` and `silu` buffers to
    keep sigmoid(a) and silu(a) for the backward; decoding does without (two passes fewer).

    exp(-a) overflows to inf for a very negative gate, which gives silu 0, the right value: the
    caller runs this under `np.errstate(over="ignore")` (once per step, not once per layer: the
    context manager costs as much as two of these passes on a decoding row).
    """
    if sig is None:
        np.negative(a, out=out)
        np.exp(out, out=out)
        out += 1.0
        np.divide(a, out, out=out)
        out *= b
        return out
    np.negative(a, out=sig)
    np.exp(sig, out=sig)
    sig += 1.0
    np.reciprocal(sig, out=sig)
    np.multiply(a, sig, out=silu)
    return np.multiply(silu, b, out=out)


# -- the training layers --------------------------------------------------------------------


class RMSNorm:
    """`x / sqrt(mean(x²) + eps) * w` over the last axis (Llama's norm: no mean, no bias)."""

    def __init__(self, weight: np.ndarray, grad: np.ndarray, eps: float) -> None:
        self.weight, self.grad, self.eps = weight, grad, eps  # (C,)
        self.fwd, self.tmp = Buffers(), Buffers()

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        C = x.shape[-1]
        xn = self.fwd("xn", x.shape, x.dtype)
        rstd = rms_normalize(x.reshape(-1, C), self.eps, xn.reshape(-1, C))  # (N, 1)
        out = np.multiply(xn, self.weight, out=self.fwd("out", x.shape, x.dtype))
        return out, (xn, rstd)  # (B, T, C)

    def backward(self, dout: np.ndarray, cache: tuple) -> np.ndarray:
        xn, rstd = cache
        C = xn.shape[-1]
        d2, xn2 = dout.reshape(-1, C), xn.reshape(-1, C)  # (N, C)
        self.grad += np.einsum("nc,nc->c", d2, xn2)  # (C,)
        g = np.multiply(d2, self.weight, out=self.tmp("dx", d2.shape, dout.dtype))  # (N, C) d xn
        # d/dx of x*rstd: the rstd term couples all channels through mean(x²).
        proj = np.einsum("nc,nc->n", g, xn2)[:, None]  # (N, 1)
        proj *= 1.0 / C
        xn2 *= proj  # xn is not needed after this, reuse it
        g -= xn2
        g *= rstd
        return g.reshape(dout.shape)  # (B, T, C)


class CausalSelfAttention:
    """Causal self-attention with RoPE on q and k, scale 1/sqrt(D), and grouped-query heads.

    `n_heads` query heads of size D share `n_kv_heads` key/value heads (G = n_heads/n_kv_heads
    each; equal counts are plain multi-head attention). wq is (C, H·D), wk and wv (C, KV·D),
    wo (H·D, C). The three input projections run as one product over the concatenated weights,
    with the q and k columns of each head in `pair_order`, so that RoPE is one complex multiply
    (`rotate`); the gradients are mapped back to the contracted column order, so nothing
    outside sees it. The attention itself is `causal_attention`, which decoding runs too.
    """

    def __init__(
        self,
        wq: np.ndarray, wk: np.ndarray, wv: np.ndarray, wo: np.ndarray,
        gq: np.ndarray, gk: np.ndarray, gv: np.ndarray, go: np.ndarray,
        n_heads: int, cos: np.ndarray, sin: np.ndarray, n_kv_heads: int | None = None,
        rot: np.ndarray | None = None,
    ) -> None:
        self.wq, self.wk, self.wv, self.wo = wq, wk, wv, wo
        self.gq, self.gk, self.gv, self.go = gq, gk, gv, go
        self.n_heads = n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.head_dim = 2 * cos.shape[1]
        # (2, max_T, D/2): q (scaled), k. A model passes one `rot` to all its layers.
        self.rot = rope_rotations(cos, sin) if rot is None else rot
        self.cdt = self.rot.dtype
        self.fwd, self.tmp = Buffers(), Buffers()

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        B, T, C = x.shape
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        G, QD, KD = H // KV, H * D, KV * D
        E = QD + 2 * KD
        N, dt, f, cdt = B * T, x.dtype, self.fwd, self.cdt
        x2 = x.reshape(N, C)  # (N, C)
        w_qkv = f("w_qkv", (C, E), dt)  # (C, E): q and k columns in paired order
        _to_pairs(self.wq, w_qkv[:, :QD], H, D)
        _to_pairs(self.wk, w_qkv[:, QD : QD + KD], KV, D)
        w_qkv[:, QD + KD :] = self.wv
        qkv = np.matmul(x2, w_qkv, out=f("qkv", (N, E), dt))  # (N, E)
        q = f("q", (B, KV, G, T, D), dt)  # rotated and scaled
        k = f("k", (B, KV, T, D), dt)  # rotated
        q_src = qkv[:, :QD].view(cdt).reshape(B, T, KV, G, D // 2).transpose(0, 2, 3, 1, 4)
        rotate(q_src, self.rot[0, :T], q.view(cdt))
        k_src = qkv[:, QD : QD + KD].view(cdt).reshape(B, T, KV, D // 2).transpose(0, 2, 1, 3)
        rotate(k_src, self.rot[1, :T], k.view(cdt))
        v = qkv[:, QD + KD :].reshape(B, T, KV, D).transpose(0, 2, 1, 3)  # (B, KV, T, D) strided view
        att = f("att", (B, KV, G, T, T), dt)
        y = f("y", (B, T, KV, G, D), dt)  # heads written straight into the order wo reads
        causal_attention(q, k, v, att, y.transpose(0, 2, 3, 1, 4))
        y2 = y.reshape(N, QD)  # (N, H·D)
        out = np.matmul(y2, self.wo, out=f("out", (N, C), dt)).reshape(B, T, C)  # (B, T, C)
        return out, (x2, w_qkv, q, k, v, att, y2)

    def backward(self, dout: np.ndarray, cache: tuple) -> np.ndarray:
        x2, w_qkv, q, k, v, att, y2 = cache
        B, KV, G, T, D = q.shape
        H, N, C = KV * G, B * T, x2.shape[1]
        QD, KD = H * D, KV * D
        E = QD + 2 * KD
        dt, t, cdt = dout.dtype, self.tmp, self.cdt
        dout2 = dout.reshape(N, C)  # (N, C)
        self.go += np.matmul(y2.T, dout2, out=t("dwo", (QD, C), dt))  # (H·D, C)
        dy = np.matmul(dout2, self.wo.T, out=t("dy", (N, QD), dt))
        # dy in q's (B, KV, G·T, D) layout, so each group's G heads are one operand.
        dyg = t("dyg", (B, KV, G, T, D), dt)
        dyg[...] = dy.reshape(B, T, KV, G, D).transpose(0, 2, 3, 1, 4)
        dyg = dyg.reshape(B, KV, G * T, D)
        att_g = att.reshape(B, KV, G * T, T)
        dqkv = t("dqkv", (N, E), dt)
        # dv sums over the G heads sharing it: the G·T rows of one product.
        np.matmul(att_g.transpose(0, 1, 3, 2), dyg, out=dqkv[:, QD + KD :].reshape(B, T, KV, D).transpose(0, 2, 1, 3))
        datt = np.matmul(dyg, v.transpose(0, 1, 3, 2), out=t("datt", (B, KV, G * T, T), dt))
        causal_softmax_backward_(datt, att_g)  # now the gradient of the scaled scores q_s kᵀ
        dq = np.matmul(datt, k, out=t("dq", (B, KV, G, T, D), dt).reshape(B, KV, G * T, D))
        dk = np.matmul(datt.transpose(0, 1, 3, 2), q.reshape(B, KV, G * T, D), out=t("dk", (B, KV, T, D), dt))
        # The transpose of a rotation is the rotation by the opposite angle, written into dqkv.
        dq_dst = dqkv[:, :QD].view(cdt).reshape(B, T, KV, G, D // 2).transpose(0, 2, 3, 1, 4)
        rotate(dq.view(cdt).reshape(B, KV, G, T, D // 2), self.rot[0, :T].conj(), dq_dst)
        dk_dst = dqkv[:, QD : QD + KD].view(cdt).reshape(B, T, KV, D // 2).transpose(0, 2, 1, 3)
        rotate(dk.view(cdt), self.rot[1, :T].conj(), dk_dst)
        dw = np.matmul(x2.T, dqkv, out=t("dw", (C, E), dt))  # (C, E), q and k columns paired
        _from_pairs_add(dw[:, :QD], self.gq, H, D, t("gq_tmp", (C, QD), dt))  # back to contract order
        _from_pairs_add(dw[:, QD : QD + KD], self.gk, KV, D, t("gk_tmp", (C, KD), dt))
        self.gv += dw[:, QD + KD :]
        return np.matmul(dqkv, w_qkv.T, out=t("dx", (N, C), dt)).reshape(B, T, C)  # (B, T, C)


def _to_pairs(w: np.ndarray, out: np.ndarray, H: int, D: int) -> None:
    """Copy w's columns into `out` reordered per head as j, j + D/2, j+1, j+1 + D/2, ..."""
    np.take(w, pair_order(H, D), axis=1, out=out, mode="clip")  # "clip": no index check, no buffering


def _from_pairs_add(g_pairs: np.ndarray, g: np.ndarray, H: int, D: int, tmp: np.ndarray) -> None:
    """Add gradient columns in the paired order of `_to_pairs` back into `g` (contract order)."""
    g += np.take(g_pairs, pair_order(H, D, inverse=True), axis=1, out=tmp, mode="clip")


class SwiGLU:
    """The gated feed-forward `(silu(x @ w1) * (x @ w3)) @ w2`.

    The gate and value products go into two separate contiguous (N, F) arrays rather than one
    (N, 2F) product over concatenated weights: NumPy's elementwise passes over the half-row
    views of a joint array run several times slower than over contiguous arrays, which costs far
    more than the extra GEMM call saves.
    """

    def __init__(
        self, w1: np.ndarray, w3: np.ndarray, w2: np.ndarray,
        g1: np.ndarray, g3: np.ndarray, g2: np.ndarray,
    ) -> None:
        self.w1, self.w3, self.w2 = w1, w3, w2  # (C, F), (C, F), (F, C)
        self.g1, self.g3, self.g2 = g1, g3, g2
        self.fwd, self.tmp = Buffers(), Buffers()

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        B, T, C = x.shape
        F, N, dt, f = self.w1.shape[1], B * T, x.dtype, self.fwd
        x2 = x.reshape(N, C)  # (N, C)
        a = np.matmul(x2, self.w1, out=f("a", (N, F), dt))  # (N, F) gate
        b = np.matmul(x2, self.w3, out=f("b", (N, F), dt))  # (N, F) value
        sig, silu = f("sig", (N, F), dt), f("silu", (N, F), dt)  # kept: they save backward passes
        with np.errstate(over="ignore"):
            h = swiglu(a, b, f("h", (N, F), dt), sig, silu)  # (N, F)
        out = np.matmul(h, self.w2, out=f("out", (N, C), dt)).reshape(B, T, C)  # (B, T, C)
        return out, (x2, a, b, sig, silu, h)

    def backward(self, dout: np.ndarray, cache: tuple) -> np.ndarray:
        x2, a, b, sig, silu, h = cache
        N, F = h.shape
        B, T, C = dout.shape
        dt, t = dout.dtype, self.tmp
        dout2 = dout.reshape(N, C)  # (N, C)
        self.g2 += np.matmul(h.T, dout2, out=t("dw2", (F, C), dt))  # (F, C)
        dh = np.matmul(dout2, self.w2.T, out=t("dh", (N, F), dt))  # (N, F)
        db = np.multiply(dh, silu, out=t("db", (N, F), dt))  # (N, F)
        # d silu(a)/da = sig * (1 + a * (1 - sig)) = sig * (1 + a - silu(a))
        da = np.subtract(a, silu, out=t("da", (N, F), dt))  # (N, F)
        da += 1.0
        da *= sig
        da *= b
        da *= dh
        dw = t("dw", (C, F), dt)  # (C, F)
        self.g1 += np.matmul(x2.T, da, out=dw)
        self.g3 += np.matmul(x2.T, db, out=dw)
        dx = np.matmul(da, self.w1.T, out=t("dx", (N, C), dt))  # (N, C)
        dx += np.matmul(db, self.w3.T, out=t("dx3", (N, C), dt))
        return dx.reshape(B, T, C)  # (B, T, C)


class Block:
    """Pre-norm residual block: x + Attn(RMSNorm(x)), then x + FFN(RMSNorm(x))."""

    def __init__(self, attn_norm: RMSNorm, attn: CausalSelfAttention, ffn_norm: RMSNorm, ffn: SwiGLU) -> None:
        self.attn_norm, self.attn, self.ffn_norm, self.ffn = attn_norm, attn, ffn_norm, ffn
        self.fwd = Buffers()

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        h, c_n1 = self.attn_norm.forward(x)
        a, c_attn = self.attn.forward(h)
        x = np.add(x, a, out=self.fwd("mid", x.shape, x.dtype))  # (B, T, C) residual stream
        h, c_n2 = self.ffn_norm.forward(x)
        f, c_ffn = self.ffn.forward(h)
        f += x
        return f, (c_n1, c_attn, c_n2, c_ffn)

    def backward(self, dout: np.ndarray, cache: tuple) -> np.ndarray:
        c_n1, c_attn, c_n2, c_ffn = cache
        dx = self.ffn_norm.backward(self.ffn.backward(dout, c_ffn), c_n2)
        dx += dout  # residual path
        dx2 = self.attn_norm.backward(self.attn.backward(dx, c_attn), c_n1)
        dx2 += dx
        return dx2  # (B, T, C)


class OutputHead:
    """The final projection to logits, `x @ W` with W `(C, V)`, or `x @ tok_emb.T` when tied."""

    def __init__(self, weight: np.ndarray, grad: np.ndarray, transposed: bool = False) -> None:
        # For a tied head, weight/grad are tok_emb and its gradient (V, C), used transposed.
        self.weight, self.grad, self.transposed = weight, grad, transposed
        self.fwd, self.tmp = Buffers(), Buffers()

    def _w(self) -> np.ndarray:
        return self.weight.T if self.transposed else self.weight  # (C, V)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        B, T, C = x.shape
        x2 = x.reshape(B * T, C)  # (N, C)
        W = self._w()
        logits = np.matmul(x2, W, out=self.fwd("logits", (B * T, W.shape[1]), x.dtype))  # (N, V)
        return logits.reshape(B, T, -1), x2  # (B, T, V)

    def backward(self, dout: np.ndarray, x2: np.ndarray) -> np.ndarray:
        N, C = x2.shape
        d2 = dout.reshape(N, -1)  # (N, V)
        dt = dout.dtype
        if self.transposed:
            self.grad += np.matmul(d2.T, x2, out=self.tmp("dw", self.grad.shape, dt))  # (V, C)
        else:
            self.grad += np.matmul(x2.T, d2, out=self.tmp("dw", self.grad.shape, dt))  # (C, V)
        B = dout.shape[0]
        return np.matmul(d2, self._w().T, out=self.tmp("dx", (N, C), dt)).reshape(B, -1, C)  # (B, T, C)

    #: Rows of logits `loss` holds at a time, and vocabulary rows of the weight gradient it adds at a time.
    LOSS_ROWS = 128
    GRAD_COLS = 4096

    def loss(self, x: np.ndarray, targets: np.ndarray, ignore_index: int | None,
             dloss: float | None = None) -> tuple[float, np.ndarray | None]:
        """The projection, the mean cross-entropy and (with `dloss`) their backward, fused.

        Returns `(loss, dx)`: what `forward`, `lm.loss.cross_entropy_forward`, its backward at
        `dloss` and `backward` give together (dx None without `dloss`), but worked through
        `LOSS_ROWS` rows at a time: each chunk's logits become its softmax gradient in place and
        go straight into the weight gradient and dx, so neither the (N, V) logits nor their
        gradient ever exist whole (for a 49k vocabulary they dwarf every other activation).
        The weight gradient is added in blocks of `GRAD_COLS` vocabulary entries for the same
        reason: a (V, C) temporary would cost as much memory as the logits saved.
        """
        B, T, C = x.shape
        N, dt, W = B * T, x.dtype, self._w()  # W (C, V)
        V = W.shape[1]
        x2 = x.reshape(N, C)  # (N, C)
        valid, t_safe = target_rows(targets, N, V, ignore_index)
        n_valid = int(valid.sum())
        scale = None if dloss is None else dloss / max(n_valid, 1)
        R = min(N, self.LOSS_ROWS)
        z_all = self.tmp("logits", (R, V), dt)
        dx = None if dloss is None else self.tmp("dx", (N, C), dt)
        losses = np.empty(N, dtype=np.float64)
        for lo in range(0, N, R):
            hi = min(N, lo + R)
            z, xc = z_all[: hi - lo], x2[lo:hi]  # (n, V), (n, C)
            np.matmul(xc, W, out=z)
            losses[lo:hi], total = exp_rows_(z, t_safe[lo:hi])
            if dloss is None:
                continue
            grad_rows_(z, total, t_safe[lo:hi], valid[lo:hi], scale)  # z is now d loss / d logits
            self._add_weight_grad(z, xc)
            np.matmul(z, W.T, out=dx[lo:hi])
        loss = float(losses[valid].sum() / n_valid) if n_valid else 0.0
        return loss, None if dx is None else dx.reshape(B, T, C)

    def _add_weight_grad(self, dz: np.ndarray, xc: np.ndarray) -> None:
        """grad += xcᵀ dz (or its transpose when tied), `GRAD_COLS` vocabulary entries at a time."""
        V, C = dz.shape[1], xc.shape[1]
        step = min(V, self.GRAD_COLS)
        buf = self.tmp("dw", (step * C,), dz.dtype)
        for v0 in range(0, V, step):
            v1 = min(V, v0 + step)
            if self.transposed:
                self.grad[v0:v1] += np.matmul(dz[:, v0:v1].T, xc, out=buf[: (v1 - v0) * C].reshape(v1 - v0, C))
            else:
                self.grad[:, v0:v1] += np.matmul(xc.T, dz[:, v0:v1], out=buf[: (v1 - v0) * C].reshape(C, v1 - v0))
