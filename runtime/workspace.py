"""The workspace: the one directory a script may touch, and the file operations inside it.

Every path a script names (WRITE, READ, MKDIR, DELETE, `FILE ... EXISTS`) goes through
`Workspace.resolve`, which refuses NUL bytes, `..` components that climb out, absolute paths
outside the root, and symlinks in any component that lead out. The check runs on the fully
resolved path (`os.path.realpath`), so the operation then acts on exactly the path that was
checked. WRITE is atomic: a temporary file next to the target, fsync, rename, then fsync of the
directory, so a crash leaves either the old or the new content, never half of it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from runtime.errors import PathError, WorkspaceError


def _current_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any thread starts.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class Workspace:
    """A confined directory; `root` is absolute with symlinks resolved."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        raw = os.fspath(root)
        if "\0" in raw:
            raise WorkspaceError("the workspace path contains a NUL byte")
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise WorkspaceError(
                f"workspace {raw!r} is not a directory; create it first or pass another --workspace"
            )
        self.root = Path(os.path.realpath(path))

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- confinement ------------------------------------------------------------------------

    def _inside(self, real: str) -> bool:
        root = str(self.root)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def _lexical(self, path: str) -> str:
        """The path joined to the root, with `.` and `..` folded, before any symlink is read."""
        if not isinstance(path, str):
            raise PathError(f"a path must be a string, not {type(path).__name__}")
        if "\0" in path:
            raise PathError(f"path {path!r} contains a NUL byte")
        if path.strip() == "":
            raise PathError("the path is empty")
        joined = os.path.normpath(os.path.join(str(self.root), path))
        if not self._inside(joined):
            if os.path.isabs(path):
                raise PathError(
                    f"path {path!r} is outside the workspace {str(self.root)!r}; "
                    "use a path relative to the workspace"
                )
            raise PathError(
                f"path {path!r} climbs out of the workspace with '..'; "
                "use a path inside the workspace"
            )
        return joined

    def resolve(self, path: str) -> Path:
        """The real path `path` names, refused unless it stays inside the workspace.

        The last component need not exist (WRITE creates it); symlinks are followed in every
        component that does exist, so a link anywhere along the way that leads out is refused.
        """
        joined = self._lexical(path)
        real = os.path.realpath(joined)
        if not self._inside(real):
            raise PathError(
                f"path {path!r} leads out of the workspace through a symlink (to {real!r}); "
                "symlinks may only point inside the workspace"
            )
        return Path(real)

    def _resolve_parent(self, path: str) -> Path:
        """The real parent directory with the last component kept as named (not followed).

        DELETE acts on a symlink itself, never on its target, so only the parent is resolved.
        """
        joined = self._lexical(path)
        if joined == str(self.root):
            return self.root
        parent = os.path.realpath(os.path.dirname(joined))
        if not self._inside(parent):
            raise PathError(
                f"path {path!r} leads out of the workspace through a symlink (to {parent!r}); "
                "symlinks may only point inside the workspace"
            )
        return Path(parent) / os.path.basename(joined)

    def display(self, real: Path) -> str:
        """A path relative to the workspace, for messages."""
        try:
            rel = real.relative_to(self.root)
        except ValueError:
            return str(real)
        return str(rel) if str(rel) != "." else "."

    # -- operations --------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return self.resolve(path).exists()

    def read_text(self, path: str) -> str:
        target = self.resolve(path)
        if target.is_dir():
            raise PathError(f"cannot READ {path!r}: it is a directory")
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise PathError(f"cannot READ {path!r}: no such file in the workspace") from None
        except OSError as exc:
            raise PathError(f"cannot READ {path!r}: {exc.strerror}") from None
        # Text files are UTF-8; undecodable bytes become U+FFFD rather than aborting the script.
        return data.decode("utf-8", errors="replace")

    def write_text(self, path: str, content: str) -> Path:
        """Atomically replace (or create) the file at `path`, creating parent directories."""
        target = self.resolve(path)
        if target == self.root or target.is_dir():
            raise PathError(f"cannot WRITE {path!r}: it is a directory")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise PathError(f"cannot WRITE {path!r}: a parent is a file, not a directory") from None
        except OSError as exc:
            raise PathError(f"cannot WRITE {path!r}: {exc.strerror}") from None
        # mkdir may have followed a symlink created meanwhile; check the real parent again.
        if not self._inside(os.path.realpath(target.parent)):
            raise PathError(f"path {path!r} leads out of the workspace through a symlink")
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        data = content.encode("utf-8")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, mode)
            os.replace(tmp_name, target)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise
        self._fsync_dir(target.parent)
        return target

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        # The rename is durable only once the directory entry is; some filesystems refuse this.
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> Path:
        target = self.resolve(path)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise PathError(f"cannot MKDIR {path!r}: a file of that name exists") from None
        except OSError as exc:
            raise PathError(f"cannot MKDIR {path!r}: {exc.strerror}") from None
        return target

    def delete(self, path: str, *, recursive: bool = False) -> Path:
        """Delete a file, a symlink (never its target) or a directory (`recursive` for a tree)."""
        target = self._resolve_parent(path)
        if target == self.root:
            raise PathError(f"cannot DELETE {path!r}: it is the workspace itself")
        try:
            info = target.lstat()
        except FileNotFoundError:
            raise PathError(f"cannot DELETE {path!r}: no such file or directory in the workspace") from None
        try:
            if stat.S_ISDIR(info.st_mode):
                if recursive:
                    # rmtree never follows symlinks inside the tree; it unlinks them.
                    shutil.rmtree(target)
                else:
                    try:
                        target.rmdir()
                    except OSError as exc:
                        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                            raise PathError(
                                f"cannot DELETE {path!r}: the directory is not empty; "
                                "add RECURSIVE to delete the whole tree"
                            ) from None
                        raise
            else:
                target.unlink()
        except PathError:
            raise
        except OSError as exc:
            raise PathError(f"cannot DELETE {path!r}: {exc.strerror}") from None
        return target
