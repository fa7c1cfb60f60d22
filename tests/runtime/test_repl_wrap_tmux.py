"""`tiss repl` in a narrow real terminal (tmux): a refused entry's message wraps to the width
instead of being cut at the edge; `help`, `exit` and `quit` do what they do in Python."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest
from tmux_session import NEEDS_TMUX, ROOT, Tmux, shell_command

pytestmark = NEEDS_TMUX

WIDTH = 40


def start(tmux: Tmux, tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    status_file = tmp_path / "status"
    tmux.start(shell_command([
        "env", f"XDG_STATE_HOME={tmp_path / 'state'}", f"PYTHONPATH={ROOT}",
        sys.executable, "-m", "runtime", "repl", "--workspace", str(workspace),
    ], status_file), width=WIDTH, height=30)
    tmux.wait_for("tiss>")
    return status_file


def test_a_long_error_wraps_to_the_terminal_width(tmux, tmp_path):
    status_file = start(tmux, tmp_path)
    tmux.type('RUNN "make"')
    message = "line 1, column 1: unknown keyword 'RUNN'; did you mean 'RUN'?"
    assert len(message) > WIDTH  # it cannot fit on one row
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = [row for row in tmux.screen().splitlines() if row.strip()]
        # The message's rows are the last ones on the screen: all of it, each within the width.
        tail = "".join(rows[-3:])
        if message in tail:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the whole message never showed; the screen was:\n{tmux.screen()}")
    assert all(len(row) <= WIDTH for row in rows)
    assert rows[-1].endswith("did you mean 'RUN'?") and message.startswith(rows[-2])
    tmux.send("C-c")
    tmux.type("quit")
    assert tmux.wait_exit(status_file, "the REPL did not leave") == "0"


def test_help_and_exit_as_in_python(tmux, tmp_path):
    status_file = start(tmux, tmp_path)
    tmux.type("help")
    tmux.wait_for(":vars")  # the meta-command list
    tmux.type("exit")
    assert tmux.wait_exit(status_file, "the REPL did not leave") == "0"


@pytest.mark.parametrize("word", ["exit", "quit", "exit()", "quit()", "  quit  "])
def test_the_words_leave_a_piped_session_too(word, tmp_path):
    from runtime.repl.engine import Repl
    from runtime.repl.main import run_piped
    from runtime.session import Session
    from runtime.workspace import Workspace

    out = io.StringIO()
    repl = Repl(lambda listeners: Session(Workspace(str(tmp_path)), listeners=listeners), out)
    assert run_piped(repl, io.StringIO(f'LOG "before"\n{word}\nLOG "after"\n')) == 0
    assert "before" in out.getvalue() and "after" not in out.getvalue()
    assert repl.quit


def test_help_as_a_word_prints_the_meta_help(tmp_path):
    from runtime.repl.engine import Repl
    from runtime.repl.meta import help_text
    from runtime.session import Session
    from runtime.workspace import Workspace

    for word in ("help", "help()"):
        out = io.StringIO()
        repl = Repl(lambda listeners: Session(Workspace(str(tmp_path)), listeners=listeners), out)
        assert repl.handle(word) == 0
        assert help_text() in out.getvalue()
