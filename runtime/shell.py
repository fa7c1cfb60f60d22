"""Running one shell command for RUN: process tree, timeout, bounded capture, optional sandbox.

The command runs as `<shell> -c <command>` in the workspace, in a new session (its own process
group), with stdin from /dev/null. Both output pipes are drained incrementally by one selector
loop; each stream keeps at most `cap` bytes and drops the rest while still reading (so the child
never blocks on a full pipe and a flood of output costs no memory beyond the cap).

Nothing a command starts outlives its RUN. On timeout, on cancellation (Ctrl-C, a failed
budget) and after the shell itself exits, the whole process tree is killed, by the first of
these the machine offers (chosen once per process, `tree_mode()`):

- `cgroup`: the command runs in a cgroup v2 of its own (created under tiss's own cgroup; the
  command joins it before it runs anything), and `cgroup.kill` kills every process in it at
  once. Nothing escapes: not `setsid`, not a double fork, not a process that hides its
  environment. Needs a writable cgroup v2 hierarchy with `cgroup.kill` (Linux 5.14): as root
  on most machines, or a delegated cgroup (systemd `Delegate=yes`).
- `subreaper`: the command runs under `runtime/reaper.py`, a child subreaper
  (`PR_SET_CHILD_SUBREAPER`, Linux 3.4): every orphan of the tree is re-parented to it, and it
  kills and reaps descendants until none is left. Also complete; used where no cgroup can be
  made (an unprivileged user, a read-only /sys/fs/cgroup).
- `group` (not Linux): the process group is killed, and so is every process whose environment
  carries this RUN's `TISS_RUN_ID` marker; a process that leaves the group and clears its
  environment escapes.

`TISS_KILL_TREE=cgroup|subreaper` forces a mode (tests use it to cover both on one machine).

With `sandbox="workspace"` the command runs inside bubblewrap (`sandbox_argv`): a user
namespace with every capability dropped, only the system directories (read-only), the
directories on PATH (read-only) and the workspace (writable) mounted, a private /tmp, a fresh
/proc and /dev, no /run, /var, /home or /sys from the host (so no host Unix socket is
reachable), no network, its own PID, IPC and UTS namespaces.
"""

from __future__ import annotations

import functools
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from runtime.errors import CommandError, SandboxUnavailable

DEFAULT_CAP = 10 * 1024 * 1024  # bytes kept per stream
DEFAULT_TIMEOUT = 600.0  # seconds: 10 minutes unless @timeout / --timeout say otherwise
_CHUNK = 64 * 1024
_POLL = 0.05  # seconds between checks of the cancel event while nothing is readable
_DRAIN_GRACE = 0.5  # after the group is killed, how long to wait for the pipes to close

# Variables that must not reach a command a script runs (a model-written script could print them).
_SECRET_ENV = ("TISS_API_KEY",)


@dataclass(frozen=True)
class CommandResult:
    """What one RUN produced. `stdout`/`stderr` are decoded UTF-8 (invalid bytes replaced)."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float  # seconds
    timed_out: bool = False
    cancelled: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class _Capture:
    """One stream's first `cap` bytes; the rest is counted and dropped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


# Mounted read-only in the sandbox when they exist (a symlink, as /bin -> usr/bin on merged-/usr
# systems, is recreated as the same symlink). Everything else of the host is absent.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
# Never mounted even when PATH names them: kernel interfaces, sockets, other users' files.
_HIDDEN_PREFIXES = ("/proc", "/sys", "/dev", "/run", "/var/run", "/tmp", "/var/tmp")
# Readable by root only on the host, and root in the sandbox would still own them: hidden.
_MASKED_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _path_dirs(extra: list[str]) -> list[str]:
    """Directories on PATH (and the shell's own) outside the system directories, resolved: the
    sandbox mounts them read-only so the tools the user runs are there. A virtualenv's `bin`
    brings its whole environment (the directory holding `pyvenv.cfg`)."""
    found: list[str] = []
    for entry in [*os.environ.get("PATH", "").split(os.pathsep), *extra]:
        if not entry or not os.path.isabs(entry):
            continue
        real = os.path.realpath(entry)
        if not os.path.isdir(real) or not os.access(real, os.R_OK | os.X_OK):
            continue  # bwrap could not mount it either (another user's home, say)
        if os.path.isfile(os.path.join(os.path.dirname(real), "pyvenv.cfg")):
            real = os.path.dirname(real)
        if real == "/" or any(_under(real, p) for p in _HIDDEN_PREFIXES):
            continue
        if any(_under(real, d) for d in _SYSTEM_DIRS) or any(_under(real, d) for d in found):
            continue
        found = [d for d in found if not _under(d, real)] + [real]
    return found


@functools.lru_cache(maxsize=4)
def _userns_works(bwrap: str) -> bool:
    """Whether bubblewrap can make a user namespace here (asked once per process)."""
    try:
        probe = subprocess.run(
            [bwrap, "--unshare-user", "--ro-bind", "/", "/", "--", "/bin/true"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def sandbox_argv(workspace: str, shell_path: str | None = None) -> list[str]:
    """The bubblewrap prefix for `--sandbox workspace`; raises when bwrap is missing."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable(
            "--sandbox workspace needs bubblewrap, and `bwrap` is not on PATH; install it "
            "(Debian/Ubuntu: apt-get install bubblewrap) or run without --sandbox"
        )
    argv = [bwrap]
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            argv += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            argv += ["--ro-bind", directory, directory]
    for masked in _MASKED_FILES:
        if os.path.isfile(masked):
            argv += ["--ro-bind", "/dev/null", masked]
    extra = [os.path.dirname(shell_path)] if shell_path else []
    for directory in _path_dirs(extra):
        argv += ["--ro-bind", directory, directory]
    # Mount order matters: the private /tmp goes on before the workspace, so a workspace that
    # lives under /tmp stays visible and writable inside the sandbox.
    argv += [
        "--dev", "/dev",
        "--proc", "/proc",  # a fresh procfs on an empty root: no host /proc beneath it
        "--tmpfs", "/tmp",
        "--bind", workspace, workspace,
        "--remount-ro", "/",  # the skeleton root: only /tmp and the workspace take writes
        "--chdir", workspace,
        # A user namespace even for root, and no capability in it: no mount, umount, nsenter,
        # chroot or raw sockets; root in the sandbox is root over the workspace files only.
        # Where user namespaces are forbidden (some containers' seccomp profiles) root still
        # gets a sandbox, with every capability dropped all the same.
        *(["--unshare-user"] if _userns_works(bwrap) or os.geteuid() != 0 else []),
        "--cap-drop", "ALL",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--",
    ]
    return argv


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- killing the whole tree ------------------------------------------------------------------

_REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_CGROUP_SETTLE = 2.0  # seconds to wait for a killed cgroup to empty before removing it
_REAPER_GRACE = 5.0  # seconds the reaper may take to kill its tree when asked to stop
_mode_lock = threading.Lock()
_mode: tuple[str, str | None] | None = None  # (mode, the cgroup directory runs are made under)


def _own_cgroup_dir() -> str | None:
    """Where this process sits in the cgroup v2 hierarchy, as a directory path, if mounted."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            relative = next((line[3:].strip() for line in handle if line.startswith("0::")), None)
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    if relative is None:
        return None
    for fields in mounts:
        # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER
        if "-" in fields and fields[fields.index("-") + 1] == "cgroup2":
            root, point = fields[3], fields[4]
            if relative == root or relative.startswith(root.rstrip("/") + "/") or root == "/":
                inner = relative[len(root.rstrip("/")):] if root != "/" else relative
                return os.path.normpath(point + "/" + inner.lstrip("/"))
    return None


def _cgroup_works(base: str) -> bool:
    """Whether we can make a cgroup under `base`, move a process into it and kill it there."""
    probe = os.path.join(base, f"tiss-probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    try:
        if not os.path.exists(os.path.join(probe, "cgroup.kill")):
            return False
        joined = subprocess.run(
            ["/bin/sh", "-c", 'echo 0 >"$0"', os.path.join(probe, "cgroup.procs")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return joined.returncode == 0
    except OSError:
        return False
    finally:
        _remove_cgroup(probe)


@functools.lru_cache(maxsize=1)
def _reaper_python() -> str | None:
    """A Python this user may execute for `reaper.py` (standard library only, 3.9 or later).

    Usually our own interpreter; not always: a virtualenv's `python` can be a symlink into a
    directory only its owner can enter, and tiss may run as someone else."""
    candidates = [sys.executable, getattr(sys, "_base_executable", ""), shutil.which("python3") or "",
                  "/usr/bin/python3", "/usr/local/bin/python3"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and os.access(os.path.realpath(candidate), os.X_OK):
            return candidate
    return None


def _subreaper_works() -> bool:
    if _reaper_python() is None:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        return libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def tree_mode() -> str:
    """How RUN kills a command's whole process tree here: "cgroup", "subreaper" or "group"."""
    return _tree_mode()[0]


def _tree_mode() -> tuple[str, str | None]:
    global _mode
    with _mode_lock:
        if _mode is None:
            forced = os.environ.get("TISS_KILL_TREE", "")
            base = _own_cgroup_dir() if forced in ("", "cgroup") else None
            if base is not None and _cgroup_works(base):
                _mode = ("cgroup", base)
            elif forced in ("", "subreaper") and _subreaper_works():
                _mode = ("subreaper", None)
            else:
                _mode = ("group", None)
        return _mode


def _remove_cgroup(path: str) -> None:
    deadline = time.monotonic() + _CGROUP_SETTLE
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY: killed processes are still being torn down
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)


class _Tree:
    """One RUN's process tree: `wrap` the argv that starts it, `kill` all of it, `close`."""

    def __init__(self, run_id: str) -> None:
        self.mode, base = _tree_mode()
        self.run_id = run_id
        self.cgroup: str | None = None
        self.proc: subprocess.Popen | None = None
        if self.mode == "cgroup" and base is not None:
            path = os.path.join(base, f"tiss-{os.getpid()}-{run_id}")
            try:
                os.mkdir(path)
                self.cgroup = path
            except OSError:
                self.mode = "subreaper" if _subreaper_works() else "group"

    def wrap(self, argv: list[str]) -> list[str]:
        if self.cgroup is not None:
            # The command joins the cgroup before it runs anything, so all it starts is inside.
            procs = os.path.join(self.cgroup, "cgroup.procs")
            return ["/bin/sh", "-c", 'echo 0 >"$0" || exit 125; exec "$@"', procs, *argv]
        if self.mode == "subreaper":
            return [_reaper_python() or sys.executable, "-I", "-S", _REAPER, str(os.getpid()), "--", *argv]
        return argv

    def kill(self) -> None:
        """Kill every process of the tree (the started process included)."""
        if self.cgroup is not None:
            try:
                with open(os.path.join(self.cgroup, "cgroup.kill"), "w") as handle:
                    handle.write("1")
            except OSError:
                pass
        elif self.mode == "subreaper" and self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)  # the reaper kills its tree, then exits
                self.proc.wait(timeout=_REAPER_GRACE)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc is not None:
            _kill_group(self.proc.pid)
        if self.mode == "group":
            _kill_marked(self.run_id)

    def close(self) -> None:
        if self.cgroup is not None:
            self.kill()
            _remove_cgroup(self.cgroup)
            self.cgroup = None


_MARKER = "TISS_RUN_ID"


def _child_env(run_id: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in _SECRET_ENV:
        env.pop(name, None)
    env[_MARKER] = run_id
    return env


def _marked_pids(run_id: str) -> list[int]:
    """Processes of ours whose environment carries this RUN's marker (read from /proc)."""
    needle = f"\0{_MARKER}={run_id}\0".encode()
    found = []
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: the process group kill is all there is
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                data = handle.read()
        except OSError:  # gone, or not ours to read
            continue
        if needle in b"\0" + data:
            found.append(int(entry))
    return found


def _kill_marked(run_id: str) -> None:
    """Kill every process that still carries the marker; look again in case one forked.

    A sweep ends only when a scan finds none: a marked process can only be started by another
    marked process, which the scan before found and killed."""
    for _ in range(5):
        pids = _marked_pids(run_id)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def run_command(
    command: str,
    *,
    cwd: str,
    timeout: float | None = DEFAULT_TIMEOUT,
    shell: str = "/bin/sh",
    cap: int = DEFAULT_CAP,
    sandbox: str | None = None,
    cancel: threading.Event | None = None,
    on_output: Callable[[str, bytes], None] | None = None,
) -> CommandResult:
    """Run `command` and return what it did; never raises for a non-zero exit.

    `timeout` (seconds, None for none) kills the whole process group when it runs out and marks
    the result `timed_out`. Setting `cancel` from any thread kills the group too and marks the
    result `cancelled`. `shell` is a program name or path (`@shell "bash"`). `on_output`, if
    given, is called with ("stdout" | "stderr", chunk) as output arrives (`tiss run -v`).
    """
    if "\0" in command:
        raise CommandError("the command contains a NUL byte")
    shell_path = shell if os.sep in shell else shutil.which(shell)
    if shell_path is None or not os.access(shell_path, os.X_OK):
        raise CommandError(f"shell {shell!r} was not found; check the @shell directive")
    argv = [shell_path, "-c", command]
    if sandbox == "workspace":
        argv = sandbox_argv(cwd, shell_path) + argv
    elif sandbox is not None:
        raise SandboxUnavailable(f"unknown sandbox {sandbox!r}; the only sandbox is 'workspace'")

    started = time.monotonic()
    deadline = None if timeout is None else started + max(0.0, timeout)
    run_id = secrets.token_hex(8)
    tree = _Tree(run_id)
    try:
        proc = subprocess.Popen(
            tree.wrap(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=_child_env(run_id),
            close_fds=True,
        )
    except OSError as exc:
        tree.close()
        if not os.path.isdir(cwd):
            raise CommandError(
                f"cannot run the command: the workspace {cwd!r} no longer exists "
                "(did a command remove it?)"
            ) from None
        raise CommandError(f"could not start {argv[0]!r}: {exc.strerror}") from None
    tree.proc = proc

    out, err = _Capture(cap), _Capture(cap)
    captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    stdout_fd = proc.stdout.fileno()
    timed_out = cancelled = False
    selector = selectors.DefaultSelector()
    for fileobj in (proc.stdout, proc.stderr):
        os.set_blocking(fileobj.fileno(), False)
        selector.register(fileobj, selectors.EVENT_READ)
    kill_deadline: float | None = None  # set once the tree is killed: bound the final drain
    try:
        while selector.get_map():
            now = time.monotonic()
            if kill_deadline is None:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                elif deadline is not None and now >= deadline:
                    timed_out = True
                # Once the shell is done, whatever it left running goes with it; otherwise a
                # background child holding the pipe would keep RUN waiting.
                if cancelled or timed_out or proc.poll() is not None:
                    tree.kill()
                    kill_deadline = time.monotonic() + _DRAIN_GRACE
            elif now >= kill_deadline:
                break  # a process outside the tree holds the pipe; stop waiting for it
            wait = _POLL
            if deadline is not None and kill_deadline is None:
                wait = min(wait, max(0.0, deadline - now))
            for key, _ in selector.select(wait):
                try:
                    chunk = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                if chunk:
                    captures[key.fd].feed(chunk)
                    if on_output is not None:
                        on_output("stdout" if key.fd == stdout_fd else "stderr", chunk)
                else:
                    selector.unregister(key.fileobj)
        if kill_deadline is None:
            # Both pipes closed before the shell was seen to exit: reap it, still within limits.
            while True:
                try:
                    proc.wait(timeout=_POLL)  # polls with short, growing sleeps
                    break
                except subprocess.TimeoutExpired:
                    pass
                if cancel is not None and cancel.is_set():
                    cancelled = True
                elif deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                if cancelled or timed_out:
                    break
            tree.kill()  # whatever left the shell's group (setsid, daemons) goes too
    except BaseException:
        # Ctrl-C in the main thread (or anything else): the command must not outlive us.
        tree.kill()
        proc.wait()
        raise
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
        tree.close()
    exit_code = proc.wait()
    if exit_code < 0:  # killed by a signal: report it as a shell would (128 + signal number)
        exit_code = 128 - exit_code
    return CommandResult(
        command=command,
        exit_code=exit_code,
        stdout=out.text(),
        stderr=err.text(),
        duration=time.monotonic() - started,
        timed_out=timed_out,
        cancelled=cancelled,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
    )
