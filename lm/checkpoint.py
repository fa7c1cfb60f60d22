"""Checkpoints: one directory per model, written atomically, validated when read.

A checkpoint directory holds `model.safetensors` (the parameters under their contracted names),
`config.json` (the `ModelConfig`), `tokenizer.json`, and, for resuming training,
`optimizer.safetensors` (AdamW moments `m.<name>`, `v.<name>`; step count in the metadata) and
`trainer_state.json`.

`checksums.json` holds the SHA-256 of every other file, written last; `load` and
`load_training_state` check each file they read against it, so a flipped byte in
`model.safetensors` (which would still parse, as a slightly different weight) is refused instead
of resumed silently. Checkpoints written before checksums existed have none and load unchecked.

`save` writes everything into a fresh hidden sibling directory, fsyncs it, then swaps it into
place with two renames (old aside, new in). A crash before the swap leaves the old checkpoint
untouched; a crash between the two renames leaves it as `.<name>.old`, which `load` and
`resolve` fall back to. So a kill at any moment leaves the last good checkpoint loadable.

A training run directory (as `tiss train --out DIR` makes) keeps its latest checkpoint in
`DIR/checkpoint`; `load(DIR)` accepts the run directory too.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lm.atomic import current_umask, fsync_directory
from lm.config import ConfigError, ModelConfig
from lm.errors import LMError
from lm.model import Transformer, param_shapes
from lm.models import sha256_of

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
CHECKSUM_FILE = "checksums.json"
RUN_CHECKPOINT = "checkpoint"  # the latest checkpoint inside a training run directory
# The model shipped in the package (see docs/model.md); `load()` with no path reads it.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


class CheckpointError(LMError):
    """A checkpoint that is missing, incomplete, corrupt or made for another configuration."""


@dataclass
class TrainingState:
    """What resuming needs beyond the model: optimiser moments and the trainer's own state."""

    optimizer_tensors: dict[str, np.ndarray]
    optimizer_step: int
    trainer_state: dict[str, Any]


def save(
    path,
    model: Transformer,
    tokenizer,
    *,
    optimizer=None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (and `tokenizer`, and optionally optimiser and trainer state) to `path`.

    `tokenizer` is anything with `save(path)` (a `BPETokenizer`). Replaces an existing checkpoint
    at `path` atomically. Returns the checkpoint path.
    """
    from safetensors.numpy import save_file

    target = Path(path)
    params = {name: np.ascontiguousarray(p, dtype=np.float32) for name, p in model.params.items()}

    def write(tmp: Path) -> None:
        save_file(params, str(tmp / MODEL_FILE), metadata={"format": "quantatissu-model"})
        _write_text(tmp / CONFIG_FILE, json.dumps(model.config.to_dict(), indent=2) + "\n")
        tokenizer.save(tmp / TOKENIZER_FILE)
        if optimizer is not None:
            tensors = {k: np.ascontiguousarray(v) for k, v in optimizer.state_tensors().items()}
            save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"step": str(optimizer.t)})
        if trainer_state is not None:
            _write_text(tmp / TRAINER_STATE_FILE, json.dumps(trainer_state, indent=2) + "\n")
        sums = {f.name: sha256_of(f) for f in sorted(tmp.iterdir())}
        _write_text(tmp / CHECKSUM_FILE, json.dumps({"sha256": sums}, indent=2) + "\n")
        # mkdtemp and mkstemp make owner-only entries; a checkpoint is shared like any output.
        umask = current_umask()
        os.chmod(tmp, 0o777 & ~umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
            _fsync_file(f)
        fsync_directory(tmp)

    _replace_directory(target, write)
    return target


def resolve(path) -> Path:
    """The checkpoint directory `path` names: itself, a run directory's `checkpoint`, or the
    `.<name>.old` copy a crash mid-swap left behind."""
    p = Path(path)
    if p.is_dir() and not (p / MODEL_FILE).exists():
        # a run directory: its latest checkpoint, or the copy a crash mid-swap left behind
        for candidate in (p / RUN_CHECKPOINT, p / f".{RUN_CHECKPOINT}.old"):
            if candidate.is_dir():
                return candidate
        return p  # `load` then names the files that are missing
    if not p.exists():
        old = p.parent / f".{p.name}.old"
        if old.is_dir():
            return old
        raise CheckpointError(f"no checkpoint at {path}: the directory does not exist")
    if not p.is_dir():
        raise CheckpointError(
            f"{path} is a file, not a checkpoint directory; supported: a checkpoint or run directory, "
            "a GGUF file or a Hugging Face model directory"
        )
    return p


def _load_pretrained(p: Path, dtype):
    """A GGUF file or a Hugging Face model directory through `lm.pretrained`, else None."""
    from lm import pretrained

    if p.is_file() and (p.suffix.lower() == ".gguf" or pretrained.is_gguf(p)):
        return pretrained.load_gguf(p, dtype)
    if p.is_dir() and pretrained.is_hf_directory(p):
        return pretrained.load_hf(p, dtype)
    return None


def load(path=None, dtype=np.float32):
    """Read a checkpoint directory (or a run directory) into `(model, tokenizer)`.

    With no `path`, the default model shipped in `lm/default_model/`. A GGUF file or a Hugging
    Face model directory of a Llama-family model loads through `lm.pretrained`; the name of a
    pulled model (`smollm2`, see `lm.models`) loads its file.

    Every defect is a `CheckpointError` naming the file and what to do: missing files, corrupt
    JSON or safetensors, parameters missing, unexpected or of the wrong shape, non-finite
    weights, or a tokenizer larger than the model's vocabulary.
    """
    from lm.tokenizer import BPETokenizer

    if path is None:
        if not (DEFAULT_MODEL_DIR / MODEL_FILE).is_file():
            raise CheckpointError(
                f"the default model is not installed ({DEFAULT_MODEL_DIR} has no {MODEL_FILE}); "
                "reinstall the package or pass a checkpoint directory made by `tiss train`"
            )
        path = DEFAULT_MODEL_DIR
    else:
        from lm.models import resolve_model

        path = resolve_model(path)  # a pulled model's name (`smollm2`) becomes its file
    pretrained = _load_pretrained(Path(path), dtype)
    if pretrained is not None:
        return pretrained
    ckpt = resolve(path)
    missing = [f for f in (CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE) if not (ckpt / f).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {ckpt} is incomplete: missing {', '.join(missing)}; "
            "point at a directory written by `tiss train` or `lm.save`"
        )
    config = read_config(ckpt)
    try:
        model = Transformer(config, dtype=dtype)
    except MemoryError as exc:
        raise CheckpointError(
            f"{ckpt / CONFIG_FILE} describes a model too large for this machine's memory ({exc}); "
            "is it the config.json of this checkpoint?"
        ) from None
    tensors = _read_safetensors(ckpt / MODEL_FILE)
    _copy_params(model, tensors, ckpt / MODEL_FILE)
    try:
        tokenizer = BPETokenizer.load(ckpt / TOKENIZER_FILE)
    except LMError as exc:
        raise CheckpointError(f"checkpoint {ckpt}: {exc}") from None
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"checkpoint {ckpt}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size}; the tokenizer.json belongs to another model"
        )
    # Last: a file that does not even parse gets the more precise message above.
    verify_checksums(ckpt, (CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE))
    return model, tokenizer


def load_training_state(path, model: Transformer) -> TrainingState:
    """Optimiser moments and trainer state of a checkpoint, checked against `model`."""
    ckpt = resolve(path)
    for f in (OPTIMIZER_FILE, TRAINER_STATE_FILE):
        if not (ckpt / f).is_file():
            raise CheckpointError(
                f"checkpoint {ckpt} has no {f}, so training cannot resume from it "
                "(it was saved for inference only); start a new run instead"
            )
    tensors = _read_safetensors(ckpt / OPTIMIZER_FILE)
    expected = {f"{k}.{n}": s for n, s in param_shapes(model.config).items() for k in ("m", "v")}
    _check_names_and_shapes(tensors, expected, ckpt / OPTIMIZER_FILE)
    from safetensors import safe_open

    try:
        with safe_open(str(ckpt / OPTIMIZER_FILE), framework="np") as f:
            step = int((f.metadata() or {})["step"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{ckpt / OPTIMIZER_FILE}: missing its step count; the file is corrupt") from None
    try:
        state = json.loads((ckpt / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{ckpt / TRAINER_STATE_FILE} is unreadable or corrupt: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt / TRAINER_STATE_FILE}: expected a JSON object")
    verify_checksums(ckpt, (OPTIMIZER_FILE, TRAINER_STATE_FILE))
    return TrainingState(tensors, step, state)


def verify_checksums(ckpt: Path, names) -> None:
    """Check `names` in `ckpt` against its checksums.json; a checkpoint without one (written
    before checksums existed) is not checked."""
    listing = ckpt / CHECKSUM_FILE
    if not listing.is_file():
        return
    try:
        sums = json.loads(listing.read_text(encoding="utf-8"))["sha256"]
        if not isinstance(sums, dict):
            raise TypeError("not an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{listing} is unreadable or corrupt ({exc}); the checkpoint cannot be "
                              "checked: restore it from a copy") from None
    for name in names:
        expected = sums.get(name)
        if expected is None:
            raise CheckpointError(f"{listing} lists no checksum for {name}; the checkpoint was altered "
                                  "after it was saved: restore it from a copy")
        if sha256_of(ckpt / name) != expected:
            raise CheckpointError(
                f"{ckpt / name} does not match its checksum in {CHECKSUM_FILE}: the file changed or was "
                "damaged after it was saved (a flipped byte would still load, as wrong weights); "
                "restore it from a copy, or resume from another checkpoint"
            )


def read_config(ckpt: Path) -> ModelConfig:
    try:
        data = json.loads((ckpt / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{ckpt / CONFIG_FILE} is unreadable or corrupt: {exc}; restore it, or use another checkpoint"
        ) from None
    try:
        return ModelConfig.from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"{ckpt / CONFIG_FILE}: {exc}; restore it, or use another checkpoint") from None


# -- helpers ----------------------------------------------------------------------------------


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises its own error types for truncated/garbled files
        raise CheckpointError(
            f"{file} is corrupt or truncated ({type(exc).__name__}: {exc}); restore it or retrain"
        ) from None


def _check_names_and_shapes(tensors: dict[str, np.ndarray], expected: dict[str, tuple], file: Path) -> None:
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{file} does not match its config.json: missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise CheckpointError(
                f"{file}: {name} has shape {tuple(tensors[name].shape)} but the config needs {tuple(shape)}; "
                "the checkpoint was saved from a different model configuration"
            )
        if not np.issubdtype(tensors[name].dtype, np.floating):
            raise CheckpointError(f"{file}: {name} has dtype {tensors[name].dtype}, expected float")


def _copy_params(model: Transformer, tensors: dict[str, np.ndarray], file: Path) -> None:
    expected = {n: p.shape for n, p in model.params.items()}
    _check_names_and_shapes(tensors, expected, file)
    for name, p in model.params.items():
        t = tensors[name]
        if not np.all(np.isfinite(t)):
            raise CheckpointError(f"{file}: {name} contains NaN or infinite values; the model diverged")
        p[...] = t


def _write_text(file: Path, text: str) -> None:
    with open(file, "w", encoding="utf-8") as f:
        f.write(text)


def _fsync_file(file: Path) -> None:
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_directory(target: Path, write) -> None:
    """Build a directory with `write(tmp)` and swap it in for `target`; clear errors on failure."""
    parent = target.parent
    old = parent / f".{target.name}.old"
    tmp: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
        write(tmp)
        if old.exists() and target.exists():
            shutil.rmtree(old)  # a leftover from an earlier crash; target is the good one
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        tmp = None
        fsync_directory(parent)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not target.exists() and old.exists():
            os.rename(old, target)
        if exc.errno == errno.ENOSPC:
            raise CheckpointError(
                f"no space left on the device while writing checkpoint {target}; the previous "
                "checkpoint (if any) is intact. Free some disk space, then resume with "
                "`tiss train --resume`"
            ) from None
        raise CheckpointError(f"cannot write checkpoint {target}: {exc.strerror or exc}") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
