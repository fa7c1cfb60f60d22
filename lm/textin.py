"""Reading the text a command works on: a UTF-8 file, or standard input for `-`.

Both commands that take text from the user (`tiss generate --prompt-file`, `tiss tokenizer
encode`) read it here, so bad input fails the same way: at once, naming the first bad byte,
as the command's own error type (so the CLI prints a message, not a traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lm.errors import LMError


def read_utf8(file: str | Path | None, error: type[LMError], what: str = "the text") -> str:
    """The text of `file` (None or "-": standard input), decoded strictly as UTF-8.

    Standard input is read as bytes: the text layer would pass bad bytes on as surrogates (or
    garbage, under another locale) that only fail later, far from their cause.
    """
    if file is None or str(file) == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        if isinstance(data, str):  # a replaced sys.stdin (tests, embedding) already holds text
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(
                f"standard input is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                f"{exc.start}); convert it first, e.g. with `iconv -t UTF-8`"
            ) from None
    try:
        return Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{file}: cannot read {what} as UTF-8 text ({exc})") from None
