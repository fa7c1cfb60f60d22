"""The default model shipped in `lm/default_model/`: small enough, loadable with `lm.load()`,
actually trained, and usable with no flags by `tiss generate`, the local backend and the example."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import lm
from lm.checkpoint import DEFAULT_MODEL_DIR
from runtime import cli
from runtime.backends import GenerationSettings
from runtime.backends.local import LocalBackend

ROOT = Path(__file__).resolve().parents[2]


def test_checkpoint_is_complete_and_at_most_20_mb():
    files = sorted(p.name for p in DEFAULT_MODEL_DIR.iterdir() if not p.name.startswith("."))
    assert files == ["config.json", "model.safetensors", "tokenizer.json"]  # no optimizer state
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert size <= 20 * 1024 * 1024, f"{size / 2**20:.1f} MiB"


@pytest.fixture(scope="module")
def default():
    return lm.load()


def test_load_without_a_path_is_the_default_model(default):
    model, tok = default
    assert model.config.vocab_size >= tok.vocab_size
    assert tok.eot_id is not None


def test_default_model_is_trained(default):
    # Code it never saw (our own sampling module) must be far more predictable than the
    # uniform log(V) nats/token a random model scores.
    model, tok = default
    ids = tok.encode((ROOT / "lm" / "sampling.py").read_text(encoding="utf-8"))
    T = model.config.max_seq_len
    ids = np.array(ids[: 4 * T + 1])
    x = ids[:-1].reshape(-1, T)
    y = ids[1:].reshape(-1, T)
    loss = model.loss(x, y)
    uniform = math.log(model.config.vocab_size)
    assert loss < 0.6 * uniform, f"loss {loss:.3f} nats/token vs uniform {uniform:.3f}"


def test_tiss_generate_with_no_flags(capsys):
    assert cli.main(["generate", "--prompt", "def main(", "--max-new-tokens", "16", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and len(out) > 1


def test_local_backend_defaults_to_it():
    backend = LocalBackend()
    completion = backend.generate("import ", GenerationSettings(max_tokens=8, seed=1))
    assert completion.completion_tokens >= 1 and completion.prompt_tokens == backend.count_tokens("import ")


def test_example_runs_on_the_default_model(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TISS_MODEL", raising=False)
    code = cli.main(["run", str(ROOT / "examples" / "local_model.tiss"), "--workspace", str(tmp_path),
                     "--model", str(DEFAULT_MODEL_DIR)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert (tmp_path / "completion.py").exists()
