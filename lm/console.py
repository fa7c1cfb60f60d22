"""What `lm`'s command functions write to a terminal: one place for the `tiss:` prefix of their
messages, and one for a reader that goes away.

`tiss generate ... | head` closes the pipe while output is still coming. That is the reader's
choice, not an error: `write_out` then stops quietly (no traceback, no message), and points the
stream's descriptor at /dev/null so that later writes and Python's flush at exit stay quiet too.
The CLI renders the errors `lm` raises (`LMError`) itself; what `lm` prints on its own (notes,
skipped files, a rank's failure) goes through `message`, so it reads like the CLI's lines.
"""

from __future__ import annotations

import os
from typing import TextIO

PROGRAM = "tiss"


def message(text: str, kind: str | None = None) -> str:
    """`tiss: text`, or `tiss: KIND: text` for a kind such as "error" or "note".

    >>> message("skipping a.bin: not UTF-8 text"), message("vocabulary smaller", "note")
    ('tiss: skipping a.bin: not UTF-8 text', 'tiss: note: vocabulary smaller')
    """
    return f"{PROGRAM}: {kind}: {text}" if kind else f"{PROGRAM}: {text}"


def say(stream: TextIO, text: str, kind: str | None = None) -> None:
    """Print `message(text, kind)` as one line on `stream` (stderr, as a rule)."""
    print(message(text, kind), file=stream, flush=True)


def write_out(stream: TextIO, text: str) -> bool:
    """Write `text` to `stream` and flush; False if the reader has gone (see the module docstring)."""
    try:
        stream.write(text)
        stream.flush()
        return True
    except BrokenPipeError:
        silence(stream)
        return False


def silence(stream: TextIO) -> None:
    """Point `stream`'s descriptor at /dev/null (a stream without one, like StringIO, is left)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
