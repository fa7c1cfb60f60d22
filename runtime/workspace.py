"""The workspace: the one directory a script may touch, and the file operations inside it.

Every path a script names (WRITE, READ, MKDIR, DELETE, `FILE ... EXISTS`) is first checked as
text (NUL bytes, an empty path, absolute paths outside the root, `..` that climbs out), then
walked one component at a time from a file descriptor on the root: each directory is opened
with `O_NOFOLLOW` relative to the one before (`dir_fd`), and the final operation (open, create,
rename, unlink, rmdir) is done relative to the descriptor of its parent. Symlinks are resolved
by this walk, not by the kernel: a link is read with `readlink`, its target is walked the same
way, and a target that leaves the root is refused.

The guarantee: no file statement reads, creates, replaces or removes anything outside the
workspace, even while other processes (a PARALLEL RUN, say) swap directories for symlinks
during the operation. A component swapped after it was checked is never followed by the kernel,
because every open of it says `O_NOFOLLOW` and every later step goes through the descriptor
already held. (A process that *moves a whole directory* of the workspace elsewhere while an
operation holds it can still redirect that one operation; under `--sandbox workspace` commands
cannot do that, because the workspace is its own mount and renames out of it fail with EXDEV.)

The root itself is opened once, when the `Workspace` is made, and every walk starts from that
descriptor, never from the path: a command that renames the workspace away and puts a symlink
(or another directory) in its place cannot redirect a later WRITE, READ or DELETE. Each
operation, and each RUN (`command_cwd`), first checks that the path still names that same
directory and fails, saying so, when it does not.

WRITE is atomic: a temporary file next to the target, fsync, rename, then fsync of the
directory, so a crash leaves either the old or the new content, never half of it. The new file
gets the old one's permission bits except set-user-ID and set-group-ID: new content is never
made setuid by WRITE.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import secrets
import shlex
import shutil
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from runtime.errors import CommandError, PathError, WorkspaceError


def _current_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any thread starts.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_MAX_LINKS = 40  # symlinks followed in one path before giving up, as the kernel does (ELOOP)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_TEXT = 256 * 1024 * 1024  # bytes READ loads into a variable


@dataclass
class _Target:
    """Where a walk ended: a descriptor on the parent directory and the last name in it."""

    parent: int  # an open directory descriptor inside the workspace (closed by the walk's owner)
    name: str  # "" when the path names the workspace root itself
    shown: str  # the path relative to the root, for messages


class _Missing(Exception):
    """A directory along the path does not exist (and the walk was not asked to create it)."""


class _ThroughFile(PathError):
    """A component used as a directory is a file (for FILE ... EXISTS: the path does not exist)."""


def _glob_match(pattern: list[str], path: tuple[str, ...]) -> bool:
    """Whether path components match pattern components (`**`: any number of directories)."""
    if not pattern:
        return not path
    head = pattern[0]
    if head == "**":
        # Zero directories, or one more (never a hidden one) and still `**`.
        return _glob_match(pattern[1:], path) or (
            bool(path) and not path[0].startswith(".") and _glob_match(pattern, path[1:]))
    if not path:
        return False
    name = path[0]
    if name.startswith(".") and not head.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, head) and _glob_match(pattern[1:], path[1:])


class Workspace:
    """A confined directory; `root` is absolute with symlinks resolved."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        raw = os.fspath(root)
        if "\0" in raw:
            raise WorkspaceError("the workspace path contains a NUL byte")
        path = Path(raw).expanduser()
        if not path.exists():
            raise WorkspaceError(
                f"workspace {raw!r} does not exist; create it first (mkdir -p {shlex.quote(raw)}) "
                "or pass another --workspace"
            )
        if not path.is_dir():
            raise WorkspaceError(
                f"workspace {raw!r} is not a directory; --workspace takes the directory the "
                "script works in"
            )
        self.root = Path(os.path.realpath(path))
        try:
            self._root_fd: int | None = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise WorkspaceError(f"workspace {raw!r} cannot be opened: {exc.strerror}") from None
        info = os.fstat(self._root_fd)
        self._identity = (info.st_dev, info.st_ino)

    def close(self) -> None:
        """Let go of the root descriptor; the workspace cannot be used afterwards."""
        fd, self._root_fd = self._root_fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except (AttributeError, OSError):
            pass

    def _check_root(self) -> None:
        """Fail unless `root` still names the directory opened at the start."""
        try:
            info = os.stat(self.root)
        except OSError as exc:
            raise PathError(
                f"the workspace {str(self.root)!r} cannot be opened ({exc.strerror}); "
                "did a command remove or replace it?"
            ) from None
        if (info.st_dev, info.st_ino) != self._identity or self._root_fd is None:
            raise PathError(
                f"the workspace {str(self.root)!r} was moved or replaced since the run began "
                "(by a command?); tiss only works in the directory it started in, so it stops here"
            )

    def command_cwd(self) -> str:
        """The workspace path for a RUN's working directory, once it is checked to still be
        the workspace (not a directory or symlink a command put in its place)."""
        try:
            self._check_root()
        except PathError as exc:
            if os.path.lexists(self.root):
                raise
            raise CommandError(
                f"cannot run the command: the workspace {str(self.root)!r} no longer exists "
                "(did a command remove it?)"
            ) from exc
        return str(self.root)

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

    def _components(self, path: str) -> list[str]:
        rel = os.path.relpath(self._lexical(path), str(self.root))
        return [] if rel == "." else rel.split(os.sep)

    def _escape(self, path: str, target: str) -> PathError:
        return PathError(
            f"path {path!r} leads out of the workspace through a symlink (to {target!r}); "
            "symlinks may only point inside the workspace"
        )

    @contextmanager
    def _walk(self, path: str, *, follow_last: bool, create: bool = False) -> Iterator[_Target]:
        """Walk `path` from the root without letting the kernel follow any symlink.

        Yields the parent directory's descriptor and the last name. `follow_last` resolves a
        symlink in the last position too (READ, WRITE, MKDIR); DELETE acts on the link itself.
        `create` makes missing directories along the way (WRITE, MKDIR); otherwise a missing
        one raises `_Missing`. Every descriptor opened here is closed when the block ends.
        """
        pending = self._components(path)
        pending.reverse()  # a stack: the next component is at the end
        self._check_root()
        try:
            stack = [os.dup(self._root_fd)]  # type: ignore[arg-type]  # checked just above
        except OSError as exc:
            raise PathError(f"the workspace {str(self.root)!r} cannot be used ({exc.strerror})") from None
        names: list[str] = []  # the directories in `stack` below the root, for messages
        links = 0
        link_shown = ""  # where the last symlink followed pointed, for messages
        try:
            while True:
                if not pending:
                    yield _Target(stack[-1], "", os.sep.join(names) or ".")
                    return
                part = pending.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) == 1:  # only a symlink's target can get here (see _lexical)
                        raise self._escape(path, link_shown)
                    os.close(stack.pop())
                    names.pop()
                    continue
                last = not pending
                if last and not follow_last:
                    yield _Target(stack[-1], part, os.sep.join([*names, part]))
                    return
                try:
                    target = self._readlink(stack[-1], part)
                except OSError as exc:  # a name too long, a directory we may not search...
                    raise PathError(f"cannot use path {path!r}: {exc.strerror}") from None
                if target is not None:
                    links += 1
                    if links > _MAX_LINKS:
                        raise PathError(f"path {path!r} has too many levels of symlinks (a loop?)")
                    link_shown = os.path.normpath(os.path.join(str(self.root), *names, target))
                    if os.path.isabs(target):
                        real = os.path.normpath(target)
                        if not self._inside(real):
                            raise self._escape(path, target)
                        while len(stack) > 1:
                            os.close(stack.pop())
                        names.clear()
                        rel = os.path.relpath(real, str(self.root))
                        target = "" if rel == "." else rel
                    pending.extend(reversed(target.split("/")))
                    continue
                if last:
                    yield _Target(stack[-1], part, os.sep.join([*names, part]))
                    return
                stack.append(self._open_dir(stack[-1], part, path, create))
                names.append(part)
        finally:
            for fd in stack:
                os.close(fd)

    @staticmethod
    def _readlink(parent: int, name: str) -> str | None:
        """The target of `name` if it is a symlink; None if it is anything else or missing."""
        try:
            return os.readlink(name, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    @staticmethod
    def _open_dir(parent: int, name: str, path: str, create: bool) -> int:
        for _ in range(3):  # a directory created or swapped under us: look again, a few times
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise _Missing() from None
                try:
                    os.mkdir(name, 0o777, dir_fd=parent)
                except FileExistsError:
                    pass
            except NotADirectoryError:
                raise _ThroughFile(f"{path!r} goes through {name!r}, which is a file, not a directory") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # became a symlink after we looked: refuse, do not follow
                    raise PathError(
                        f"{path!r} changed while tiss was using it ({name!r} became a symlink); "
                        "do not change the workspace while a statement uses it"
                    ) from None
                raise PathError(f"cannot open {name!r} in {path!r}: {exc.strerror}") from None
        raise PathError(f"{path!r} keeps changing while tiss creates it; try again")

    def display(self, real: Path) -> str:
        """A path relative to the workspace, for messages."""
        try:
            rel = real.relative_to(self.root)
        except ValueError:
            return str(real)
        return str(rel) if str(rel) != "." else "."

    # -- operations --------------------------------------------------------------------------

    def glob(self, pattern: str) -> list[str]:
        """The workspace paths `pattern` matches, relative to the root and sorted (FOR ... IN FILES).

        Shell-style: `*`, `?` and `[...]` match within one path component, `**` matches any
        number of directories, and a name starting with `.` is matched only by a pattern
        component starting with `.`. The pattern is confined like every path (no absolute path
        outside the workspace, no `..` climbing out). Directories are listed without following
        symlinks, and a match that leads out of the workspace through a symlink is left out, so
        no path outside the workspace is ever returned.
        """
        rel = os.path.relpath(self._lexical(pattern), str(self.root))
        parts = [] if rel == "." else rel.split(os.sep)
        if not parts:
            return []
        deep = "**" in parts
        self._check_root()
        found: list[str] = []
        stack: list[tuple[str, ...]] = [()]
        while stack:
            where = stack.pop()
            try:
                with os.scandir(os.path.join(str(self.root), *where)) as entries:
                    listed = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
            except OSError:
                continue  # unreadable, or changed while listed: nothing to match there
            for name, is_dir in listed:
                path = (*where, name)
                if _glob_match(parts, path):
                    found.append("/".join(path))
                if is_dir and (deep or (len(path) < len(parts) and _glob_match(parts[: len(path)], path))):
                    stack.append(path)
        return sorted(path for path in found if self._stays_inside(path))

    def _stays_inside(self, path: str) -> bool:
        try:
            with self._walk(path, follow_last=True):
                return True
        except (PathError, _Missing):
            return False

    def exists(self, path: str) -> bool:
        try:
            with self._walk(path, follow_last=True) as target:
                if not target.name:
                    return True
                os.stat(target.name, dir_fd=target.parent, follow_symlinks=False)
                return True
        except (_Missing, _ThroughFile, FileNotFoundError):
            return False

    def identity(self, path: str) -> tuple[int, int] | None:
        """`(st_dev, st_ino)` of the file `path` names (links followed inside the workspace),
        None when there is none; the command policy knows a file a tainted WRITE wrote by it."""
        try:
            with self._walk(path, follow_last=True) as target:
                if not target.name:
                    return None
                info = os.stat(target.name, dir_fd=target.parent, follow_symlinks=False)
                return (info.st_dev, info.st_ino)
        except (PathError, _Missing, OSError):
            return None

    def read_text(self, path: str) -> str:
        try:
            with self._walk(path, follow_last=True) as target:
                if not target.name:
                    raise PathError(f"cannot READ {path!r}: it is a directory (the workspace itself)")
                data = self._read_file(path, target)
        except _Missing:
            raise PathError(f"cannot READ {path!r}: no such file in the workspace") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PathError(
                f"cannot READ {path!r}: it is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                f"{exc.start}); READ loads text files only, use RUN (e.g. base64 or iconv) for other data"
            ) from None

    @staticmethod
    def _read_file(path: str, target: _Target) -> bytes:
        try:
            # O_NONBLOCK: a FIFO must not hang READ; it is refused below as not a regular file.
            fd = os.open(target.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         dir_fd=target.parent)
        except FileNotFoundError:
            raise PathError(f"cannot READ {path!r}: no such file in the workspace") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PathError(
                    f"cannot READ {path!r}: it became a symlink while tiss was reading it; "
                    "do not change the workspace while a statement uses it"
                ) from None
            raise PathError(f"cannot READ {path!r}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise PathError(f"cannot READ {path!r}: it is a directory")
            if not stat.S_ISREG(info.st_mode):
                raise PathError(f"cannot READ {path!r}: it is not a regular file (a device, FIFO or socket)")
            if info.st_size > _MAX_TEXT:
                raise PathError(
                    f"cannot READ {path!r}: it is {info.st_size} bytes, more than READ loads "
                    f"({_MAX_TEXT} bytes); process it with RUN instead"
                )
            os.set_blocking(fd, True)
            chunks = []
            size = 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > _MAX_TEXT:  # it grew while we read
                    raise PathError(f"cannot READ {path!r}: it grew beyond {_MAX_TEXT} bytes while being read")
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise PathError(f"cannot READ {path!r}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def write_text(self, path: str, content: str) -> Path:
        """Atomically replace (or create) the file at `path`, creating parent directories."""
        if path.endswith(("/", os.sep + ".")) or path.rstrip("/").endswith(("/.", "/..")):
            raise PathError(f"cannot WRITE {path!r}: a path ending in '/' names a directory; drop the slash")
        data = content.encode("utf-8")
        try:
            with self._walk(path, follow_last=True, create=True) as target:
                if not target.name:
                    raise PathError(f"cannot WRITE {path!r}: it is a directory (the workspace itself)")
                self._replace(path, target, data)
                return self.root / target.shown
        except _Missing:  # not raised with create=True; kept for completeness of the contract
            raise PathError(f"cannot WRITE {path!r}: a parent directory is missing") from None

    def _replace(self, path: str, target: _Target, data: bytes) -> None:
        try:
            info = os.stat(target.name, dir_fd=target.parent, follow_symlinks=False)
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        except OSError as exc:
            raise PathError(f"cannot WRITE {path!r}: {exc.strerror}") from None
        else:
            if stat.S_ISDIR(info.st_mode):
                raise PathError(f"cannot WRITE {path!r}: it is a directory")
            # Never set-user-ID or set-group-ID on new content: a user's setuid file rewritten
            # by tiss running as root would otherwise become a root-owned setuid program.
            mode = stat.S_IMODE(info.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
        tmp = f".{target.name[:80]}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=target.parent)
        except OSError as exc:
            raise PathError(f"cannot WRITE {path!r}: {exc.strerror}") from None
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            # rename replaces the name itself: a symlink swapped in meanwhile is replaced, not followed.
            os.replace(tmp, target.name, src_dir_fd=target.parent, dst_dir_fd=target.parent)
        except BaseException as exc:
            try:
                os.unlink(tmp, dir_fd=target.parent)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError):  # a full disk, a read-only file system...
                raise PathError(f"cannot WRITE {path!r}: {exc.strerror or exc}") from None
            raise
        try:
            os.fsync(target.parent)  # the rename is durable only once the directory entry is
        except OSError:
            pass

    def mkdir(self, path: str) -> Path:
        try:
            with self._walk(path, follow_last=True, create=True) as target:
                if target.name:
                    try:
                        os.mkdir(target.name, 0o777, dir_fd=target.parent)
                    except FileExistsError:
                        info = os.stat(target.name, dir_fd=target.parent, follow_symlinks=False)
                        if not stat.S_ISDIR(info.st_mode):
                            raise PathError(f"cannot MKDIR {path!r}: a file of that name exists") from None
                    except OSError as exc:
                        raise PathError(f"cannot MKDIR {path!r}: {exc.strerror}") from None
                return self.root / target.shown
        except _Missing:
            raise PathError(f"cannot MKDIR {path!r}: a parent directory is missing") from None

    def delete(self, path: str, *, recursive: bool = False) -> Path:
        """Delete a file, a symlink (never its target) or a directory (`recursive` for a tree)."""
        if self._lexical(path) == str(self.root):
            raise PathError(f"cannot DELETE {path!r}: it is the workspace itself")
        missing = PathError(f"cannot DELETE {path!r}: no such file or directory in the workspace")
        try:
            with self._walk(path, follow_last=False) as target:
                if not target.name:
                    raise PathError(f"cannot DELETE {path!r}: it is the workspace itself")
                self._remove(path, target, recursive, missing)
                return self.root / target.shown
        except _Missing:
            raise missing from None

    @staticmethod
    def _remove(path: str, target: _Target, recursive: bool, missing: PathError) -> None:
        try:
            info = os.stat(target.name, dir_fd=target.parent, follow_symlinks=False)
        except FileNotFoundError:
            raise missing from None
        try:
            if stat.S_ISDIR(info.st_mode):
                if recursive:
                    # fd-based rmtree: never follows symlinks inside the tree, unlinks them.
                    shutil.rmtree(target.name, dir_fd=target.parent)
                else:
                    try:
                        os.rmdir(target.name, dir_fd=target.parent)
                    except OSError as exc:
                        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                            raise PathError(
                                f"cannot DELETE {path!r}: the directory is not empty; "
                                "add RECURSIVE to delete the whole tree"
                            ) from None
                        raise
            else:
                os.unlink(target.name, dir_fd=target.parent)
        except PathError:
            raise
        except FileNotFoundError:
            raise missing from None
        except OSError as exc:
            raise PathError(f"cannot DELETE {path!r}: {exc.strerror}") from None
