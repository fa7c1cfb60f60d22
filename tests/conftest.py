"""Fixtures shared by the test folders."""

import pytest


def _make_tiny_checkpoint(path, texts, vocab_size, *, ctx, seed=0):
    """Save a 2-layer, d=32 model with a BPE tokenizer trained on `texts` into `path`.

    The weights are redrawn larger than the usual init so that sampling has real preferences to
    show (a freshly initialised model is nearly uniform).
    """
    import numpy as np

    from lm.checkpoint import save
    from lm.config import ModelConfig
    from lm.model import Transformer
    from lm.tokenizer import BPETokenizer

    tok = BPETokenizer().train(texts, vocab_size)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=2, ffn_hidden=64, max_seq_len=ctx)
    model = Transformer(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        if p.ndim == 2:
            p[...] = rng.normal(0.0, 0.8 / np.sqrt(p.shape[0]), size=p.shape)
    return save(path, model, tok)


@pytest.fixture(scope="session")
def make_tiny_checkpoint():
    """`make_tiny_checkpoint(path, texts, vocab_size, ctx=..., seed=0) -> path` (see above)."""
    return _make_tiny_checkpoint


@pytest.fixture
def tmux(tmp_path):
    """A private tmux server for this test (tests/tmux_session.py), killed afterwards."""
    from tmux_session import Tmux

    server = Tmux(tmp_path)
    yield server
    server("kill-server")
