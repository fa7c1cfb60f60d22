"""A RUN's process-tree keeper where no cgroup can be made: a child subreaper that kills all.

`python -I -S reaper.py PARENT_PID -- COMMAND...` is what `runtime.shell` starts instead of
COMMAND when it cannot create a cgroup (an unprivileged user, a read-only /sys/fs/cgroup). It
marks itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`), so every process COMMAND starts
stays its descendant even after its parent exits (`setsid`, a daemon's double fork, a process
that forks and lets its parent die thousands of times): orphans are re-parented to the nearest
subreaper, not to init. When COMMAND exits, or on SIGTERM (timeout, Ctrl-C: sent by
`runtime.shell`), or when tiss itself dies (`PR_SET_PDEATHSIG`), it kills every descendant
with SIGKILL and reaps them, repeating until it has no child left, then exits with COMMAND's
status (128 + N when COMMAND was killed by signal N).

Standard library only, and nothing from this package: it runs with `-I -S` for a fast start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Stop(Exception):
    """A stop signal arrived: kill the tree now."""


def _prctl(option: int, value: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process we can see (from /proc/PID/stat, readable for all)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        try:
            # The command name may hold spaces and parentheses; the fields follow the last ')'.
            table[int(entry)] = int(data[data.rindex(b")") + 2 :].split()[1])
        except (ValueError, IndexError):
            continue
    return table


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def _kill_tree() -> None:
    """SIGKILL every descendant and reap, until no child is left.

    As a subreaper we are the parent of every orphan of the tree, so "no child left" (waitpid
    fails with ECHILD) means the tree is gone; a process forking while we look is found the
    next time round, as our child or the child of one already killed."""
    me = os.getpid()
    while True:
        for pid in _descendants(me):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
        except ChildProcessError:
            return
        try:  # children remain: wait for one to die (they were all sent SIGKILL)
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: reaper.py PARENT_PID -- COMMAND...", file=sys.stderr)
        return 125

    def stop(signum: int, frame: object) -> None:
        raise _Stop()

    for signum in _STOP_SIGNALS:
        signal.signal(signum, stop)
    status = 128 + signal.SIGKILL  # what COMMAND "exited" with if we are stopped first
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != int(argv[1]):  # tiss died before the line above took effect
            return status
        if not _prctl(_PR_SET_CHILD_SUBREAPER, 1):
            print("tiss: cannot become a child subreaper; this kernel is too old", file=sys.stderr)
            return 125
        try:
            # Python ignores SIGPIPE and SIGXFSZ; the command gets the defaults, as under a shell.
            child = os.posix_spawnp(argv[3], argv[3:], os.environ,
                                    setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
        except OSError as exc:
            print(f"tiss: cannot start {argv[3]!r}: {exc.strerror}", file=sys.stderr)
            return 127
        while True:
            pid, wait_status = os.waitpid(-1, 0)
            if pid == child:
                code = os.waitstatus_to_exitcode(wait_status)
                status = code if code >= 0 else 128 - code
                break
    except _Stop:
        pass
    finally:
        for signum in _STOP_SIGNALS:  # a second signal must not cut the sweep short
            signal.signal(signum, signal.SIG_IGN)
        _kill_tree()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
