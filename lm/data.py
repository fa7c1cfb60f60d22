"""Training data: text files → one token file per split (memory-mapped) → random windows.

The corpus is every readable UTF-8 text file under a path (hidden files and directories and
`build/` directories are left out; binary and non-UTF-8 files are skipped and reported). Files are split into training and validation *by file*, with a fixed
seeded shuffle so the split is a property of the corpus, not of the run. Each split is tokenized
once into `train.bin` / `val.bin` (uint16 when the vocabulary fits, else uint32), documents
separated by the tokenizer's `<|endoftext|>`, and described by `data.json`. Batches are random
windows drawn from a `numpy.random.Generator` whose state the trainer saves with each checkpoint.

Conversations (`lm.chatdata`) add `train.mask` / `val.mask`: one byte per token, 1 where the token
is a target the loss counts (an assistant's); windows drawn from masked files get the loss's
ignore index at every other target.

Shape letters: B batch, T sequence length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm.atomic import write_atomic
from lm.errors import LMError
from lm.loss import IGNORE_INDEX

DATA_INFO = "data.json"
VAL_FRACTION = 0.1
SPLIT_SEED = 1234  # fixed: the split belongs to the corpus, not to the training seed


class DataError(LMError):
    """A corpus that is missing, empty, unreadable or too small for the requested windows."""


def corpus_split(corpus, report=None) -> tuple[list[Path], list[Path]]:
    """Training and validation files of `corpus`.

    A corpus built by `tiss corpus build` (a directory with manifest.json) keeps its own split;
    any other file or directory is split here by `split_files`. `report(message)` hears about
    each file skipped because it is binary, not UTF-8 or unreadable.
    """
    root = Path(corpus)
    if (root / "manifest.json").is_file():
        from lm.corpus import split_files as manifest_split

        train, val = manifest_split(root, "train"), manifest_split(root, "valid")
        missing = [p for p in train + val if not p.is_file()]
        if missing:
            raise DataError(f"corpus {corpus}: {missing[0]} is listed in manifest.json but missing; rebuild it")
        if not train:
            raise DataError(f"corpus {corpus} has no training files; rebuild it with `tiss corpus build`")
        return train, val
    return split_files(list_text_files(root, report))


def list_text_files(corpus, report=None) -> list[Path]:
    """Readable UTF-8 text files under `corpus` (a file or a directory), sorted by path.

    Hidden files and directories, and `build/` directories (where `tiss corpus build` puts its
    output, so `--corpus corpus` means the committed samples, as for `tiss tokenizer train`),
    are left out. Binary, non-UTF-8 and unreadable files are skipped and passed to `report`;
    empty ones are skipped quietly.
    """
    root = Path(corpus)
    if not root.exists():
        raise DataError(f"corpus {corpus} does not exist; pass --corpus a text file or a directory of them")
    candidates = [root] if root.is_file() else sorted(
        p for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") or part == "build" for part in p.relative_to(root).parts)
    )
    files, skipped = [], 0
    for p in candidates:
        problem = _text_problem(p)
        if problem is None:
            files.append(p)
        elif problem != "empty":
            skipped += 1
            if report is not None:
                report(f"skipped {p}: {problem}")
    if not files:
        why = f" ({skipped} skipped as binary or not UTF-8)" if skipped else ""
        raise DataError(
            f"corpus {corpus} contains no UTF-8 text files{why}; add .txt/.md/... files to it "
            "or build one with `tiss corpus build`"
        )
    return files


def _text_problem(path: Path) -> str | None:
    """Why `path` cannot be a training document ("empty", "binary", ...), or None if it can."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if b"\x00" in data:
        return "binary (contains NUL bytes)"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
    return None if data.strip() else "empty"


def split_files(files: list[Path], val_fraction: float = VAL_FRACTION) -> tuple[list[Path], list[Path]]:
    """Hold out about `val_fraction` of the files (at least one when there are two or more)."""
    if len(files) < 2:
        return list(files), []
    order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
    n_val = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, val


def read_texts(files: list[Path]) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in files]


@dataclass(frozen=True)
class TokenData:
    """The memory-mapped token arrays of a run (validation may be empty)."""

    train: np.ndarray  # (n_train,) uint16/uint32 memmap
    val: np.ndarray  # (n_val,)
    info: dict
    train_mask: np.ndarray | None = None  # (n_train,) uint8: 1 where the token is a counted target
    val_mask: np.ndarray | None = None  # (n_val,)


def build_token_files(train_files: list[Path], val_files: list[Path], tokenizer, out_dir) -> TokenData:
    """Tokenize both splits into `out_dir` (atomically) and open them memory-mapped.

    With a single corpus file there is nothing to split by file, so its last tenth of tokens
    becomes the validation split instead (recorded in `data.json`).
    """
    out = Path(out_dir)
    eot = tokenizer.eot_id
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32

    def encode(files: list[Path]) -> np.ndarray:
        ids: list[int] = []
        for text in read_texts(files):
            ids.extend(tokenizer.encode(text))
            ids.append(eot)
        return np.asarray(ids, dtype=dtype)

    train = encode(train_files)
    how = "by file"
    if val_files:
        val = encode(val_files)
    else:
        cut = len(train) - max(2, len(train) // 10)
        train, val = train[:cut], train[cut:]
        how = "tail of the only file"
    info = {
        "dtype": np.dtype(dtype).name,
        "train_tokens": int(len(train)),
        "val_tokens": int(len(val)),
        "split": how,
        "train_files": [str(p) for p in train_files],
        "val_files": [str(p) for p in val_files],
        "vocab_size": int(tokenizer.vocab_size),
    }
    return write_token_files(out, train, val, info)


def build_chat_token_files(chat_file, tokenizer, out_dir) -> TokenData:
    """Encode the conversations in `chat_file` (`lm.chatdata`) into masked token files."""
    from lm.chatdata import encode_file

    (train, train_mask), (val, val_mask), summary = encode_file(chat_file, tokenizer)
    info = {
        "dtype": train.dtype.name,
        "train_tokens": int(len(train)),
        "val_tokens": int(len(val)),
        "split": "every tenth conversation",
        "chat_data": str(chat_file),
        "vocab_size": int(tokenizer.vocab_size),
        "masked": True,
        **summary,
    }
    return write_token_files(Path(out_dir), train, val, info, train_mask, val_mask)


def write_token_files(out: Path, train: np.ndarray, val: np.ndarray, info: dict,
                      train_mask: np.ndarray | None = None, val_mask: np.ndarray | None = None) -> TokenData:
    """Write the token (and mask) files and data.json (last) atomically, then open them."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "train.bin", train.tobytes())
        write_atomic(out / "val.bin", val.tobytes())
        if train_mask is not None:
            write_atomic(out / "train.mask", train_mask.astype(np.uint8).tobytes())
            write_atomic(out / "val.mask", val_mask.astype(np.uint8).tobytes())
        write_atomic(out / DATA_INFO, (json.dumps(info, indent=2) + "\n").encode())
    except OSError as exc:
        raise DataError(f"cannot write token files to {out}: {exc.strerror or exc}") from None
    return open_token_files(out)


def open_token_files(out_dir) -> TokenData:
    """Open the token files `build_token_files` wrote, checking their sizes against data.json."""
    out = Path(out_dir)
    try:
        info = json.loads((out / DATA_INFO).read_text(encoding="utf-8"))
        dtype = np.dtype(info["dtype"])
        arrays, masks = [], []
        for split in ("train", "val"):
            n = int(info[f"{split}_tokens"])
            arrays.append(_map(out / f"{split}.bin", dtype, n, out))
            if info.get("masked"):
                masks.append(_map(out / f"{split}.mask", np.dtype(np.uint8), n, out))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"token files in {out} are missing or corrupt ({exc}); delete {out} to re-tokenize") from None
    return TokenData(arrays[0], arrays[1], info, *(masks or (None, None)))


def _map(path: Path, dtype: np.dtype, n: int, out: Path) -> np.ndarray:
    if path.stat().st_size != n * dtype.itemsize:
        raise DataError(f"{path} has the wrong size for {n} tokens; delete {out} to re-tokenize")
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)


def _targets(window: np.ndarray, mask: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    """The next-token targets of windows `idx`, the ignore index where `mask` says not counted."""
    y = window[:, 1:]
    if mask is None:
        return y
    return np.where(np.asarray(mask[idx[:, 1:]]) != 0, y, IGNORE_INDEX)


def check_windows(tokens: np.ndarray, seq_len: int, split: str) -> None:
    if len(tokens) < seq_len + 1:
        raise DataError(
            f"the {split} split has {len(tokens)} tokens, fewer than one window of --seq-len {seq_len} "
            f"plus its target ({seq_len + 1}); add more text to the corpus or lower --seq-len"
        )


def sample_batch(tokens: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator,
                 mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`batch_size` random windows: inputs and next-token targets, both (B, T) int64 (targets
    the ignore index where `mask` is 0)."""
    starts = rng.integers(0, len(tokens) - seq_len, size=batch_size)  # (B,)
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]  # (B, T+1)
    window = np.asarray(tokens[idx], dtype=np.int64)  # (B, T+1)
    return window[:, :-1], _targets(window, mask, idx)


def eval_windows(tokens: np.ndarray, seq_len: int, max_windows: int,
                 mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, evenly spread set of validation windows (the same at every evaluation).

    A validation split shorter than `seq_len + 1` gets one window as long as it allows.
    """
    n = len(tokens)
    if n < 2:
        return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)
    T = min(seq_len, n - 1)
    count = max(1, min(max_windows, (n - 1) // T))
    starts = np.linspace(0, n - 1 - T, count).astype(np.int64)  # (W,)
    idx = starts[:, None] + np.arange(T + 1)[None, :]
    window = np.asarray(tokens[idx], dtype=np.int64)
    return window[:, :-1], _targets(window, mask, idx)
