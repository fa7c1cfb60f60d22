"""The whole transformer: parameter contract, gradients by finite differences, overfitting."""

import numpy as np
import pytest

from lm.config import ConfigError, ModelConfig
from lm.errors import LMError
from lm.gradcheck import gradcheck
from lm.model import Transformer


def tiny_config(**overrides):
    values = dict(vocab_size=13, d_model=8, n_layers=2, n_heads=2, ffn_hidden=12, max_seq_len=8)
    values.update(overrides)
    return ModelConfig(**values)


def test_parameter_names_and_shapes_follow_the_contract():
    cfg = tiny_config()
    model = Transformer(cfg)
    expected = {"tok_emb": (13, 8), "norm": (8,), "lm_head": (8, 13)}
    for i in range(2):
        p = f"layers.{i}."
        expected.update({p + "attn_norm": (8,), p + "ffn_norm": (8,), p + "w1": (8, 12), p + "w3": (8, 12), p + "w2": (12, 8)})
        expected.update({p + n: (8, 8) for n in ("wq", "wk", "wv", "wo")})
    assert {k: v.shape for k, v in model.params.items()} == expected
    assert list(model.params)[0] == "tok_emb" and list(model.params)[-1] == "lm_head"
    assert all(p.dtype == np.float32 for p in model.params.values())
    assert "lm_head" not in Transformer(tiny_config(tie_embeddings=True)).params


def test_initialisation_is_seeded_and_scaled():
    cfg = tiny_config(d_model=64, ffn_hidden=128, n_heads=4, n_layers=8, vocab_size=500)
    a, b, c = Transformer(cfg, seed=1), Transformer(cfg, seed=1), Transformer(cfg, seed=2)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["tok_emb"], c.params["tok_emb"])
    assert a.params["tok_emb"].std() == pytest.approx(0.02, rel=0.05)
    assert a.params["layers.0.wo"].std() == pytest.approx(0.02 / 4.0, rel=0.05)  # 1/sqrt(2*8)
    assert a.params["layers.3.w2"].std() == pytest.approx(0.02 / 4.0, rel=0.05)
    assert np.all(a.params["layers.0.attn_norm"] == 1.0)


@pytest.mark.parametrize("tied", [False, True])
def test_two_layer_model_gradients_match_finite_differences(tied):
    cfg = tiny_config(tie_embeddings=tied)
    model = Transformer(cfg, seed=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    # larger weights than the init so that every path carries a gradient well above noise
    for name, p in model.params.items():
        p[...] = rng.normal(1.0 if p.ndim == 1 else 0.0, 0.3, size=p.shape)
    ids = rng.integers(0, cfg.vocab_size, size=(2, 6))
    targets = rng.integers(0, cfg.vocab_size, size=(2, 6))
    targets[1, 2] = -100
    loss, grads = model.loss_and_grads(ids, targets)
    analytic = {k: g.copy() for k, g in grads.items()}
    assert loss == pytest.approx(model.loss(ids, targets), rel=1e-12)
    result = gradcheck(lambda: model.loss(ids, targets), model.params, analytic,
                       atol=1e-8, rtol=1e-5, max_per_array=20)
    assert result.ok, str(result)


def test_float32_and_float64_models_agree():
    cfg = tiny_config()
    m32, m64 = Transformer(cfg, seed=4), Transformer(cfg, seed=4, dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 13, size=(3, 8))
    np.testing.assert_allclose(m32.forward(ids), m64.forward(ids), rtol=1e-4, atol=1e-5)


def test_gradient_accumulation_equals_the_full_batch():
    cfg = tiny_config()
    model = Transformer(cfg, seed=5, dtype=np.float64)
    rng = np.random.default_rng(2)
    ids, targets = rng.integers(0, 13, size=(4, 8)), rng.integers(0, 13, size=(4, 8))
    full_loss, g = model.loss_and_grads(ids, targets)
    full = g["layers.1.w1"].copy(), g["tok_emb"].copy()
    model.loss_and_grads(ids[:2], targets[:2], loss_scale=0.5)
    model.loss_and_grads(ids[2:], targets[2:], accumulate=True, loss_scale=0.5)
    np.testing.assert_allclose(model.grads["layers.1.w1"], full[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(model.grads["tok_emb"], full[1], rtol=1e-12, atol=1e-15)


def test_tiny_model_overfits_one_batch():
    from lm.optim import AdamW

    cfg = tiny_config(vocab_size=32, d_model=32, n_heads=4, ffn_hidden=64, max_seq_len=16)
    model = Transformer(cfg, seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 32, size=(4, 16))
    targets = rng.integers(0, 32, size=(4, 16))  # random targets: only memorisation fits them
    opt = AdamW(model.params, lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(200):
        loss, grads = model.loss_and_grads(ids, targets)
        first = loss if first is None else first
        opt.step(grads)
    assert first == pytest.approx(np.log(32), rel=0.05)  # starts at chance
    assert loss < 0.05, f"loss after 200 steps: {loss}"


def test_bad_inputs_are_clear_errors():
    model = Transformer(tiny_config())
    with pytest.raises(LMError, match="max_seq_len"):
        model.forward(np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(LMError, match=r"\[0, 13\)"):
        model.forward(np.full((1, 3), 13))
    with pytest.raises(LMError, match="at least one token"):
        model.forward(np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(LMError, match="2-D integer"):
        model.forward(np.zeros(3, dtype=np.int64))
    with pytest.raises(LMError, match="targets"):
        model.loss_and_grads(np.zeros((1, 3), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))


@pytest.mark.parametrize(
    "overrides, message",
    [({"n_heads": 3}, "divisible"), ({"d_model": 6, "n_heads": 2}, "odd"), ({"n_layers": 0}, "positive")],
)
def test_invalid_configs(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides)


def test_config_round_trips_through_a_dict():
    cfg = tiny_config(tie_embeddings=True, rope_theta=500.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_reused_buffers_never_leak_between_calls():
    # Different batch shapes in turn, and a kept forward() result, must all match a fresh model.
    cfg = tiny_config()
    model = Transformer(cfg, seed=6)
    rng = np.random.default_rng(3)
    a = rng.integers(0, 13, size=(2, 8))
    b = rng.integers(0, 13, size=(3, 5))
    logits_a = model.forward(a)
    loss_b, grads_b = model.loss_and_grads(b, b)
    grads_b = {k: g.copy() for k, g in grads_b.items()}
    model.loss_and_grads(a, a)
    np.testing.assert_array_equal(model.forward(a), logits_a)  # the kept array was not overwritten
    fresh = Transformer(cfg, seed=6)
    loss_fresh, grads_fresh = fresh.loss_and_grads(b, b)
    assert loss_b == loss_fresh
    for k in grads_b:
        np.testing.assert_array_equal(grads_b[k], grads_fresh[k], err_msg=k)


def test_gradcheck_at_a_longer_sequence_and_wider_ffn():
    # Beyond the tiny shapes above: 64 positions, 8 rows, a hidden width not a multiple of the
    # model width, so a shape or stride slip in the whole-array passes shows up.
    cfg = tiny_config(vocab_size=50, d_model=16, n_heads=2, ffn_hidden=200, max_seq_len=64, n_layers=1)
    model = Transformer(cfg, seed=3, dtype=np.float64)
    rng = np.random.default_rng(5)
    for p in model.params.values():
        p[...] = rng.normal(1.0 if p.ndim == 1 else 0.0, 0.3, size=p.shape)
    ids, targets = rng.integers(0, 50, size=(8, 64)), rng.integers(0, 50, size=(8, 64))
    _, grads = model.loss_and_grads(ids, targets)
    analytic = {k: g.copy() for k, g in grads.items()}
    result = gradcheck(lambda: model.loss(ids, targets), model.params, analytic, atol=1e-8, rtol=1e-5,
                       max_per_array=3)
    assert result.ok, str(result)
