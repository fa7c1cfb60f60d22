"""`tiss repl` end to end in a real terminal: tmux runs it, the test types and reads the screen."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed, so there is no terminal to drive"
)


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

    def type(self, text: str) -> None:
        self("send-keys", "-t", "repl", "-l", text)
        self("send-keys", "-t", "repl", "Enter")

    def screen(self, escapes: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "repl", "-S", "-200")

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")


@pytest.fixture
def tmux(tmp_path):
    server = Tmux(tmp_path)
    yield server
    server("kill-server")


def test_repl_in_a_real_terminal(tmux, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    state = tmp_path / "state"
    status_file = tmp_path / "status"
    repl = " ".join(shlex.quote(part) for part in [
        "env", "-u", "NO_COLOR", f"XDG_STATE_HOME={state}", f"PYTHONPATH={ROOT}",
        sys.executable, "-m", "runtime", "repl", "--workspace", str(workspace),
    ])
    # `trap :` (a handler, reset to the default in the REPL by exec) keeps the wrapper alive
    # through the Ctrl-C below, so it can report the REPL's exit status.
    command = f"sh -c {shlex.quote(f'trap : INT; {repl}; echo $? > {shlex.quote(str(status_file))}')}"
    tmux("new-session", "-d", "-s", "repl", "-x", "100", "-y", "40", "-c", str(ROOT), command)
    tmux.wait_for("tiss>")  # capture-pane trims the trailing space

    tmux.type('VAR who = "tmux"')
    # A multi-line entry: Enter continues the open block with indentation; `}` dedents.
    tmux.type('STEP "greet" {')
    tmux.type('RUN "echo hi {{ who }} > out.txt"')
    tmux.type("}")
    screen = tmux.wait_for("PASSED: 1 passed")
    assert '....      RUN "echo hi {{ who }} > out.txt"' in screen
    assert (workspace / "out.txt").read_text() == "hi tmux\n"

    # Highlighting comes from TissLang's tokens: the keyword VAR is coloured, the string too.
    coloured = tmux.screen(escapes=True)
    var_line = next(line for line in coloured.splitlines() if "who" in line and "VAR" in line)
    assert re.search(r'\x1b\[[\d;]*mVAR', var_line), repr(var_line)
    assert re.search(r'\x1b\[[\d;]*m"tmux"', var_line), repr(var_line)

    # Enter after the IF block's `}` runs it at once (no blank line needed), and a heredoc body
    # is exactly what was typed: the deeper line's indentation is not carried to the delimiter.
    tmux.type('IF who == "tmux" {')
    tmux.type('LOG "{{ who }} said yes"')
    tmux.type("}")
    tmux.wait_for("tmux said yes")
    for line in ('WRITE "a.py" <<PY', "def f():", "    return 1", "PY"):
        tmux.type(line)
    tmux.type('RUN "wc -l < a.py"')
    tmux.wait_for("exit 0 in")
    assert (workspace / "a.py").read_text() == "def f():\n    return 1\n"

    # A syntax error is refused in place; Ctrl-C clears it and the prompt stays usable.
    tmux.type('RUN "x" extra')
    tmux.wait_for("line 1, column 9")
    tmux("send-keys", "-t", "repl", "C-c")
    tmux.type(":last")
    tmux.wait_for("command: wc -l < a.py")

    # Ctrl-C during a command kills it and returns to the prompt.
    tmux.type('RUN "sleep 30"')
    time.sleep(1.0)
    started = time.monotonic()
    tmux("send-keys", "-t", "repl", "C-c")
    tmux.wait_for("interrupted: the entry stopped (any command it was running was killed)")
    assert time.monotonic() - started < 10
    tmux.type('LOG "still {{ who }}"')
    tmux.wait_for("still tmux")

    # Ctrl-D leaves with status 0 (written by the wrapper shell, which reaps the REPL itself),
    # and the entries are in the XDG history file.
    tmux("send-keys", "-t", "repl", "C-d")
    deadline = time.monotonic() + 15
    while not status_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status_file.exists(), f"the REPL did not exit on Ctrl-D; the screen was:\n{tmux.screen()}"
    assert status_file.read_text().strip() == "0"
    history = (state / "tiss" / "history").read_text()
    assert '+VAR who = "tmux"' in history and '+    RUN "echo hi {{ who }} > out.txt"' in history
