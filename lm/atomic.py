"""Atomic file writes for everything `lm` saves outside a checkpoint directory.

A file is written to a temporary name in its own directory, flushed to disk and renamed over the
target, so a kill or a full disk at any moment leaves either the old file or the new one, never a
torn one, and no temporary behind. The file gets the mode `open()` would give it (0666 less the
umask), not `mkstemp`'s owner-only 0600: these are outputs people share and inspect.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def default_file_mode() -> int:
    """The mode a new file gets from `open()`: 0666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` (str is written as UTF-8) atomically; see the module docstring."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
