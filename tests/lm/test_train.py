"""The training loop and `tiss train`: end to end on a tiny corpus, stop and resume, errors."""

import io
import json
import os
import signal

import numpy as np
import pytest

from lm import checkpoint
from lm.data import DataError, eval_windows, sample_batch, split_files
from lm.errors import LMError
from lm.train import TrainError, train
from runtime import cli

TINY = dict(batch_size=4, seq_len=16, d_model=16, n_layers=2, n_heads=2, vocab_size=300, eval_every=5,
            lr=1e-2, warmup=2)

WORDS = ("the quick brown fox jumps over the lazy dog while seven wizards quietly box "
         "jugs of liquor and pack my box with five dozen jugs").split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(10):
        sub = root / ("docs" if i % 2 else "notes")
        sub.mkdir(exist_ok=True)
        (sub / f"file{i}.txt").write_text(" ".join(rng.choice(WORDS, size=300)) + "\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("never read")
    (root / "image.bin").write_bytes(b"\x00\x01\x02binary")
    return root


def _params(run):
    model, _ = checkpoint.load(run)
    return model.params


def test_train_end_to_end(tmp_path, corpus):
    out = io.StringIO()
    result = train(corpus, tmp_path / "run", steps=20, save_every=10, stream=out, **TINY)
    assert result.step == 20
    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == ["checkpoint", "data", "metrics.jsonl", "tokenizer.json"]
    assert sorted(os.listdir(run / "checkpoint")) == [
        "checksums.json", "config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json",
        "trainer_state.json"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 21))
    assert [r["step"] for r in evals] == [5, 10, 15, 20]
    assert all(r["val_ppl"] == pytest.approx(np.exp(r["val_loss"]), rel=1e-3) for r in evals)
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.5  # it learns
    assert {"lr", "grad_norm", "tokens_per_s", "elapsed_s"} <= set(steps[0])
    text = out.getvalue()
    assert "step 20/20 | loss" in text and "tok/s" in text and "left" in text
    assert "validation loss" in text
    info = json.loads((run / "data" / "data.json").read_text())
    assert info["dtype"] == "uint16" and len(info["val_files"]) == 1 and len(info["train_files"]) == 9
    model, tok = checkpoint.load(run)
    assert model.config.max_seq_len == 16 and model.config.vocab_size == tok.vocab_size


def test_stop_and_resume_equals_uninterrupted(tmp_path, corpus):
    train(corpus, tmp_path / "full", steps=12, save_every=4, stream=io.StringIO(), **TINY)

    def hard_kill(step, record):  # dies after step 6: steps 5-6 are lost, the step-4 checkpoint stays
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(corpus, tmp_path / "killed", steps=12, save_every=4, stream=io.StringIO(), callback=hard_kill, **TINY)
    state = json.loads((tmp_path / "killed" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 4
    result = train(resume=tmp_path / "killed", stream=io.StringIO())
    assert result.step == 12
    full, resumed = _params(tmp_path / "full"), _params(tmp_path / "killed")
    for name in full:
        np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)
    def history(run):
        keep = ("step", "loss", "lr", "grad_norm", "val_loss", "val_ppl")  # timings differ, of course
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k in keep} for line in lines]

    assert history(tmp_path / "killed") == history(tmp_path / "full")  # lost steps 5-6 logged once


def test_ctrl_c_saves_then_resume_continues_to_more_steps(tmp_path, corpus):
    def press_ctrl_c(step, record):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the handler defers it to the end of the step

    with pytest.raises(KeyboardInterrupt):
        train(corpus, tmp_path / "run", steps=8, save_every=100, stream=io.StringIO(), callback=press_ctrl_c, **TINY)
    assert json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())["step"] == 3
    result = train(resume=tmp_path / "run", steps=10, stream=io.StringIO())
    assert result.step == 10
    # Resuming a run that is complete (as after a kill once its final checkpoint was saved)
    # says so and succeeds; asking for fewer steps than are done is still an error.
    said = io.StringIO()
    assert train(resume=tmp_path / "run", stream=said).step == 10
    assert "is already complete: 10 of 10 steps" in said.getvalue()
    with pytest.raises(TrainError, match="already completed 10 steps"):
        train(resume=tmp_path / "run", steps=5, stream=io.StringIO())


def test_gradient_accumulation_runs(tmp_path, corpus):
    result = train(corpus, tmp_path / "run", steps=3, grad_accum=2, stream=io.StringIO(), **TINY)
    assert result.step == 3 and np.isfinite(result.loss)


def test_tiss_train_cli_end_to_end_and_resume(tmp_path, corpus, capsys):
    run = tmp_path / "run"
    args = ["train", "--corpus", str(corpus), "--out", str(run), "--steps", "6", "--batch-size", "2",
            "--seq-len", "8", "--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--vocab-size", "280",
            "--eval-every", "3", "--save-every", "3", "--lr", "0.003", "--warmup", "2", "--seed", "1"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "step 6/6" in err and "done: 6 steps" in err
    assert cli.main(["train", "--resume", str(run), "--steps", "8"]) == 0
    assert "resuming" in capsys.readouterr().err
    model, _ = checkpoint.load(run)
    assert model.config.n_layers == 1
    # a model option that disagrees with the run is refused, with what to do
    assert cli.main(["train", "--resume", str(run), "--steps", "9", "--d-model", "32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiss: error: --d-model 32 is incompatible with the checkpoint")
    # the same --out twice would clobber a run
    assert cli.main(args) == 2
    assert "already holds a training run" in capsys.readouterr().err


def test_tiss_train_with_an_existing_tokenizer(tmp_path, corpus, capsys):
    from lm.tokenizer import BPETokenizer

    tok_file = BPETokenizer().train([(corpus / "notes" / "file0.txt").read_text()], 270).save(tmp_path / "tok.json")
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--tokenizer", str(tok_file),
                     "--steps", "2", "--batch-size", "2", "--seq-len", "8", "--d-model", "16", "--n-layers", "1",
                     "--n-heads", "2"]) == 0
    _, tok = checkpoint.load(tmp_path / "run")
    assert tok.vocab_size == BPETokenizer.load(tok_file).vocab_size


@pytest.mark.parametrize(
    "setup, options, message",
    [
        (lambda p: None, {}, "does not exist"),
        (lambda p: p.mkdir(), {}, "contains no UTF-8 text files"),
        (lambda p: (p.mkdir(), (p / "a.txt").write_text("too short")), {"seq_len": 64}, "fewer than one window"),
    ],
)
def test_corpus_errors_are_clear(tmp_path, setup, options, message):
    corpus = tmp_path / "corpus"
    setup(corpus)
    with pytest.raises(LMError, match=message):
        train(corpus, tmp_path / "run", steps=2, stream=io.StringIO(), **{**TINY, **options})


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert cli.main(["train", "--corpus", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiss: error: corpus") and "Traceback" not in err
    assert cli.main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_resume_of_an_inference_checkpoint_is_refused(tmp_path, corpus):
    from lm.config import ModelConfig
    from lm.model import Transformer
    from lm.tokenizer import BPETokenizer

    tok = BPETokenizer().train(["abc abc"], 260)
    checkpoint.save(tmp_path / "run" / "checkpoint", Transformer(ModelConfig(260, 8, 1, 2, 8, 8)), tok)
    with pytest.raises(LMError, match="cannot resume"):
        train(resume=tmp_path / "run", stream=io.StringIO())


def test_split_is_by_file_and_deterministic(tmp_path):
    files = [tmp_path / f"{i}.txt" for i in range(25)]
    train_files, val_files = split_files(files)
    assert len(val_files) == 2 and not set(train_files) & set(val_files)
    assert split_files(files) == (train_files, val_files)


def test_batches_are_seeded_windows():
    tokens = np.arange(100, dtype=np.uint16)
    x1, y1 = sample_batch(tokens, 3, 10, np.random.default_rng(5))
    x2, _ = sample_batch(tokens, 3, 10, np.random.default_rng(5))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, x1 + 1)  # targets are the next tokens
    assert x1.dtype == np.int64 and x1.shape == (3, 10) and x1.max() < 99
    vx, vy = eval_windows(tokens[:20], 10, 8)
    assert vx.shape == (1, 10)
    with pytest.raises(DataError):
        from lm.data import check_windows

        check_windows(tokens[:5], 10, "training")


def test_bad_model_shape_fails_before_any_work(tmp_path, corpus):
    with pytest.raises(LMError, match="not divisible by n_heads"):
        train(corpus, tmp_path / "run", steps=2, stream=io.StringIO(), **{**TINY, "d_model": 30, "n_heads": 4})
    assert not (tmp_path / "run").exists()


def test_full_disk_during_a_checkpoint_is_a_clear_error(tmp_path, corpus, capsys, monkeypatch):
    import errno

    import safetensors.numpy

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", no_space)
    args = ["train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2",
            "--seq-len", "8", "--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--vocab-size", "270"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "tiss: error: no space left on the device while writing checkpoint" in err
    assert "Traceback" not in err
    assert not [p for p in os.listdir(tmp_path / "run") if p.startswith(".checkpoint")]  # no half-written dirs


def test_skipped_and_build_files_are_reported_or_left_out(tmp_path, corpus):
    """Binary files are named on the progress stream, never trained on; build/ output is not corpus."""
    (corpus / "build").mkdir(exist_ok=True)
    (corpus / "build" / "leak.txt").write_text("held-out text a corpus build wrote here\n", encoding="utf-8")
    try:
        stream = io.StringIO()
        train(corpus, tmp_path / "run", steps=1, stream=stream, **TINY)
    finally:
        (corpus / "build" / "leak.txt").unlink()
        (corpus / "build").rmdir()
    assert f"skipped {corpus / 'image.bin'}: binary" in stream.getvalue()
    info = json.loads((tmp_path / "run" / "data" / "data.json").read_text())
    files = info["train_files"] + info["val_files"]
    assert len(files) == 10 and not any("build" in f or "image" in f or "hidden" in f for f in files)


@pytest.mark.parametrize("vocab_size", [100, 256, 2_000_000])
def test_vocab_size_out_of_range_fails_before_reading_the_corpus(tmp_path, vocab_size):
    with pytest.raises(TrainError, match="--vocab-size must be between 257"):
        train(tmp_path / "not-read-yet", tmp_path / "run", stream=io.StringIO(), **{**TINY, "vocab_size": vocab_size})
    assert not (tmp_path / "run").exists()


def test_out_or_resume_on_a_file_says_so(tmp_path, corpus, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub"):
        with pytest.raises(TrainError, match="a_file is a file; choose another --out"):
            train(corpus, out, steps=1, stream=io.StringIO(), **TINY)
    assert cli.main(["train", "--resume", str(a_file)]) == 2
    assert "is a file; pass the run directory" in capsys.readouterr().err


def test_damaged_run_directories_are_clear_errors(tmp_path, corpus):
    run = tmp_path / "run"
    train(corpus, run, steps=2, stream=io.StringIO(), **TINY)
    state_file = run / "checkpoint" / "trainer_state.json"
    good = state_file.read_text()
    # The edits below stand for states saved wrong, not damaged since: without checksums (as a
    # checkpoint from before them) each must still be a precise message.
    (run / "checkpoint" / "checksums.json").unlink()
    state_file.write_text(json.dumps({"format": "quantatissu-train", "version": 1, "step": 2}))
    with pytest.raises(TrainError, match="incomplete or corrupt.*start a new run"):
        train(resume=run, steps=3, stream=io.StringIO())
    state = json.loads(good)
    state["data_rng"] = {"bit_generator": "MT19937"}
    state_file.write_text(json.dumps(state))
    with pytest.raises(TrainError, match="data sampler state is corrupt"):
        train(resume=run, steps=3, stream=io.StringIO())
    # token files gone and the corpus moved away: say both, not "pass --corpus" (resume takes none)
    state = json.loads(good)
    state["settings"]["corpus"] = str(tmp_path / "moved")
    state_file.write_text(json.dumps(state))
    (run / "data" / "train.bin").unlink()
    with pytest.raises(TrainError, match="corpus .*moved is gone; put the corpus back"):
        train(resume=run, steps=3, stream=io.StringIO())


def test_ctrl_c_in_a_real_tiss_train_process_saves_and_resumes(tmp_path, corpus):
    """What a user does: start `tiss train`, press Ctrl-C, then `tiss train --resume`."""
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())",
           "train", "--corpus", str(corpus), "--out", str(run), "--steps", "100000", "--batch-size", "2",
           "--seq-len", "8", "--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--vocab-size", "270",
           "--save-every", "100000", "--eval-every", "100000"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().count("\n") >= 3:
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "checkpoint saved. Continue with `tiss train --resume" in err and "Traceback" not in err
    step = json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"]
    assert 3 <= step < 100000
    result = train(resume=run, steps=step + 2, stream=io.StringIO())
    assert result.step == step + 2


def test_resume_of_something_that_is_not_a_run_says_what_to_do(tmp_path, corpus):
    run = tmp_path / "run"
    train(corpus, run, steps=1, stream=io.StringIO(), **TINY)
    with pytest.raises(TrainError, match=f"is a checkpoint, not a run directory; .*--resume {run}`"):
        train(resume=run / "checkpoint", steps=2, stream=io.StringIO())
    stopped_early = tmp_path / "stopped"  # Ctrl-C while the tokenizer trained: nothing saved yet
    stopped_early.mkdir()
    with pytest.raises(TrainError, match="holds no checkpoint .* start a run with `tiss train --corpus PATH"):
        train(resume=stopped_early, steps=2, stream=io.StringIO())


def test_out_of_memory_is_a_message_with_what_to_lower(tmp_path, corpus, capsys, monkeypatch):
    import lm.train

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 768. GiB")

    monkeypatch.setattr(lm.train, "Transformer", no_memory)
    args = ["train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "2",
            "--seq-len", "8", "--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--vocab-size", "270"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tiss: error: out of memory (Unable to allocate 768. GiB); lower --batch-size")
    assert "Traceback" not in err


def test_a_diverging_run_stops_with_advice_and_no_numpy_warnings(tmp_path, corpus):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from NumPy would fail the test
        with pytest.raises(TrainError, match="training diverged. Lower --lr"):
            train(corpus, tmp_path / "run", steps=60, stream=io.StringIO(), **{**TINY, "lr": 1e3, "warmup": 0})


def test_resume_after_a_kill_in_the_middle_of_a_save(tmp_path, corpus):
    """A kill between the two renames leaves only `.checkpoint.old` and a half-written temporary."""
    run = tmp_path / "run"
    train(corpus, run, steps=2, stream=io.StringIO(), **TINY)
    os.rename(run / "checkpoint", run / ".checkpoint.old")
    half = run / ".checkpoint.tmp-killed"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)
    result = train(resume=run, steps=3, stream=io.StringIO())
    assert result.step == 3
    assert checkpoint.load(run)[0].config.n_layers == TINY["n_layers"]
    assert json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"] == 3
    assert not half.exists()  # the killed save's leftover is cleared
