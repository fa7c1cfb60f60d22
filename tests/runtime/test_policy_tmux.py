"""The command policy in `tiss repl` on a real terminal: tmux runs it, the test answers the
approval question (the same gate as `tiss run`, runtime/interpreter_policy.py)."""

from __future__ import annotations

import sys
import time

from tmux_session import NEEDS_TMUX, ROOT, shell_command

pytestmark = NEEDS_TMUX


def test_repl_asks_before_a_command_holding_model_text(tmux, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    tmux.start(shell_command([
        "env", f"XDG_STATE_HOME={tmp_path / 'state'}", f"PYTHONPATH={ROOT}", "NO_COLOR=1",
        sys.executable, "-m", "runtime", "repl", "--workspace", str(workspace), "--model", "echo",
    ]), width=120)
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
