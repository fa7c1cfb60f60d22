"""`tiss repl` end to end in a real terminal: tmux runs it, the test types and reads the screen."""

from __future__ import annotations

import re
import sys
import time

from tmux_session import NEEDS_TMUX, ROOT, shell_command

pytestmark = NEEDS_TMUX


def test_repl_in_a_real_terminal(tmux, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    state = tmp_path / "state"
    status_file = tmp_path / "status"
    # The wrapper survives the Ctrl-C below, so it can report the REPL's exit status.
    tmux.start(shell_command([
        "env", "-u", "NO_COLOR", f"XDG_STATE_HOME={state}", f"PYTHONPATH={ROOT}",
        sys.executable, "-m", "runtime", "repl", "--workspace", str(workspace),
    ], status_file, survive_interrupt=True))
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
    tmux.send("C-c")
    tmux.type(":last")
    tmux.wait_for("command: wc -l < a.py")

    # Ctrl-C during a command kills it and returns to the prompt.
    tmux.type('RUN "sleep 30"')
    time.sleep(1.0)
    started = time.monotonic()
    tmux.send("C-c")
    tmux.wait_for("interrupted: the entry stopped (any command it was running was killed)")
    assert time.monotonic() - started < 10
    tmux.type('LOG "still {{ who }}"')
    tmux.wait_for("still tmux")

    # Ctrl-D leaves with status 0 (written by the wrapper shell, which reaps the REPL itself),
    # and the entries are in the XDG history file.
    tmux.send("C-d")
    assert tmux.wait_exit(status_file, "the REPL did not exit on Ctrl-D") == "0"
    history = (state / "tiss" / "history").read_text()
    assert '+VAR who = "tmux"' in history and '+    RUN "echo hi {{ who }} > out.txt"' in history
