"""Running one shell command for RUN: process group, timeout, bounded capture, optional sandbox.

The command runs as `<shell> -c <command>` in the workspace, in a new session (its own process
group), with stdin from /dev/null. Both output pipes are drained incrementally by one selector
loop; each stream keeps at most `cap` bytes and drops the rest while still reading (so the child
never blocks on a full pipe and a flood of output costs no memory beyond the cap). On timeout,
on cancellation (Ctrl-C, a failed budget) and after the shell itself exits, the whole process
group is killed, so nothing the command started outlives its RUN. A process that left the group
(`setsid`, a daemon's double fork) is found by a marker: every RUN's environment carries
`TISS_RUN_ID=<random>`, and the processes whose environment holds it are killed too. Only a
process that also clears its environment escapes that; `--sandbox workspace` (its own PID
namespace, torn down with the command) catches even those.

With `sandbox="workspace"` the command runs inside bubblewrap: read-only root, the workspace
writable, a private /tmp, no network, its own PID namespace.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

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


def sandbox_argv(workspace: str) -> list[str]:
    """The bubblewrap prefix for `--sandbox workspace`; raises when bwrap is missing."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable(
            "--sandbox workspace needs bubblewrap, and `bwrap` is not on PATH; install it "
            "(Debian/Ubuntu: apt-get install bubblewrap) or run without --sandbox"
        )
    # Mount order matters: the private /tmp goes on before the workspace, so a workspace that
    # lives under /tmp stays visible and writable inside the sandbox.
    return [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--bind", workspace, workspace,
        "--chdir", workspace,
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
        "--new-session",
        "--",
    ]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
) -> CommandResult:
    """Run `command` and return what it did; never raises for a non-zero exit.

    `timeout` (seconds, None for none) kills the whole process group when it runs out and marks
    the result `timed_out`. Setting `cancel` from any thread kills the group too and marks the
    result `cancelled`. `shell` is a program name or path (`@shell "bash"`).
    """
    if "\0" in command:
        raise CommandError("the command contains a NUL byte")
    shell_path = shell if os.sep in shell else shutil.which(shell)
    if shell_path is None or not os.access(shell_path, os.X_OK):
        raise CommandError(f"shell {shell!r} was not found; check the @shell directive")
    argv = [shell_path, "-c", command]
    if sandbox == "workspace":
        argv = sandbox_argv(cwd) + argv
    elif sandbox is not None:
        raise SandboxUnavailable(f"unknown sandbox {sandbox!r}; the only sandbox is 'workspace'")

    started = time.monotonic()
    deadline = None if timeout is None else started + max(0.0, timeout)
    run_id = secrets.token_hex(8)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=_child_env(run_id),
            close_fds=True,
        )
    except OSError as exc:
        if not os.path.isdir(cwd):
            raise CommandError(
                f"cannot run the command: the workspace {cwd!r} no longer exists "
                "(did a command remove it?)"
            ) from None
        raise CommandError(f"could not start {argv[0]!r}: {exc.strerror}") from None

    pgid = proc.pid  # start_new_session: the child leads its own group
    out, err = _Capture(cap), _Capture(cap)
    captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    timed_out = cancelled = False
    selector = selectors.DefaultSelector()
    for fileobj in (proc.stdout, proc.stderr):
        os.set_blocking(fileobj.fileno(), False)
        selector.register(fileobj, selectors.EVENT_READ)
    kill_deadline: float | None = None  # set once the group is killed: bound the final drain
    swept = False  # the marked processes were killed (one sweep repeats until none is left)
    try:
        while selector.get_map():
            now = time.monotonic()
            if kill_deadline is None:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                elif deadline is not None and now >= deadline:
                    timed_out = True
                # Once the shell is done, whatever it left running in its group goes with it;
                # otherwise a background child holding the pipe would keep RUN waiting.
                if cancelled or timed_out or proc.poll() is not None:
                    _kill_group(pgid)
                    _kill_marked(run_id)  # also those that left the group and hold the pipe
                    swept = True
                    kill_deadline = now + _DRAIN_GRACE
            elif now >= kill_deadline:
                break  # a process outside the group holds the pipe; stop waiting for it
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
            _kill_group(pgid)
    except BaseException:
        # Ctrl-C in the main thread (or anything else): the command must not outlive us.
        _kill_group(pgid)
        _kill_marked(run_id)
        proc.wait()
        raise
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
    exit_code = proc.wait()
    if not swept:
        _kill_marked(run_id)  # whatever left the process group (setsid, daemons) goes too
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
