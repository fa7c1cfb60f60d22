"""`tiss train --init MODEL`: fine-tuning a pretrained model (GGUF, HF directory, checkpoint, name).

The tiny pretrained models are the committed fixtures of `tests/lm/fixtures/pretrained/` (made by
transformers and gguf, see make_pretrained_fixtures.py): a ChatML-templated byte-level BPE of 320
tokens, 2 layers, grouped-query attention.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

import lm
from lm import checkpoint as ckpt
from lm.data import open_token_files, sample_batch
from lm.errors import LMError
from lm.train import train
from runtime.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "pretrained"
GGUF = FIXTURES / "llama_tied.f32.gguf"
GGUF_Q8 = FIXTURES / "mistral_untied.q8_0.gguf"
HF_DIR = FIXTURES / "hf_llama_tied"
TEXT = "The quick brown fox jumps over the lazy dog, and the dog sleeps on. " * 40
SMALL = dict(batch_size=2, seq_len=32, eval_every=2, lr=1e-3, threads=1)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _params(path):
    model, _ = lm.load(path)
    return {k: v.copy() for k, v in model.params.items()}


def _ctrl_c_at(at):
    def callback(step, record):
        if step == at:
            os.kill(os.getpid(), signal.SIGINT)

    return callback


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("source", [GGUF, HF_DIR], ids=["gguf", "hf"])
def test_init_starts_from_the_model_and_resumes_bit_exact(tmp_path, corpus, source):
    model, tok = lm.load(source)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C after step 2 of 4: checkpoint saved, then resumed
        train(corpus, run, init=str(source), steps=4, callback=_ctrl_c_at(2), stream=open("/dev/null", "w"), **SMALL)
    assert json.loads((run / "checkpoint" / ckpt.TRAINER_STATE_FILE).read_text())["step"] == 2
    # The first step's loss is the pretrained model's own loss on the first batch drawn.
    data = open_token_files(run / "data")
    assert data.train.tolist() + data.val.tolist() == tok.encode(TEXT) + [tok.eot_id]  # its tokenizer encoded it
    x, y = sample_batch(data.train, 2, 32, np.random.default_rng(0))
    assert _metrics(run)[0]["loss"] == pytest.approx(model.loss(x, y), abs=2e-6)
    # Architecture and tokenizer are the model's, and resume needs no --init.
    resumed, resumed_tok = lm.load(run)
    assert resumed.config == model.config
    assert resumed_tok.encode(TEXT[:200]) == tok.encode(TEXT[:200])
    assert resumed_tok.chat_template == tok.chat_template
    train(resume=run, steps=4, threads=1, stream=open("/dev/null", "w"))
    straight = tmp_path / "straight"
    train(corpus, straight, init=str(source), steps=4, stream=open("/dev/null", "w"), **SMALL)
    a, b = _params(run), _params(straight)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert any(not np.array_equal(a[n], model.params[n]) for n in a)  # it did train


def test_init_quantized_gguf_says_it_dequantizes(tmp_path, corpus, capsys):
    assert main(["train", "--init", str(GGUF_Q8), "--corpus", str(corpus), "--out", str(tmp_path / "r"),
                 "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "Q8_0 weights dequantized to float32 for training" in err
    model, _ = lm.load(tmp_path / "r")
    assert model.config.tie_embeddings is False and all(p.dtype == np.float32 for p in model.params.values())


def test_init_from_a_checkpoint_and_from_a_pulled_name(tmp_path, corpus, make_tiny_checkpoint, monkeypatch):
    base = make_tiny_checkpoint(tmp_path / "base", [TEXT], 300, ctx=32)
    train(corpus, tmp_path / "r1", init=str(base), steps=1, stream=open("/dev/null", "w"), **SMALL)
    assert lm.load(tmp_path / "r1")[0].config == lm.load(base)[0].config
    # A pulled model's name: lm.load resolves it through lm.models, so --init takes it too.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LMError, match="tiss models pull smollm2"):
        lm.load("smollm2")
    pulled = tmp_path / "cache" / "quantatissu" / "models" / "smollm2"
    pulled.mkdir(parents=True)
    shutil.copy(GGUF, pulled / "SmolLM2-135M-Instruct.Q4_1.gguf")
    (pulled / "quantatissu-model.json").write_text("{}")
    assert lm.load("smollm2")[0].config == lm.load(GGUF)[0].config
    train(corpus, tmp_path / "r2", init="smollm2", steps=1, stream=open("/dev/null", "w"), **SMALL)
    state = json.loads((tmp_path / "r2" / "checkpoint" / ckpt.TRAINER_STATE_FILE).read_text())
    assert state["settings"]["init"] == str((pulled / "SmolLM2-135M-Instruct.Q4_1.gguf").resolve())


@pytest.mark.parametrize("extra, message", [
    (["--d-model", "64"], "--init takes the architecture and tokenizer from the model; drop --d-model"),
    (["--vocab-size", "500"], "drop --vocab-size"),
    (["--seq-len", "65"], "--seq-len 65 is longer than the 64 tokens"),
])
def test_init_errors(tmp_path, corpus, capsys, extra, message):
    code = main(["train", "--init", str(GGUF), "--corpus", str(corpus), "--out", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_corpus_too_small_for_the_model_tokenizer(tmp_path, capsys):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a few words only", encoding="utf-8")
    code = main(["train", "--init", str(GGUF), "--corpus", str(tiny), "--out", str(tmp_path / "r"), "--seq-len", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "fewer than one window of --seq-len 32" in err


def test_resume_refuses_init_and_unknown_model(tmp_path, corpus, capsys):
    run = tmp_path / "r"
    train(corpus, run, init=str(GGUF), steps=1, stream=open("/dev/null", "w"), **SMALL)
    assert main(["train", "--resume", str(run), "--init", str(GGUF), "--steps", "2"]) == 2
    assert "continues from the run's own checkpoint; drop --init" in capsys.readouterr().err
    assert main(["train", "--init", str(tmp_path / "nope.gguf"), "--corpus", str(corpus), "--out", str(tmp_path / "q")]) == 2
    assert "--init " in capsys.readouterr().err
