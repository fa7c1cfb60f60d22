"""The command policy in `tiss repl` on a real terminal: tmux runs it, the test answers the
approval question (the same gate as `tiss run`, runtime/interpreter_policy.py)."""

from __future__ import annotations

import shlex
import shutil
import sys
import time

import pytest

from test_repl_tmux import ROOT, Tmux

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed, so there is no terminal to drive"
)


@pytest.fixture
def tmux(tmp_path):
    server = Tmux(tmp_path)
    yield server
    server("kill-server")


def test_repl_asks_before_a_command_holding_model_text(tmux, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    repl = " ".join(shlex.quote(part) for part in [
        "env", f"XDG_STATE_HOME={tmp_path / 'state'}", f"PYTHONPATH={ROOT}", "NO_COLOR=1",
        sys.executable, "-m", "runtime", "repl", "--workspace", str(workspace), "--model", "echo",
    ])
    tmux("new-session", "-d", "-s", "repl", "-x", "120", "-y", "40", "-c", str(ROOT), repl)
    tmux.wait_for("tiss>")
    tmux.type('PROMPT_AGENT "echo from-model" INTO c')
    tmux.wait_for("tiss> PROMPT_AGENT")
    tmux.type('RUN "{{ c }} > yes.txt"')
    screen = tmux.wait_for("Allow this RUN? [y]es / [n]o:")
    assert "    \u00abecho from-model\u00bb > yes.txt" in screen
    tmux.type("y")
    tmux.wait_for("exit 0")
    assert (workspace / "yes.txt").read_text() == "from-model\n"
    tmux.type('RUN "{{ c }} > no.txt"')
    tmux.wait_for("no.txt\nAllow this RUN? [y]es / [n]o:")
    tmux.type("n")
    screen = tmux.wait_for("RUN refused by the reviewer")
    assert not (workspace / "no.txt").exists()
    tmux.type('RUN "echo clean > clean.txt"')  # the author's own command: no question
    deadline = time.monotonic() + 15
    while tmux.screen().count("exit 0 in") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (workspace / "clean.txt").exists(), tmux.screen()
    assert tmux.screen().count("Allow this RUN?") == 2
