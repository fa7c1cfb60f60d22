"""`tiss chat` in a real terminal: tmux runs it, the test types and reads the screen."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from chat_models import write_chat_checkpoint
from tmux_session import NEEDS_TMUX, ROOT, Tmux, shell_command

ANSWER = "The capital of France is Paris."

pytestmark = NEEDS_TMUX


def start_chat(tmux: Tmux, tmp_path: Path, *flags: str) -> Path:
    """Start `tiss chat FLAGS` in the tmux session; returns the exit-status file."""
    status_file = tmp_path / "status"
    tmux.start(shell_command([
        "env", "-u", "NO_COLOR", f"XDG_STATE_HOME={tmp_path / 'state'}", f"PYTHONPATH={ROOT}",
        sys.executable, "-m", "runtime", "chat", *flags,
    ], status_file, survive_interrupt=True))
    tmux.wait_for("Chatting with", timeout=60)
    wait_prompt(tmux)
    return status_file


def wait_prompt(tmux: Tmux, times: int = 1, timeout: float = 15.0) -> str:
    """Wait until the prompt is back for the `times`-th time and waits for input (keys sent while
    the chat is between prompts would reach the terminal's line discipline, not the chat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = tmux.screen()
        lines = [line for line in screen.splitlines() if line.strip()]
        if lines and lines[-1] == "you>" and sum(line.startswith("you>") for line in lines) >= times:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"the prompt never came back; the screen was:\n{tmux.screen()}")


def test_a_conversation_in_a_real_terminal(tmux, tmp_path):
    ckpt = write_chat_checkpoint(tmp_path / "chat")
    status = start_chat(tmux, tmp_path, "--checkpoint", str(ckpt), "--system", "Be brief.", "--temperature", "0")
    assert "(system: Be brief.)" in tmux.screen().replace("\n", "")  # the banner may wrap

    tmux.type("What is the capital of France?")
    screen = tmux.wait_for(ANSWER)
    lines = screen.splitlines()
    asked = next(i for i, line in enumerate(lines) if "What is the capital of France?" in line)
    assert lines[asked].startswith("you> ") and lines[asked + 1] == ANSWER  # no special tokens shown

    wait_prompt(tmux, 2)
    tmux.type("/reset")
    tmux.wait_for("(the conversation starts over)")
    wait_prompt(tmux, 3)

    # Ctrl-C at the prompt clears what was typed; the prompt stays.
    tmux.send("-l", "half a thought")
    tmux.wait_for("half a thought")
    tmux.send("C-c")
    wait_prompt(tmux, 4)
    tmux.type("/help")
    screen = wait_prompt(tmux, 5)
    assert screen.count("/reset starts over, /exit (or Ctrl-D) leaves") == 2  # the banner's and /help's
    assert "you> /help" in screen

    # Ctrl-D leaves with status 0; the turns are in the chat's own history file.
    tmux.send("C-d")
    assert tmux.wait_exit(status, "tiss chat did not exit") == "0"
    history = (tmp_path / "state" / "tiss" / "chat_history").read_text()
    assert "+What is the capital of France?" in history and "+/reset" in history


def test_ctrl_c_stops_an_answer_and_the_chat_goes_on(tmux, tmp_path):
    # This model never ends its answer: only Ctrl-C (or the huge token limit) stops it.
    ckpt = write_chat_checkpoint(tmp_path / "loop", loop=True)
    status = start_chat(tmux, tmp_path, "--checkpoint", str(ckpt), "--temperature", "0",
                        "--max-new-tokens", "10000000")
    tmux.type("Tell me everything.")
    tmux.wait_for("Paris.The capital")
    started = time.monotonic()
    tmux.send("C-c")
    tmux.wait_for("[stopped]")
    assert time.monotonic() - started < 10
    wait_prompt(tmux, 2)
    tmux.type("/exit")
    assert tmux.wait_exit(status, "tiss chat did not exit") == "0"
