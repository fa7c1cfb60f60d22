"""Grouped-query attention and a head size apart from d_model / n_heads: the training layer's
gradients by float64 finite differences, the layer against a per-head loop written from the
definition (Hugging Face's `repeat_kv` head order), the whole model's gradients, decoding with
the KV cache against the full forward, and a cache that holds only the key/value heads."""

from __future__ import annotations

import numpy as np
import pytest

from lm.config import ConfigError, ModelConfig
from lm.gradcheck import gradcheck
from lm.inference import InferenceModel
from lm.layers import CausalSelfAttention, rope_tables
from lm.model import Transformer

B, T, C = 2, 5, 12


def _rot_half(m, cos, sin):
    """RoPE on (T, D), rotate-half: the contract's formula written out."""
    half = m.shape[1] // 2
    a, b = m[:, :half], m[:, half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=1)


def _layer(H, KV, D, seed=0):
    rng = np.random.default_rng(seed)
    ws = {"wq": rng.normal(0, 0.4, (C, H * D)), "wk": rng.normal(0, 0.4, (C, KV * D)),
          "wv": rng.normal(0, 0.4, (C, KV * D)), "wo": rng.normal(0, 0.4, (H * D, C))}
    gs = {n: np.zeros_like(w) for n, w in ws.items()}
    cos, sin = rope_tables(16, D, 10000.0, np.float64)
    layer = CausalSelfAttention(ws["wq"], ws["wk"], ws["wv"], ws["wo"], gs["wq"], gs["wk"], gs["wv"], gs["wo"],
                                H, cos, sin, KV)
    return layer, ws, gs


SHAPES = [(4, 2, 4), (4, 1, 6), (3, 3, 4), (6, 2, 2)]  # (H, KV, D): groups of 2, 4, 1, 3


@pytest.mark.parametrize("H, KV, D", SHAPES)
def test_attention_matches_per_head_loop(H, KV, D):
    layer, ws, _ = _layer(H, KV, D, seed=H + KV)
    x = np.random.default_rng(1).normal(size=(B, T, C))
    y, _ = layer.forward(x)
    cos, sin = rope_tables(T, D, 10000.0, np.float64)
    G = H // KV
    expected = np.zeros((B, T, C))
    for b in range(B):
        heads = []
        for h in range(H):
            kv = h // G  # repeat_kv: query head h reads key/value head h // G
            q = _rot_half(x[b] @ ws["wq"][:, h * D : (h + 1) * D], cos, sin)
            k = _rot_half(x[b] @ ws["wk"][:, kv * D : (kv + 1) * D], cos, sin)
            v = x[b] @ ws["wv"][:, kv * D : (kv + 1) * D]
            s = q @ k.T / np.sqrt(D)
            s[np.triu_indices(T, 1)] = -np.inf
            p = np.exp(s - s.max(axis=1, keepdims=True))
            heads.append(p / p.sum(axis=1, keepdims=True) @ v)
        expected[b] = np.concatenate(heads, axis=1) @ ws["wo"]
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("H, KV, D", SHAPES)
def test_attention_gradients_match_finite_differences(H, KV, D):
    layer, ws, gs = _layer(H, KV, D, seed=7)
    x = np.random.default_rng(2).normal(size=(B, T, C))
    R = np.random.default_rng(3).normal(size=(B, T, C))
    out, cache = layer.forward(x)
    dx = layer.backward(R.copy(), cache)

    def f():
        return float(np.sum(layer.forward(x)[0] * R))

    result = gradcheck(f, {"x": x, **ws}, {"x": dx, **gs}, atol=1e-7, rtol=1e-5)
    assert result.ok, str(result)


def _model(tied=False, dtype=np.float32, **kw):
    cfg = ModelConfig(**{**dict(vocab_size=61, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=6,
                                ffn_hidden=24, max_seq_len=24, tie_embeddings=tied), **kw})
    model = Transformer(cfg, seed=1, dtype=dtype)
    rng = np.random.default_rng(5)
    for p in model.params.values():
        p[...] = rng.normal(1.0 if p.ndim == 1 else 0.0, 0.3 if p.ndim == 1 else 0.5, size=p.shape)
    return model


def test_parameter_shapes_follow_heads_and_head_dim():
    model = _model()
    P = model.params
    assert P["layers.0.wq"].shape == (16, 24) and P["layers.0.wk"].shape == (16, 12)
    assert P["layers.0.wv"].shape == (16, 12) and P["layers.0.wo"].shape == (24, 16)


@pytest.mark.parametrize("tied", [False, True])
def test_model_gradients_match_finite_differences(tied):
    model = _model(tied, np.float64)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 61, size=(2, 6))
    targets = rng.integers(0, 61, size=(2, 6))
    _, grads = model.loss_and_grads(ids, targets)
    analytic = {k: g.copy() for k, g in grads.items()}
    result = gradcheck(lambda: model.loss(ids, targets), model.params, analytic, atol=1e-8, rtol=1e-5,
                       max_per_array=12)
    assert result.ok, str(result)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("prompt_len", [1, 5, 24])
def test_cached_decoding_equals_full_forward(tied, prompt_len):
    model = _model(tied)
    ids = np.random.default_rng(prompt_len).integers(0, 61, size=(1, 24))
    want = model.forward(ids)[0]
    infer = InferenceModel(model)
    cache = infer.new_cache()
    assert cache.keys.shape == (2, 1, 2, 24, 6)  # (L, B, KV, S, D): the key/value heads only
    got = [infer.forward(ids[:, :prompt_len], cache)[0]]
    got += [infer.step(int(t), cache)[None].copy() for t in ids[0, prompt_len:]]
    got = np.concatenate(got)
    assert np.abs(got - want).max() <= 2e-4 * max(1.0, np.abs(want).max())
    cache.reset()
    last = infer.forward(ids, cache, last=True)
    np.testing.assert_allclose(last[0, 0], got[-1], rtol=1e-5, atol=1e-5)


def test_batched_chunks_equal_full_forward():
    model = _model()
    ids = np.random.default_rng(9).integers(0, 61, size=(3, 20))
    infer = InferenceModel(model)
    cache = infer.new_cache(batch=3)
    got = np.concatenate([infer.forward(ids[:, a:b], cache) for a, b in [(0, 7), (7, 8), (8, 20)]], 1)
    want = model.forward(ids)
    assert np.abs(got - want).max() <= 2e-4 * max(1.0, np.abs(want).max())


def test_config_defaults_and_errors():
    cfg = ModelConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=2, ffn_hidden=4, max_seq_len=4)
    assert (cfg.n_kv_heads, cfg.head_dim) == (2, 4)
    assert "n_kv_heads" not in cfg.to_dict() and "head_dim" not in cfg.to_dict()  # old files stay as they were
    gqa = ModelConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=4, n_kv_heads=2, head_dim=6, ffn_hidden=4,
                      max_seq_len=4)
    assert ModelConfig.from_dict(gqa.to_dict()) == gqa
    with pytest.raises(ConfigError, match="multiple of n_kv_heads"):
        ModelConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=4, n_kv_heads=3, ffn_hidden=4, max_seq_len=4)
    with pytest.raises(ConfigError, match="odd"):
        ModelConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=4, head_dim=5, ffn_hidden=4, max_seq_len=4)
