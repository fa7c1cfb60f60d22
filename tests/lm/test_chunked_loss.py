"""The training loss works through the logits a few rows (and vocabulary rows) at a time
(`OutputHead.loss`); with chunks smaller than the batch it must give what the whole-batch path
gives: `forward`, `cross_entropy_forward`/`_backward` and `backward`, each gradient-checked in
test_gradcheck_layers.py."""

import numpy as np
import pytest

from lm.config import ModelConfig
from lm.layers import OutputHead
from lm.loss import cross_entropy_backward, cross_entropy_forward
from lm.model import Transformer


def _whole_batch(model, ids, targets, loss_scale, ignore_index):
    """loss and gradients with the full (B, T, V) logits, from the separately tested pieces."""
    logits, caches = model._forward(ids)
    loss, cache = cross_entropy_forward(logits, targets, ignore_index, inplace=True)
    dx = model.head.backward(cross_entropy_backward(loss_scale, cache), caches[-1])
    model._trunk_backward(dx, caches[:-1])
    return loss


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("rows,cols", [(5, 7), (3, 50), (64, 13)])
@pytest.mark.parametrize("ignore_index", [-100, None])
def test_chunked_loss_equals_whole_batch(monkeypatch, tied, rows, cols, ignore_index):
    monkeypatch.setattr(OutputHead, "LOSS_ROWS", rows)
    monkeypatch.setattr(OutputHead, "GRAD_COLS", cols)
    cfg = ModelConfig(vocab_size=50, d_model=16, n_layers=2, n_heads=4, ffn_hidden=32, max_seq_len=16,
                      tie_embeddings=tied, n_kv_heads=2)
    model = Transformer(cfg, seed=1, dtype=np.float64)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (3, 11))
    targets = rng.integers(0, 50, (3, 11))
    if ignore_index is not None:
        targets[0, 2] = targets[2, :5] = ignore_index
    start = rng.normal(size=model.flat_grads.shape)  # accumulate onto something non-zero
    model.flat_grads[...] = start
    loss, _ = model.loss_and_grads(ids, targets, accumulate=True, loss_scale=0.7, ignore_index=ignore_index)
    chunked = model.flat_grads.copy()
    model.flat_grads[...] = start
    expected = _whole_batch(model, ids, targets, 0.7, ignore_index)
    assert loss == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(chunked, model.flat_grads, rtol=1e-12, atol=1e-14)
    assert model.loss(ids, targets, ignore_index=ignore_index) == pytest.approx(expected, rel=1e-13)


def test_all_targets_ignored_gives_zero_loss_and_no_gradient(monkeypatch):
    monkeypatch.setattr(OutputHead, "LOSS_ROWS", 4)
    cfg = ModelConfig(vocab_size=30, d_model=8, n_layers=1, n_heads=2, ffn_hidden=16, max_seq_len=8, tie_embeddings=True)
    model = Transformer(cfg, seed=0, dtype=np.float64)
    ids = np.arange(12).reshape(2, 6)
    loss, grads = model.loss_and_grads(ids, np.full((2, 6), -100))
    assert loss == 0.0 and not np.any(model.flat_grads)
