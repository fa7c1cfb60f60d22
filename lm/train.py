"""The training loop behind `tiss train`: data, schedule, progress, evaluation, checkpoints, resume.

A run directory (`--out DIR`) holds:
  tokenizer.json    the tokenizer (trained here unless `--tokenizer FILE` is given)
  data/             train.bin / val.bin token files (memory-mapped) and data.json
  metrics.jsonl     one JSON object per step ({"step", "loss", "lr", "grad_norm", "tokens_per_s",
                    "elapsed_s"}) and per evaluation ({"step", "val_loss", "val_ppl"})
  checkpoint/       the latest checkpoint (lm.checkpoint format), replaced atomically; its
                    trainer_state.json holds the settings, step and data-sampler state

`train(resume=DIR, steps=N)` continues such a run to N total steps and reaches bit for bit the
same parameters as a run never stopped (same data windows, same optimiser moments, same
schedule). Ctrl-C finishes the current step, saves a checkpoint and then raises
KeyboardInterrupt; a harder kill loses only the steps since the last save.

`lm.train.train(...)` is the single entry point; `tiss train` only parses arguments into it.

Fine-tuning: `train(..., init=MODEL)` starts from anything `lm.load` accepts (a GGUF file, a
Hugging Face directory, a checkpoint or run directory, a pulled model's name) with its weights,
architecture and tokenizer, which then encodes the corpus; quantized GGUF weights are dequantized
to float32 and trained in float32. `chat_data=FILE.jsonl` (with `init`) trains on conversations
rendered with the model's chat template, the loss on the assistant turns only (`lm.chatdata`).
The run's settings record the model's shape and where it came from; resuming needs neither again.

Speed: a step's batch is split across `threads` data-parallel worker threads (`lm.parallel`; default
one per available CPU, at most 8), each with one BLAS thread; `threads=1` runs on one CPU. The
worker count decides the order in which the shards' gradients are summed, so bit-identical reruns
and resumes need the same `threads`; any count trains the same model up to float32 rounding.

Across processes: `train(..., distributed="mpi")` under `mpiexec -n N` gives each rank its share of
every batch and sums the gradients with MPI (`lm.distributed`); the loop makes the same calls on
`lm.distributed.SOLO` in a single process, so both paths are one loop.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from lm import checkpoint as ckpt
from lm.atomic import write_atomic
from lm.console import write_out
from lm.config import ModelConfig
from lm.data import (
    DataError,
    build_chat_token_files,
    build_token_files,
    check_windows,
    corpus_split,
    eval_windows,
    open_token_files,
    read_texts,
    sample_batch,
)
from lm.errors import LMError
from lm.distributed import SOLO
from lm.model import Transformer
from lm.optim import AdamW, clip_grad_norm, cosine_lr
from lm.parallel import DataParallel

STATE_FORMAT = "quantatissu-train"
STATE_VERSION = 1
METRICS_FILE = "metrics.jsonl"
DATA_DIR = "data"
EVAL_WINDOWS_PER_BATCH = 4  # evaluation uses up to this many batches' worth of fixed windows


class TrainError(LMError):
    """A training run that cannot start or continue as asked."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything that defines a run; saved in trainer_state.json and restored on resume."""

    corpus: str
    steps: int = 1000  # total optimiser steps of the run
    batch_size: int = 16  # sequences per micro-batch
    seq_len: int = 128  # tokens per sequence (also the model's max_seq_len)
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    ffn_hidden: int | None = None  # None: about 8/3·d_model rounded up to a multiple of 16
    vocab_size: int = 2048  # of the BPE tokenizer trained for the run (ignored with `tokenizer`)
    tokenizer: str | None = None  # an existing tokenizer.json instead of training one
    lr: float = 1e-3  # peak learning rate
    min_lr: float | None = None  # floor of the cosine decay; None: lr / 10
    warmup: int | None = None  # linear warmup steps; None: min(100, steps // 10)
    grad_accum: int = 1  # micro-batches summed per optimiser step
    eval_every: int = 100
    save_every: int = 500
    sample_every: int = 0  # print a short sample every N steps (0: never); may change on resume
    seed: int = 0  # model initialisation and data sampling
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    tie_embeddings: bool = False
    init: str | None = None  # the pretrained model the run started from (its weights, shape, tokenizer)
    chat: bool = False  # `corpus` is a conversations file (--chat-data): loss on assistant turns only

    def resolved(self) -> "TrainSettings":
        values = asdict(self)
        if values["ffn_hidden"] is None:
            values["ffn_hidden"] = 16 * math.ceil(8 * self.d_model / 3 / 16)
        if values["min_lr"] is None:
            values["min_lr"] = self.lr / 10
        if values["warmup"] is None:
            values["warmup"] = min(100, self.steps // 10)
        return TrainSettings(**values)

    def validate(self) -> None:
        positive = ("steps", "batch_size", "seq_len", "d_model", "n_layers", "n_heads", "ffn_hidden",
                    "vocab_size", "grad_accum", "eval_every", "save_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if isinstance(self.sample_every, bool) or not isinstance(self.sample_every, int) or self.sample_every < 0:
            raise TrainError(f"--sample-every must be zero or a positive integer, got {self.sample_every!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainError(f"--lr must be a positive number, got {self.lr}")
        if self.warmup < 0:
            raise TrainError(f"--warmup must be zero or more, got {self.warmup}")
        if self.tokenizer is None and self.init is None:
            from lm.tokenizer import MAX_VOCAB, N_BYTES

            # Checked here, before the corpus is read, rather than after minutes of reading it.
            if not N_BYTES < self.vocab_size <= MAX_VOCAB:
                raise TrainError(
                    f"--vocab-size must be between {N_BYTES + 1} (the {N_BYTES} byte tokens and "
                    f"<|endoftext|>) and {MAX_VOCAB:,}, got {self.vocab_size}; 2048-8192 suits a small model"
                )


@dataclass(frozen=True)
class TrainResult:
    out: Path  # the run directory
    step: int  # completed optimiser steps
    loss: float  # training loss of the last step (nan if no step ran)
    val_loss: float | None  # last evaluation, if any


_MODEL_KEYS = ("d_model", "n_layers", "n_heads", "ffn_hidden", "seq_len", "vocab_size", "tokenizer", "tie_embeddings")
# What a resumed run may change: its length, and how often it prints a sample.
_CHANGEABLE = ("steps", "sample_every")
# What --init takes from the model: giving them too is a contradiction, not an override.
_SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "ffn_hidden", "vocab_size", "tokenizer", "tie_embeddings")


def train(
    corpus=None,
    out=None,
    *,
    resume=None,
    chat_data=None,
    threads: int | None = None,
    distributed: str | None = None,
    stream: TextIO | None = None,
    callback: Callable[[int, dict], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a new model on `corpus` into run directory `out`, or continue the run at `resume`.

    `options` are the `TrainSettings` fields (None or absent means the default). When resuming,
    only `steps` may be given (the new total); any model option that differs from the run's is
    an incompatible-configuration error. `threads` is the number of data-parallel workers (None:
    one per available CPU, at most 8; see the module docstring). `distributed="mpi"` trains
    across the ranks of an MPI job, each on its share of every batch with `threads` workers
    (`lm.distributed`; run under `mpiexec`); rank 0 alone reports and writes. `stream` receives
    the progress line (default stderr); `callback(step, record)` is called after every step with
    its metrics record. Running out of memory is a TrainError saying what to lower.
    `init=MODEL` fine-tunes a pretrained model and `chat_data=FILE.jsonl` trains it on
    conversations instead of `corpus` (see the module docstring).
    """
    stream = sys.stderr if stream is None else stream
    group = SOLO
    if distributed is not None:
        from lm.distributed import connect

        group = connect(distributed)
        if not group.is_root:
            stream = _Silent()  # rank 0 alone reports progress
    with group.guard(), _out_of_memory_explained():
        given = group.everyone(lambda: _check_arguments(corpus, out, resume, threads, options, chat_data))
        if resume is not None:
            return _resume(Path(resume), given, threads, stream, callback, group)
        if chat_data is not None:
            corpus, given = chat_data, {**given, "chat": True}
        start = None
        if "init" in given:
            start = group.everyone(lambda: _load_init(given["init"], stream))
            given = {**given, **_init_shape(start[0].config), "init": start[2]}
            if "seq_len" not in given:  # the default, as long as the model allows
                given["seq_len"] = min(TrainSettings.seq_len, start[0].config.max_seq_len)
        settings, run = group.everyone(lambda: _new_run(corpus, out, given, group, start))

        def prepare():  # the writes, on rank 0 alone
            _check_new_run_dir(run)
            _make_dir(run)
            if settings.chat:
                tokenizer = _keep_tokenizer(start[1], run)
                _say(stream, f"rendering the conversations in {settings.corpus} with the model's chat template")
                data = build_chat_token_files(settings.corpus, tokenizer, run / DATA_DIR)
                _say(stream, f"{data.info['conversations']['train']} training / {data.info['conversations']['val']} "
                             f"validation conversations; {data.info['target_tokens']['train']:,} assistant "
                             "tokens to learn from")
            else:
                train_files, val_files = corpus_split(settings.corpus, _SkipReport(stream))
                if start is not None:
                    tokenizer = _keep_tokenizer(start[1], run)
                else:
                    tokenizer = _prepare_tokenizer(settings, train_files, run, stream)
                _say(stream, f"tokenizing {len(train_files) + len(val_files)} file(s) "
                             f"({len(val_files)} held out for validation)")
                data = build_token_files(train_files, val_files, tokenizer, run / DATA_DIR)
            check_windows(data.train, settings.seq_len, "training")
            try:
                (run / METRICS_FILE).write_text("", encoding="utf-8")  # a run killed before its first save left one
            except OSError as exc:
                raise TrainError(f"cannot write {run / METRICS_FILE}: {exc.strerror or exc}") from None
            return tokenizer, data

        prepared = group.root_first(prepare)
        tokenizer, data = group.everyone(lambda: prepared if group.is_root else _open_prepared(run, tokenizer=True))
        if start is not None:
            model = start[0]
            config = model.config
        else:
            config = _model_config(settings, tokenizer.vocab_size)
            model = Transformer(config, seed=settings.seed)
        opt = AdamW(model.params, lr=settings.lr, weight_decay=settings.weight_decay)
        rng = np.random.default_rng(settings.seed)
        _say(stream, f"model: {model.n_params:,} parameters, vocab {config.vocab_size}; "
                     f"{data.info['train_tokens']:,} training / {data.info['val_tokens']:,} validation tokens")
        return _loop(run, settings, model, tokenizer, opt, rng, data, 0, 0.0, threads, stream, callback, group)


def _check_arguments(corpus, out, resume, threads, options: dict, chat_data=None) -> dict:
    """The options given (not None), checked for what needs no file: the same on every rank."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise TrainError(f"--threads must be a positive integer, got {threads!r}")
    unknown = set(options) - {f.name for f in fields(TrainSettings)}
    if unknown:
        raise TypeError(f"train() got unknown options {sorted(unknown)}")
    given = {k: v for k, v in options.items() if v is not None}
    if resume is not None:
        if corpus is not None or chat_data is not None or (out is not None and Path(out).resolve() != Path(resume).resolve()):
            raise TrainError(
                "--resume DIR continues the run in DIR from its own corpus; drop --corpus, --chat-data and --out"
            )
        if "init" in given:
            raise TrainError("--resume DIR continues from the run's own checkpoint; drop --init")
        return given
    if "chat" in given:
        raise TypeError("train() takes conversations as chat_data=FILE, not chat=")
    if chat_data is not None:
        if corpus is not None:
            raise TrainError("give either --corpus PATH or --chat-data FILE.jsonl, not both")
        if "init" not in given:
            raise TrainError("--chat-data needs --init MODEL: an instruct model whose chat template renders the conversations")
        corpus = chat_data
    if corpus is None or out is None:
        raise TrainError("a new run needs --corpus PATH and --out DIR (or --resume DIR to continue one)")
    if "init" in given:
        clash = [k for k in _SHAPE_KEYS if k in given]
        if clash:
            flag = "--" + clash[0].replace("_", "-")
            raise TrainError(f"--init takes the architecture and tokenizer from the model; drop {flag}")
    if "tokenizer" in given and "vocab_size" in given:
        raise TrainError("give either --tokenizer FILE or --vocab-size N, not both")
    return given


def _new_run(corpus, out, given: dict, group, start=None) -> tuple[TrainSettings, Path]:
    """A new run's settings and directory, checked before any slow work."""
    settings = TrainSettings(corpus=str(Path(corpus).resolve()), **given).resolved()
    settings.validate()
    _check_ranks(settings, group)
    if start is None:
        _model_config(settings, vocab_size=max(settings.vocab_size, 1))  # shape errors before any slow work
    elif settings.seq_len > start[0].config.max_seq_len:
        raise TrainError(
            f"--seq-len {settings.seq_len} is longer than the {start[0].config.max_seq_len} tokens "
            f"the model given to --init was made for; use --seq-len {start[0].config.max_seq_len} or less"
        )
    if settings.chat and start[1].chat_template is None:
        raise TrainError("--chat-data needs a model with a chat template (an instruct model); "
                         f"{given['init']} has none")
    return settings, Path(out)


def _load_init(spec, stream: TextIO):
    """The model, tokenizer and resolved path of `--init` (float32, for training)."""
    from lm.models import resolve_model

    path = str(Path(resolve_model(spec)).resolve())
    try:
        model, tokenizer = ckpt.load(path)
    except LMError as exc:
        raise TrainError(f"--init {spec}: {exc}") from None
    quantized = _quantized_types(Path(path))
    note = f" (its {', '.join(quantized)} weights dequantized to float32 for training)" if quantized else ""
    _say(stream, f"starting from {path}{note}")
    return model, tokenizer, path


def _quantized_types(path: Path) -> list[str]:
    """The quantized tensor types of a GGUF file (empty for anything else)."""
    from lm import pretrained

    if not (path.is_file() and pretrained.is_gguf(path)):
        return []
    import gguf  # present: lm.load just read the file with it

    names = {t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    return sorted(names - {"F32", "F16", "BF16", "F64"})


def _init_shape(config: ModelConfig) -> dict:
    """The settings that record an --init model's shape (what a resume checks against)."""
    return {"d_model": config.d_model, "n_layers": config.n_layers, "n_heads": config.n_heads,
            "ffn_hidden": config.ffn_hidden, "vocab_size": config.vocab_size,
            "tie_embeddings": config.tie_embeddings}


def _keep_tokenizer(tokenizer, run: Path):
    tokenizer.eot_id  # noqa: B018 - raises a clear error for a tokenizer with neither <|endoftext|> nor EOS
    tokenizer.save(run / "tokenizer.json")
    return tokenizer


def _check_new_run_dir(run: Path) -> None:
    # On rank 0 alone: another rank looking the directory up before rank 0 creates it could keep
    # a "does not exist" answer cached on a network filesystem (NFS) after it appears.
    if (run / ckpt.RUN_CHECKPOINT).exists() or (run / f".{ckpt.RUN_CHECKPOINT}.old").exists():
        raise TrainError(
            f"{run} already holds a training run; continue it with `tiss train --resume {run}` "
            "or choose another --out"
        )


def _check_ranks(settings: TrainSettings, group) -> None:
    if settings.batch_size < group.size:
        raise TrainError(
            f"--batch-size {settings.batch_size} is smaller than the {group.size} ranks: each rank needs at "
            f"least one sequence of every batch. Use --batch-size {group.size} or more, or fewer ranks"
        )


def _open_prepared(run: Path, tokenizer: bool = False):
    """What rank 0 wrote into the run directory, opened on another rank."""
    from lm.tokenizer import BPETokenizer

    try:
        data = open_token_files(run / DATA_DIR)
        if not tokenizer:
            return data
        return BPETokenizer.load(run / "tokenizer.json"), data
    except LMError as exc:
        raise TrainError(
            f"{exc}. Rank 0 wrote it: every rank must see the run directory, so put it on a "
            "filesystem all hosts share"
        ) from None


@contextmanager
def _out_of_memory_explained():
    """Turn a MemoryError into a TrainError saying what to lower."""
    try:
        yield
    except MemoryError as exc:
        # NumPy says how much it could not allocate; the fix is a smaller model or batch.
        error = TrainError(
            f"out of memory ({exc}); lower --batch-size, --seq-len, --d-model, --n-layers or "
            "--vocab-size (the last checkpoint, if any, is unaffected)"
        )
        error.__dict__.update(exc.__dict__)  # keeps lm.distributed's note that every rank raised it
        raise error from None


class _RunComplete(Exception):
    """Resuming a run whose checkpoint already holds every step asked for: nothing to do."""

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step


def _resume(run: Path, given: dict, threads: int | None, stream: TextIO, callback, group=SOLO) -> TrainResult:
    # Every rank reads the checkpoint itself; rank 0 alone repairs and trims the run directory.
    def read():
        try:
            return _read_run(run, given, group)
        except _RunComplete as done:  # every rank finds it so: returned, not raised, to end them alike
            return done

    outcome = group.everyone(read)
    if isinstance(outcome, _RunComplete):
        # A run killed after its final checkpoint is complete, not an error (exit 0).
        _say(stream, f"the run at {run} is already complete: {outcome.step} of {outcome.step} steps, "
                     f"checkpoint in {run / ckpt.RUN_CHECKPOINT}; pass --steps N (more than "
                     f"{outcome.step}) to train further")
        return TrainResult(run, outcome.step, float("nan"), None)
    model, tokenizer, settings, opt, rng, step, elapsed = outcome

    def repair():
        try:
            data = open_token_files(run / DATA_DIR)
        except DataError:
            _say(stream, f"token files in {run / DATA_DIR} missing or damaged; re-tokenizing the corpus")
            if not Path(settings.corpus).exists():
                raise TrainError(
                    f"cannot resume: the token files in {run / DATA_DIR} are missing or damaged and the "
                    f"run's corpus {settings.corpus} is gone; put the corpus back there and resume again"
                )
            if settings.chat:
                data = build_chat_token_files(settings.corpus, tokenizer, run / DATA_DIR)
            else:
                train_files, val_files = corpus_split(settings.corpus, _SkipReport(stream))
                data = build_token_files(train_files, val_files, tokenizer, run / DATA_DIR)
        if data.info.get("vocab_size") != tokenizer.vocab_size:
            raise TrainError(f"token files in {run / DATA_DIR} were made with another tokenizer; delete that directory and resume")
        check_windows(data.train, settings.seq_len, "training")
        _truncate_metrics(run / METRICS_FILE, step)
        # A save killed half way leaves its temporary directory; this run is now the only writer.
        for stale in run.glob(f".{ckpt.RUN_CHECKPOINT}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return data

    repaired = group.root_first(repair)
    data = group.everyone(lambda: repaired if group.is_root else _open_prepared(run))
    _say(stream, f"resuming {run} at step {step} of {settings.steps}")
    return _loop(run, settings, model, tokenizer, opt, rng, data, step, elapsed, threads, stream, callback, group)


def _read_run(run: Path, given: dict, group):
    """The model, tokenizer, settings, optimiser, sampler, step and time of the run at `run`."""
    if run.exists() and not run.is_dir():
        raise TrainError(f"cannot resume: {run} is a file; pass the run directory that `tiss train --out` made")
    if not run.is_dir():
        raise TrainError(f"cannot resume: {run} does not exist")
    if (run / ckpt.MODEL_FILE).is_file():
        # Resuming writes beside the checkpoint (data/, metrics.jsonl), so it needs the run itself.
        hint = (f"resume the run that holds it: `tiss train --resume {run.parent}`"
                if (run.parent / METRICS_FILE).is_file() else "only a run directory made by `tiss train --out` can resume")
        raise TrainError(f"cannot resume: {run} is a checkpoint, not a run directory; {hint}")
    if not any((run / name).is_dir() for name in (ckpt.RUN_CHECKPOINT, f".{ckpt.RUN_CHECKPOINT}.old")):
        raise TrainError(
            f"cannot resume: {run} holds no checkpoint (it is not a training run, or the run was "
            f"stopped before its first checkpoint); start a run with `tiss train --corpus PATH --out {run}`"
        )
    path = ckpt.resolve(run)
    model, tokenizer = ckpt.load(path)
    state = ckpt.load_training_state(path, model)
    ts = state.trainer_state
    if ts.get("format") != STATE_FORMAT or ts.get("version") != STATE_VERSION:
        raise TrainError(f"{path / ckpt.TRAINER_STATE_FILE} is not a version-{STATE_VERSION} training state")
    try:
        saved = TrainSettings(**ts["settings"])
        step = int(ts["step"])
        rng_state = ts["data_rng"]
        elapsed = float(ts.get("elapsed_s", 0.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainError(
            f"{path / ckpt.TRAINER_STATE_FILE} is incomplete or corrupt ({exc}); restore the run "
            "directory from a copy, or start a new run with --out"
        ) from None
    for key, value in given.items():
        if key in _CHANGEABLE:
            continue
        if getattr(saved, key) != value:
            kind = "incompatible with the checkpoint" if key in _MODEL_KEYS else "fixed for the run"
            raise TrainError(
                f"--{key.replace('_', '-')} {value} is {kind}: the run at {run} was started with "
                f"{getattr(saved, key)}. Resume with only --steps, or start a new run with --out"
            )
    settings = saved
    changed = {key: given[key] for key in _CHANGEABLE if key in given}
    if changed:
        settings = TrainSettings(**{**asdict(saved), **changed})
        settings.validate()
    if settings.steps <= step:
        if given.get("steps", step) >= step:  # nothing asked beyond what is done: it is complete
            raise _RunComplete(step)
        raise TrainError(
            f"the run at {run} has already completed {step} steps; pass --steps larger than {step} to continue"
        )
    _check_ranks(settings, group)
    if settings.init is not None:
        if _init_shape(model.config) != {k: getattr(settings, k) for k in _init_shape(model.config)}:
            raise TrainError(f"checkpoint {path}: config.json does not match the run's settings; it is from another run")
    elif _model_config(settings, model.config.vocab_size) != model.config:
        raise TrainError(f"checkpoint {path}: config.json does not match the run's settings; it is from another run")
    opt = AdamW(model.params, lr=settings.lr, weight_decay=settings.weight_decay)
    opt.load_state_tensors(state.optimizer_tensors, state.optimizer_step)
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError) as exc:
        raise TrainError(
            f"{path / ckpt.TRAINER_STATE_FILE}: data sampler state is corrupt ({exc}); restore the "
            "run directory from a copy, or start a new run with --out"
        ) from None
    return model, tokenizer, settings, opt, rng, step, elapsed


def _loop(run: Path, settings: TrainSettings, model: Transformer, tokenizer, opt: AdamW,
          rng: np.random.Generator, data, step: int, elapsed: float, threads: int | None, stream: TextIO,
          callback, group=SOLO) -> TrainResult:
    s = settings
    workers = DataParallel(model, group.default_threads() if threads is None else threads)
    n_workers = min(workers.workers, max(1, s.batch_size // group.size))
    _say(stream, f"stepping on {group.describe(n_workers)} (--threads)")
    # However each rank built its model (fresh, resumed, or from --init), all step from rank 0's.
    start, differ = group.align(model, opt, {"step": step, "elapsed_s": elapsed, "data_rng": rng.bit_generator.state})
    if differ:
        step, elapsed, rng.bit_generator.state = start["step"], start["elapsed_s"], start["data_rng"]
        _say(stream, f"note: rank(s) {differ} built other initial weights than rank 0; every rank now has rank 0's")
    val_x, val_y = eval_windows(data.val, s.seq_len, EVAL_WINDOWS_PER_BATCH * s.batch_size, data.val_mask)
    tokens_per_step = s.batch_size * s.seq_len * s.grad_accum
    progress = _Progress(stream, s.steps)
    loss, val_loss = float("nan"), None
    started = time.perf_counter()
    # Worse than guessing every token uniformly (log V), by half again, is a diverging run; the
    # first loss of a fine-tune can be far lower, so the bar is from whichever is higher.
    exploded, explode_at = False, None
    # Rank 0 alone writes the metrics; the others write theirs nowhere.
    metrics = open(run / METRICS_FILE if group.is_root else os.devnull, "a", encoding="utf-8")

    def save() -> None:
        # Ranks whose weights drifted from rank 0's (an MPI whose sums differ in the last bit
        # between ranks) get rank 0's back before rank 0 saves them.
        aligned, drifted = group.align(model, opt, {"data_rng": rng.bit_generator.state})
        if drifted:
            rng.bit_generator.state = aligned["data_rng"]
            progress.note(f"note: rank(s) {drifted} had drifted from rank 0's weights; realigned")
        state = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "step": step,
            "settings": asdict(s),
            "data_rng": rng.bit_generator.state,
            "elapsed_s": elapsed,
        }
        failure = None
        if group.is_root:
            try:
                ckpt.save(run / ckpt.RUN_CHECKPOINT, model, tokenizer, optimizer=opt, trainer_state=state)
            except BaseException as exc:  # noqa: BLE001 - every rank learns of it below, then stops
                failure = exc
        group.agree_root(failure)
        progress.note(f"step {step}: checkpoint saved in {run / ckpt.RUN_CHECKPOINT}")

    # A diverging run is detected below from its loss and explained; NumPy's overflow warnings
    # on the way there would only print source lines at the user.
    with workers, metrics, _deferred_interrupt() as interrupted, np.errstate(over="ignore", invalid="ignore"):
        while step < s.steps:
            t0 = time.perf_counter()
            lr = cosine_lr(step, s.warmup, s.steps, s.lr, s.min_lr)
            partials = []
            for micro in range(s.grad_accum):
                # Every rank draws the whole batch (so the sampler is the same for any number of
                # ranks) and steps on its share, weighted by the share's part of the targets.
                x, y = sample_batch(data.train, s.batch_size, s.seq_len, rng, data.train_mask)
                lo, hi, weight = group.share(y)
                part, grads = workers.loss_and_grads(x[lo:hi], y[lo:hi], accumulate=micro > 0,
                                                     loss_scale=1.0 / s.grad_accum * weight)
                partials.append(part * weight)
            # The ranks' gradients and losses summed (and whether any rank heard Ctrl-C).
            partials, stop = group.reduce(model.flat_grads, partials, interrupted.is_set())
            loss = 0.0
            for part in partials:
                loss += part / s.grad_accum
            if not math.isfinite(loss):
                group.stop_all(TrainError(
                    f"the loss became {loss} at step {step + 1}; training diverged. Lower --lr "
                    f"(now {s.lr:g}) or raise --warmup; the last checkpoint in {run} is unaffected"
                ))
            if explode_at is None:
                explode_at = 1.5 * max(math.log(model.config.vocab_size), loss)
            elif not exploded and loss > explode_at:
                exploded = True
                progress.note(
                    f"warning: the loss is {loss:.2f} at step {step + 1}, far above the "
                    f"{math.log(model.config.vocab_size):.2f} of guessing uniformly: training is "
                    f"diverging. Stop it (Ctrl-C) and lower --lr (now {s.lr:g}) or raise --warmup")
            norm = clip_grad_norm(grads, s.grad_clip)
            opt.step(grads, lr=lr)
            step += 1
            dt = time.perf_counter() - t0
            elapsed += dt
            record = {"step": step, "loss": round(loss, 6), "lr": lr, "grad_norm": round(norm, 6),
                      "tokens_per_s": round(tokens_per_step / dt, 1), "elapsed_s": round(elapsed, 3)}
            _append(metrics, record)
            progress.update(step, loss, lr, tokens_per_step / dt, dt)
            if step % s.eval_every == 0 or step == s.steps:
                if len(val_x):
                    val_loss = _evaluate(workers, val_x, val_y, s.batch_size, group)
                    _append(metrics, {"step": step, "val_loss": round(val_loss, 6),
                                      "val_ppl": round(math.exp(min(val_loss, 700.0)), 4)})
                    progress.note(f"step {step}: validation loss {val_loss:.4f}, perplexity {math.exp(min(val_loss, 700.0)):.2f}")
            if s.sample_every and step % s.sample_every == 0 and group.is_root:
                progress.note(f"step {step} sample: {_sample(model, tokenizer, data.val, step)}")
            if step % s.save_every == 0 or step == s.steps:
                save()
            if callback is not None:
                callback(step, record)
            # One process stops as soon as it hears Ctrl-C; ranks stop at the step they agreed on.
            if stop if group.size > 1 else interrupted.is_set():
                if step % s.save_every and step != s.steps:
                    save()
                progress.note(f"stopped at step {step}; checkpoint saved. Continue with `tiss train --resume {run}`")
                group.stop_all(KeyboardInterrupt())
    validation = f"validation loss {val_loss:.4f}" if val_loss is not None else "no validation data"
    took = time.perf_counter() - started
    took_text = f"{took:.1f} s" if took < 60 else _clock(took)
    progress.note(f"done: {step} steps in {took_text}, loss {loss:.4f}, "
                  f"{validation}; checkpoint in {run / ckpt.RUN_CHECKPOINT}")
    return TrainResult(out=run, step=step, loss=loss, val_loss=val_loss)


def _sample(model: Transformer, tokenizer, val: np.ndarray, step: int, new_tokens: int = 40) -> str:
    """A short continuation of the first tokens of the validation data (the same prompt every
    time, so samples show the model's progress), on one line: nanoGPT's sample during training.
    Its own seed: the run's data sampling is not disturbed."""
    from lm.generate import generate

    prompt = [int(t) for t in val[:8]] if len(val) else tokenizer.encode("\n")
    text = tokenizer.decode(prompt) + generate(model, tokenizer, prompt, new_tokens, temperature=0.8,
                                               seed=step).text
    return repr(text)


def _model_config(settings: TrainSettings, vocab_size: int) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab_size,
        d_model=settings.d_model,
        n_layers=settings.n_layers,
        n_heads=settings.n_heads,
        ffn_hidden=settings.ffn_hidden,
        max_seq_len=settings.seq_len,
        tie_embeddings=settings.tie_embeddings,
    )


def _evaluate(model: Transformer | DataParallel, x: np.ndarray, y: np.ndarray, batch_size: int,
              group=SOLO) -> float:
    """Mean loss over the validation windows, `batch_size` at a time, each rank on its share."""
    partials, sizes = [], []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        lo, hi, weight = group.share(yb)
        partials.append(model.loss(xb[lo:hi], yb[lo:hi]) * weight if hi > lo else 0.0)
        sizes.append(len(xb))
    total, count = 0.0, 0
    for part, n in zip(group.reduce_values(partials), sizes):
        total += part * n
        count += n
    return total / count


def _prepare_tokenizer(settings: TrainSettings, train_files: list[Path], run: Path, stream: TextIO):
    from lm.tokenizer import BPETokenizer

    if settings.tokenizer is not None:
        tokenizer = BPETokenizer.load(settings.tokenizer)
    else:
        _say(stream, f"training a BPE tokenizer of {settings.vocab_size} tokens on {len(train_files)} file(s)")
        tokenizer = BPETokenizer().train(read_texts(train_files), settings.vocab_size)
        if tokenizer.vocab_size < settings.vocab_size:
            _say(stream, f"note: the corpus ran out of pairs to merge; the vocabulary has "
                         f"{tokenizer.vocab_size} ids, not {settings.vocab_size}")
    tokenizer.eot_id  # noqa: B018 - raises a clear error for a tokenizer without <|endoftext|>
    tokenizer.save(run / "tokenizer.json")
    return tokenizer


def _make_dir(run: Path) -> None:
    for parent in (run, *run.parents):
        if parent.exists() and not parent.is_dir():
            raise TrainError(f"cannot create run directory {run}: {parent} is a file; choose another --out")
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"cannot create run directory {run}: {exc.strerror or exc}") from None


def _append(f: TextIO, record: dict) -> None:
    try:
        f.write(json.dumps(record) + "\n")
        f.flush()
    except OSError as exc:
        raise TrainError(f"cannot append to {f.name}: {exc.strerror or exc}") from None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records of steps after `step`: they were logged before a kill and are redone now."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut short by the kill
    write_atomic(path, "".join(k + "\n" for k in kept))


def _say(stream: TextIO, message: str) -> None:
    # A log reader that went away (`2>&1 | head`) must not end hours of training: write_out
    # drops the output from then on and the run goes on to its checkpoint.
    write_out(stream, message + "\n")


class _Silent:
    """The progress stream of ranks other than 0: rank 0 alone reports."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _SkipReport:
    """Says which corpus files were skipped (binary, not UTF-8): the first few by name, then a count."""

    SHOWN = 5

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.count = stream, 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= self.SHOWN:
            _say(self.stream, message)
        elif self.count == self.SHOWN + 1:
            _say(self.stream, "(further skipped files are not listed)")


@contextmanager
def _deferred_interrupt():
    """First Ctrl-C sets a flag the loop checks between steps; a second one interrupts at once."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class _Progress:
    """The live progress line: rewritten in place on a terminal, one line per ~5% otherwise."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream, self.total = stream, total
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = max(1, total // 20)
        self.avg_dt: float | None = None
        self.avg_tps: float | None = None
        self.width = 0

    def update(self, step: int, loss: float, lr: float, tps: float, dt: float) -> None:
        self.avg_dt = dt if self.avg_dt is None else 0.9 * self.avg_dt + 0.1 * dt
        self.avg_tps = tps if self.avg_tps is None else 0.9 * self.avg_tps + 0.1 * tps
        left = _clock(self.avg_dt * (self.total - step))
        line = (f"step {step}/{self.total} | loss {loss:.4f} | lr {lr:.2e} | "
                f"{self.avg_dt * 1000:,.0f} ms/step | {self.avg_tps:,.0f} tok/s | {left} left")
        if self.tty:
            write_out(self.stream, "\r" + line.ljust(self.width))
            self.width = len(line)
        elif step % self.every == 0 or step == self.total or step == 1:
            _say(self.stream, line)

    def note(self, message: str) -> None:
        if self.tty and self.width:
            message = "\n" + message
            self.width = 0
        _say(self.stream, message)


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
