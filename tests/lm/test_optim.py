"""AdamW, gradient clipping and the learning-rate schedule against hand-computed values."""

import math

import numpy as np
import pytest
import reference_cases as cases
from reference_cases import assert_close, tol

from lm.optim import AdamW, clip_grad_norm, cosine_lr


def test_adamw_two_steps_by_hand():
    # One decayed matrix and one non-decayed vector; every number below is worked out by hand.
    W = np.array([[1.0, -2.0]])
    b = np.array([0.5])
    opt = AdamW({"W": W, "b": b}, lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5)
    opt.step({"W": np.array([[0.2, -0.4]]), "b": np.array([1.0])})
    # step 1: m = 0.1 g, v = 0.01 g², m̂ = g, v̂ = g², update = lr * g/(|g| + eps) ≈ 0.1 sign(g)
    # W first decays by (1 - 0.1*0.5) = 0.95.
    np.testing.assert_allclose(W, [[0.95 - 0.1 * 0.2 / (0.2 + 1e-8), -1.9 + 0.1 * 0.4 / (0.4 + 1e-8)]], rtol=1e-12)
    np.testing.assert_allclose(b, [0.5 - 0.1 * 1.0 / (1.0 + 1e-8)], rtol=1e-12)  # no decay on vectors
    w0 = W.copy()
    opt.step({"W": np.array([[-0.2, 0.0]]), "b": np.array([3.0])}, lr=0.05)
    m = 0.9 * 0.1 * np.array([0.2, -0.4]) + 0.1 * np.array([-0.2, 0.0])
    v = 0.99 * 0.01 * np.array([0.04, 0.16]) + 0.01 * np.array([0.04, 0.0])
    m_hat, v_hat = m / (1 - 0.81), v / (1 - 0.99**2)
    expected = w0[0] * (1 - 0.05 * 0.5) - 0.05 * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(W[0], expected, rtol=1e-12)
    assert opt.t == 2


def test_adamw_packed_and_unpacked_parameters_agree():
    from lm.config import ModelConfig
    from lm.model import Transformer

    cfg = ModelConfig(vocab_size=11, d_model=8, n_layers=1, n_heads=2, ffn_hidden=8, max_seq_len=4)
    model = Transformer(cfg, dtype=np.float64)
    loose = {k: v.copy() for k, v in model.params.items()}  # separate arrays: the gather path
    fast, slow = AdamW(model.params, lr=1e-2), AdamW(loose, lr=1e-2)
    assert not fast._owns_flat and slow._owns_flat
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = {k: rng.normal(size=v.shape) for k, v in loose.items()}
        fast.step(grads)
        slow.step(grads)
    for k in loose:
        np.testing.assert_allclose(model.params[k], loose[k], rtol=1e-13, atol=1e-15)


def _adamw_fixture():
    f = cases.load(cases.ADAMW_PATH, cases.ADAMW_SETTINGS)
    grads = [{"W": gW, "b": gb} for gW, gb in zip(f["grad.W"], f["grad.b"])]
    return {"W": f["param.W"], "b": f["param.b"]}, grads, list(f["lr"]), {"W": f["final.W"], "b": f["final.b"]}


def _check_adamw(params, grads, lrs, expected, what):
    s = cases.ADAMW_SETTINGS
    ours = {k: v.copy() for k, v in params.items()}
    opt = AdamW(ours, lr=s["lr"], betas=tuple(s["betas"]), eps=s["eps"], weight_decay=s["weight_decay"])
    for g, lr in zip(grads, lrs, strict=True):
        opt.step(g, lr=lr)
    for name in ("W", "b"):
        assert_close(f"{what} {name} after {len(lrs)} AdamW steps", ours[name], expected[name], **tol("adamw"))


def test_adamw_matches_the_torch_fixture():
    # torch.optim.AdamW's own steps, saved by tests/lm/fixtures/make_torch_reference.py.
    params, grads, lrs, expected = _adamw_fixture()
    assert len(lrs) == 5
    _check_adamw(params, grads, lrs, expected, "fixture")
    # The comparison can fail: an error of 1e-8 in one learning rate shows.
    with pytest.raises(AssertionError, match="perturbed W after 5 AdamW steps: max abs diff"):
        _check_adamw(params, grads, [lrs[0] * (1 + 1e-8), *lrs[1:]], expected, "perturbed")


def test_adamw_matches_torch():
    pytest.importorskip("torch", reason="torch is an optional peer; not installed here")
    import torch_reference

    s = cases.ADAMW_SETTINGS
    rng = np.random.default_rng(11)
    params = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    grads = [{"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)} for _ in range(5)]
    lrs = [3e-3 * (step + 1) / 5 for step in range(5)]
    expected = torch_reference.adamw_steps(params, grads, lrs, betas=tuple(s["betas"]), eps=s["eps"],
                                           weight_decay=s["weight_decay"])
    _check_adamw(params, grads, lrs, expected, "live")


def test_adamw_state_round_trip():
    rng = np.random.default_rng(2)
    p1 = {"W": rng.normal(size=(2, 3)), "b": rng.normal(size=3)}
    p2 = {k: v.copy() for k, v in p1.items()}
    o1 = AdamW(p1, lr=0.01)
    o1.step({k: rng.normal(size=v.shape) for k, v in p1.items()})
    o2 = AdamW(p2, lr=0.01)
    p2["W"][...], p2["b"][...] = p1["W"], p1["b"]
    o2.load_state_tensors({k: v.copy() for k, v in o1.state_tensors().items()}, o1.t)
    g = {k: rng.normal(size=v.shape) for k, v in p1.items()}
    o1.step(g)
    o2.step(g)
    np.testing.assert_array_equal(p1["W"], p2["W"])


def test_clip_grad_norm_scales_when_above():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}  # norm 5
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(grads["a"], [3.0 / (5 + 1e-6), 0.0])
    np.testing.assert_allclose(grads["b"], [[0.0, 4.0 / (5 + 1e-6)]])
    total = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    assert total == pytest.approx(1.0, rel=1e-6)


def test_clip_grad_norm_leaves_small_gradients_alone():
    grads = {"a": np.array([0.3, 0.4])}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(grads["a"], [0.3, 0.4])


def test_cosine_schedule_by_hand():
    assert cosine_lr(0, 10, 110, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine_lr(4, 10, 110, 1.0, 0.1) == pytest.approx(0.5)
    assert cosine_lr(9, 10, 110, 1.0, 0.1) == pytest.approx(1.0)
    assert cosine_lr(10, 10, 110, 1.0, 0.1) == pytest.approx(1.0)  # r = 0
    assert cosine_lr(60, 10, 110, 1.0, 0.1) == pytest.approx(0.55)  # r = 1/2: halfway
    assert cosine_lr(35, 10, 110, 1.0, 0.1) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert cosine_lr(110, 10, 110, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine_lr(500, 10, 110, 1.0, 0.1) == pytest.approx(0.1)  # r clamps at 1
    assert cosine_lr(0, 0, 1, 2.0, 0.0) == pytest.approx(2.0)  # no warmup, total-warmup clamps at 1


def test_adamw_large_parameters_blocked_match_the_formula():
    # Many cache-sized blocks, one of them straddling the decayed/non-decayed boundary; checked
    # against the textbook update written out directly.
    from lm import optim

    rng = np.random.default_rng(3)
    W = rng.normal(size=(1100, 1000))
    b = rng.normal(size=1000)
    assert W.size % optim._BLOCK != 0 and W.size + b.size > 10 * optim._BLOCK
    ref_W, ref_b = W.copy(), b.copy()
    mW, vW, mb, vb = (np.zeros_like(a) for a in (W, W, b, b))
    opt = AdamW({"W": W, "b": b}, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for t in range(1, 4):
        gW, gb = rng.normal(size=W.shape), rng.normal(size=b.shape)
        opt.step({"W": gW, "b": gb})
        ref_W *= 1 - 0.01 * 0.1
        for ref, m, v, g in ((ref_W, mW, vW, gW), (ref_b, mb, vb, gb)):
            m[...] = 0.9 * m + 0.1 * g
            v[...] = 0.95 * v + 0.05 * g * g
            ref -= 0.01 / (1 - 0.9**t) * m / (np.sqrt(v) / np.sqrt(1 - 0.95**t) + 1e-8)
    np.testing.assert_allclose(W, ref_W, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b, ref_b, rtol=1e-12, atol=1e-14)
