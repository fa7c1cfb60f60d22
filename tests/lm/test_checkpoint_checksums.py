"""Issue 19: every checkpoint file is checked against the SHA-256 saved with it, so a damaged
file (a flipped mantissa byte still parses, as a slightly different weight) is refused instead
of being loaded or resumed silently."""

from __future__ import annotations

import json

import pytest

from lm import checkpoint
from lm.checkpoint import CHECKSUM_FILE, MODEL_FILE, TOKENIZER_FILE, CheckpointError

TEXTS = ["the cat sat on the mat. " * 20, "a dog ran in the park. " * 20]


@pytest.fixture
def saved(tmp_path, make_tiny_checkpoint):
    return make_tiny_checkpoint(tmp_path / "ckpt", TEXTS, 300, ctx=16)


def test_every_file_has_a_checksum(saved):
    sums = json.loads((saved / CHECKSUM_FILE).read_text())["sha256"]
    assert set(sums) == {p.name for p in saved.iterdir()} - {CHECKSUM_FILE}
    checkpoint.load(saved)  # an intact checkpoint loads


def test_a_flipped_mantissa_byte_is_refused(saved):
    data = bytearray((saved / MODEL_FILE).read_bytes())
    data[-2] ^= 0x01  # the low mantissa byte of the last float32: still a valid, finite number
    (saved / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors does not match its checksum"):
        checkpoint.load(saved)


def test_a_changed_tokenizer_is_refused_and_a_checkpoint_without_checksums_loads(saved):
    tokenizer = saved / TOKENIZER_FILE
    tokenizer.write_text(tokenizer.read_text().replace("\n", "\n ", 1))
    with pytest.raises(CheckpointError, match="tokenizer.json does not match its checksum"):
        checkpoint.load(saved)
    (saved / CHECKSUM_FILE).unlink()  # written before checksums existed: loads unchecked
    checkpoint.load(saved)


def test_resuming_a_run_with_a_flipped_byte_is_refused(tmp_path):
    import io

    import numpy as np

    from lm.train import train

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    words = "the quick brown fox jumps over the lazy dog and packs five dozen jugs".split()
    for i in range(4):
        (corpus / f"f{i}.txt").write_text(" ".join(rng.choice(words, size=300)) + "\n")
    run = tmp_path / "run"
    train(corpus, run, steps=2, batch_size=2, seq_len=8, d_model=16, n_layers=1, n_heads=2,
          vocab_size=280, stream=io.StringIO())
    weights = run / "checkpoint" / MODEL_FILE
    data = bytearray(weights.read_bytes())
    data[-2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        train(resume=run, steps=4, stream=io.StringIO())
