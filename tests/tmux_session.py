"""Drive a program in a real terminal for the end-to-end tests (`tiss repl`, `tiss chat`): a
private tmux server runs it in a session, the test types keys and reads the screen.

The `tmux` fixture (tests/conftest.py) gives each test its own server and kills it afterwards;
a module whose tests need tmux sets `pytestmark = NEEDS_TMUX`.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SESSION = "repl"  # the one session a test runs; every key goes to it

NEEDS_TMUX = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed, so there is no terminal to drive"
)


def shell_command(argv: list[str], status_file: Path | None = None, *, survive_interrupt: bool = False) -> str:
    """`argv` as one shell command line; with `status_file`, wrapped in `sh -c` so that its exit
    status is written there when it ends. `survive_interrupt` adds `trap : INT` (a handler, reset
    to the default in the program by exec), which keeps the wrapper alive through a Ctrl-C so it
    can still report the status."""
    line = " ".join(shlex.quote(part) for part in argv)
    if status_file is None:
        return line
    trap = "trap : INT; " if survive_interrupt else ""
    return f"sh -c {shlex.quote(f'{trap}{line}; echo $? > {shlex.quote(str(status_file))}')}"


class Tmux:
    """One private tmux server (its own socket), so the user's sessions are never touched."""

    def __init__(self, tmp_path: Path) -> None:
        # A socket path of our own (not -L NAME under /tmp/tmux-UID) leaves nothing behind.
        self.socket = str(tmp_path / f"tmux-{uuid.uuid4().hex[:6]}.sock")
        # An empty configuration: the user's ~/.tmux.conf must not change what the test sees.
        self.config = tmp_path / "tmux.conf"
        self.config.write_text("")

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(
            ["tmux", "-S", self.socket, "-f", str(self.config), *args],
            capture_output=True, text=True, timeout=10,
        )
        return proc.stdout

    def start(self, command: str, *, width: int = 100, height: int = 40) -> None:
        """Run the shell command line `command` in a detached session of that size, in ROOT."""
        self("new-session", "-d", "-s", SESSION, "-x", str(width), "-y", str(height), "-c", str(ROOT), command)

    def send(self, *keys: str) -> None:
        """tmux key names (`C-c`, `C-d`, `Enter`), or literal text after `-l`."""
        self("send-keys", "-t", SESSION, *keys)

    def type(self, text: str) -> None:
        self.send("-l", text)
        self.send("Enter")

    def screen(self, escapes: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []), "-t", SESSION, "-S", "-200")

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def wait_exit(self, status_file: Path, failure: str, timeout: float = 15.0) -> str:
        """The exit status `shell_command` wrote to `status_file`; `failure` (with the screen)
        is the assertion message when it never comes."""
        deadline = time.monotonic() + timeout
        while not status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status_file.exists(), f"{failure}; the screen was:\n{self.screen()}"
        return status_file.read_text().strip()
