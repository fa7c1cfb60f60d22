"""The cases the PyTorch reference fixtures hold, where they live, and how they are compared.

Shared by `fixtures/make_torch_reference.py` (which computes the fixtures with torch) and the
tests that read them, so both sides agree on every setting. NumPy only: it imports neither torch
nor `lm`.

A model case is a tiny configuration (the fixture stays tens of KB) with its seeds and training
settings. Adding a case (say another attention layout) is one more `ModelCase` here and a rerun
of the script; `requires` names the `lm.ModelConfig` fields the case needs, and the tests skip a
case, saying why, while `lm` lacks one of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
SCRIPT = "tests/lm/fixtures/make_torch_reference.py"

# (rtol, atol) per quantity. Both sides compute in float64; what differs is summation order
# (BLAS, softmax, reductions), a few ulps per operation: relative differences of 1e-13 or less
# where these were set. The bounds leave room for another BLAS, and AdamW carries differences
# from step to step; an error in the math shows as 1e-6 or more.
TOLERANCES = {
    "logits": (1e-10, 1e-12),
    "loss": (1e-12, 0.0),
    "grad": (1e-9, 1e-13),
    "lr": (1e-14, 0.0),
    "train.loss": (1e-11, 0.0),
    "train.param": (1e-10, 1e-13),
    "adamw": (1e-12, 1e-14),
}


@dataclass(frozen=True)
class ModelCase:
    """One configuration checked end to end: a forward/backward pass and a training run."""

    name: str
    config: dict  # ModelConfig fields
    requires: tuple[str, ...] = ()  # ModelConfig fields beyond the original nine
    param_seed: int = 0
    data_seed: int = 1
    batch: int = 2
    seq_len: int = 8
    steps: int = 30
    warmup: int = 3
    max_lr: float = 3e-3
    min_lr: float = 3e-4
    clip: float = 0.5  # small, so clipping really happens
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8

    @property
    def path(self) -> Path:
        return FIXTURES / f"torch_{self.name}.npz"

    def settings(self) -> dict:
        """Everything the fixture depends on, saved inside it and compared on load."""
        return {
            "config": self.config, "param_seed": self.param_seed, "data_seed": self.data_seed,
            "batch": self.batch, "seq_len": self.seq_len, "steps": self.steps, "warmup": self.warmup,
            "max_lr": self.max_lr, "min_lr": self.min_lr, "clip": self.clip,
            "weight_decay": self.weight_decay, "betas": list(self.betas), "eps": self.eps,
        }


_TINY = dict(vocab_size=16, d_model=8, n_layers=2, n_heads=2, ffn_hidden=16, max_seq_len=12,
             rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False)

MODEL_CASES = (
    ModelCase("mha", dict(_TINY)),
    # Grouped-query attention: 4 query heads share 2 key/value heads, and the head size (4) is
    # set apart from d_model / n_heads (2), so wq, wk, wv and wo all have shapes of their own.
    ModelCase("gqa", dict(_TINY, n_heads=4, n_kv_heads=2, head_dim=4), requires=("n_kv_heads", "head_dim")),
)

ADAMW_PATH = FIXTURES / "torch_adamw.npz"
ADAMW_SETTINGS = {"seed": 1, "steps": 5, "lr": 3e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}


def training_batches(case: ModelCase, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and targets, each (steps, batch, seq_len), for a case's training run.

    The target of a token is a fixed permutation of it, a rule the model can learn within the
    run, so the loss falls and the trajectory shows the optimiser really moving the weights
    (random targets would leave it at the noise floor).
    """
    V = case.config["vocab_size"]
    ids = rng.integers(0, V, size=(case.steps, case.batch, case.seq_len))
    return ids, (5 * ids + 3) % V


def save(path: Path, arrays: dict[str, np.ndarray], settings: dict, meta: dict) -> None:
    """Write a fixture: the arrays, plus the settings and provenance as JSON strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, settings=np.array(json.dumps(settings, sort_keys=True)),
                        meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)


def load(path: Path, settings: dict) -> dict[str, np.ndarray]:
    """A fixture's arrays; fails, naming the script, when it is missing or was made for other
    settings than the case now asks for."""
    if not path.exists():
        raise AssertionError(f"{path} is missing; make it with `python {SCRIPT}` (needs torch)")
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    saved = json.loads(str(data.pop("settings")))
    if saved != json.loads(json.dumps(settings, sort_keys=True)):
        raise AssertionError(
            f"{path} was made for other settings ({saved}) than the case now has ({settings}); "
            f"regenerate it with `python {SCRIPT}`"
        )
    data.pop("meta")
    return data


def flatten(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One float64 vector of all `arrays` in their order, and the layout that splits it again.

    A fixture stores each set of parameters or gradients as one array: an npz entry costs some
    hundred bytes of headers, which on a model this small would be a third of the file.
    """
    layout = json.dumps([[name, list(a.shape)] for name, a in arrays.items()])
    return np.concatenate([np.ravel(a) for a in arrays.values()]).astype(np.float64), np.array(layout)


def unflatten(flat: np.ndarray, layout) -> dict[str, np.ndarray]:
    """The named arrays `flatten` packed, in their order."""
    out, offset = {}, 0
    for name, shape in json.loads(str(layout)):
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    if offset != flat.size:
        raise AssertionError(f"the fixture's layout covers {offset} values, its array holds {flat.size}")
    return out


def assert_close(what: str, actual, expected, *, rtol: float, atol: float) -> None:
    """Fail unless |actual - expected| <= atol + rtol * |expected| everywhere, printing the
    largest absolute and relative differences and the worst element."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape}, the reference has {e.shape}")
    if a.size == 0:
        return
    if not np.isfinite(a).all():
        raise AssertionError(f"{what}: {int((~np.isfinite(a)).sum())} values are NaN or infinite")
    diff = np.abs(a - e)
    excess = diff - (atol + rtol * np.abs(e))
    if excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), a.shape)
        rel = diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
        raise AssertionError(
            f"{what}: max abs diff {diff.max():.3e}, max rel diff {rel.max():.3e} "
            f"(rtol {rtol:g}, atol {atol:g}); {int((excess > 0).sum())} of {a.size} values out of "
            f"tolerance, worst at {tuple(int(i) for i in worst)}: {float(a[worst])!r} against {float(e[worst])!r}"
        )


def tol(kind: str) -> dict[str, float]:
    rtol, atol = TOLERANCES[kind]
    return {"rtol": rtol, "atol": atol}
