"""The transformer's layers, each a `forward`/`backward` pair written out in NumPy.

Every layer is bound at construction to its parameter arrays and to gradient buffers of the same
shapes. `forward(x)` returns `(out, cache)`; `backward(dout, cache)` returns the gradient with
respect to `x` and *adds* parameter gradients into the bound buffers (so micro-batches accumulate
and a tied weight can receive gradient from two places). Layers work in whatever float dtype
their parameters have: float32 for training, float64 for gradient checks.

Shape letters: B batch, T time, C model width, H heads, D head size (C = H*D), F feed-forward
hidden width, V vocabulary, N = B*T rows.
"""

from __future__ import annotations

import numpy as np



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


class RMSNorm:
    """`x / sqrt(mean(x²) + eps) * w` over the last axis (Llama's norm: no mean, no bias)."""

    def __init__(self, weight: np.ndarray, grad: np.ndarray, eps: float) -> None:
        self.weight, self.grad, self.eps = weight, grad, eps  # (C,)
        self.fwd, self.tmp = Buffers(), Buffers()

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        C = x.shape[-1]
        rows = x.reshape(-1, C)  # (N, C)
        rstd = np.einsum("nc,nc->n", rows, rows)[:, None]  # (N, 1) sums of squares
        rstd *= 1.0 / C
        rstd += self.eps
        np.sqrt(rstd, out=rstd)
        np.reciprocal(rstd, out=rstd)
        xn = np.multiply(x, rstd.reshape(x.shape[:-1] + (1,)), out=self.fwd("xn", x.shape, x.dtype))
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


def rope_tables(max_seq_len: int, head_dim: int, theta: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position·frequency, `(max_seq_len, head_dim/2)`, computed in float64.

    Pair j couples dimensions (j, j + head_dim/2) with frequency theta^(-2j/head_dim), position
    counting from 0 (the rotate-half convention of GPT-NeoX and Llama in Hugging Face).
    """
    half = head_dim // 2
    freqs = theta ** (-2.0 * np.arange(half, dtype=np.float64) / head_dim)  # (D/2,)
    angles = np.arange(max_seq_len, dtype=np.float64)[:, None] * freqs[None, :]  # (T, D/2)
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


class CausalSelfAttention:
    """Multi-head causal self-attention with RoPE on q and k, scale 1/sqrt(D).

    The three input projections run as one (N, C) @ (C, 3C) product over the concatenated
    weights, and heads are split and merged through strided views (BLAS takes them as they
    are). Internally the q and k columns of each head are reordered so that every rotated pair
    (j, j + D/2) sits side by side: read as one complex number, RoPE is then a single complex
    multiply by e^(i·angle). q·k is unchanged by a reordering shared by q and k, and the
    gradients are mapped back to the contracted column order, so nothing outside sees it.
    """

    def __init__(
        self,
        wq: np.ndarray, wk: np.ndarray, wv: np.ndarray, wo: np.ndarray,
        gq: np.ndarray, gk: np.ndarray, gv: np.ndarray, go: np.ndarray,
        n_heads: int, cos: np.ndarray, sin: np.ndarray,
    ) -> None:
        self.wq, self.wk, self.wv, self.wo = wq, wk, wv, wo  # (C, C) each
        self.gq, self.gk, self.gv, self.go = gq, gk, gv, go
        self.n_heads = n_heads
        C, half = wq.shape[0], cos.shape[1]
        D = 2 * half
        self.cdt = np.result_type(cos.dtype, np.complex64)  # complex64 for float32
        rot = (cos.astype(np.float64) + 1j * sin.astype(np.float64))  # (max_T, D/2)
        # q is rotated by e^(i·angle)/sqrt(D): the scores come out scaled, which saves a pass
        # over the (B, H, T, T) scores in forward and in backward. Stacked (2, max_T, D/2) so
        # that q and k turn in one multiply.
        self.rot = np.stack((rot / np.sqrt(D), rot)).astype(self.cdt)
        self.fwd, self.tmp = Buffers(), Buffers()

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        B, T, C = x.shape
        H = self.n_heads
        D, N, dt, f, cdt = C // H, B * T, x.dtype, self.fwd, self.cdt
        x2 = x.reshape(N, C)  # (N, C)
        w_qkv = f("w_qkv", (C, 3 * C), dt)  # (C, 3C): q and k columns in paired order
        _to_pairs(self.wq, w_qkv[:, :C], H)
        _to_pairs(self.wk, w_qkv[:, C : 2 * C], H)
        w_qkv[:, 2 * C :] = self.wv
        qkv = np.matmul(x2, w_qkv, out=f("qkv", (N, 3 * C), dt)).reshape(B, T, 3, H, D)  # (B, T, 3, H, D)
        qk = f("qk", (2, B, H, T, D), dt)  # q (scaled) and k, each (B, H, T, D)
        qk_src = qkv[:, :, :2].view(cdt).transpose(2, 0, 3, 1, 4)  # (2, B, H, T, D/2) complex pairs
        np.multiply(qk_src, self.rot[:, None, None, :T], out=qk.view(cdt))
        q, k = qk[0], qk[1]
        v = qkv[:, :, 2].transpose(0, 2, 1, 3)  # (B, H, T, D) strided view
        att = np.matmul(q, k.transpose(0, 1, 3, 2), out=f("att", (B, H, T, T), dt))  # (B, H, T, T)
        _causal_softmax_(att)
        y = f("y", (B, T, H, D), dt)
        np.matmul(att, v, out=y.transpose(0, 2, 1, 3))  # heads written straight into (B, T, H, D)
        y2 = y.reshape(N, C)  # (N, C)
        out = np.matmul(y2, self.wo, out=f("out", (N, C), dt)).reshape(B, T, C)  # (B, T, C)
        return out, (x2, w_qkv, q, k, v, att, y2)

    def backward(self, dout: np.ndarray, cache: tuple) -> np.ndarray:
        x2, w_qkv, q, k, v, att, y2 = cache
        B, H, T, D = q.shape
        C, N, dt, t, cdt = H * D, B * T, dout.dtype, self.tmp, self.cdt
        dout2 = dout.reshape(N, C)  # (N, C)
        self.go += np.matmul(y2.T, dout2, out=t("dwo", (C, C), dt))  # (C, C)
        dy = np.matmul(dout2, self.wo.T, out=t("dy", (N, C), dt))
        dy = dy.reshape(B, T, H, D).transpose(0, 2, 1, 3)  # (B, H, T, D)
        dqkv = t("dqkv", (B, T, 3, H, D), dt)
        np.matmul(att.transpose(0, 1, 3, 2), dy, out=dqkv[:, :, 2].transpose(0, 2, 1, 3))  # dv
        datt = np.matmul(dy, v.transpose(0, 1, 3, 2), out=t("datt", (B, H, T, T), dt))  # (B, H, T, T)
        _causal_softmax_backward_(datt, att)  # now the gradient of the scaled scores q_s @ k^T
        pre = t("pre_rope", (2, B, H, T, D), dt)  # d q_s and d k before RoPE's transpose
        np.matmul(datt, k, out=pre[0])
        np.matmul(datt.transpose(0, 1, 3, 2), q, out=pre[1])  # q is already scaled
        # The transpose of a rotation is the rotation by the opposite angle, written into dqkv.
        d_qk = dqkv[:, :, :2].view(cdt).transpose(2, 0, 3, 1, 4)  # (2, B, H, T, D/2)
        np.multiply(pre.view(cdt), self.rot[:, None, None, :T].conj(), out=d_qk)
        dqkv2 = dqkv.reshape(N, 3 * C)  # (N, 3C)
        dw = np.matmul(x2.T, dqkv2, out=t("dw", (C, 3 * C), dt))  # (C, 3C), q and k columns paired
        g_tmp = t("g_tmp", (C, C), dt)
        _from_pairs_add(dw[:, :C], self.gq, H, g_tmp)  # back to the contracted column order
        _from_pairs_add(dw[:, C : 2 * C], self.gk, H, g_tmp)
        self.gv += dw[:, 2 * C :]
        return np.matmul(dqkv2, w_qkv.T, out=t("dx", (N, C), dt)).reshape(B, T, C)  # (B, T, C)


def _to_pairs(w: np.ndarray, out: np.ndarray, H: int) -> None:
    """Copy w's columns into `out` reordered per head as j, j + D/2, j+1, j+1 + D/2, ..."""
    np.take(w, _pair_order(w.shape[1], H), axis=1, out=out, mode="clip")  # "clip": no index check, no buffering


def _from_pairs_add(g_pairs: np.ndarray, g: np.ndarray, H: int, tmp: np.ndarray) -> None:
    """Add gradient columns in the paired order of `_to_pairs` back into `g` (contract order)."""
    g += np.take(g_pairs, _pair_order(g.shape[1], H, inverse=True), axis=1, out=tmp, mode="clip")


_PAIR_ORDERS: dict[tuple[int, int, bool], np.ndarray] = {}


def _pair_order(C: int, H: int, inverse: bool = False) -> np.ndarray:
    """Column order that puts each head's rotated pairs (j, j + D/2) side by side (cached)."""
    key = (C, H, inverse)
    order = _PAIR_ORDERS.get(key)
    if order is None:
        D = C // H
        order = np.arange(C).reshape(H, 2, D // 2).transpose(0, 2, 1).reshape(-1)  # (C,)
        if inverse:
            order = np.argsort(order)
        _PAIR_ORDERS[key] = order
    return order


_MASKS: dict[tuple[int, str], np.ndarray] = {}


def _causal_mask(T: int, dtype) -> np.ndarray:
    """Additive mask, 0 on and below the diagonal and -inf above; cached per (T, dtype)."""
    key = (T, np.dtype(dtype).str)
    mask = _MASKS.get(key)
    if mask is None:
        mask = np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)  # (T, T)
        _MASKS[key] = mask
    return mask


def _causal_softmax_(att: np.ndarray) -> None:
    """Masked softmax over the last axis, in place. Row i always keeps its diagonal, so every
    row max is finite and exp(-inf) gives exactly 0 for the future positions."""
    T = att.shape[-1]
    att += _causal_mask(T, att.dtype)
    att -= att.max(axis=-1, keepdims=True)
    np.exp(att, out=att)
    # Row sums as a matrix-vector product: BLAS does them several times faster than sum().
    total = np.matmul(att, np.ones(T, dtype=att.dtype))[..., None]  # (B, H, T, 1)
    att *= np.reciprocal(total, out=total)  # one multiply per element is cheaper than a divide


def _causal_softmax_backward_(datt: np.ndarray, att: np.ndarray) -> None:
    """Turn d(probabilities) into d(scores) in place: ds = p * (dp - sum(dp * p)) per row.
    Masked entries have p = 0 and stay 0."""
    datt -= np.einsum("bhij,bhij->bhi", datt, att)[..., None]  # (B, H, T, 1) row sums of dp * p
    datt *= att


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
        sig = np.negative(a, out=f("sig", (N, F), dt))  # (N, F)
        with np.errstate(over="ignore"):
            np.exp(sig, out=sig)  # overflow gives inf, so sigmoid 0, which is right
        sig += 1.0
        np.reciprocal(sig, out=sig)
        silu = np.multiply(a, sig, out=f("silu", (N, F), dt))  # (N, F) kept: it saves backward passes
        h = np.multiply(silu, b, out=f("h", (N, F), dt))  # (N, F)
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
