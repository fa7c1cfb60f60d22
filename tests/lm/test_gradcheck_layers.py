"""Every layer's backward against central finite differences in float64.

Each check takes `f = sum(forward(x) * R)` for a fixed random R, whose exact gradient is
`backward(R)`, and compares input and parameter gradients element by element.
"""

import numpy as np
import pytest

from lm.gradcheck import gradcheck
from lm.layers import (
    Block,
    CausalSelfAttention,
    Embedding,
    OutputHead,
    RMSNorm,
    SwiGLU,
    rope_tables,
)
from lm.loss import cross_entropy_backward, cross_entropy_forward

ATOL, RTOL = 1e-7, 1e-5
B, T, C, H, F, V = 2, 5, 8, 2, 12, 11


def _rng(seed=0):
    return np.random.default_rng(seed)


def _check_layer(forward, backward, inputs: dict, params: dict, grads: dict, out_shape, seed=1):
    """Gradcheck inputs and parameters of one layer via f = sum(forward(x) * R)."""
    R = _rng(seed).normal(size=out_shape)
    x_names = list(inputs)

    def f():
        out, _ = forward(*[inputs[n] for n in x_names])
        return float(np.sum(out * R))

    for g in grads.values():
        g[...] = 0.0
    out, cache = forward(*[inputs[n] for n in x_names])
    assert out.shape == out_shape
    dx = backward(R.copy(), cache)
    analytic = dict(grads)
    if dx is not None:
        analytic[x_names[0]] = dx
    arrays = {**({x_names[0]: inputs[x_names[0]]} if dx is not None else {}), **params}
    result = gradcheck(f, arrays, analytic, atol=ATOL, rtol=RTOL)
    assert result.ok, str(result)
    return result


def test_rmsnorm():
    rng = _rng()
    w = rng.normal(1.0, 0.3, size=C)
    g = np.zeros_like(w)
    layer = RMSNorm(w, g, eps=1e-5)
    x = rng.normal(size=(B, T, C))
    _check_layer(layer.forward, layer.backward, {"x": x}, {"w": w}, {"w": g}, (B, T, C))


def test_rmsnorm_matches_its_definition():
    rng = _rng(3)
    w = rng.normal(size=C)
    x = rng.normal(size=(B, T, C))
    y, _ = RMSNorm(w, np.zeros_like(w), eps=1e-5).forward(x)
    expected = x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_embedding_with_repeated_ids():
    rng = _rng()
    w = rng.normal(size=(V, C))
    g = np.zeros_like(w)
    layer = Embedding(w, g)
    ids = np.array([[1, 3, 1, 0, 1], [3, 3, 10, 2, 1]])
    _check_layer(layer.forward, layer.backward, {"ids": ids}, {"w": w}, {"w": g}, (B, T, C))


def _rotate_half_reference(m, cos, sin):
    """RoPE on (T, D) by the contract's formula, one pair at a time: the oracle for attention."""
    T_, D = m.shape
    half = D // 2
    out = np.empty_like(m)
    for t in range(T_):
        for j in range(half):
            a, b = m[t, j], m[t, j + half]
            out[t, j] = a * cos[t, j] - b * sin[t, j]
            out[t, j + half] = b * cos[t, j] + a * sin[t, j]
    return out


def test_rope_rotate_half_convention():
    # Position 1, head size 4: pairs (0, 2) and (1, 3) rotate by 1 and theta^(-1/2) radians.
    cos, sin = rope_tables(2, 4, 100.0, np.float64)
    x = np.array([[1.0, 2.0, 3.0, 4.0]] * 2)  # (T=2, D=4)
    y = _rotate_half_reference(x, cos, sin)
    a0, a1 = 1.0, 100.0 ** -0.5
    expected = [
        1 * np.cos(a0) - 3 * np.sin(a0),
        2 * np.cos(a1) - 4 * np.sin(a1),
        3 * np.cos(a0) + 1 * np.sin(a0),
        4 * np.cos(a1) + 2 * np.sin(a1),
    ]
    np.testing.assert_allclose(y[1], expected, rtol=1e-12)
    np.testing.assert_allclose(y[0], x[0])  # position 0 unrotated


def _attention(seed=0):
    rng = _rng(seed)
    ws = {n: rng.normal(0, 0.4, size=(C, C)) for n in ("wq", "wk", "wv", "wo")}
    gs = {n: np.zeros((C, C)) for n in ws}
    cos, sin = rope_tables(16, C // H, 10000.0, np.float64)
    layer = CausalSelfAttention(ws["wq"], ws["wk"], ws["wv"], ws["wo"], gs["wq"], gs["wk"], gs["wv"], gs["wo"], H, cos, sin)
    return layer, ws, gs


def test_attention():
    layer, ws, gs = _attention()
    x = _rng(5).normal(size=(B, T, C))
    _check_layer(layer.forward, layer.backward, {"x": x}, ws, gs, (B, T, C))


def test_attention_is_causal():
    layer, _, _ = _attention()
    x = _rng(6).normal(size=(1, T, C))
    y1, _ = layer.forward(x)
    x2 = x.copy()
    x2[0, -1] += 5.0  # changing the last position must not change any earlier output
    y2, _ = layer.forward(x2)
    np.testing.assert_allclose(y1[0, :-1], y2[0, :-1], rtol=0, atol=1e-12)
    assert np.abs(y1[0, -1] - y2[0, -1]).max() > 1e-3


def test_attention_matches_naive_per_head_loop():
    layer, ws, _ = _attention(2)
    x = _rng(7).normal(size=(B, T, C))
    y, _ = layer.forward(x)
    D = C // H
    cos, sin = rope_tables(T, D, 10000.0, np.float64)

    def rot(m):  # (T, D)
        return _rotate_half_reference(m, cos, sin)

    expected = np.zeros((B, T, C))
    for b in range(B):
        heads = []
        for h in range(H):
            sl = slice(h * D, (h + 1) * D)
            q = rot(x[b] @ ws["wq"][:, sl])
            k = rot(x[b] @ ws["wk"][:, sl])
            v = x[b] @ ws["wv"][:, sl]
            s = q @ k.T / np.sqrt(D)
            s[np.triu_indices(T, 1)] = -np.inf
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            heads.append(p @ v)
        expected[b] = np.concatenate(heads, axis=1) @ ws["wo"]
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


def _swiglu(seed=0):
    rng = _rng(seed)
    ws = {"w1": rng.normal(0, 0.5, size=(C, F)), "w3": rng.normal(0, 0.5, size=(C, F)), "w2": rng.normal(0, 0.5, size=(F, C))}
    gs = {n: np.zeros_like(w) for n, w in ws.items()}
    return SwiGLU(ws["w1"], ws["w3"], ws["w2"], gs["w1"], gs["w3"], gs["w2"]), ws, gs


def test_swiglu():
    layer, ws, gs = _swiglu()
    x = _rng(8).normal(size=(B, T, C))
    _check_layer(layer.forward, layer.backward, {"x": x}, ws, gs, (B, T, C))


def test_swiglu_matches_definition():
    layer, ws, _ = _swiglu(1)
    x = _rng(9).normal(size=(B, T, C))
    y, _ = layer.forward(x)
    a = x @ ws["w1"]
    expected = (a / (1 + np.exp(-a)) * (x @ ws["w3"])) @ ws["w2"]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_block():
    rng = _rng(4)
    attn, wa, ga = _attention(3)
    ffn, wf, gf = _swiglu(4)
    n1, n2 = rng.normal(1, 0.2, size=C), rng.normal(1, 0.2, size=C)
    g1, g2 = np.zeros(C), np.zeros(C)
    block = Block(RMSNorm(n1, g1, 1e-5), attn, RMSNorm(n2, g2, 1e-5), ffn)
    x = rng.normal(size=(B, T, C))
    _check_layer(block.forward, block.backward, {"x": x},
                 {**wa, **wf, "n1": n1, "n2": n2}, {**ga, **gf, "n1": g1, "n2": g2}, (B, T, C))


@pytest.mark.parametrize("tied", [False, True])
def test_output_head(tied):
    rng = _rng()
    w = rng.normal(size=(V, C) if tied else (C, V))
    g = np.zeros_like(w)
    head = OutputHead(w, g, transposed=tied)
    x = rng.normal(size=(B, T, C))
    _check_layer(head.forward, head.backward, {"x": x}, {"w": w}, {"w": g}, (B, T, V))


@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy(ignore):
    rng = _rng()
    logits = rng.normal(size=(B, T, V)) * 3
    targets = rng.integers(0, V, size=(B, T))
    if ignore:
        targets[0, 1] = targets[1, 4] = -100
    loss, cache = cross_entropy_forward(logits, targets)
    dlogits = cross_entropy_backward(1.0, cache)
    result = gradcheck(lambda: cross_entropy_forward(logits, targets)[0], {"logits": logits}, {"logits": dlogits},
                       atol=ATOL, rtol=RTOL)
    assert result.ok, str(result)
    # against the definition, computed independently
    z = logits.reshape(-1, V)
    t = targets.reshape(-1)
    keep = t != -100
    lse = np.log(np.exp(z).sum(axis=1))
    expected = np.mean((lse - z[np.arange(len(t)), np.where(keep, t, 0)])[keep])
    assert loss == pytest.approx(expected, rel=1e-12)
    if ignore:
        assert np.all(dlogits[0, 1] == 0) and np.all(dlogits[1, 4] == 0)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4]], dtype=np.float32)
    loss, cache = cross_entropy_forward(logits, np.array([0]))
    assert np.isfinite(loss) and loss == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.isfinite(cross_entropy_backward(1.0, cache)))


def test_gradcheck_catches_a_wrong_gradient():
    layer, ws, gs = _swiglu()
    x = _rng(8).normal(size=(B, T, C))
    R = _rng(1).normal(size=(B, T, C))
    out, cache = layer.forward(x)
    layer.backward(R, cache)
    gs["w2"][0, 0] += 1e-4  # a small, single-element error must be found
    result = gradcheck(lambda: float(np.sum(layer.forward(x)[0] * R)), ws, gs, atol=ATOL, rtol=RTOL)
    assert not result.ok
    assert "w2[0, 0]" in result.worst
    assert result.max_abs_diff == pytest.approx(1e-4, rel=1e-3)
