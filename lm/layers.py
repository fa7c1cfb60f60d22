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

from lm.parallel import for_blocks


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
        rstd = np.empty((rows.shape[0], 1), dtype=x.dtype)  # (N, 1)
        xn = self.fwd("xn", x.shape, x.dtype)
        out = self.fwd("out", x.shape, x.dtype)
        xn2, out2 = xn.reshape(-1, C), out.reshape(-1, C)

        def block(lo: int, hi: int) -> None:
            r = rstd[lo:hi]
            np.einsum("nc,nc->n", rows[lo:hi], rows[lo:hi], out=r[:, 0])
            r *= 1.0 / C
            r += self.eps
            np.sqrt(r, out=r)
            np.reciprocal(r, out=r)
            np.multiply(rows[lo:hi], r, out=xn2[lo:hi])
            np.multiply(xn2[lo:hi], self.weight, out=out2[lo:hi])

        for_blocks(rows.shape[0], _rows_per_block(C), block, min_size=256)
        return out, (xn, rstd)  # (B, T, C)

    def backward(self, dout: np.ndarray, cache: tuple) -> np.ndarray:
        xn, rstd = cache
        C = xn.shape[-1]
        d2, xn2 = dout.reshape(-1, C), xn.reshape(-1, C)  # (N, C)
        self.grad += np.einsum("nc,nc->c", d2, xn2)  # (C,) a reduction over rows: one thread
        dx = self.tmp("dx", dout.shape, dout.dtype)
        dx2 = dx.reshape(-1, C)

        def block(lo: int, hi: int) -> None:
            g, xb = dx2[lo:hi], xn2[lo:hi]
            np.multiply(d2[lo:hi], self.weight, out=g)  # d xn
            # d/dx of x*rstd: the rstd term couples all channels through mean(x²).
            proj = np.einsum("nc,nc->n", g, xb)[:, None]  # (n, 1)
            proj *= 1.0 / C
            xb *= proj  # xn is not needed after this, reuse it
            g -= xb
            g *= rstd[lo:hi]

        for_blocks(d2.shape[0], _rows_per_block(C), block, min_size=256)
        return dx  # (B, T, C)


def rope_tables(max_seq_len: int, head_dim: int, theta: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position·frequency, `(max_seq_len, head_dim/2)`, computed in float64.

    Pair j couples dimensions (j, j + head_dim/2) with frequency theta^(-2j/head_dim), position
    counting from 0 (the rotate-half convention of GPT-NeoX and Llama in Hugging Face).
    """
    half = head_dim // 2
    freqs = theta ** (-2.0 * np.arange(half, dtype=np.float64) / head_dim)  # (D/2,)
    angles = np.arange(max_seq_len, dtype=np.float64)[:, None] * freqs[None, :]  # (T, D/2)
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def rope_forward(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, out: np.ndarray | None = None,
                 tmp: np.ndarray | None = None) -> np.ndarray:
    """Rotate each pair (x1, x2) by its angle: (x1·c − x2·s, x2·c + x1·s). x is (B, H, T, D).

    `out` (like x) and `tmp` (like x's half) are optional preallocated buffers.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (B, H, T, D/2)
    if out is None:
        out = np.empty(x.shape, dtype=x.dtype)
    if tmp is None:
        tmp = np.empty(x1.shape, dtype=x.dtype)
    o1, o2 = out[..., :half], out[..., half:]
    np.multiply(x1, cos, out=o1)
    o1 -= np.multiply(x2, sin, out=tmp)
    np.multiply(x2, cos, out=o2)
    o2 += np.multiply(x1, sin, out=tmp)
    return out  # (B, H, T, D)


def rope_backward(dout: np.ndarray, cos: np.ndarray, sin: np.ndarray, out: np.ndarray | None = None,
                  tmp: np.ndarray | None = None) -> np.ndarray:
    """The transpose of the rotation, i.e. rotation by the opposite angle."""
    half = dout.shape[-1] // 2
    d1, d2 = dout[..., :half], dout[..., half:]
    if out is None:
        out = np.empty(dout.shape, dtype=dout.dtype)
    if tmp is None:
        tmp = np.empty(d1.shape, dtype=dout.dtype)
    o1, o2 = out[..., :half], out[..., half:]
    np.multiply(d1, cos, out=o1)
    o1 += np.multiply(d2, sin, out=tmp)
    np.multiply(d2, cos, out=o2)
    o2 -= np.multiply(d1, sin, out=tmp)
    return out


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
        within = np.empty(D, dtype=np.intp)  # head-local order: j, j + D/2, j+1, j+1 + D/2, ...
        within[0::2], within[1::2] = np.arange(half), np.arange(half) + half
        self.perm = (np.arange(0, C, D)[:, None] + within[None, :]).reshape(-1)  # (C,)
        self.cdt = np.result_type(cos.dtype, np.complex64)  # complex64 for float32
        rot = (cos.astype(np.float64) + 1j * sin.astype(np.float64))  # (max_T, D/2)
        # q is rotated by e^(i·angle)/sqrt(D): the scores come out scaled, which saves a pass
        # over the (B, H, T, T) scores in forward and in backward.
        self.rot_k = rot.astype(self.cdt)
        self.rot_q = (rot / np.sqrt(D)).astype(self.cdt)
        self.fwd, self.tmp = Buffers(), Buffers()

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        B, T, C = x.shape
        H = self.n_heads
        D, N, dt, f, cdt = C // H, B * T, x.dtype, self.fwd, self.cdt
        x2 = x.reshape(N, C)  # (N, C)
        w_qkv = f("w_qkv", (C, 3 * C), dt)  # (C, 3C): q and k columns in paired order
        w_qkv[:, :C] = self.wq[:, self.perm]
        w_qkv[:, C : 2 * C] = self.wk[:, self.perm]
        w_qkv[:, 2 * C :] = self.wv
        qkv = np.matmul(x2, w_qkv, out=f("qkv", (N, 3 * C), dt)).reshape(B, T, 3, H, D)  # (B, T, 3, H, D)
        q, k = f("q", (B, H, T, D), dt), f("k", (B, H, T, D), dt)  # (B, H, T, D), q scaled
        q_src = qkv[:, :, 0].view(cdt).transpose(0, 2, 1, 3)  # (B, H, T, D/2) complex pairs
        k_src = qkv[:, :, 1].view(cdt).transpose(0, 2, 1, 3)
        qc, kc = q.view(cdt), k.view(cdt)

        def rotate(lo: int, hi: int) -> None:
            np.multiply(q_src[lo:hi], self.rot_q[:T], out=qc[lo:hi])
            np.multiply(k_src[lo:hi], self.rot_k[:T], out=kc[lo:hi])

        for_blocks(B, 1, rotate, min_size=2)
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
        # softmax backward: ds = p * (dp - sum(dp * p)); masked entries have p = 0 and stay 0.
        # The result is the gradient of the scaled scores q_s @ k^T.
        d_rows, p_rows = datt.reshape(-1, T, T), att.reshape(-1, T, T)  # (B*H, T, T)

        def block(lo: int, hi: int) -> None:
            d, p = d_rows[lo:hi], p_rows[lo:hi]
            d -= np.einsum("bij,bij->bi", d, p)[..., None]  # (b, T, 1) row sums of dp * p
            d *= p

        for_blocks(d_rows.shape[0], _heads_per_block(T), block, min_size=8)
        pre_q, pre_k = t("pre_rope_q", (B, H, T, D), dt), t("pre_rope_k", (B, H, T, D), dt)
        np.matmul(datt, k, out=pre_q)  # d q_s
        np.matmul(datt.transpose(0, 1, 3, 2), q, out=pre_k)  # q is already scaled
        pre_qc, pre_kc = pre_q.view(cdt), pre_k.view(cdt)  # (B, H, T, D/2)
        dq = dqkv[:, :, 0].view(cdt).transpose(0, 2, 1, 3)  # (B, H, T, D/2) into dqkv
        dk = dqkv[:, :, 1].view(cdt).transpose(0, 2, 1, 3)
        rot_q, rot_k = self.rot_q[:T].conj(), self.rot_k[:T].conj()  # the transpose of a rotation

        def unrotate(lo: int, hi: int) -> None:
            np.multiply(pre_qc[lo:hi], rot_q, out=dq[lo:hi])
            np.multiply(pre_kc[lo:hi], rot_k, out=dk[lo:hi])

        for_blocks(B, 1, unrotate, min_size=2)
        dqkv2 = dqkv.reshape(N, 3 * C)  # (N, 3C)
        dw = np.matmul(x2.T, dqkv2, out=t("dw", (C, 3 * C), dt))  # (C, 3C), q and k columns paired
        self.gq[:, self.perm] += dw[:, :C]  # back to the contracted column order
        self.gk[:, self.perm] += dw[:, C : 2 * C]
        self.gv += dw[:, 2 * C :]
        return np.matmul(dqkv2, w_qkv.T, out=t("dx", (N, C), dt)).reshape(B, T, C)  # (B, T, C)


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
    mask = _causal_mask(T, att.dtype)
    rows = att.reshape(-1, T, T)  # (B*H, T, T)

    def block(lo: int, hi: int) -> None:
        a = rows[lo:hi]
        a += mask
        a -= a.max(axis=-1, keepdims=True)
        np.exp(a, out=a)
        total = a.sum(axis=-1, keepdims=True)  # (b, T, 1)
        a *= np.reciprocal(total, out=total)  # one multiply per element is cheaper than a divide

    for_blocks(rows.shape[0], _heads_per_block(T), block, min_size=8)


def _heads_per_block(T: int) -> int:
    """(T, T) score matrices per cache block: about 64K floats."""
    return max(1, (1 << 16) // (T * T))


def _rows_per_block(width: int) -> int:
    """Rows of a (rows, width) array per cache block: about 32K floats."""
    return max(1, (1 << 15) // max(1, width))


class SwiGLU:
    """The gated feed-forward `(silu(x @ w1) * (x @ w3)) @ w2`; w1 and w3 run as one product."""

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
        w13 = np.concatenate((self.w1, self.w3), axis=1, out=f("w13", (C, 2 * F), dt))  # (C, 2F)
        ab = np.matmul(x2, w13, out=f("ab", (N, 2 * F), dt))  # (N, 2F)
        sig, h = f("sig", (N, F), dt), f("h", (N, F), dt)  # (N, F)

        def block(lo: int, hi: int) -> None:
            a, b = ab[lo:hi, :F], ab[lo:hi, F:]  # gate and value rows
            s = np.negative(a, out=sig[lo:hi])
            np.exp(s, out=s)  # overflow gives inf, so sigmoid 0, which is right
            s += 1.0
            np.reciprocal(s, out=s)
            hb = np.multiply(a, s, out=h[lo:hi])  # silu(a)
            hb *= b

        with np.errstate(over="ignore"):
            for_blocks(N, _rows_per_block(F), block, min_size=128)
        out = np.matmul(h, self.w2, out=f("out", (N, C), dt)).reshape(B, T, C)  # (B, T, C)
        return out, (x2, w13, ab, sig, h)

    def backward(self, dout: np.ndarray, cache: tuple) -> np.ndarray:
        x2, w13, ab, sig, h = cache
        N, F = h.shape
        B, T, C = dout.shape
        dt, t = dout.dtype, self.tmp
        dout2 = dout.reshape(N, C)
        self.g2 += np.matmul(h.T, dout2, out=t("dw2", (F, C), dt))  # (F, C)
        dh = np.matmul(dout2, self.w2.T, out=t("dh", (N, F), dt))  # (N, F)
        dab = t("dab", (N, 2 * F), dt)

        def block(lo: int, hi: int) -> None:
            a, b, s, g = ab[lo:hi, :F], ab[lo:hi, F:], sig[lo:hi], dh[lo:hi]
            da, db = dab[lo:hi, :F], dab[lo:hi, F:]
            np.multiply(a, s, out=db)  # silu(a)
            db *= g  # d/db = dh * silu(a)
            # d silu(a)/da = sig * (1 + a * (1 - sig))
            np.subtract(1.0, s, out=da)
            da *= a
            da += 1.0
            da *= s
            da *= b
            da *= g

        for_blocks(N, _rows_per_block(F), block, min_size=128)
        dw = np.matmul(x2.T, dab, out=t("dw13", (C, 2 * F), dt))  # (C, 2F)
        self.g1 += dw[:, :F]
        self.g3 += dw[:, F:]
        return np.matmul(dab, w13.T, out=t("dx", (N, C), dt)).reshape(B, T, C)  # (B, T, C)


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
