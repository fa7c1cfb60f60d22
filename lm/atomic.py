"""Atomic file writes for everything `lm` saves outside a checkpoint directory.

`write_atomic(path, data)` behaves exactly as TissLang's writer (`tisslang.commands.write_atomic`);
the layering keeps the two packages from sharing code, so `tests/atomic_contract.py` pins both
to the same behaviour:

- The data goes to a temporary file in the target's directory, is fsynced and renamed over the
  target, and then the directory is fsynced so that the rename itself survives a crash. A kill
  or a full disk at any moment leaves the old file or the new one, never a torn one, and a
  failed write removes its temporary.
- A replaced file keeps its permission bits, owner and group; the set-user-ID and set-group-ID
  bits are never carried onto new content. A new file gets the mode `open()` would give it
  (0666 less the umask), not `mkstemp`'s owner-only 0600: these are outputs people share.
- A symlink stays a link: the file it points to is replaced.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

_SET_ID_BITS = stat.S_ISUID | stat.S_ISGID


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    # Linux reports the umask in /proc; elsewhere it can only be read by setting it, and a thread
    # creating a file in that instant gets the value set, so set the restrictive 077, not 0.
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a new file gets from `open()`: 0666 less the process umask."""
    return 0o666 & ~current_umask()


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the entries of `directory` (a rename into it) durable, where the platform can."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Replace `path` with `data` (str is written as UTF-8, newlines untouched) atomically;
    see the module docstring."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    target = Path(os.path.realpath(path))  # through a symlink to its target; the link stays
    owner = None
    try:
        info = os.stat(target)
    except FileNotFoundError:
        mode = default_file_mode()
    else:
        mode = stat.S_IMODE(info.st_mode) & ~_SET_ID_BITS
        owner = (info.st_uid, info.st_gid)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(f.fileno(), *owner)  # EPERM: refused, and the old file stays as it was
            os.fchmod(f.fileno(), mode)  # after fchown, which may clear mode bits
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(target.parent)
