"""What `tiss tokenizer train|encode|decode` do, behind the argparse layer.

Each function takes plain values and text streams and returns an exit code, so the CLI stays
parsing only and the tests can call these directly. Errors are raised as `LMError`s for the CLI
to print.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TextIO

from lm.console import say, write_out
from lm.corpus import iter_texts
from lm.textin import read_utf8
from lm.tokenizer import EOT, BPETokenizer, TokenizerError


class _Progress:
    """A one-line progress display on a terminal; silent when the stream is not one."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = bool(getattr(stream, "isatty", lambda: False)())
        self.files = 0
        self.bytes = 0

    def reading(self, texts: Iterable[str]) -> Iterator[str]:
        for text in texts:
            self.files += 1
            self.bytes += len(text)
            if self.live and self.files % 25 == 0:
                self._line(f"reading: {self.files} files, {self.bytes / 1e6:.1f} M characters")
            yield text

    def merging(self, done: int, total: int) -> None:
        if self.live:
            pct = 100 * done // total if total else 100
            self._line(f"merging: {done}/{total} merges ({pct}%)")

    def _line(self, text: str) -> None:
        self.stream.write(f"\r\x1b[2K{text}")
        self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def train(
    corpus: str,
    vocab_size: int,
    out: str,
    special_tokens: list[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Train on the files at `corpus` (a built corpus's train split, a directory or a file)."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    progress = _Progress(stderr)
    report = partial(say, stderr)
    start = time.perf_counter()
    texts = progress.reading(iter_texts(corpus, "train", report=report))
    specials = tuple(special_tokens) if special_tokens else (EOT,)
    try:
        tok = BPETokenizer().train(texts, vocab_size, specials, progress=progress.merging)
    finally:
        progress.done()
    if progress.files == 0:
        raise TokenizerError(f"{corpus} holds no readable text files to train on")
    path = tok.save(out)
    print(
        f"tokenizer: vocab {tok.vocab_size} ({len(tok.merges)} merges, "
        f"{len(tok.special_tokens)} special) from {progress.files} files, "
        f"{progress.bytes / 1e6:.1f} M characters in {time.perf_counter() - start:.1f} s -> {path}",
        file=stdout,
    )
    if tok.vocab_size < vocab_size:
        say(stderr, f"the corpus ran out of pairs to merge, so the vocabulary has {tok.vocab_size} ids, "
            f"not the {vocab_size} asked for; more text gives more merges", "note")
    return 0


def read_text(text: str | None, file: str | None) -> str:
    """The text to encode: given on the command line, read from `file`, or else from stdin."""
    if text is not None:
        return text
    return read_utf8(file, TokenizerError)


def _load(tokenizer: str | None) -> BPETokenizer:
    """The tokenizer in a file or directory, or with None the shipped model's (what `tiss
    generate` uses by default), so `tiss tokenizer encode TEXT` needs no flag."""
    if tokenizer is None:
        from lm.checkpoint import DEFAULT_MODEL_DIR

        return BPETokenizer.load(DEFAULT_MODEL_DIR)
    return BPETokenizer.load(tokenizer)


def encode(
    tokenizer: str | None,
    text: str,
    allow_special: bool = False,
    show: bool = False,
    stdout: TextIO | None = None,
) -> int:
    """Print the ids of `text`, or with `show` one `id<TAB>token` line per token."""
    stdout = stdout or sys.stdout
    tok = _load(tokenizer)
    ids = tok.encode(text, allowed_special="all" if allow_special else "none")
    if show:
        lines = []
        for i in ids:
            raw = tok.token_bytes(i)
            try:
                piece = repr(raw.decode("utf-8"))
            except UnicodeDecodeError:  # part of a multi-byte character: show the bytes
                piece = repr(raw)
            lines.append(f"{i}\t{piece}\n")
        write_out(stdout, "".join(lines))
    else:
        write_out(stdout, " ".join(map(str, ids)) + "\n")
    return 0


def parse_ids(words: Iterable[str]) -> list[int]:
    """Ids from command-line words or stdin text (spaces, commas, brackets all separate)."""
    ids = []
    for word in words:
        for item in word.replace(",", " ").replace("[", " ").replace("]", " ").split():
            try:
                ids.append(int(item))
            except ValueError:
                raise TokenizerError(
                    f"{item!r} is not a token id; pass integers such as `tiss tokenizer decode "
                    "72 101 108`"
                ) from None
    return ids


def decode(tokenizer: str | None, ids: list[int], stdout: TextIO | None = None) -> int:
    """Print the text of `ids` exactly (no newline is added)."""
    stdout = stdout or sys.stdout
    tok = _load(tokenizer)
    write_out(stdout, tok.decode(ids))
    return 0

