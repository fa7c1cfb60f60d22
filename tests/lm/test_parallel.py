"""Data-parallel steps (`lm.parallel`) and the BLAS thread control under them (`lm.blas`)."""

import io
import json

import numpy as np
import pytest

from lm import blas
from lm.config import ModelConfig
from lm.errors import LMError
from lm.loss import IGNORE_INDEX
from lm.model import Transformer
from lm.optim import AdamW
from lm.parallel import DataParallel
from lm.train import TrainError, train
from runtime import cli

CFG = ModelConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=2, ffn_hidden=32, max_seq_len=12)


def _batch(batch=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, CFG.vocab_size, size=(batch, CFG.max_seq_len + 1))
    targets = ids[:, 1:].copy()
    targets[0, :9] = IGNORE_INDEX  # shards count different numbers of targets...
    targets[-1, :] = IGNORE_INDEX  # ...and one shard may count none at all
    return ids[:, :-1], targets


@pytest.mark.parametrize("workers", [2, 3, 5, 8])
@pytest.mark.parametrize("ignore_index", [IGNORE_INDEX, None])
def test_loss_and_grads_equal_the_whole_batch_in_float64(workers, ignore_index):
    model = Transformer(CFG, seed=1, dtype=np.float64)
    ids, targets = _batch()
    if ignore_index is None:
        targets = np.abs(targets) % CFG.vocab_size
    loss, _ = model.loss_and_grads(ids, targets, ignore_index=ignore_index)
    expected = model.flat_grads.copy()
    with DataParallel(model, workers) as dp:
        got, grads = dp.loss_and_grads(ids, targets, ignore_index=ignore_index)
        assert grads is model.grads
        assert got == pytest.approx(loss, rel=1e-13)
        np.testing.assert_allclose(model.flat_grads, expected, rtol=1e-11, atol=1e-15)
        assert dp.loss(ids, targets, ignore_index=ignore_index) == pytest.approx(
            model.loss(ids, targets, ignore_index=ignore_index), rel=1e-13)


def test_accumulation_and_loss_scale_match_the_model():
    model = Transformer(CFG, seed=2, dtype=np.float64)
    a, b = _batch(seed=3), _batch(seed=4)
    model.loss_and_grads(*a, loss_scale=0.5)
    model.loss_and_grads(*b, accumulate=True, loss_scale=0.5)
    expected = model.flat_grads.copy()
    with DataParallel(model, 2) as dp:
        dp.loss_and_grads(*a, loss_scale=0.5)
        dp.loss_and_grads(*b, accumulate=True, loss_scale=0.5)
    np.testing.assert_allclose(model.flat_grads, expected, rtol=1e-11, atol=1e-15)


def test_float32_agrees_to_rounding_and_repeats_bit_for_bit():
    model = Transformer(CFG, seed=0)
    ids, targets = _batch(batch=8)
    loss, _ = model.loss_and_grads(ids, targets)
    expected = model.flat_grads.copy()
    with DataParallel(model, 2) as dp:
        first, _ = dp.loss_and_grads(ids, targets)
        grads_first = model.flat_grads.copy()
        second, _ = dp.loss_and_grads(ids, targets)
    assert first == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(grads_first, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert first == second
    np.testing.assert_array_equal(model.flat_grads, grads_first)


def test_one_worker_is_exactly_the_model():
    model = Transformer(CFG, seed=0)
    ids, targets = _batch()
    loss, _ = model.loss_and_grads(ids, targets)
    expected = model.flat_grads.copy()
    with DataParallel(model, 1) as dp:
        got, _ = dp.loss_and_grads(ids, targets)
    assert got == loss
    np.testing.assert_array_equal(model.flat_grads, expected)


def test_a_replica_shares_parameters_but_not_gradients():
    model = Transformer(CFG, seed=0)
    twin = model.replica()
    assert twin.flat_params is model.flat_params and twin.params is model.params
    assert twin.flat_grads is not model.flat_grads
    opt = AdamW(model.params, lr=0.1)
    ids, targets = _batch()
    model.loss_and_grads(ids, targets)
    opt.step(model.grads)
    np.testing.assert_array_equal(twin.forward(ids), model.forward(ids))  # the step is the twin's too
    assert not twin.flat_grads.any()


def test_blas_runs_on_one_thread_per_worker_and_is_restored(monkeypatch):
    if not blas.available():
        pytest.skip("this NumPy's BLAS thread count cannot be controlled")
    seen = []
    original = Transformer.loss_and_grads

    def spy(self, *args, **kwargs):
        seen.append(blas.threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Transformer, "loss_and_grads", spy)
    before = blas.threads()
    with DataParallel(Transformer(CFG, seed=0), 2) as dp:
        dp.loss_and_grads(*_batch())
        assert seen == [1, 1]
        dp.loss_and_grads(*_batch(batch=1))  # one sequence: the model alone, on both threads
        assert seen[2] == min(2, before)
    with DataParallel(Transformer(CFG, seed=0), 1) as dp:
        dp.loss_and_grads(*_batch())  # one worker: one CPU in all
        assert seen[3] == 1
    assert blas.threads() == before


def test_blas_limit_restores_the_count_after_an_error():
    before = blas.threads()
    with pytest.raises(RuntimeError):
        with blas.limit(1):
            if blas.available():
                assert blas.threads() == 1
            raise RuntimeError("boom")
    assert blas.threads() == before


def test_an_error_in_a_worker_reaches_the_caller_after_every_worker_stopped(monkeypatch):
    model = Transformer(CFG, seed=0)
    with DataParallel(model, 2) as dp:
        dp.loss_and_grads(*_batch())  # builds the replica
        replica = dp._replicas[1]

        def broken(*args, **kwargs):
            raise MemoryError("Unable to allocate 3 GiB")

        monkeypatch.setattr(replica, "loss_and_grads", broken)
        before = blas.threads()
        with pytest.raises(MemoryError, match="3 GiB"):
            dp.loss_and_grads(*_batch())
        assert blas.threads() == before


def test_the_callers_errstate_applies_in_the_workers(monkeypatch):
    import threading

    def overflow_off_the_main_thread(self, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            np.multiply(np.float32(1e30), np.float32(1e30))  # "overflow", as the caller's errstate says
        return 0.0

    monkeypatch.setattr(Transformer, "loss", overflow_off_the_main_thread)
    with DataParallel(Transformer(CFG, seed=0), 2) as dp, np.errstate(over="raise"):
        with pytest.raises(FloatingPointError, match="overflow"):
            dp.loss(*_batch())


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(workers):
    with pytest.raises(LMError, match="workers must be a positive integer"):
        DataParallel(Transformer(CFG), workers)


def test_train_with_one_and_two_threads(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    for i in range(4):
        (corpus / f"f{i}.txt").write_text(" ".join(rng.choice(words, size=400)), encoding="utf-8")
    tiny = dict(steps=6, batch_size=4, seq_len=16, d_model=16, n_layers=1, n_heads=2, vocab_size=280,
                eval_every=3, lr=1e-2, warmup=1)
    out = io.StringIO()
    one = train(corpus, tmp_path / "one", threads=1, stream=io.StringIO(), **tiny)
    two = train(corpus, tmp_path / "two", threads=2, stream=out, **tiny)
    assert "stepping on 2 worker threads" in out.getvalue()
    assert one.loss == pytest.approx(two.loss, rel=1e-4)  # the same model up to float32 rounding
    args = [f"--{k.replace('_', '-')}={v}" for k, v in tiny.items()]
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "cli"), "--threads", "1", *args]) == 0
    assert "stepping on 1 worker thread (--threads)" in capsys.readouterr().err
    last = [json.loads(line) for line in (tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()][-2]
    assert last["loss"] == pytest.approx(one.loss, abs=1e-6)  # --threads 1 is threads=1
    with pytest.raises(TrainError, match="--threads must be a positive integer"):
        train(corpus, tmp_path / "zero", threads=0, stream=io.StringIO(), **tiny)


def test_data_parallel_gradients_pass_a_finite_difference_check():
    from lm.gradcheck import gradcheck

    cfg = ModelConfig(vocab_size=11, d_model=8, n_layers=2, n_heads=2, ffn_hidden=12, max_seq_len=5)
    model = Transformer(cfg, seed=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 11, (3, 5)), rng.integers(0, 11, (3, 5))
    targets[0, :3] = IGNORE_INDEX  # the shards' weights differ
    with DataParallel(model, 2) as dp:
        dp.loss_and_grads(ids, targets)
        analytic = {k: v.copy() for k, v in model.grads.items()}
        result = gradcheck(lambda: dp.loss(ids, targets), model.params, analytic)
    assert result.ok, str(result)


def test_default_workers_one_per_cpu_at_most_eight_and_one_without_blas_control(monkeypatch):
    import lm.parallel as parallel

    monkeypatch.setattr(parallel.blas, "available", lambda: True)
    for cpus, expected in ((1, 1), (2, 2), (8, 8), (64, 8)):
        monkeypatch.setattr(parallel, "available_cpus", lambda cpus=cpus: cpus)
        assert parallel.default_workers() == expected
        assert DataParallel(Transformer(CFG)).workers == expected
    monkeypatch.setattr(parallel.blas, "available", lambda: False)
    assert parallel.default_workers() == 1
