"""Checkpoint directories: save → load round trips, atomic replacement, clear errors."""

import json
import os

import numpy as np
import pytest

from lm import checkpoint
from lm.checkpoint import CheckpointError, load, load_training_state, save
from lm.config import ModelConfig
from lm.model import Transformer
from lm.optim import AdamW
from lm.tokenizer import BPETokenizer

CFG = ModelConfig(vocab_size=300, d_model=16, n_layers=2, n_heads=2, ffn_hidden=24, max_seq_len=16)


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer().train(["the cat sat on the mat, the cat sat"] * 3, vocab_size=300)


@pytest.fixture
def model():
    return Transformer(CFG, seed=7)


def _ids(seed=0):
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, size=(2, 16))


def test_save_then_load_gives_equal_logits(tmp_path, model, tokenizer):
    save(tmp_path / "ck", model, tokenizer)
    assert sorted(os.listdir(tmp_path / "ck")) == ["checksums.json", "config.json", "model.safetensors", "tokenizer.json"]
    loaded, tok = load(tmp_path / "ck")
    assert loaded.config == CFG
    np.testing.assert_array_equal(loaded.forward(_ids()), model.forward(_ids()))
    assert tok.encode("the cat") == tokenizer.encode("the cat")
    assert json.loads((tmp_path / "ck" / "config.json").read_text()) == CFG.to_dict()


def test_tied_model_round_trip(tmp_path, tokenizer):
    cfg = ModelConfig(**{**CFG.to_dict(), "tie_embeddings": True})
    m = Transformer(cfg, seed=1)
    save(tmp_path / "ck", m, tokenizer)
    loaded, _ = load(tmp_path / "ck")
    np.testing.assert_array_equal(loaded.forward(_ids()), m.forward(_ids()))


def test_optimizer_and_trainer_state_round_trip(tmp_path, model, tokenizer):
    opt = AdamW(model.params, lr=1e-3)
    _, grads = model.loss_and_grads(_ids(1), _ids(2))
    opt.step(grads)
    save(tmp_path / "ck", model, tokenizer, optimizer=opt, trainer_state={"step": 1})
    loaded, _ = load(tmp_path / "ck")
    state = load_training_state(tmp_path / "ck", loaded)
    assert state.optimizer_step == 1 and state.trainer_state == {"step": 1}
    for k, v in opt.state_tensors().items():
        np.testing.assert_array_equal(state.optimizer_tensors[k], v)


def test_save_replaces_atomically_and_leaves_no_temporaries(tmp_path, model, tokenizer):
    save(tmp_path / "ck", model, tokenizer)
    model.params["norm"][...] = 2.0
    save(tmp_path / "ck", model, tokenizer)
    assert os.listdir(tmp_path) == ["ck"]
    loaded, _ = load(tmp_path / "ck")
    assert np.all(loaded.params["norm"] == 2.0)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, model, tokenizer, monkeypatch):
    save(tmp_path / "ck", model, tokenizer)
    before = model.forward(_ids())

    class Full:
        def save(self, path):
            raise OSError(28, "No space left on device")  # ENOSPC, as a full disk reports it

    model.params["norm"][...] = 5.0
    with pytest.raises(CheckpointError, match="no space left.*previous checkpoint"):
        save(tmp_path / "ck", model, Full())
    assert os.listdir(tmp_path) == ["ck"]
    loaded, _ = load(tmp_path / "ck")
    np.testing.assert_array_equal(loaded.forward(_ids()), before)


def test_crash_between_the_two_renames_is_recovered(tmp_path, model, tokenizer):
    save(tmp_path / "ck", model, tokenizer)
    os.rename(tmp_path / "ck", tmp_path / ".ck.old")  # as if killed right after moving it aside
    loaded, _ = load(tmp_path / "ck")
    np.testing.assert_array_equal(loaded.forward(_ids()), model.forward(_ids()))
    save(tmp_path / "ck", model, tokenizer)  # and the next save cleans up
    assert sorted(os.listdir(tmp_path)) == ["ck"]


def test_load_accepts_a_run_directory(tmp_path, model, tokenizer):
    save(tmp_path / "run" / checkpoint.RUN_CHECKPOINT, model, tokenizer)
    loaded, _ = load(tmp_path / "run")
    np.testing.assert_array_equal(loaded.forward(_ids()), model.forward(_ids()))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_missing_file_is_named(tmp_path, model, tokenizer):
    save(tmp_path / "ck", model, tokenizer)
    (tmp_path / "ck" / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="missing tokenizer.json"):
        load(tmp_path / "ck")


def test_truncated_weights(tmp_path, model, tokenizer):
    save(tmp_path / "ck", model, tokenizer)
    f = tmp_path / "ck" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load(tmp_path / "ck")


def test_corrupt_config(tmp_path, model, tokenizer):
    save(tmp_path / "ck", model, tokenizer)
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is unreadable or corrupt"):
        load(tmp_path / "ck")


def test_weights_from_an_incompatible_config(tmp_path, model, tokenizer):
    save(tmp_path / "ck", model, tokenizer)
    other = {**CFG.to_dict(), "d_model": 32, "ffn_hidden": 24}
    (tmp_path / "ck" / "config.json").write_text(json.dumps(other))
    with pytest.raises(CheckpointError, match=r"tok_emb has shape \(300, 16\) but the config needs \(300, 32\)"):
        load(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text(json.dumps({**CFG.to_dict(), "n_layers": 3}))
    with pytest.raises(CheckpointError, match=r"missing \['layers.2"):
        load(tmp_path / "ck")


def test_tokenizer_larger_than_the_model(tmp_path, tokenizer):
    n = tokenizer.vocab_size
    small = Transformer(ModelConfig(**{**CFG.to_dict(), "vocab_size": n - 1}))
    save(tmp_path / "ck", small, tokenizer)
    with pytest.raises(CheckpointError, match=f"tokenizer has {n} tokens but the model only {n - 1}"):
        load(tmp_path / "ck")


def test_non_finite_weights(tmp_path, model, tokenizer):
    model.params["layers.0.wq"][0, 0] = np.nan
    save(tmp_path / "ck", model, tokenizer)
    with pytest.raises(CheckpointError, match="NaN"):
        load(tmp_path / "ck")


def test_inference_only_checkpoint_cannot_resume(tmp_path, model, tokenizer):
    save(tmp_path / "ck", model, tokenizer)
    with pytest.raises(CheckpointError, match="cannot resume"):
        load_training_state(tmp_path / "ck", model)


def test_a_config_too_large_for_memory_is_a_clear_error(tmp_path, model, tokenizer, monkeypatch):
    path = save(tmp_path / "ckpt", model, tokenizer)

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 32.0 TiB")

    monkeypatch.setattr(checkpoint, "Transformer", no_memory)
    with pytest.raises(CheckpointError, match="config.json describes a model too large .*32.0 TiB"):
        load(path)


@pytest.mark.parametrize("text", ["[1, 2]", '{"vocab_size": 300}', "{not json"])
def test_bad_config_json_says_what_to_do(tmp_path, model, tokenizer, text):
    path = save(tmp_path / "ckpt", model, tokenizer)
    (path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="config.json.*restore it, or use another checkpoint"):
        load(path)
